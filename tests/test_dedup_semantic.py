"""SemDeDup within one cluster, in NumPy: the greedy keep walk, keep orders, several eps."""

from __future__ import annotations

import numpy as np
import pytest

from imgcurate.dedup.keep import KeepRule, KeepRuleError
from imgcurate.dedup.semantic import SemanticConfig, eps_column, semantic_flags


def reference(vectors: np.ndarray, order, eps: float):
    """The definition, one member at a time: duplicate if too close to an earlier kept one."""
    units = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    kept: list[int] = []
    duplicate = np.zeros(len(units), dtype=bool)
    nearest = np.full(len(units), -1)
    for j in order:
        if kept:
            sims = units[kept] @ units[j]
            best = int(np.argmax(sims))
            if sims[best] > 1 - eps:
                duplicate[j], nearest[j] = True, kept[best]
                continue
        kept.append(j)
    return duplicate, nearest


def clumpy(rng, count: int, dim: int = 16) -> np.ndarray:
    """Vectors in tight clumps of random size, so chains of near copies occur."""
    seeds = rng.standard_normal((count // 3 + 1, dim))
    noise = rng.choice([0.01, 0.05, 0.15])
    return seeds[rng.integers(0, len(seeds), count)] + noise * rng.standard_normal((count, dim))


@pytest.mark.parametrize("trial", range(12))
def test_blocked_walk_matches_the_definition_for_every_eps(trial):
    rng = np.random.default_rng(trial)
    vectors = clumpy(rng, int(rng.integers(2, 250)))
    order = rng.permutation(len(vectors))
    eps = (0.001, 0.01, 0.05, 0.2)
    flags = semantic_flags(vectors, None, order, eps, block_size=int(rng.integers(1, 40)))
    for e, value in enumerate(eps):
        duplicate, nearest = reference(vectors, order, value)
        np.testing.assert_array_equal(flags.duplicate[e], duplicate)
        np.testing.assert_array_equal(flags.nearest[e], nearest)
        sims = np.where(duplicate, flags.similarity[e], 1.0)
        assert (sims > 1 - value).all() and np.isnan(flags.similarity[e][~duplicate]).all()


def test_block_size_does_not_change_the_result():
    rng = np.random.default_rng(7)
    vectors = clumpy(rng, 400, dim=32)
    order = rng.permutation(400)
    whole = semantic_flags(vectors, None, order, (0.02,), block_size=4096)
    for block in (1, 3, 64, 399):
        blocked = semantic_flags(vectors, None, order, (0.02,), block_size=block)
        np.testing.assert_array_equal(whole.duplicate, blocked.duplicate)
        np.testing.assert_array_equal(whole.nearest, blocked.nearest)


def group_on_a_ray(ts, dim: int = 8) -> tuple[np.ndarray, np.ndarray]:
    """Copies ``centroid + t·w``: larger t is farther from the centroid, all close together."""
    centroid, w = np.eye(dim)[0], np.eye(dim)[1]
    return np.stack([centroid + t * w for t in ts]), centroid


def test_hard_keeps_the_farthest_and_easy_the_closest():
    vectors, centroid = group_on_a_ray([0.52, 0.50, 0.54])
    hard = semantic_flags(vectors, centroid, "hard", (0.01,))
    easy = semantic_flags(vectors, centroid, "easy", (0.01,))
    assert hard.duplicate[0].tolist() == [True, True, False]
    assert hard.nearest[0].tolist() == [2, 2, -1]
    assert easy.duplicate[0].tolist() == [True, False, True]
    assert easy.nearest[0].tolist() == [1, -1, 1]


def test_an_explicit_order_keeps_its_first_member():
    vectors, _ = group_on_a_ray([0.50, 0.51, 0.52, 0.53])
    for first in range(4):
        order = [first] + [i for i in range(4) if i != first]
        flags = semantic_flags(vectors, None, order, (0.01,))
        assert np.flatnonzero(~flags.duplicate[0]).tolist() == [first]


def test_several_eps_in_one_pass_and_a_kept_member_for_every_duplicate():
    # 0.50 and 0.52 are 0.9998 similar; 0.75 is 0.984 similar to 0.50: a copy only at eps 0.05.
    vectors, centroid = group_on_a_ray([0.50, 0.52, 0.75, 3.0])
    flags = semantic_flags(vectors, centroid, "easy", (0.01, 0.05))
    assert flags.duplicate[0].tolist() == [False, True, False, False]
    assert flags.duplicate[1].tolist() == [False, True, True, False]
    assert flags.nearest[1].tolist() == [-1, 0, 0, -1]
    for e in range(2):
        kept = ~flags.duplicate[e]
        assert kept[flags.nearest[e][flags.duplicate[e]]].all()
    assert flags.similarity[1][2] == pytest.approx(0.9839, abs=1e-3)


def test_keep_rule_parsing_and_eps_columns():
    assert KeepRule.parse("best:aesthetic") == KeepRule("best", "aesthetic")
    assert str(KeepRule.parse("RANDOM", seed=3)) == "random"
    for bad in ("best", "hard:x", "largest"):
        with pytest.raises(KeepRuleError):
            KeepRule.parse(bad)
    assert [eps_column(e) for e in (0.01, 0.05, 0.1, 0.125)] == [
        "eps_0_01",
        "eps_0_05",
        "eps_0_1",
        "eps_0_125",
    ]
    with pytest.raises(ValueError):
        SemanticConfig(eps=(0.0,))

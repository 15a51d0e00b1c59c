"""The whole curation as one configured run: scan → embed → dedup → reshard.

Each stage is incremental on its own, so running the pipeline again after a
crash, or after new shards arrived, does only the missing work. This module
only translates a :class:`~imgcurate.config.PipelineConfig` into each stage's
options and runs them in order; it holds no stage logic itself.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from imgcurate.config import PipelineConfig


@dataclass
class StageReport:
    """One stage's outcome, as printed."""

    stage: str
    lines: list[str]
    seconds: float


def run_pipeline(
    spark,
    config: PipelineConfig,
    only: list[str] | None = None,
    progress: bool = True,
    echo: Callable[[str], None] = print,
) -> list[StageReport]:
    """Run the configured stages (or ``only`` those) in pipeline order."""
    stages = [s for s in config.stages if not only or s in only]
    reports = []
    for index, stage in enumerate(stages, 1):
        echo(f"== stage {index}/{len(stages)}: {stage} ==")
        started = time.time()
        summary = RUNNERS[stage](spark, config, progress)
        report = StageReport(stage, summary.lines(), time.time() - started)
        for line in report.lines:
            echo(line)
        reports.append(report)
    echo("== done: " + ", ".join(f"{r.stage} {r.seconds:.0f}s" for r in reports) + " ==")
    return reports


def _scan(spark, config: PipelineConfig, progress: bool):
    from imgcurate.stages.scan import run_scan

    return run_scan(
        spark,
        config.input,
        config.tables,
        root=config.root,
        table_format=config.format,
        max_pixels=config.scan.max_pixels,
        progress=progress,
    )


def _embed(spark, config: PipelineConfig, progress: bool):
    from imgcurate.stages.embed import EmbedOptions, run_embed

    settings = config.embed
    options = EmbedOptions(
        model=settings.model,
        heads=settings.heads,
        batch_size=settings.batch_size,
        weights_dir=settings.weights_dir,
        random_weights=settings.random_weights,
        fast_decode=settings.fast_decode,
        vector_dtype=settings.vector_dtype,
        precision=settings.precision,
        decode_threads=settings.decode_threads,
        shards_per_commit=settings.shards_per_commit,
    )
    return run_embed(spark, config.tables, options, config.format, progress)


def _dedup(spark, config: PipelineConfig, progress: bool):
    from imgcurate.dedup.keep import KeepRule
    from imgcurate.dedup.semantic import SemanticConfig
    from imgcurate.spark.tables import TableStore
    from imgcurate.stages.dedup import DedupOptions, run_dedup

    settings = config.dedup
    methods = [m for m, on in (("exact", settings.exact), ("phash", settings.phash)) if on]
    has_embeddings = TableStore(spark, config.tables, config.format).exists("embeddings")
    if settings.semantic == "on" or (settings.semantic == "auto" and has_embeddings):
        methods.append("semantic")
    keep = KeepRule.parse(settings.keep)
    options = DedupOptions(
        methods=tuple(methods),
        keep=keep,
        semantic=SemanticConfig(
            eps=tuple(settings.semantic_eps), clusters=settings.clusters, keep=keep
        ),
        **({"phash_distance": settings.phash_distance} if settings.phash_distance else {}),
    )
    return run_dedup(spark, config.tables, options, config.format, progress)


def _reshard(spark, config: PipelineConfig, progress: bool):
    from imgcurate.stages.reshard import ReshardOptions, run_reshard

    settings = config.reshard
    options = ReshardOptions(
        dest=settings.dest,
        where=config.select.where,
        select_sql=config.select.sql,
        samples_per_shard=settings.samples_per_shard,
        max_shard_bytes=settings.max_shard_bytes,
        keys=settings.keys,
        shuffle_seed=settings.shuffle_seed,
        skip_missing=settings.skip_missing,
    )
    return run_reshard(spark, config.tables, options, config.format, progress)


RUNNERS = {"scan": _scan, "embed": _embed, "dedup": _dedup, "reshard": _reshard}

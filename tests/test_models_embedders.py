"""Embedders: names, the real checkpoint loaders, custom factories, the per-process cache."""

from __future__ import annotations

import os
import textwrap

os.environ["HF_HUB_OFFLINE"] = "1"

import open_clip
import pytest
import timm
import torch
from safetensors.torch import save_file

from imgcurate.models import ModelSpec, bundle, load_models, plan_models
from imgcurate.models.catalog import (
    AESTHETIC_WEIGHTS,
    NSFW_WEIGHTS,
    ModelName,
    UnknownModelError,
    parse_model,
)
from imgcurate.models.embedders import is_projection_head
from imgcurate.models.heads import HeadMismatchError
from imgcurate.models.tiny import TINY_CLIP, ensure_registered
from tests.test_models_heads import (
    aesthetic_by_hand,
    aesthetic_checkpoint,
    nsfw_by_hand,
    nsfw_checkpoint,
)


@pytest.fixture(autouse=True)
def fresh_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("IMGCURATE_CACHE", str(tmp_path / "own"))
    yield
    bundle.clear_cache()


def pixels(n: int = 3, size: int = 224) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(5))


def save(state: dict, path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))


def test_model_names_parse():
    assert parse_model("openclip:ViT-L-14/openai") == ModelName("openclip", "ViT-L-14", "openai")
    assert parse_model("timm:vit_large_patch14_clip_224.openai") == ModelName(
        "timm", "vit_large_patch14_clip_224.openai"
    )
    assert parse_model("custom:pkg.mod:make") == ModelName("custom", "pkg.mod:make")
    for bad in ("ViT-L-14", "onnx:model", "custom:pkg.mod", "timm:"):
        with pytest.raises(UnknownModelError):
            parse_model(bad)


def test_timm_keeps_the_projection_of_clip_towers_only():
    cfg = timm.models.get_pretrained_cfg
    assert is_projection_head(cfg("vit_large_patch14_clip_224.openai").to_dict())
    assert is_projection_head(cfg("convnext_base.clip_laion2b").to_dict())
    assert not is_projection_head(cfg("vit_base_patch16_clip_224.openai_ft_in1k").to_dict())
    assert not is_projection_head(cfg("resnet50.a1_in1k").to_dict())


def test_openclip_checkpoint_and_heads_load_through_the_real_loaders(tmp_path, monkeypatch):
    """Official file names and key layouts, random values: same outputs as hand-built models."""
    ensure_registered(TINY_CLIP)
    monkeypatch.setitem(
        open_clip.pretrained._PRETRAINED,
        TINY_CLIP,
        {"test": open_clip.pretrained._pcfg(hf_hub="example/tiny-clip/")},
    )
    torch.manual_seed(7)
    reference = open_clip.create_model(TINY_CLIP).eval()
    weights_dir = tmp_path / "weights"
    save(reference.state_dict(), weights_dir / "example/tiny-clip/open_clip_model.safetensors")
    aesthetic, nsfw = aesthetic_checkpoint(), nsfw_checkpoint()
    save(aesthetic, weights_dir / AESTHETIC_WEIGHTS.relpath)
    nsfw_path = weights_dir / NSFW_WEIGHTS.relpath
    nsfw_path.parent.mkdir(parents=True)
    torch.save(nsfw, nsfw_path)

    models = load_models(ModelSpec(f"openclip:{TINY_CLIP}/test", weights_dir=str(weights_dir)))
    x = pixels()
    out = models.forward(x, ["a cat", "a rocket", ""])
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(reference.encode_image(x), dim=-1)
        text = reference.encode_text(open_clip.get_tokenizer(TINY_CLIP)(["a cat", "a rocket"]))
    torch.testing.assert_close(torch.from_numpy(out["vector"]), expected, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(
        torch.from_numpy(out["aesthetic"]),
        aesthetic_by_hand(aesthetic, expected),
        atol=1e-4,
        rtol=0,
    )
    torch.testing.assert_close(
        torch.from_numpy(out["nsfw"]), nsfw_by_hand(nsfw, expected), atol=1e-5, rtol=0
    )
    cos = torch.nn.functional.cosine_similarity(expected[:2], text)
    torch.testing.assert_close(torch.from_numpy(out["clip_score"][:2]), cos, atol=1e-5, rtol=0)
    assert torch.isnan(torch.tensor(out["clip_score"][2]))
    assert [p.split("=")[0] for p in models.weights.split(";")] == ["embedder", "aesthetic", "nsfw"]
    assert "open_clip_model.safetensors@sha256:" in models.weights


def test_timm_checkpoint_loads_through_the_real_loader(tmp_path):
    torch.manual_seed(8)
    reference = timm.create_model("test_vit", pretrained=False).eval()
    weights_dir = tmp_path / "weights"
    save(reference.state_dict(), weights_dir / "timm/test_vit.r160_in1k/model.safetensors")
    models = load_models(ModelSpec("timm:test_vit.r160_in1k", weights_dir=str(weights_dir)))
    assert models.head_names == () and models.plan.dim == reference.num_features
    x = pixels(2, 160)
    reference.reset_classifier(0)
    with torch.inference_mode():
        expected = torch.nn.functional.normalize(reference(x), dim=-1)
    torch.testing.assert_close(torch.from_numpy(models.forward(x)["vector"]), expected)
    assert models.weights.startswith("embedder=model.safetensors@sha256:")


def test_heads_that_do_not_fit_fail_at_start_up():
    with pytest.raises(HeadMismatchError, match="768-dimensional"):
        plan_models(ModelSpec("timm:test_vit", heads=("aesthetic",), random_weights=True))
    with pytest.raises(HeadMismatchError, match="text tower"):
        plan_models(ModelSpec("timm:test_vit", heads=("clip_score",), random_weights=True))


def test_random_weights_are_the_same_in_every_worker():
    spec = ModelSpec(f"openclip:{TINY_CLIP}", random_weights=True)
    first = load_models(spec).forward(pixels(1))
    assert load_models(spec) is load_models(spec)  # cached once per process
    bundle.clear_cache()
    torch.manual_seed(12345)  # a worker whose global RNG is elsewhere
    second = load_models(spec).forward(pixels(1))
    for name in first:
        torch.testing.assert_close(torch.from_numpy(first[name]), torch.from_numpy(second[name]))


def test_custom_factory(tmp_path, monkeypatch):
    (tmp_path / "my_embedders.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torchvision import transforms
            from imgcurate.models.embedders import ModuleEmbedder

            def small(policy):
                net = torch.nn.Sequential(
                    torch.nn.Conv2d(3, 8, 4, 4), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()
                )
                transform = transforms.Compose([transforms.Resize((32, 32)), transforms.ToTensor()])
                label = "random" if policy.random else "my-weights-v1"
                return ModuleEmbedder("custom:my_embedders:small", net, transform, 8, 32, label)

            def broken():
                return object()
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    models = load_models(ModelSpec("custom:my_embedders:small"))
    assert models.head_names == () and models.weights == "embedder=my-weights-v1"
    vectors = models.forward(pixels(2, 32))["vector"]
    assert vectors.shape == (2, 8)
    with pytest.raises(TypeError, match="without dim"):
        plan_models(ModelSpec("custom:my_embedders:broken", random_weights=True))
    with pytest.raises(UnknownModelError, match="cannot import"):
        plan_models(ModelSpec("custom:no_such_module:make", random_weights=True))

"""Decoding, and the model input it produces: equal to the reference transform, or close to it."""

from __future__ import annotations

import functools
import io
import os

os.environ["HF_HUB_OFFLINE"] = "1"

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data as photos

from imgcurate.images.decode import DecodeError, decode_image
from imgcurate.models import ModelSpec, load_models

PHOTOS = {
    "astronaut": photos.astronaut(),
    "coffee": photos.coffee(),
    "chelsea": photos.chelsea(),
    "rocket": photos.rocket(),
}


@functools.cache
def photo_jpeg(name: str, upscale: int) -> bytes:
    return jpeg(PHOTOS[name], upscale)


def jpeg(array: np.ndarray, upscale: int = 1, **save) -> bytes:
    image = Image.fromarray(array)
    if upscale != 1:
        image = image.resize((image.width * upscale, image.height * upscale), Image.BICUBIC)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def test_decode_gives_rgb_for_every_mode():
    for mode in ("L", "RGBA", "P", "CMYK"):
        image = Image.new(mode, (10, 7))
        out = io.BytesIO()
        image.save(out, "TIFF" if mode == "CMYK" else "PNG")
        decoded = decode_image(out.getvalue())
        assert decoded.mode == "RGB" and decoded.size == (10, 7)


def test_exif_orientation_is_applied():
    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways: rotate 90 degrees to view
    data = jpeg(np.zeros((20, 40, 3), np.uint8), exif=exif.tobytes())
    assert decode_image(data).size == (20, 40)


@pytest.mark.parametrize(
    "data",
    [b"", b"not an image at all", photo_jpeg("coffee", 1)[:5000]],
    ids=["empty", "garbage", "truncated"],
)
def test_corrupt_bytes_raise_decode_error(data):
    with pytest.raises(DecodeError):
        decode_image(data)


def test_draft_scale_keeps_twice_the_input():
    data = photo_jpeg("astronaut", 1)  # 512 x 512
    assert decode_image(data, min_side=128).size == (128, 128)
    assert decode_image(data, min_side=200).size == (256, 256)
    assert decode_image(data, min_side=400).size == (512, 512)  # no scale fits: full decode


def _references():
    """Each model's reference transform, built the way its library documents."""
    import open_clip
    import timm

    from imgcurate.models.tiny import TINY_CLIP, ensure_registered

    ensure_registered(TINY_CLIP)  # a registered open_clip config, like any built-in one
    _, _, clip_reference = open_clip.create_model_and_transforms(TINY_CLIP)
    net = timm.create_model("test_vit", pretrained=False)
    timm_reference = timm.data.create_transform(
        **timm.data.resolve_data_config(model=net), is_training=False
    )
    clip = load_models(ModelSpec("openclip:imgcurate-tiny-clip", random_weights=True))
    vit = load_models(ModelSpec("timm:test_vit", random_weights=True))
    return {"openclip": (clip.embedder, clip_reference), "timm": (vit.embedder, timm_reference)}


@pytest.fixture(scope="module")
def references():
    return _references()


@pytest.mark.parametrize("library", ["openclip", "timm"])
def test_input_equals_reference_without_fast_path(references, library):
    embedder, reference = references[library]
    for name in PHOTOS:
        for upscale in (1, 3):
            data = photo_jpeg(name, upscale)
            ours = embedder.preprocess(decode_image(data, min_side=None))
            theirs = reference(Image.open(io.BytesIO(data)))
            assert ours.shape == theirs.shape
            assert torch.max(torch.abs(ours - theirs)).item() <= 1e-6, name


@pytest.mark.parametrize("library", ["openclip", "timm"])
def test_fast_path_stays_close_to_reference(references, library):
    embedder, reference = references[library]
    min_side = 2 * embedder.image_size
    for name in PHOTOS:
        data = photo_jpeg(name, 3)  # large enough that every photo takes the draft path
        drafted = decode_image(data, min_side=min_side)
        assert min(drafted.size) >= min_side
        assert drafted.size[0] < Image.open(io.BytesIO(data)).size[0], f"{name}: no draft"
        fast = embedder.preprocess(drafted)
        theirs = reference(Image.open(io.BytesIO(data)))
        assert torch.mean(torch.abs(fast - theirs)).item() <= 0.02, name

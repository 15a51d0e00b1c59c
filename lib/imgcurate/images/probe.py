"""Header-only image inspection for ``scan``: format, size, mode, never a full decode.

Pillow's ``Image.open`` is lazy: it reads the header and stops. That is all
scan needs, and it keeps a 50,000 x 50,000 PNG from costing 10 GB of memory.
Pillow's own decompression-bomb check would refuse to even report such a
size, so it is lifted while probing and replaced by our own limit, which
turns an oversized image into a status instead of an exception.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

#: Images above this many pixels get status ``too_large`` (Pillow's bomb threshold).
DEFAULT_MAX_PIXELS = 2 * 89_478_485

_EXIF_ORIENTATION = 0x0112
_SWAPPED_ORIENTATIONS = {5, 6, 7, 8}


@dataclass(frozen=True)
class ImageInfo:
    """What scan records about one image member."""

    status: str
    error: str | None = None
    image_format: str | None = None
    width: int | None = None
    height: int | None = None
    mode: str | None = None


def probe_image(data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> ImageInfo:
    """Inspect encoded image bytes without decoding the pixels.

    Width and height are reported after EXIF orientation (a portrait photo
    stored sideways with orientation 6 reports its upright size).
    """
    if not data:
        return ImageInfo(status="empty_image", error="image member has zero bytes")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = _open_without_bomb_check(data)
    except UnidentifiedImageError:
        return ImageInfo(status="not_an_image", error="bytes are not a known image format")
    except Exception as error:  # Pillow raises many types on corrupt headers
        return ImageInfo(status="decode_error", error=f"{type(error).__name__}: {error}")
    width, height = _oriented_size(image)
    info = ImageInfo(
        status="ok", image_format=image.format, width=width, height=height, mode=image.mode
    )
    problem = _check(image, data, width, height, max_pixels)
    if problem:
        return ImageInfo(problem[0], problem[1], info.image_format, width, height, info.mode)
    return info


def _open_without_bomb_check(data: bytes) -> Image.Image:
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        return Image.open(io.BytesIO(data))
    finally:
        Image.MAX_IMAGE_PIXELS = previous


def _oriented_size(image: Image.Image) -> tuple[int, int]:
    width, height = image.size
    try:
        orientation = image.getexif().get(_EXIF_ORIENTATION)
    except Exception:  # a broken EXIF block does not make the image unusable
        orientation = None
    if orientation in _SWAPPED_ORIENTATIONS:
        return height, width
    return width, height


def _check(
    image: Image.Image, data: bytes, width: int, height: int, max_pixels: int
) -> tuple[str, str] | None:
    if width <= 0 or height <= 0:
        return "decode_error", f"image declares an empty size {width}x{height}"
    if width * height > max_pixels:
        return (
            "too_large",
            f"image declares {width}x{height} pixels, above the limit of {max_pixels}",
        )
    if image.format == "JPEG" and not _has_jpeg_end(data):
        return "truncated_image", "JPEG has no end-of-image marker (file cut short)"
    return None


def _has_jpeg_end(data: bytes) -> bool:
    """A complete JPEG ends with FFD9; tolerate a little padding after it."""
    return b"\xff\xd9" in data[-64:]

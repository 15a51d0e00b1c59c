"""Encoded image bytes to an upright RGB Pillow image, the input of every model transform.

Two things happen here and nowhere else:

- EXIF orientation is applied, so a portrait photo stored sideways is embedded
  the way people see it (``probe`` reports sizes the same way).
- The optional JPEG fast path: Pillow's ``draft()`` lets libjpeg decode at 1/2,
  1/4 or 1/8 scale straight from the DCT coefficients, which skips most of the
  decoding work for photos much larger than the model input. The scale is chosen
  so that the shorter side stays at least ``min_side`` pixels (callers pass twice
  the model input), and the model's reference resize then does the rest, so
  the result stays close to a full decode (the tests bound the difference).
"""

from __future__ import annotations

import io

from PIL import Image, ImageOps


class DecodeError(ValueError):
    """The bytes are not an image Pillow can decode."""


def decode_image(data: bytes, min_side: int | None = None) -> Image.Image:
    """Decode ``data`` into an upright RGB image.

    ``min_side`` turns on the JPEG fast path: a JPEG is decoded at the smallest
    libjpeg scale whose shorter side is still at least ``min_side``. Other
    formats, and JPEGs already small, are decoded in full.
    Raises :class:`DecodeError` for anything that is not a decodable image.
    """
    if not data:
        raise DecodeError("image member has zero bytes")
    try:
        image = Image.open(io.BytesIO(data))
        if min_side and image.format == "JPEG":
            image.draft("RGB", (min_side, min_side))
        image.load()
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB")
    except DecodeError:
        raise
    except Exception as error:  # Pillow raises many types for corrupt data
        raise DecodeError(f"{type(error).__name__}: {error}") from error

"""Colour management as Spark's image source does it: JPEGs with an embedded ICC profile are
converted to sRGB (Java ImageIO reads them in the profile's colour space and ``getRGB`` converts).
PNG ``iCCP`` profiles are ignored by Java, and so here.

CMYK and YCCK JPEGs: Java's JPEG reader gives them its ``SimpleCMYKColorSpace`` whether or not a
profile is embedded (measured on OpenJDK 17: the same pixels with and without a CMYK profile), and
``getRGB`` converts with that colour space's formula: linear RGB = (1 - C)(1 - K) per channel, then
the sRGB transfer curve. :func:`cmyk_to_srgb` applies the same formula through one lookup table.
Adobe-style inverted CMYK (APP14) and YCCK are undone by libjpeg/Pillow before that, as in Java.

Transforms are built with Pillow's ImageCms (LittleCMS, the colour engine OpenJDK uses too) once
per distinct profile and process. sRGB profiles need no transform (Java's conversion of them is
the identity within one level).
"""

from __future__ import annotations

import functools
import hashlib
import io
import logging
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

_MAX_CACHED = 64
_TRANSFORMS: dict[bytes, Any] = {}


def srgb_transform(icc: bytes | None) -> Any | None:
    """An RGB -> sRGB ImageCms transform for an embedded profile; None for none, sRGB or unusable."""
    if not icc:
        return None
    key = hashlib.blake2b(icc, digest_size=16).digest()
    if key in _TRANSFORMS:
        return _TRANSFORMS[key]
    transform = None
    try:
        from PIL import ImageCms

        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        description = ImageCms.getProfileDescription(profile) or ""
        if profile.profile.xcolor_space.strip() == "RGB" and "srgb" not in description.lower():
            transform = ImageCms.buildTransform(profile, ImageCms.createProfile("sRGB"), "RGB", "RGB")
    except Exception as exc:  # noqa: BLE001 - a broken profile is ignored, as a decoder would
        log.debug("ignoring an unusable ICC profile: %s", exc)
    if len(_TRANSFORMS) >= _MAX_CACHED:
        _TRANSFORMS.clear()
    _TRANSFORMS[key] = transform
    return transform


@functools.lru_cache(maxsize=1)
def _cmyk_table() -> np.ndarray:
    """sRGB-encoded byte for each product ``(255 - C) * (255 - K)`` (0..65025)."""
    linear = np.arange(255 * 255 + 1, dtype=np.float64) / (255 * 255)
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055)
    return np.clip(np.round(srgb * 255), 0, 255).astype(np.uint8)


def cmyk_to_srgb(cmyk: np.ndarray) -> np.ndarray:
    """``(h, w, 4)`` ink amounts (C, M, Y, K, 0..255) to ``(h, w, 3)`` sRGB as Java's image source does."""
    inv = 255 - cmyk.astype(np.int32)
    return _cmyk_table()[inv[:, :, :3] * inv[:, :, 3:4]]


def to_srgb(im: Any) -> Any:
    """Convert a loaded JPEG image to sRGB as Java does: CMYK by :func:`cmyk_to_srgb`, RGB with an
    embedded non-sRGB profile through that profile; anything else is returned unchanged."""
    if im.mode == "CMYK":
        from PIL import Image

        return Image.fromarray(cmyk_to_srgb(np.asarray(im)), "RGB")
    if im.mode != "RGB":
        return im
    transform = srgb_transform(im.info.get("icc_profile"))
    if transform is None:
        return im
    from PIL import ImageCms

    return ImageCms.applyTransform(im, transform)

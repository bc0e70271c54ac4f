"""Colour management as Spark's image source does it: JPEGs with an embedded ICC profile are
converted to sRGB (Java ImageIO reads them in the profile's colour space and ``getRGB`` converts).
PNG ``iCCP`` profiles are ignored by Java, and so here.

Transforms are built with Pillow's ImageCms (LittleCMS, the colour engine OpenJDK uses too) once
per distinct profile and process. sRGB profiles need no transform (Java's conversion of them is
the identity within one level).
"""

from __future__ import annotations

import hashlib
import io
import logging
from typing import Any

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


def to_srgb(im: Any) -> Any:
    """Convert a loaded RGB JPEG image with an embedded non-sRGB profile to sRGB (else unchanged)."""
    if im.mode != "RGB":
        return im
    transform = srgb_transform(im.info.get("icc_profile"))
    if transform is None:
        return im
    from PIL import ImageCms

    return ImageCms.applyTransform(im, transform)

"""Which files DALI decodes, and the shape it must produce for each.

DALI can only produce some files exactly the way Spark's image source does. Each file is routed
from its header (:func:`gpuimages.engines.formats.sniff`):

* JPEG with 1 or 3 components (8-bit), PNG 8-bit grey / RGB / palette without ``tRNS``, and
  8-bit RGBA PNG (when not resizing): DALI, grouped by output channel count (1, 3, 4), one
  pipeline per group.
* Everything else goes to the Pillow path (:func:`gpuimages.engines.pillow.decode_one`):
  missing or empty bytes, other formats, PNG with a bit depth other than 8, grey+alpha PNG,
  any PNG with ``tRNS``, CMYK/YCCK JPEG, headers over ``max_pixels``, RGBA PNG that must be
  resized (Pillow resizes RGBA with premultiplied alpha), truncated files (the data ends before
  the image does: Pillow decodes them as far as Java does, or refuses them under ``strict``),
  PNG headers with methods Java refuses, palette PNGs with fewer colours than their bit depth
  can index (Java repeats the last colour for indices past the end), and, with ``apply_exif``,
  files whose orientation DALI might read differently (PNG with EXIF, XMP-only orientation).
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gpuimages.engines.color import srgb_transform
from gpuimages.engines.formats import PNG_GRAY, PNG_PALETTE, PNG_RGB, PNG_RGBA, HeaderInfo, sniff
from gpuimages.engines.pillow import SWAPS_AXES, exif_orientation
from gpuimages.options import DecodeOptions, resize_pixels_reason

_DALI_PNG_TYPES = {PNG_GRAY: 1, PNG_RGB: 3, PNG_PALETTE: 3, PNG_RGBA: 4}


@dataclass
class Job:
    """One file for DALI: where it goes in the batch and what DALI must return for it."""

    index: int
    data: np.ndarray  # encoded bytes, uint8
    shape: tuple[int, int, int]  # expected output (h, w, c)
    size: tuple[int, int] | None = None  # resize target (h, w)
    anchor: tuple[int, int] | None = None  # crop origin (top, left) in the resized image


def _exif_orientation(blob: bytes, info: HeaderInfo) -> int | None:
    """The EXIF orientation Pillow would apply, or None if DALI might not agree on it."""
    if info.format == "png":
        # Pillow reads EXIF from eXIf chunks and "Raw profile type exif" text; leave those to it.
        return None if b"eXIf" in blob or b"Raw profile type exif" in blob else 1
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(blob)) as im:
                value = exif_orientation(im, broken=None)
    except Exception:  # noqa: BLE001 - unreadable metadata: let the Pillow path decide
        return None
    if value is None:
        return None
    if value == 1:
        return 1
    # Pillow also takes the orientation from XMP; nvImageCodec only reads the EXIF block.
    if 2 <= value <= 8 and b"Exif\x00\x00" in blob[:0x20000]:
        return value
    return None


def route(blob: bytes | None, options: DecodeOptions) -> tuple[int, int, int] | str:
    """Decide how one file is decoded.

    Returns ``(height, width, channels)`` of the decoded image (before resize/crop) when DALI
    can produce it exactly under Spark's channel rules, else a short reason for the Pillow path.
    """
    if not blob:
        return "missing or empty"
    info = sniff(blob)
    if info.truncated:
        return "truncated"
    if info.png_header_error is not None:
        return "png header methods"
    if info.format == "jpeg":
        if info.components not in (1, 3):
            return "jpeg with 4 components (CMYK/YCCK)" if info.components == 4 else "jpeg header"
        if info.bit_depth != 8:
            return "jpeg not 8-bit"
        channels = 1 if info.components == 1 else 3
        if channels == 3 and srgb_transform(info.icc_profile) is not None:
            return "jpeg with a non-sRGB ICC profile"
    elif info.format == "png":
        if info.bit_depth != 8:
            return "png not 8-bit"
        if info.has_trns:
            return "png with tRNS"
        if info.color_type not in _DALI_PNG_TYPES:
            return "png grey+alpha" if info.color_type == 4 else "png header"
        if info.color_type == PNG_PALETTE and info.palette_entries < 1 << info.bit_depth:
            return "png palette shorter than its index range"  # Java repeats the last colour; DALI gives black
        channels = _DALI_PNG_TYPES[info.color_type]
    else:
        return "not jpeg/png"
    if info.width <= 0 or info.height <= 0:
        return "header without size"
    if info.pixels > options.max_pixels or resize_pixels_reason(options, info.height, info.width):
        return "over max_pixels"
    if channels == 4 and options.resize is not None:
        return "rgba resize"
    height, width = info.height, info.width
    if options.apply_exif:
        orientation = _exif_orientation(blob, info)
        if orientation is None:
            return "exif orientation"
        if orientation in SWAPS_AXES:
            height, width = width, height
    return height, width, channels


def make_job(index: int, blob: bytes, decoded: tuple[int, int, int], options: DecodeOptions) -> Job:
    """The DALI job of file ``index``: its bytes, resize target, crop origin and expected output shape."""
    height, width, channels = decoded
    job = Job(index, np.frombuffer(blob, dtype=np.uint8), (height, width, channels))
    th, tw = options.target_size(height, width)
    if options.resize is not None:
        job.size = (th, tw)
    oh, ow = options.output_size(height, width)
    if options.center_crop is not None:
        job.anchor = ((th - oh) // 2, (tw - ow) // 2)
    job.shape = (oh, ow, channels)
    return job


def route_all(
    blobs: Sequence[bytes | None], options: DecodeOptions, disabled: bool = False
) -> tuple[list[str], dict[int, list[Job]], list[int]]:
    """Route a batch: ``(routes, DALI jobs by decoded channel count, rows for Pillow)``.

    ``routes[i]`` is "dali" or "pillow: <why>"; ``disabled`` sends every file to Pillow.
    """
    routes = ["dali"] * len(blobs)
    groups: dict[int, list[Job]] = {}
    pillow: list[int] = []
    for i, blob in enumerate(blobs):
        decoded = "dali switched off after repeated failures" if disabled else route(blob, options)
        if isinstance(decoded, str):
            routes[i] = f"pillow: {decoded}"
            pillow.append(i)
        else:
            groups.setdefault(decoded[2], []).append(make_job(i, blob, decoded, options))  # type: ignore[arg-type]
    return routes, groups, pillow

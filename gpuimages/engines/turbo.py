"""libjpeg-turbo called directly (through simplejpeg) for the JPEGs it decodes exactly as Pillow does.

Pillow decodes JPEGs with libjpeg-turbo too, but each image passes through Pillow's Python header
parser, its image object (4 bytes a pixel) and a repacking to Spark's BGR. simplejpeg (a small wheel
with libjpeg-turbo built in, for Linux x86-64/aarch64, macOS and Windows) decodes straight into a
BGR or grey ``numpy`` array, in about 60% of the CPU time.

This module decides which files take that path (:func:`route`) and decodes them (:func:`decode`);
:func:`gpuimages.engines.pillow.decode_one` calls it first and falls back to Pillow for every file it
refuses and every file whose decode raises. The files it takes give the same pixels as Pillow's
path, bit for bit:

* 8-bit Huffman-coded baseline, extended or progressive JPEGs (SOF0/1/2) with 3 components
  (YCbCr) or 1 (grey); a 3-component file's Adobe segment, if any, must say YCbCr (transform 1);
* not truncated (an EOI after the scan), no stray bytes between markers, not a multi-picture file
  (MPO, "Ultra HDR": Pillow opens those with its MPO plugin, whose draft decode differs), no
  non-sRGB ICC profile on a colour file (those are converted to sRGB through Pillow's ImageCms),
  within Pillow's own decompression-bomb limit;
* with ``apply_exif`` an orientation of 1 (the caller checks it with Pillow's EXIF reader);
* when a resize follows, Pillow's draft mode asks libjpeg for a 1/2, 1/4 or 1/8 DCT scale with its
  default (accurate) IDCT and fancy upsampling; simplejpeg gets the same scale through
  ``min_height``/``min_width``, and a file whose requested size would make libjpeg-turbo choose
  another scaling factor (tiny images) stays on Pillow.

libjpeg-turbo's warnings (corrupt data, extraneous bytes) raise here (``strict=True``), so such
files are decoded by Pillow as before. Which library decodes is decided per Python worker by
``GPUIMAGES_JPEG_DECODER``: ``auto`` (default: simplejpeg where it is installed and agrees with
Pillow, see :func:`gpuimages.engines.pillow.turbo_agrees`) or ``pillow`` (always Pillow).
``GPUIMAGES_JPEG_ENCODER`` chooses the JPEG encoder (:mod:`gpuimages.encoders.pillow`): ``auto``
(libjpeg-turbo directly where its output is Pillow's byte for byte), ``turbo`` (at every quality)
or ``pillow``.
"""

from __future__ import annotations

import functools
import logging
import os
from dataclasses import dataclass
from types import ModuleType

import numpy as np

from gpuimages.engines.color import srgb_transform
from gpuimages.engines.formats import HeaderInfo
from gpuimages.options import DecodeOptions

log = logging.getLogger(__name__)

#: Environment variable choosing the JPEG decoder on executors: "auto" (default) or "pillow".
DECODER_ENV = "GPUIMAGES_JPEG_DECODER"
#: Environment variable choosing the JPEG encoder on executors: "auto" (default), "turbo" or "pillow".
ENCODER_ENV = "GPUIMAGES_JPEG_ENCODER"
#: Values each variable accepts.
CHOICES = {DECODER_ENV: ("auto", "pillow"), ENCODER_ENV: ("auto", "turbo", "pillow")}
#: JPEG quality from which TurboJPEG (simplejpeg's interface) uses the accurate integer DCT, as Pillow
#: does at every quality; below it, TurboJPEG's legacy interface uses the fast DCT.
ACCURATE_DCT_QUALITY = 96

#: Start-of-frame markers taken: baseline, extended sequential and progressive, Huffman-coded.
HUFFMAN_SOF = (0xC0, 0xC1, 0xC2)
_SOF_ANY = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}
#: Adobe APP14 transform value meaning YCbCr (0: RGB or CMYK as stored, 2: YCCK).
ADOBE_YCBCR = 1
#: TurboJPEG's scaling factors below 1, in the order simplejpeg tries them (smallest first).
_TJ_FACTORS = ((1, 8), (1, 4), (3, 8), (1, 2), (5, 8), (3, 4), (7, 8))
#: Pillow's draft scales (``JpegImageFile.draft``), largest first.
DRAFT_SCALES = (8, 4, 2, 1)


@functools.lru_cache(maxsize=1)
def library() -> ModuleType | None:
    """The simplejpeg module, or None where it is not installed (Pillow then decodes every JPEG)."""
    try:
        import simplejpeg
    except ImportError:
        log.info("gpuimages: simplejpeg is not installed; JPEGs are decoded and encoded by Pillow")
        return None
    return simplejpeg


@functools.lru_cache(maxsize=8)
def _warn_unknown(name: str, value: str) -> None:
    log.warning("gpuimages: %s=%r is not one of %s; using 'auto'", name, value, ", ".join(CHOICES[name]))


def choice(name: str) -> str:
    """The value of ``name`` (:data:`DECODER_ENV` or :data:`ENCODER_ENV`) in this process, one of
    :data:`CHOICES` (an unset or unknown value is "auto"; an unknown one is logged once)."""
    value = os.environ.get(name, "auto").strip().lower() or "auto"
    if value not in CHOICES[name]:
        _warn_unknown(name, value)
        return "auto"
    return value


def encode_directly(quality: int, optimize: bool) -> bool:
    """True when JPEGs at these settings are encoded by libjpeg-turbo directly: simplejpeg installed, no
    ``optimize`` (Pillow's), and ``GPUIMAGES_JPEG_ENCODER`` "turbo", or "auto" (the default) at a quality
    where the output is Pillow's byte for byte (:data:`ACCURATE_DCT_QUALITY` and up)."""
    mode = choice(ENCODER_ENV)
    if optimize or mode == "pillow" or library() is None:
        return False
    return mode == "turbo" or quality >= ACCURATE_DCT_QUALITY


def decode_directly() -> bool:
    """True when ``GPUIMAGES_JPEG_DECODER`` lets libjpeg-turbo decode and simplejpeg is installed."""
    return choice(DECODER_ENV) != "pillow" and library() is not None


@dataclass(frozen=True)
class JpegMarkers:
    """What the markers before the first scan say, beyond :class:`~gpuimages.engines.formats.HeaderInfo`."""

    sof: int = -1  # the first start-of-frame marker (0xC0..0xCF), -1 if none
    adobe_transform: int = -1  # the Adobe APP14 transform byte, -1 without an Adobe segment
    app1: bool = False  # an APP1 segment (EXIF or XMP: where Pillow reads the orientation)
    mpf: bool = False  # an APP2 multi-picture segment: Pillow opens the file as MPO


def jpeg_markers(blob: bytes) -> JpegMarkers | None:
    """Walk the markers up to the first scan; None when a byte between segments is not a marker or a
    second SOI comes."""
    pos, n = 2, len(blob)
    sof, adobe, app1, mpf = -1, -1, False, False
    while pos + 4 <= n:
        if blob[pos] != 0xFF:
            return None  # stray bytes: libjpeg warns and skips them, Pillow reads on; leave it to Pillow
        marker = blob[pos + 1]
        if marker == 0xFF:
            pos += 1
            continue
        if marker == 0xD8:
            return None  # a second SOI: libjpeg refuses the file; Pillow's path says why
        if marker == 0x01 or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = (blob[pos + 2] << 8) | blob[pos + 3]
        if marker == 0xE1:
            app1 = True
        elif marker == 0xE2 and blob[pos + 4 : pos + 8] == b"MPF\0":
            mpf = True
        elif marker == 0xEE and blob[pos + 4 : pos + 9] == b"Adobe":
            adobe = blob[pos + 15] if length >= 14 and pos + 15 < n else 256  # 256: unreadable
        elif marker in _SOF_ANY and sof < 0:
            sof = marker
        elif marker == 0xDA:
            break
        pos += 2 + length
    return JpegMarkers(sof, adobe, app1, mpf)


def draft_scale(height: int, width: int, options: DecodeOptions, gap: int) -> int:
    """The DCT scale (1, 2, 4 or 8) Pillow's draft mode decodes at, for an upright ``height x width`` JPEG.

    As :func:`gpuimages.engines.pillow._draft` asks (``gap`` times the target size) and
    ``JpegImageFile.draft`` chooses (the largest of 8, 4, 2, 1 not above the size ratio).
    """
    if options.resize is None:
        return 1
    th, tw = options.target_size(height, width)
    rw, rh = tw * gap, th * gap
    if not (rw < width and rh < height):
        return 1
    ratio = min(width // rw, height // rh)
    return next(s for s in DRAFT_SCALES if ratio >= s)


def _scaled(size: int, num: int, den: int) -> int:
    return (size * num + den - 1) // den


def turbo_factor(height: int, width: int, min_height: int, min_width: int) -> tuple[int, int]:
    """The scaling factor simplejpeg chooses for ``min_height``/``min_width``: the smallest that reaches both."""
    for num, den in _TJ_FACTORS:
        if _scaled(width, num, den) >= min_width and _scaled(height, num, den) >= min_height:
            return num, den
    return 1, 1


@dataclass(frozen=True)
class Plan:
    """How a file is decoded here: DCT scale, decoded size and pixel layout; ``check_orientation``
    when ``apply_exif`` is on and the file has an APP1 segment (the caller reads the orientation).

    ``colorspace`` is simplejpeg's: "GRAY" (1 channel), "BGR" (Spark's layout, kept as decoded) or
    "RGBX" for a colour image Pillow will resize next (the layout of a Pillow "RGB" image, which
    Pillow can then use without a copy).
    """

    scale: int
    height: int
    width: int
    colorspace: str
    check_orientation: bool = False

    @property
    def shape(self) -> tuple[int, int, int]:
        """The decoded array's shape."""
        return self.height, self.width, {"GRAY": 1, "BGR": 3, "RGBX": 4}[self.colorspace]


def route(blob: bytes, info: HeaderInfo, options: DecodeOptions, gap: int, bomb_pixels: int | None) -> Plan | str:
    """A :class:`Plan` for a file libjpeg-turbo decodes exactly as Pillow does, else the reason it does not.

    ``gap``: the draft reducing gap (see :func:`draft_scale`); ``bomb_pixels``: the size over which
    Pillow refuses to open an image (``2 * Image.MAX_IMAGE_PIXELS``, None for no limit).
    """
    if info.format != "jpeg":
        return "not jpeg"
    if info.truncated:
        return "truncated"
    if info.bit_depth != 8:
        return "not 8-bit"
    if info.components not in (1, 3):
        return f"{info.components} components"
    if info.width <= 0 or info.height <= 0:
        return "no size in the header"
    if bomb_pixels is not None and info.pixels > bomb_pixels:
        return "over Pillow's decompression-bomb limit"
    markers = jpeg_markers(blob)
    if markers is None:
        return "marker layout"
    if markers.mpf:
        return "multi-picture (MPO) file"
    if markers.sof not in HUFFMAN_SOF:
        return "not Huffman baseline/extended/progressive"
    if info.components == 3 and markers.adobe_transform not in (-1, ADOBE_YCBCR):
        return "Adobe transform other than YCbCr"
    if info.components == 3 and srgb_transform(info.icc_profile) is not None:
        return "non-sRGB ICC profile"
    scale = draft_scale(info.height, info.width, options, gap)
    height, width = -(-info.height // scale), -(-info.width // scale)
    if scale > 1 and turbo_factor(info.height, info.width, height, width) != (1, scale):
        return "DCT scale libjpeg-turbo would choose differently"
    if info.components == 1:
        colorspace = "GRAY"
    else:
        resized = options.resize is not None and options.target_size(info.height, info.width) != (height, width)
        colorspace = "RGBX" if resized else "BGR"
    return Plan(scale, height, width, colorspace, options.apply_exif and markers.app1)


def decode(blob: bytes, plan: Plan) -> np.ndarray:
    """Decode with libjpeg-turbo to an ``(h, w, c)`` array in ``plan.colorspace`` at ``plan.scale``.

    Raises ``ValueError`` on any libjpeg-turbo warning or error, or when the shape is not the planned one.
    """
    simplejpeg = library()
    if simplejpeg is None:
        raise ImportError("simplejpeg is not installed")
    scaling = {} if plan.scale == 1 else {"min_height": plan.height, "min_width": plan.width}
    pixels = simplejpeg.decode_jpeg(blob, plan.colorspace, fastdct=False, fastupsample=False, strict=True, **scaling)
    if pixels.shape != plan.shape:
        raise ValueError(f"libjpeg-turbo gave {pixels.shape}, expected {plan.shape}")
    return pixels

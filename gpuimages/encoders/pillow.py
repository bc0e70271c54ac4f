"""The CPU encoder: Pillow (libjpeg-turbo for JPEG, zlib for PNG), one image at a time.

JPEG can go to libjpeg-turbo directly through simplejpeg (:func:`encode_turbo`): Spark's BGR, BGRA
(alpha not stored) or grey pixels are read in place, with no Pillow image in between, at the same
quality scale and chroma subsampling, in about 75% of Pillow's time. TurboJPEG, the interface
simplejpeg calls, uses libjpeg-turbo's fast integer DCT below quality 96 where Pillow uses the
accurate one: there its files are about the same size but further from the input (photographs at
quality 90: 0.1% larger, 0.13 dB lower PSNR; at 95: 0.4-0.7 dB lower). From quality 96 its output is
Pillow's, byte for byte. So ``GPUIMAGES_JPEG_ENCODER`` (read when an encoder is created) chooses:
``auto`` (default) libjpeg-turbo directly from quality 96 and Pillow below; ``turbo`` libjpeg-turbo
directly at every quality; ``pillow`` always Pillow. ``optimize=True`` is always Pillow's (simplejpeg
has no optimised Huffman tables). PNG is Pillow's (zlib).
"""

from __future__ import annotations

import io
import logging
from collections.abc import Sequence

import numpy as np
from PIL import Image

from gpuimages.encoders.base import SUBSAMPLING, EncodedBatch, EncodeOptions, Encoder, check_image, for_format
from gpuimages.engines import turbo

log = logging.getLogger(__name__)

#: Pillow mode and raw (byte-order) mode for Spark's channel layouts.
_MODES = {1: ("L", "L"), 3: ("RGB", "BGR"), 4: ("RGBA", "BGRA")}
#: simplejpeg's pixel formats for Spark's channel layouts (the X byte of BGRX is ignored: alpha dropped).
_TURBO_COLORSPACES = {1: "GRAY", 3: "BGR", 4: "BGRX"}
#: simplejpeg's names for the chroma subsampling options.
_TURBO_SUBSAMPLING = {"4:4:4": "444", "4:2:2": "422", "4:2:0": "420"}


def to_pil(image: np.ndarray) -> Image.Image:
    """A Pillow image over BGR(A) or grey pixels (channels reordered while Pillow unpacks them)."""
    height, width, channels = image.shape
    mode, raw = _MODES[channels]
    return Image.frombuffer(mode, (width, height), np.ascontiguousarray(image), "raw", raw, 0, 1)


def encode_turbo(image: np.ndarray, quality: int, subsampling: str) -> bytes:
    """JPEG bytes of an ``(h, w, 1|3|4)`` grey/BGR/BGRA image through libjpeg-turbo directly (simplejpeg).

    Grey stays grey (subsampling does not apply); the alpha channel of BGRA is not stored. Rows may be
    strided (a crop of a larger array); any other layout is copied first.
    """
    simplejpeg = turbo.library()
    if simplejpeg is None:
        raise ImportError("simplejpeg is not installed")
    channels = image.shape[2]
    if image.strides[2] != 1 or image.strides[1] != channels or image.strides[0] <= 0:
        image = np.ascontiguousarray(image)
    return simplejpeg.encode_jpeg(
        image, quality=quality, colorspace=_TURBO_COLORSPACES[channels],
        colorsubsampling=_TURBO_SUBSAMPLING[subsampling], fastdct=False,
    )


class PillowEncoder(Encoder):
    """Encodes JPEG (quality, subsampling, optional Huffman optimisation) and PNG (zlib level) on CPU:
    JPEG through libjpeg-turbo directly where chosen (see the module), otherwise with Pillow."""

    name = "pillow"

    def __init__(self, options: EncodeOptions) -> None:
        super().__init__(options)
        if options.format == "jpeg":
            self._save = {
                "format": "JPEG",
                "quality": options.quality,
                "subsampling": SUBSAMPLING[options.subsampling],
                "optimize": options.optimize,
            }
        else:
            self._save = {"format": "PNG", "compress_level": options.compress_level}
        #: JPEGs go to libjpeg-turbo directly (decided once per encoder, from GPUIMAGES_JPEG_ENCODER).
        self.turbo = options.format == "jpeg" and turbo.encode_directly(options.quality, options.optimize)

    def encode_one(self, image: np.ndarray | None) -> bytes:
        """Encode one image; raises ``ValueError`` with the reason when it cannot."""
        reason = check_image(image, self.options.format)
        if reason is not None:
            raise ValueError(reason)
        if self.turbo:
            try:
                return encode_turbo(image, self.options.quality, self.options.subsampling)
            except Exception as exc:  # noqa: BLE001 - Pillow encodes it (or says why it cannot)
                log.debug("libjpeg-turbo could not encode an image (%s: %s); using Pillow", type(exc).__name__, exc)
        buf = io.BytesIO()
        to_pil(for_format(image, self.options.format)).save(buf, **self._save)
        return buf.getvalue()

    def encode(self, images: Sequence[np.ndarray | None]) -> EncodedBatch:
        data: list[bytes | None] = []
        errors: list[str | None] = []
        for image in images:
            try:
                data.append(self.encode_one(image))
                errors.append(None)
            except Exception as exc:  # noqa: BLE001 - a failed image is a recorded reason
                data.append(None)
                errors.append(str(exc) if isinstance(exc, ValueError) else f"{type(exc).__name__}: {exc}")
        return EncodedBatch(data, errors)

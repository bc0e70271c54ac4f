"""The CPU encoder: Pillow (libjpeg-turbo for JPEG, zlib for PNG), one image at a time."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

from gpuimages.encoders.base import SUBSAMPLING, EncodedBatch, EncodeOptions, Encoder, check_image, for_format

#: Pillow mode and raw (byte-order) mode for Spark's channel layouts.
_MODES = {1: ("L", "L"), 3: ("RGB", "BGR"), 4: ("RGBA", "BGRA")}


def to_pil(image: np.ndarray) -> Image.Image:
    """A Pillow image over BGR(A) or grey pixels (channels reordered while Pillow unpacks them)."""
    height, width, channels = image.shape
    mode, raw = _MODES[channels]
    return Image.frombuffer(mode, (width, height), np.ascontiguousarray(image), "raw", raw, 0, 1)


class PillowEncoder(Encoder):
    """Encodes JPEG (quality, subsampling, optional Huffman optimisation) and PNG (zlib level) with Pillow."""

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

    def encode_one(self, image: np.ndarray | None) -> bytes:
        """Encode one image; raises ``ValueError`` with the reason when it cannot."""
        reason = check_image(image, self.options.format)
        if reason is not None:
            raise ValueError(reason)
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

"""The encode interface shared by every encoder, and the options that travel to executors.

An encoder takes a batch of decoded images (``(height, width, channels)`` uint8 arrays in Spark's
BGR(A) order, or ``None`` for a missing image) and returns an :class:`EncodedBatch`: the encoded
bytes of each image and a reason for every image it could not encode. Encoders never raise for
bad input: a bad image is a recorded failure.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Output formats and their file extensions.
FORMATS = {"jpeg": "jpg", "png": "png"}
#: JPEG chroma subsampling names and Pillow's codes for them.
SUBSAMPLING = {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}

#: PNG zlib level: 3 measured fastest on 256-px photographs (1/3/6/9: 19/15/34/62 ms, files within 8%).
DEFAULT_PNG_LEVEL = 3
DEFAULT_QUALITY = 90


@dataclass(frozen=True)
class EncodeOptions:
    """What an encoder needs to know. Validated on the driver (:func:`make_encode_options`), picklable.

    format:         "jpeg" or "png".
    quality:        JPEG quality, 1..100 (libjpeg's scale, the same for Pillow and nvImageCodec).
    subsampling:    JPEG chroma subsampling, "4:2:0" (default), "4:2:2" or "4:4:4".
    optimize:       JPEG optimised Huffman tables (about 4% smaller, about 4x slower with Pillow).
    compress_level: PNG zlib level 0..9.
    device:         "auto", "cpu" or "gpu" (see :func:`gpuimages.encoders.encoder_for`).
    encoder:        force "pillow" or "nvimgcodec" (None: chosen from ``device``).
    batch_size:     images per encoder call and per Arrow batch returned.
    """

    format: str = "jpeg"
    quality: int = DEFAULT_QUALITY
    subsampling: str = "4:2:0"
    optimize: bool = False
    compress_level: int = DEFAULT_PNG_LEVEL
    device: str = "auto"
    encoder: str | None = None
    batch_size: int = 64

    @property
    def extension(self) -> str:
        """File extension for the format, without the dot."""
        return FORMATS[self.format]


@dataclass
class EncodedBatch:
    """Encoded bytes of one batch; ``data[i] is None`` marks a failed image and ``errors[i]`` says why."""

    data: list[bytes | None]
    errors: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.data)


def for_format(image: np.ndarray, fmt: str) -> np.ndarray:
    """The pixels a format stores: JPEG has no alpha channel, so BGRA becomes BGR."""
    if fmt == "jpeg" and image.shape[2] == 4:
        return image[:, :, :3]
    return image


class Encoder(abc.ABC):
    """An encoder of decoded image batches into JPEG or PNG bytes."""

    #: Short name shown in logs ("pillow", "nvimgcodec-gpu", "nvimgcodec-cpu").
    name: str = "encoder"

    def __init__(self, options: EncodeOptions) -> None:
        self.options = options

    @abc.abstractmethod
    def encode(self, images: Sequence[np.ndarray | None]) -> EncodedBatch:
        """Encode a batch; a failed image gets ``None`` and a reason, never an exception."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the encoder."""


def check_image(image: np.ndarray | None, fmt: str) -> str | None:
    """Why ``image`` cannot be encoded as ``fmt``, or None when it can."""
    if image is None:
        return "no image to encode (null or invalid image)"
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        return f"cannot encode an array of shape {image.shape} and type {image.dtype}: expected (h, w, 1|3|4) uint8"
    if image.shape[0] <= 0 or image.shape[1] <= 0:
        return f"cannot encode an empty image ({image.shape[0]}x{image.shape[1]})"
    if fmt == "jpeg" and max(image.shape[0], image.shape[1]) > 65500:
        return f"image of {image.shape[1]}x{image.shape[0]} exceeds JPEG's 65,500-pixel side limit"
    return None

"""The decode interface shared by every engine.

An engine takes a batch of encoded images (``bytes`` or ``None`` for a missing value) and
returns a :class:`DecodedBatch`: per-image sizes and channel counts, the pixels of all valid
images in one contiguous buffer (row-major BGR(A), Spark's byte layout), and a reason for every
image it could not decode. Engines never raise for bad input: a bad image is a recorded failure.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from gpuimages.options import DecodeOptions

log = logging.getLogger(__name__)


@dataclass
class DecodedBatch:
    """Decoded pixels of one batch; ``channels[i] == -1`` marks a failed image."""

    height: np.ndarray
    width: np.ndarray
    channels: np.ndarray
    offsets: np.ndarray  # int64, length n + 1, into ``data``
    data: np.ndarray  # uint8, contiguous
    errors: list[str | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.errors)

    def slice(self, start: int, end: int) -> DecodedBatch:
        """Rows ``start:end`` as their own batch (pixel bytes re-based, not copied)."""
        offsets = self.offsets[start : end + 1]
        return DecodedBatch(
            self.height[start:end],
            self.width[start:end],
            self.channels[start:end],
            offsets - offsets[0],
            self.data[offsets[0] : offsets[-1]],
            self.errors[start:end],
        )

    def pixels(self, i: int) -> np.ndarray:
        """Image ``i`` as an ``(h, w, c)`` view (empty for a failed image)."""
        if self.channels[i] <= 0:
            return np.zeros((0, 0, 0), dtype=np.uint8)
        chunk = self.data[self.offsets[i] : self.offsets[i + 1]]
        return chunk.reshape(int(self.height[i]), int(self.width[i]), int(self.channels[i]))


class BatchBuilder:
    """Collects per-image results in input order and packs them into a :class:`DecodedBatch`."""

    def __init__(self, size: int) -> None:
        self._arrays: list[np.ndarray | None] = [None] * size
        self._errors: list[str | None] = [None] * size
        self._owned: set[int] = set()

    def set_image(self, i: int, pixels: np.ndarray, owned: bool = False) -> None:
        """Record image ``i`` as an ``(h, w, c)`` uint8 array in BGR(A) order.

        ``owned``: the array is the batch's to keep (nothing else holds or rewrites it), so a batch
        whose only image it is can use it without a copy.
        """
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        self._arrays[i] = pixels
        self._errors[i] = None
        if owned:
            self._owned.add(i)
        else:
            self._owned.discard(i)

    def set_error(self, i: int, reason: str) -> None:
        """Record that image ``i`` could not be decoded, and why."""
        self._arrays[i] = None
        self._errors[i] = reason
        self._owned.discard(i)

    def error(self, i: int) -> str | None:
        """The reason recorded for image ``i``, if any."""
        return self._errors[i]

    def build(self) -> DecodedBatch:
        """Pack the images into one contiguous buffer.

        A batch whose only image is ``owned`` keeps that image's buffer (no copy); otherwise each
        image is released as soon as it is copied, so packing holds about the batch plus one image,
        not twice the batch.
        """
        n = len(self._arrays)
        height = np.full(n, -1, dtype=np.int32)
        width = np.full(n, -1, dtype=np.int32)
        channels = np.full(n, -1, dtype=np.int32)
        sizes = np.zeros(n, dtype=np.int64)
        for i, arr in enumerate(self._arrays):
            if arr is not None:
                height[i], width[i], channels[i] = arr.shape
                sizes[i] = arr.size
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        present = [i for i, arr in enumerate(self._arrays) if arr is not None]
        single = self._arrays[present[0]] if len(present) == 1 and present[0] in self._owned else None
        if single is not None and single.flags.c_contiguous:
            data = single.reshape(-1)
        else:
            data = np.empty(int(offsets[-1]), dtype=np.uint8)
            for i, arr in enumerate(self._arrays):
                if arr is not None:
                    data[offsets[i] : offsets[i + 1]].reshape(arr.shape)[...] = arr
                    self._arrays[i] = None
        self._arrays = [None] * n
        self._owned.clear()
        return DecodedBatch(height, width, channels, offsets, data, list(self._errors))


class Engine(abc.ABC):
    """A decoder of encoded image batches into Spark's image layout."""

    #: Short name shown in logs ("pillow", "dali-gpu", "dali-cpu").
    name: str = "engine"

    def __init__(self, options: DecodeOptions) -> None:
        self.options = options

    @abc.abstractmethod
    def decode(self, blobs: Sequence[bytes | None]) -> DecodedBatch:
        """Decode a batch; a failed image gets ``channels == -1`` and a reason, never an exception."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the engine."""

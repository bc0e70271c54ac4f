"""The decode interface shared by every engine.

An engine takes a batch of encoded images (``bytes`` or ``None`` for a missing value) and
returns an :class:`~gpuimages.task.images.ImageBatch`: per-image sizes and channel counts, the pixels of all valid
images in one contiguous buffer (row-major BGR(A), Spark's byte layout), and a reason for every
image it could not decode. Engines never raise for bad input: a bad image is a recorded failure.
"""

from __future__ import annotations

import abc
import logging
from collections.abc import Sequence

from gpuimages.options import DecodeOptions
from gpuimages.task.images import ImageBatch

log = logging.getLogger(__name__)


class Engine(abc.ABC):
    """A decoder of encoded image batches into Spark's image layout."""

    #: Short name shown in logs ("pillow", "dali-gpu", "dali-cpu").
    name: str = "engine"

    def __init__(self, options: DecodeOptions) -> None:
        self.options = options

    @abc.abstractmethod
    def decode(self, blobs: Sequence[bytes | None]) -> ImageBatch:
        """Decode a batch; a failed image gets ``channels == -1`` and a reason, never an exception."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources held by the engine."""

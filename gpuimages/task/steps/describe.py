"""Describing images for ``gpuimages info``: each row's format and size in bytes (before the decode) and its
decoded height, width and channels (after it), without returning pixels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gpuimages.task.steps.base import Step, Work
from gpuimages.task.steps.sniff import format_name

#: The format of a row without bytes whose reason is not that the file is empty (unreadable, an archive
#: without images, an archive that cannot be opened).
UNREAD = "unread"


@dataclass
class Describe(Step):
    """Encoded bytes (``work.blobs``) to ``format_col`` (see :func:`format_name`; :data:`UNREAD` for a row
    without bytes that has a reason other than ``empty_reason``) and ``bytes_col`` (their length)."""

    empty_reason: str | None = None
    format_col: str = "format"
    bytes_col: str = "bytes"
    name = "describe"

    def _format(self, blob: bytes | None, reason: str | None) -> str:
        if blob is None and reason is not None and reason != self.empty_reason:
            return UNREAD
        return format_name(blob)

    def run(self, work: Work) -> None:
        blobs = work.blobs or [None] * len(work)
        work.columns[self.format_col] = pa.array(
            [self._format(b, r) for b, r in zip(blobs, work.reasons, strict=True)], type=pa.string()
        )
        work.columns[self.bytes_col] = pa.array([None if b is None else len(b) for b in blobs], type=pa.int64())


@dataclass
class Measure(Step):
    """Decoded pixels (``work.images``) to ``height``, ``width`` and ``channels`` columns (null for a row
    without an image) and ``origin_col`` (each row's origin); the pixels are dropped."""

    origin_col: str = "origin"
    name = "measure"

    def run(self, work: Work) -> None:
        images = work.images
        valid = np.asarray(images.channels) > 0
        for name, values in (("height", images.height), ("width", images.width), ("channels", images.channels)):
            work.columns[name] = pa.array(np.asarray(values, dtype=np.int32), mask=~valid, type=pa.int32())
        work.columns[self.origin_col] = work.origins
        work.images = None
        work.row_bytes = np.zeros(len(work), dtype=np.int64)

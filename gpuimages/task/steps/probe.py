"""Probing: why Spark's binary read will return no bytes for a listed local file (``read_images``).

Each listed ``file:`` origin is opened, never read (see :func:`gpuimages.task.local_files.local_file_problem`:
empty, permission denied, vanished, not a regular file, a name Hadoop's checksum path cannot take, a
checksum file that does not match). Only the few files with a problem are kept, and they are returned
at the end of the partition as ``(origin, reason)`` rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from gpuimages.task.device import TaskDevice
from gpuimages.task.local_files import forget_checksums, local_file_problem
from gpuimages.task.steps.base import Step, Work


@dataclass
class Probe(Step):
    """Listed origins (``work.blobs``) to ``(origin_col, reason_col)`` rows for the files with a problem."""

    origin_col: str
    reason_col: str
    name = "probe"
    _origins: list[str] = field(default_factory=list, init=False, repr=False, compare=False)
    _reasons: list[str] = field(default_factory=list, init=False, repr=False, compare=False)

    def open(self, device: TaskDevice) -> None:
        forget_checksums()  # a reused worker must not see a folder as an earlier task listed it
        self._origins, self._reasons = [], []

    def chunk_rows(self, rows_per_batch: int) -> int:
        return 4096

    def run(self, work: Work) -> None:
        for origin in work.blobs:
            reason = None if origin is None else local_file_problem(origin)
            if reason is not None:
                self._origins.append(origin)
                self._reasons.append(reason)
        work.emit = False

    def finish(self) -> Iterator[pa.RecordBatch]:
        yield pa.RecordBatch.from_arrays(
            [pa.array(self._origins, pa.string()), pa.array(self._reasons, pa.string())],
            names=[self.origin_col, self.reason_col],
        )

"""Folder labels: the distinct parent folders of a partition's origins, as ``label_from_folder`` names them.

Run after :class:`~gpuimages.task.steps.Unpack` (archives into their members, nothing decoded) to number
the classes before shards are written (:mod:`gpuimages.classes`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pyarrow as pa

from gpuimages.task.device import TaskDevice
from gpuimages.task.steps.base import Step, Work
from gpuimages.task.steps.shards import folder_of


@dataclass
class FolderLabels(Step):
    """The distinct :func:`~gpuimages.task.steps.shards.folder_of` of the rows' origins, one row each at the
    end of the partition, in ``column``."""

    column: str = "label"
    name = "labels"
    _seen: set = field(default_factory=set, init=False, repr=False, compare=False)

    def open(self, device: TaskDevice) -> None:
        self._seen = set()

    def chunk_rows(self, rows_per_batch: int) -> int:
        return 4096

    def run(self, work: Work) -> None:
        self._seen.update(folder_of(o) for o in work.origins.to_pylist() if o is not None)
        work.blobs = None
        work.emit = False

    def finish(self) -> Iterator[pa.RecordBatch]:
        labels = sorted(label for label in self._seen if label is not None)
        yield pa.RecordBatch.from_arrays([pa.array(labels, pa.string())], names=[self.column])

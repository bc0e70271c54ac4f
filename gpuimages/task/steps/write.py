"""Writing: one file per row under a destination, with a report row per input row.

Encoded bytes come from the input (a binary column) or from an :class:`~gpuimages.task.steps.encode.Encode`
step before this one. Files are written by :mod:`gpuimages.task.claims` (atomic claims, the existing-file
policy, local paths, FUSE mounts and fsspec stores); a row that cannot be written is a "failed" report
row with its reason, never a failed task.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from gpuimages.task.claims import WritePlan
from gpuimages.task.device import TaskDevice, task_partition
from gpuimages.task.naming import NULL_FOLDER, safe_part
from gpuimages.task.steps.base import Step, Work
from gpuimages.task.stores import FsspecStore, open_store

log = logging.getLogger(__name__)

def _strings(chunk: pa.RecordBatch, name: str | None) -> list[str | None]:
    if name is None:
        return [None] * chunk.num_rows
    return [None if v is None else str(v) for v in chunk.column(name).to_pylist()]


def missing_bytes(blob: bytes | None) -> str | None:
    """Why a value of a bytes column cannot be written, or None."""
    if blob is None:
        return "no bytes (null value)"
    return None if blob else "no bytes (empty value)"


@dataclass
class Write(Step):
    """``work.blobs`` to files under ``plan.root``; the ``origin``, ``path``, ``bytes`` and ``status`` columns."""

    plan: WritePlan
    rows_per_chunk: int = 64
    name = "write"
    _writer: Any = field(default=None, init=False, repr=False, compare=False)
    _store: Any = field(default=None, init=False, repr=False, compare=False)
    _row: int = field(default=0, init=False, repr=False, compare=False)
    _partition: int = field(default=0, init=False, repr=False, compare=False)

    def open(self, device: TaskDevice) -> None:
        from gpuimages.task.claims import Writer

        self._partition = task_partition()
        self._store = open_store(self.plan.root, self.plan.store_settings)
        self._writer = Writer(self.plan, self._store, self._partition)
        self._row = 0

    def chunk_rows(self, rows_per_batch: int) -> int:
        return self.rows_per_chunk

    def run(self, work: Work) -> None:
        chunk = work.chunk
        work.note([missing_bytes(b) for b in work.blobs])  # null or empty input bytes (encoding failures have theirs)
        blobs = work.blobs
        origins = work.origins.to_pylist()
        names = _strings(chunk, self.plan.name_col)
        folders = [None if self.plan.partition_by is None else (NULL_FOLDER if v is None else safe_part(v))
                   for v in _strings(chunk, self.plan.partition_by)]
        paths: list[str | None] = []
        sizes: list[int | None] = []
        statuses: list[str] = []
        for i in range(len(work)):
            path, status, size = None, "failed", None
            if work.reasons[i] is None:
                try:
                    path, status, reason = self._writer.write(self._row, origins[i], names[i], folders[i], blobs[i])
                    size = len(blobs[i]) if status == "written" else None
                    work.reasons[i] = reason
                except Exception as exc:  # noqa: BLE001 - a failed write is a reported reason
                    status, work.reasons[i] = "failed", f"{type(exc).__name__}: {exc}"
            if path is not None and isinstance(self._store, FsspecStore):
                path = self._store.uri(path)
            paths.append(path)
            sizes.append(size)
            statuses.append(status)
            self._row += 1
        work.columns["origin"] = pa.array(origins, type=pa.string())
        work.columns["path"] = pa.array(paths, type=pa.string())
        work.columns["bytes"] = pa.array(sizes, type=pa.int64())
        work.columns["status"] = pa.array(statuses, type=pa.string())
        work.row_bytes = np.zeros(len(work), dtype=np.int64)
        work.blobs = None

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
        log.info("gpuimages: write task %d wrote %d row(s) under %s", self._partition, self._row, self.plan.root)
        self._writer = self._store = None

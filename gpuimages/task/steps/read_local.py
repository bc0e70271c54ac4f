"""Reading listed local files in the task: the bytes of each ``file:`` origin that arrived without content.

A stage fed by the listing alone (origins, null content) instead of Spark's ``binaryFile`` scan reads
each local file here, in the Python worker: the JVM then neither reads the files nor copies their bytes
into rows and Arrow batches, and no separate probe stage or join is needed to find the files the scan
would return nothing for: each file gets the probe's verdict just before it is read
(:func:`gpuimages.task.local_files.local_file_problem`: empty, unreadable, vanished, not a regular file, a
name Hadoop cannot read, a stale checksum file), and a file without a problem is then read whole. Rows that
arrive with bytes, a reason already, or an origin that is not a local file are left as they are.

As the first step of a stage it cannot predict what the decode will hold for a row it has not read
(:meth:`ReadLocal.predicted_bytes` is the bytes a row carries, 0 for a path), so chunks are bounded by
rows only: a stage fed this way with camera-sized photographs needs a smaller ``batch_size``, or the file
sizes from the listing to bound its chunks. Unlike ``binaryFile`` it reads files over
``spark.sql.sources.binaryFile.maxLength``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import pyarrow as pa

from gpuimages.task.local_files import forget_checksums, local_file_problem
from gpuimages.task.steps.base import Step, Work
from gpuimages.uris import file_uri_path


@dataclass(frozen=True)
class ReadLocal(Step):
    """Fill ``work.blobs`` for rows without bytes whose origin is a local file; record why where it cannot."""

    name = "read-local"

    def open(self, device: object) -> None:
        forget_checksums()  # a reused worker must not see a folder as an earlier task listed it

    def predicted_bytes(self, value: pa.Scalar) -> int:
        return 0 if value is None or not value.is_valid else len(value.as_py())

    def run(self, work: Work) -> None:
        blobs = work.blobs if work.blobs is not None else [None] * len(work)
        origins = work.origins.to_pylist()
        reasons: list[str | None] = [None] * len(work)
        for i, (blob, origin, earlier) in enumerate(zip(blobs, origins, work.reasons, strict=True)):
            if blob is not None or earlier is not None or origin is None:
                continue
            path = file_uri_path(origin)
            if path is None:
                continue
            reason = local_file_problem(origin)
            if reason is None:
                try:
                    blobs[i] = read_file(path)
                except OSError:  # changed between the check and the read: the check says why now
                    reason = local_file_problem(origin) or "file could not be read"
            reasons[i] = reason
        work.blobs = blobs
        work.note(reasons)


def read_file(path: str) -> bytes:
    """The whole file at ``path`` (one ``read`` for a regular file of known size)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        size = os.fstat(fd).st_size
        chunks = [os.read(fd, max(size, 1))]
        while chunks[-1]:  # a file that grew, or a short read
            chunks.append(os.read(fd, 1 << 20))
        return b"".join(chunks)
    finally:
        os.close(fd)

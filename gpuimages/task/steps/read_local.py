"""Reading listed local files in the task: the bytes of each ``file:`` origin that arrived without content.

``read_images`` and ``transcode_files`` feed their stage with the listing alone where the files are local
(origins, null content; see :mod:`gpuimages.sources.unread`), and this step reads each file in the Python
worker: the JVM neither reads the files nor copies their bytes into rows and Arrow batches, and no probe
or join is needed to find the files Spark's ``binaryFile`` scan would return nothing for. Each file gets
that check just before it is read (:func:`gpuimages.task.local_files.local_file_problem`: empty,
unreadable, vanished, not a regular file, a name Hadoop cannot read, a stale checksum file; and larger
than ``spark.sql.sources.binaryFile.maxLength``, which fails Spark's whole scan but only that file's row
here); a file without a problem is then read whole.

The chunk is handed on in parts bounded as the next step's chunks are (its rows per chunk, and
``max_batch_bytes`` of what it predicts it will hold for each file read, from the file's header), one file
read at a time: a part's bytes are held, never the whole chunk's. Rows that arrive with bytes, with a
reason already, or with an origin that is not a local file pass as they are; so do archives where the
next step opens them by path (``skip_archives``), once the same check found nothing wrong with them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import pyarrow as pa

from gpuimages.task.archive_members import archive_suffix
from gpuimages.task.device import TaskDevice
from gpuimages.task.local_files import forget_checksums, local_file_problem
from gpuimages.task.steps.base import Step, Work, binary_scalar
from gpuimages.uris import file_uri_path

#: Spark's default ``spark.sql.sources.binaryFile.maxLength`` (the largest Java array).
BINARY_MAX_LENGTH = 2**31 - 1
MAX_LENGTH_CONF = "spark.sql.sources.binaryFile.maxLength"
TOO_LARGE_REASON = (
    "not read: the file is {size} bytes, over spark.sql.sources.binaryFile.maxLength ({limit} bytes); raise it "
    "to read larger files"
)


@dataclass(frozen=True)
class ReadLocal(Step):
    """Fill ``work.blobs`` for rows without bytes whose origin is a local file; record why where it cannot.

    bounds:          the step the parts feed (its rows per chunk and predicted bytes bound each part);
                     None: the chunk goes on whole.
    max_batch_bytes: the byte budget of a part (``bounds``' predicted bytes).
    max_length:      files larger than this are not read (Spark's ``binaryFile.maxLength``).
    skip_archives:   leave archives (by their name) unread: the next step opens them by path.
    others_reason:   the reason of a row without bytes whose origin is not a local file (None: left as it is).
    """

    bounds: Step | None = None
    max_batch_bytes: int = 128 << 20
    max_length: int = BINARY_MAX_LENGTH
    skip_archives: bool = False
    others_reason: str | None = None
    name = "read-local"

    def open(self, device: TaskDevice) -> None:
        forget_checksums()  # a reused worker must not see a folder as an earlier task listed it

    def chunk_rows(self, rows_per_batch: int) -> int:
        return rows_per_batch if self.bounds is None else self.bounds.chunk_rows(rows_per_batch)

    def predicted_bytes(self, value: pa.Scalar) -> int:
        if value is None or not value.is_valid or not pa.types.is_binary(value.type):
            return 0  # a path: what it will hold is known once it is read
        return len(value.as_buffer()) if self.bounds is None else self.bounds.predicted_bytes(value)

    def run(self, work: Work) -> Iterator[Work] | None:
        blobs = work.blobs if work.blobs is not None else [None] * len(work)
        origins = work.origins.to_pylist()
        paths = [self._path(blob, origin, earlier)
                 for blob, origin, earlier in zip(blobs, origins, work.reasons, strict=True)]
        if self.others_reason is not None:
            work.note([self.others_reason if p is None and b is None else None for p, b in zip(paths, blobs,
                                                                                                strict=True)])
        if not any(paths):
            return None  # nothing to read: the chunk goes on as it is
        work.blobs = blobs
        return self._parts(work, paths)

    def _path(self, blob: bytes | None, origin: str | None, earlier: str | None) -> str | None:
        if blob is not None or earlier is not None or origin is None:
            return None
        return file_uri_path(origin)

    def _parts(self, work: Work, paths: list[str | None]) -> Iterator[Work]:
        start, total = 0, 0  # rows: the runner's chunk holds the next step's rows per chunk already
        for i, path in enumerate(paths):
            size = 0
            if path is not None and self.skip_archives and archive_suffix(path) is not None:
                work.reasons[i] = local_file_problem(work.origins[i].as_py())  # opened by the next step
            elif path is not None:
                blob, reason = self._read(path, work.origins[i].as_py())
                work.blobs[i] = blob
                if reason is not None:
                    work.reasons[i] = reason
            if work.blobs[i] is not None and self.bounds is not None:  # read here, or arrived with its bytes
                size = self.bounds.predicted_bytes(binary_scalar(work.blobs[i]))
            if i > start and total + size > self.max_batch_bytes:
                yield work.slice(start, i)
                work.blobs[start:i] = [None] * (i - start)  # the part holds its own bytes: only one part's held
                start, total = i, 0
            total += size
        yield work.slice(start, len(work))

    def _read(self, path: str, origin: str) -> tuple[bytes | None, str | None]:
        reason = local_file_problem(origin)
        if reason is not None:
            return None, reason
        try:
            size = os.stat(path).st_size
            if size > self.max_length:
                return None, TOO_LARGE_REASON.format(size=size, limit=self.max_length)
            return read_file(path), None
        except OSError:  # changed between the check and the read: the check says why now
            return None, local_file_problem(origin) or "no bytes read: the file could not be read"


def max_length_of(conf: Mapping[str, str | None]) -> int:
    """The largest file read: ``spark.sql.sources.binaryFile.maxLength`` in a session's conf
    (:func:`gpuimages.stage.session_conf`), Spark's default where it is not set."""
    return int(conf.get(MAX_LENGTH_CONF) or BINARY_MAX_LENGTH)


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

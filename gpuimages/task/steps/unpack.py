"""Archives in a partition: one row per image inside each ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``.

:class:`Unpack` runs before :class:`~gpuimages.task.steps.Decode` (or the transcode's decode): it
returns the chunk as parts, each a bounded chunk of images (an archive's members and the loose files
around them), which the steps after it process as they process loose files. An archive is streamed
member by member (``tarfile``'s stream mode; a zip's central directory, then one member at a time):
one member's bytes and one part are held at a time, never the whole archive, in memory or on disk.

What a member becomes (see docs/training-data.md):

- **Rows**: every regular member whose extension is an image format's (:data:`IMAGE_EXTENSIONS`) is a
  row, whatever its folders or name start with (``_0001.jpg`` too: Spark's hidden-file rule is for files
  on disk); members WebDataset readers give no sample (a file name starting with ``.``, such as macOS's
  ``._x.jpg``; ``__name__`` metadata) and other members are not. A tar member that is itself a tar
  (ImageNet's per-class tars) is streamed in turn.
- **Origin**: ``<archive origin>#<member path>``, the member path %-escaped as the archive's path is, so
  ``#`` only ever separates an archive from a member (``file:///d/a.tar#x%23y/1.jpg`` is member
  ``x#y/1.jpg``; a tar in a tar adds one more ``#<member>``).
- **Path**: where the input names archives by path, member rows get ``<archive path without its
  extension>/<member path>`` in that column, so that a label taken from the folder is the member's
  folder (an archive counting as a folder named after it).
- **WebDataset siblings**: members with the same key (the path up to the first dot of the file name)
  next to an image, whose extension is asked for (:class:`Sibling`), fill that image's columns.
- **Broken**: an archive that cannot be opened or read on is a row with the archive's origin and the
  reason (members read before the break keep their rows); a member that cannot be read is an invalid
  row with its reason; a tar that ends without its end-of-archive blocks is reported as truncated.
- **Sampling**: with ``sample_ratio < 1`` an image member is kept when Spark's seeded ``xxhash64`` of
  its origin falls under the ratio (:func:`gpuimages.task.hashing.sampled`), the rule loose files
  are sampled by; a member not kept is never read.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from gpuimages.task.archive_members import (
    NO_MEMBERS,
    ArchiveReader,
    Member,
    Sibling,
    archive_signature,
    archive_suffix,
    describe,
    group_samples,
    member_origin,
    member_path,
    open_path,
)
from gpuimages.task.device import TaskDevice
from gpuimages.task.hashing import sampled
from gpuimages.task.steps.base import Step, Work, binary_scalar

log = logging.getLogger(__name__)


class _Part:
    """Rows gathered for the next part, flushed as a :class:`Work` when the bounds are reached."""

    def __init__(self, step: Unpack, work: Work) -> None:
        self.step = step
        self.work = work
        chunk = work.chunk
        self.names = chunk.schema.names
        replaced = {step.input_col, step.path_col, *(s.column for s in step.siblings)}
        self.base = chunk.drop_columns([n for n in self.names if n in replaced])
        self.types = {n: chunk.schema.field(n).type for n in self.names}
        self._clear()

    def _clear(self) -> None:
        self.rows: list[int] = []
        self.origins: list[str | None] = []
        self.blobs: list[bytes | None] = []
        self.reasons: list[str | None] = []
        self.paths: list[str | None] = []
        self.values: list[dict[str, Any]] = []
        self.total = 0

    def add(self, row: int, origin: str | None, blob: bytes | None, reason: str | None, path: str | None,
            values: dict[str, Any]) -> Iterator[Work]:
        size = 0 if blob is None else self.step.bounds.predicted_bytes(binary_scalar(blob))
        if self.rows and (len(self.rows) >= self.step.rows or self.total + size > self.step.max_batch_bytes):
            yield self.flush()
        self.rows.append(row)
        self.origins.append(origin)
        self.blobs.append(blob)
        self.reasons.append(reason)
        self.paths.append(path)
        self.values.append(values)
        self.total += size

    def flush(self) -> Work:
        step = self.step
        taken = self.base.take(pa.array(self.rows, type=pa.int64()))
        arrays = dict(zip(taken.schema.names, taken.columns, strict=True))
        if step.keep_input and step.input_col in self.types:
            arrays[step.input_col] = pa.array(self.blobs, type=self.types[step.input_col])
        if step.path_col is not None and step.path_col in self.types:
            arrays[step.path_col] = pa.array(self.paths, type=self.types[step.path_col])
        for sibling in step.siblings:
            if sibling.column in self.types:
                arrays[sibling.column] = pa.array([v.get(sibling.column) for v in self.values],
                                                  type=self.types[sibling.column])
        names = [n for n in self.names if n in arrays]
        chunk = pa.RecordBatch.from_arrays([arrays[n] for n in names], names=names)
        part = Work(chunk, pa.array(self.origins, type=pa.string()))
        part.blobs = self.blobs
        part.reasons = self.reasons
        self._clear()
        return part

    def finish(self) -> Iterator[Work]:
        if self.rows:
            yield self.flush()


@dataclass
class Unpack(Step):
    """Archive rows to one row per image member, in parts bounded as the next step's chunks are.

    input_col:       the bytes column (an archive's bytes, or null where it is opened by its path).
    bounds:          the step the parts feed: its rows per chunk and predicted bytes bound each part.
    max_batch_bytes: the byte budget of a part (``bounds``' predicted bytes).
    path_col:        archives are the rows whose path (this column) ends in an archive extension; their
                     bytes, or where null the file at the path, are unpacked, and member rows get the
                     member's path in this column. None: archives are the rows whose bytes start like one.
    keep_input:      member rows carry the member's bytes in ``input_col`` (else the column is dropped).
    sample_ratio, seed: keep an image member when its origin is in the seeded sample (Spark's rule).
    siblings:        WebDataset members read into columns of the input (null columns filled per member).
    store_settings:  Spark's store settings (:mod:`gpuimages.sources.stores`) for archives opened by URI.
    """

    input_col: str
    bounds: Step
    max_batch_bytes: int
    path_col: str | None = None
    keep_input: bool = False
    sample_ratio: float = 1.0
    seed: int = 0
    siblings: tuple[Sibling, ...] = ()
    store_settings: dict[str, str] | None = field(default=None, repr=False)  # for archives opened by URI
    name = "unpack"
    rows: int = field(default=16, init=False, repr=False, compare=False)
    _counts: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _unparsed: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def open(self, device: TaskDevice) -> None:
        self._counts = {"archives": 0, "members": 0, "skipped": 0}
        self._unparsed = {}

    def chunk_rows(self, rows_per_batch: int) -> int:
        self.rows = max(1, self.bounds.chunk_rows(rows_per_batch))
        return self.rows

    def predicted_bytes(self, value: pa.Scalar) -> int:
        if not value.is_valid:
            return 0
        view = memoryview(value.as_buffer())
        if archive_signature(view[:512]) is not None:
            return len(view)  # the archive's bytes are held while it is unpacked
        return self.bounds.predicted_bytes(value)

    def _archive_kind(self, work: Work, i: int, paths: list[str | None] | None) -> str | None:
        if work.reasons[i] is not None:
            return None
        if paths is not None:
            suffix = archive_suffix(paths[i])
            return None if suffix is None else ("zip" if suffix == ".zip" else "tar")
        blob = work.blobs[i]
        return None if blob is None else archive_signature(blob[:512])

    def run(self, work: Work) -> Iterator[Work] | None:
        paths = None if self.path_col is None else work.chunk.column(self.path_col).to_pylist()
        kinds = [self._archive_kind(work, i, paths) for i in range(len(work))]
        if not any(kinds):
            return None  # loose files only: the chunk goes on as it is
        return self._parts(work, kinds, paths)

    def _parts(self, work: Work, kinds: list[str | None], paths: list[str | None] | None) -> Iterator[Work]:
        part = _Part(self, work)
        origins = work.origins.to_pylist()
        for i, kind in enumerate(kinds):
            path = None if paths is None else paths[i]
            if kind is None:
                yield from part.add(i, origins[i], work.blobs[i], work.reasons[i], path, {})
                continue
            self._counts["archives"] += 1
            rows = 0
            for entry, values in self._entries(work.blobs[i], kind, path, origins[i]):
                levels = entry.levels
                origin = origins[i] if origins[i] is None or not levels else member_origin(origins[i], levels)
                member = path if path is None or not levels else member_path(path, levels)
                if levels:
                    self._counts["members"] += 1
                rows += 1
                yield from part.add(i, origin, entry.data, entry.reason, member, values)
            if not rows and self.sample_ratio >= 1.0:  # every listed file keeps a row: the archive's says why
                yield from part.add(i, origins[i], None, NO_MEMBERS, path, {})
            work.blobs[i] = None  # the archive's bytes are not needed any more
        yield from part.finish()

    def _entries(self, blob: bytes | None, kind: str, path: str | None, origin: str | None
                 ) -> Iterator[tuple[Member, dict[str, Any]]]:
        def want(levels: tuple[str, ...]) -> bool:
            return self.sample_ratio >= 1.0 or sampled(member_origin(origin or "", levels), self.sample_ratio,
                                                       self.seed)

        reader = ArchiveReader(self.siblings, want)
        try:
            source = io.BytesIO(blob) if blob is not None else open_path(path, self.store_settings)
        except Exception as exc:  # noqa: BLE001 - a missing file, no fsspec, no credentials: the row says so
            yield Member((), reason=f"cannot open archive: {describe(exc)}"), {}
            return
        try:
            entries = reader.entries(source, kind)
            yield from (group_samples(entries, self._unparsed) if self.siblings else ((e, {}) for e in entries))
        finally:
            source.close()
            self._counts["skipped"] += reader.skipped

    def close(self) -> None:
        for column, example in self._unparsed.items():
            log.warning("gpuimages: WebDataset %r members that are not integers (e.g. %r) are null; read them as "
                        "text with webdataset={%r: 'string'}", column, example, column)
        if self._counts.get("archives"):
            log.info("gpuimages: unpacked %d archive(s): %d member row(s), %d other member(s) not read",
                     self._counts["archives"], self._counts["members"], self._counts["skipped"])

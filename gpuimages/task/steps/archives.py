"""Archives in a partition: one row per image inside each ``.tar``, ``.tar.gz``/``.tgz`` or ``.zip``.

:class:`Unpack` runs before :class:`~gpuimages.task.steps.Decode` (or the transcode's decode): it
returns the chunk as parts, each a bounded chunk of images (an archive's members and the loose files
around them), which the steps after it process as they process loose files. An archive is streamed
member by member (``tarfile``'s stream mode; a zip's central directory, then one member at a time):
one member's bytes and one part are held at a time, never the whole archive, in memory or on disk.

What a member becomes (see docs/training-data.md):

- **Rows**: every regular member whose extension is an image format's (:data:`IMAGE_EXTENSIONS`) is a
  row; members Spark would call hidden (a path part starting with ``.``, or ``_`` without ``=``) and
  other members are not. A tar member that is itself a tar (ImageNet's per-class tars) is streamed in
  turn.
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
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

import numpy as np
import pyarrow as pa

from gpuimages.task.device import TaskDevice
from gpuimages.task.hashing import sampled
from gpuimages.task.steps.base import Step, Work

log = logging.getLogger(__name__)

#: File name endings read as archives (lower case); tar streams may be gzip-compressed.
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")
ARCHIVE_SUFFIXES = (*TAR_SUFFIXES, ".zip")
#: Member extensions (the last one, lower case) that make a member an image row.
IMAGE_EXTENSIONS = frozenset({
    "jpg", "jpeg", "jpe", "jfif", "png", "gif", "bmp", "dib", "tif", "tiff", "webp", "ppm", "pgm", "pbm",
    "pnm", "jp2", "j2k", "jpx", "ico", "tga",
})
#: Kinds of WebDataset sibling columns and the Arrow type each becomes.
SIBLING_TYPES = {"string": pa.string(), "long": pa.int64(), "binary": pa.binary()}
#: The largest member read (as Spark's ``binaryFile`` refuses larger files).
MAX_MEMBER_BYTES = 2**31 - 1
#: Characters left unescaped in a member path within an origin (those ``java.net.URI`` leaves in a path).
_URI_SAFE = "/@_-!.~'()*,;:$&+="
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$")
_READ_BUFFER = 1 << 20
#: Bytes of an archive on an object store read per range request.
RANGE_BYTES = 8 << 20
#: Reason of an archive that holds no image member (read whole: with a sample, it is simply not sampled).
NO_MEMBERS = "archive holds no image member (its other members are not read as images)"


def archive_suffix(name: str | None) -> str | None:
    """The archive ending of a file name or path (``.tar``, ``.tar.gz``, ``.tgz``, ``.zip``), else None."""
    if not name:
        return None
    lower = name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def archive_signature(head: bytes | memoryview) -> str | None:
    """"zip" or "tar" from a file's first 512 bytes (gzip counts as a compressed tar), else None."""
    head = bytes(head[:512])
    if head[:4] in (b"PK\x03\x04", b"PK\x05\x06"):
        return "zip"
    if head[:2] == b"\x1f\x8b" or (len(head) >= 262 and head[257:262] == b"ustar"):
        return "tar"
    return None


def member_key(name: str) -> tuple[str, str]:
    """WebDataset's split of a member path into key and extension: ``d/abc.seg.png`` -> (``d/abc``, ``seg.png``)."""
    folder, _, base = name.rpartition("/")
    stem, dot, ext = base.partition(".")
    return (f"{folder}/{stem}" if folder else stem), (ext if dot else "")


def normalized(name: str) -> str:
    """A member path without ``.`` parts and leading slashes (``./a/b.jpg`` -> ``a/b.jpg``, as ``tar cf x.tar .``
    names members)."""
    return "/".join(p for p in name.split("/") if p and p != ".")


def is_hidden(name: str) -> bool:
    """A member Spark's listing would skip as a file: a path part starting with ``.``, or ``_`` without ``=``."""
    return any(p.startswith(".") or (p.startswith("_") and "=" not in p) for p in normalized(name).split("/"))


def is_image_name(name: str) -> bool:
    """True when the member's last extension is an image format's."""
    base = name.rpartition("/")[2]
    return "." in base and base.rpartition(".")[2].lower() in IMAGE_EXTENSIONS


def quote_member(name: str) -> str:
    """A member path escaped as an origin's path is (``#`` and ``%`` always escaped; non-ASCII letters kept)."""
    if name.isascii():
        return quote(name, safe=_URI_SAFE)
    return "".join(
        ch if ord(ch) > 127 and ch.isprintable() and not ch.isspace() else quote(ch, safe=_URI_SAFE) for ch in name
    )


def member_origin(archive_origin: str, levels: tuple[str, ...]) -> str:
    """``<archive origin>#<member>`` (one ``#<member>`` per level of nesting)."""
    return archive_origin + "".join(f"#{quote_member(level)}" for level in levels)


def strip_suffix(name: str) -> str:
    """``name`` without its archive ending."""
    suffix = archive_suffix(name)
    return name[: -len(suffix)] if suffix else name


def member_path(archive_path: str, levels: tuple[str, ...]) -> str:
    """The path a member would have if each archive were a folder named after it, without its extension."""
    parts = [strip_suffix(archive_path.rstrip("/"))]
    parts += [strip_suffix(normalized(level)) for level in levels[:-1]]
    parts.append(normalized(levels[-1]))
    return "/".join(p for p in parts if p)


def open_path(path: str, settings: dict[str, str] | None = None) -> BinaryIO:
    """Open an archive by its origin (``file:///d/a%20b.tar``, %-escaped as image-source origins are), or a
    plain path.

    Local paths and ``file:`` URIs are opened directly; ``dbfs:/`` paths through the Databricks FUSE mounts
    (``/Volumes``, ``/dbfs``); other URIs through fsspec (which needs the filesystem's package), configured
    from Spark's store settings (``settings``, :mod:`gpuimages.task.filesystems`) and read by ranges of
    :data:`RANGE_BYTES`, whatever the archive's size. The key is taken literally (``::`` included).
    """
    m = _SCHEME.match(path)
    if m is None or len(m.group(1)) == 1:  # a plain path, or a drive letter
        return open(path, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 - closed by the caller
    scheme, rest = m.group(1).lower(), unquote(m.group(2))  # an origin: a %-escaped URI
    path = f"{m.group(1)}:{rest}"
    if scheme == "file":
        if rest.startswith("//"):
            slash = rest.find("/", 2)
            rest = rest[slash:] if slash >= 0 else "/"
        return open(rest, "rb", buffering=_READ_BUFFER)  # noqa: SIM115
    if scheme == "dbfs":
        local = rest.lstrip("/")
        local = f"/{local}" if local.startswith("Volumes/") else f"/dbfs/{local}"
        return open(local, "rb", buffering=_READ_BUFFER)  # noqa: SIM115
    from gpuimages.task.filesystems import open_filesystem

    fs, inner, _ = open_filesystem(path, settings)
    return fs.open(inner, "rb", block_size=RANGE_BYTES, cache_type="readahead")


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


@dataclass(frozen=True)
class Sibling:
    """A WebDataset sibling member (``key.<ext>``) read into ``column`` as ``kind``.

    ``string``: the text (UTF-8, invalid bytes replaced); ``long``: the text as an integer (null when it is
    not one, as ``.cls`` files hold); ``binary``: the bytes.
    """

    ext: str
    column: str
    kind: str

    def value(self, data: bytes) -> Any:
        """The column's value for a member's bytes."""
        if self.kind == "binary":
            return data
        text = data.decode("utf-8", "replace")
        if self.kind == "string":
            return text
        try:
            return int(text.strip())
        except ValueError:
            return None


@dataclass
class Entry:
    """What reading an archive gives: an image member (bytes or a reason), a sibling's bytes, or a break."""

    levels: tuple[str, ...]  # member path per level of nesting; () for the archive itself
    data: bytes | None = None
    reason: str | None = None
    sibling: Sibling | None = None


class _Info(tarfile.TarInfo):
    """A TarInfo that records why the archive's member list ended (end blocks, or a cut or broken header)."""

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> tarfile.TarInfo:
        try:
            return super().fromtarfile(archive)
        except tarfile.HeaderError as exc:
            archive.gpuimages_end = exc
            raise


class ArchiveReader:
    """Streams the entries of one archive: images (read only when wanted), siblings and breaks."""

    def __init__(self, siblings: tuple[Sibling, ...], want: Callable[[tuple[str, ...]], bool]) -> None:
        self.siblings = {s.ext.lower(): s for s in siblings}
        self.want = want
        self.skipped = 0  # members that are neither images nor asked-for siblings
        self.cut = False  # a member's data ended early: the archive stops there (its row says why)

    def _kind(self, name: str) -> Sibling | str | None:
        if is_hidden(name):
            return None
        ext = member_key(name)[1].lower()
        if ext in self.siblings:
            return self.siblings[ext]
        if archive_suffix(name) in TAR_SUFFIXES:
            return "tar"
        return "image" if is_image_name(name) else None

    def entries(self, source: BinaryIO, kind: str, levels: tuple[str, ...] = ()) -> Iterator[Entry]:
        """The entries of the archive ``source`` ("tar" or "zip") nested at ``levels``."""
        if kind == "zip":
            yield from self._zip(source, levels)
        else:
            yield from self._tar(source, levels)

    def _member(self, levels: tuple[str, ...], size: int, read: Callable[[], bytes], kind: Sibling | str
                ) -> Iterator[Entry]:
        if isinstance(kind, Sibling):
            try:
                yield Entry(levels, data=read(), sibling=kind)
            except Exception:  # noqa: BLE001 - an unreadable sibling is a missing one (a break follows)
                pass
            return
        if not self.want(levels):
            return
        if size > MAX_MEMBER_BYTES:
            yield Entry(levels, reason=f"archive member too large: {size} bytes (at most {MAX_MEMBER_BYTES})")
            return
        try:
            yield Entry(levels, data=read())
        except (tarfile.ReadError, EOFError) as exc:
            self.cut = True
            yield Entry(levels, reason=f"truncated archive member: {_describe(exc)}")
        except Exception as exc:  # noqa: BLE001 - a member that cannot be read is a reason, not a failed task
            yield Entry(levels, reason=f"broken archive member: {_describe(exc)}")

    def _tar(self, source: BinaryIO, levels: tuple[str, ...]) -> Iterator[Entry]:
        try:
            tar = tarfile.open(fileobj=source, mode="r|*", tarinfo=_Info)
        except Exception as exc:  # noqa: BLE001 - not a tar, or cut before its first header
            yield Entry(levels, reason=f"broken archive: {_describe(exc)}")
            return
        members = 0
        while not self.cut:
            try:
                info = tar.next()
            except Exception as exc:  # noqa: BLE001 - a broken header or compressed stream
                yield Entry(levels, reason=f"broken archive after {members} member(s): {_describe(exc)}")
                return
            if info is None:
                break
            tar.members.clear()  # stream mode never looks back: keep memory bounded by one member
            if not info.isreg():
                continue
            members += 1
            kind = self._kind(info.name)
            if kind is None:
                self.skipped += 1
            elif kind == "tar":
                inner = tar.extractfile(info)
                if inner is not None:
                    yield from self._tar(inner, (*levels, info.name))
            else:
                yield from self._member((*levels, info.name), info.size, tar.extractfile(info).read, kind)
        if self.cut:
            return
        end = getattr(tar, "gpuimages_end", None)
        if isinstance(end, (tarfile.EmptyHeaderError, tarfile.TruncatedHeaderError)):
            yield Entry(levels, reason=f"truncated archive: it ends after {members} member(s) without its "
                                       f"end-of-archive blocks ({end})")
        elif end is not None and not isinstance(end, tarfile.EOFHeaderError):
            yield Entry(levels, reason=f"broken archive after {members} member(s): {_describe(end)}")

    def _zip(self, source: BinaryIO, levels: tuple[str, ...]) -> Iterator[Entry]:
        try:
            archive = zipfile.ZipFile(source)
        except Exception as exc:  # noqa: BLE001 - not a zip, or cut (the central directory is at the end)
            yield Entry(levels, reason=f"broken archive: {_describe(exc)}")
            return
        with archive:
            for info in archive.infolist():
                if info.is_dir():
                    continue
                kind = self._kind(info.filename)
                if kind is None:
                    self.skipped += 1
                elif kind == "tar":
                    try:
                        with archive.open(info) as inner:
                            yield from self._tar(inner, (*levels, info.filename))
                    except Exception as exc:  # noqa: BLE001 - e.g. an unsupported compression method
                        yield Entry((*levels, info.filename), reason=f"broken archive: {_describe(exc)}")
                else:
                    yield from self._member(
                        (*levels, info.filename), info.file_size, lambda info=info: archive.read(info), kind
                    )


def group_samples(entries: Iterator[Entry], unparsed: dict[str, str] | None = None
                  ) -> Iterator[tuple[Entry, dict[str, Any]]]:
    """Image entries (and breaks) with the sibling values of their WebDataset sample (adjacent members with
    the same key). ``unparsed`` collects, per column, an example of a value its kind could not read."""
    key: tuple | None = None
    images: list[Entry] = []
    values: dict[str, Any] = {}

    def flush():
        for image in images:
            yield image, dict(values)
        images.clear()
        values.clear()

    for entry in entries:
        if not entry.levels or (entry.data is None and entry.sibling is None and entry.reason is not None
                                and not is_image_name(entry.levels[-1])):
            yield from flush()  # a break: the archive (or a nested one) as a row of its own
            key = None
            yield entry, {}
            continue
        entry_key = (*entry.levels[:-1], member_key(entry.levels[-1])[0])
        if entry_key != key:
            yield from flush()
            key = entry_key
        if entry.sibling is not None:
            value = values[entry.sibling.column] = entry.sibling.value(entry.data)
            if value is None and unparsed is not None and entry.data.strip():
                unparsed.setdefault(entry.sibling.column, entry.data[:40].decode("utf-8", "replace"))
        else:
            images.append(entry)
    yield from flush()


def _binary_scalar(blob: bytes) -> pa.Scalar:
    """A binary Arrow scalar viewing ``blob`` (no copy), for a step's ``predicted_bytes``."""
    offsets = pa.py_buffer(np.array([0, len(blob)], dtype=np.int32).tobytes())
    return pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(blob)])[0]


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
        size = 0 if blob is None else self.step.bounds.predicted_bytes(_binary_scalar(blob))
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
                 ) -> Iterator[tuple[Entry, dict[str, Any]]]:
        def want(levels: tuple[str, ...]) -> bool:
            return self.sample_ratio >= 1.0 or sampled(member_origin(origin or "", levels), self.sample_ratio,
                                                       self.seed)

        reader = ArchiveReader(self.siblings, want)
        try:
            source = io.BytesIO(blob) if blob is not None else open_path(path, self.store_settings)
        except Exception as exc:  # noqa: BLE001 - a missing file, no fsspec, no credentials: the row says so
            yield Entry((), reason=f"cannot open archive: {_describe(exc)}"), {}
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

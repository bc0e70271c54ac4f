"""Members of ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` archives, streamed one at a time, and their names.

Used inside tasks by :class:`gpuimages.task.steps.unpack.Unpack` (the rules a member row follows are in
its docstring) and by the shard writer. An archive is streamed member by member (``tarfile``'s stream
mode; a zip's central directory, then one member at a time): one member's bytes are held at a time,
never the whole archive, in memory or on disk.
"""

from __future__ import annotations

import logging
import re
import tarfile
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO
from urllib.parse import quote, unquote

import pyarrow as pa

from gpuimages.uris import URI_PATH_SAFE, origin_local_path, split_scheme

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


#: WebDataset's metadata members (``webdataset.tariterators``' ``skip_meta``): a path starting with ``__name__``.
_WDS_META = re.compile(r"__[^/]*__($|/)")


def is_hidden(name: str) -> bool:
    """A member WebDataset readers give no sample: a file name starting with ``.`` (no key: macOS's ``._x.jpg``,
    ``.DS_Store``) or a path starting with a ``__name__`` part (metadata). Spark's hidden-file rule is for files
    on disk: ``_0001.jpg`` and ``_under/x.jpg`` are members like any other."""
    path = normalized(name)
    return path.rpartition("/")[2].startswith(".") or _WDS_META.match(path) is not None


def is_image_name(name: str) -> bool:
    """True when the member's last extension is an image format's."""
    base = name.rpartition("/")[2]
    return "." in base and base.rpartition(".")[2].lower() in IMAGE_EXTENSIONS


def quote_member(name: str) -> str:
    """A member path escaped as an origin's path is (``#`` and ``%`` always escaped; non-ASCII letters kept)."""
    if name.isascii():
        return quote(name, safe=URI_PATH_SAFE)
    return "".join(
        ch if ord(ch) > 127 and ch.isprintable() and not ch.isspace() else quote(ch, safe=URI_PATH_SAFE) for ch in name
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
    local = origin_local_path(path)
    if local is not None:
        return open(local, "rb", buffering=_READ_BUFFER)  # noqa: SIM115 - closed by the caller
    from gpuimages.task.filesystems import open_filesystem

    _, rest = split_scheme(path)
    path = f"{path[: len(path) - len(rest) - 1]}:{unquote(rest)}"  # an origin: a %-escaped URI
    fs, inner, _ = open_filesystem(path, settings)
    return fs.open(inner, "rb", block_size=RANGE_BYTES, cache_type="readahead")


def describe(exc: BaseException) -> str:
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
class Member:
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

    def entries(self, source: BinaryIO, kind: str, levels: tuple[str, ...] = ()) -> Iterator[Member]:
        """The entries of the archive ``source`` ("tar" or "zip") nested at ``levels``."""
        if kind == "zip":
            yield from self._zip(source, levels)
        else:
            yield from self._tar(source, levels)

    def _member(self, levels: tuple[str, ...], size: int, read: Callable[[], bytes], kind: Sibling | str
                ) -> Iterator[Member]:
        if isinstance(kind, Sibling):
            try:
                yield Member(levels, data=read(), sibling=kind)
            except Exception:  # noqa: BLE001 - an unreadable sibling is a missing one (a break follows)
                pass
            return
        if not self.want(levels):
            return
        if size > MAX_MEMBER_BYTES:
            yield Member(levels, reason=f"archive member too large: {size} bytes (at most {MAX_MEMBER_BYTES})")
            return
        try:
            yield Member(levels, data=read())
        except (tarfile.ReadError, EOFError) as exc:
            self.cut = True
            yield Member(levels, reason=f"truncated archive member: {describe(exc)}")
        except Exception as exc:  # noqa: BLE001 - a member that cannot be read is a reason, not a failed task
            yield Member(levels, reason=f"broken archive member: {describe(exc)}")

    def _tar(self, source: BinaryIO, levels: tuple[str, ...]) -> Iterator[Member]:
        try:
            tar = tarfile.open(fileobj=source, mode="r|*", tarinfo=_Info)
        except Exception as exc:  # noqa: BLE001 - not a tar, or cut before its first header
            yield Member(levels, reason=f"broken archive: {describe(exc)}")
            return
        members = 0
        while not self.cut:
            try:
                info = tar.next()
            except Exception as exc:  # noqa: BLE001 - a broken header or compressed stream
                yield Member(levels, reason=f"broken archive after {members} member(s): {describe(exc)}")
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
            yield Member(levels, reason=f"truncated archive: it ends after {members} member(s) without its "
                                       f"end-of-archive blocks ({end})")
        elif end is not None and not isinstance(end, tarfile.EOFHeaderError):
            yield Member(levels, reason=f"broken archive after {members} member(s): {describe(end)}")

    def _zip(self, source: BinaryIO, levels: tuple[str, ...]) -> Iterator[Member]:
        try:
            archive = zipfile.ZipFile(source)
        except Exception as exc:  # noqa: BLE001 - not a zip, or cut (the central directory is at the end)
            yield Member(levels, reason=f"broken archive: {describe(exc)}")
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
                        yield Member((*levels, info.filename), reason=f"broken archive: {describe(exc)}")
                else:
                    yield from self._member(
                        (*levels, info.filename), info.file_size, lambda info=info: archive.read(info), kind
                    )


def group_samples(entries: Iterator[Member], unparsed: dict[str, str] | None = None
                  ) -> Iterator[tuple[Member, dict[str, Any]]]:
    """Image entries (and breaks) with the sibling values of their WebDataset sample (adjacent members with
    the same key). ``unparsed`` collects, per column, an example of a value its kind could not read."""
    key: tuple | None = None
    images: list[Member] = []
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

"""Writing image files from a Spark task: target names, atomic writes, the existing-file policy.

Executor side (the task's :class:`gpuimages.task.steps.Write` step writes through :class:`_Writer`), plus
two small helpers the driver uses (:func:`open_store`, :func:`folder_entries`). Local paths, FUSE mounts
(``/dbfs``, ``/Volumes``) and ``file:`` URIs are written with the standard library; other URIs
(``s3://``, ``gs://``, ``abfss://``, ...) through fsspec when it is installed.

Every file is written to a temporary name in its own folder and then moved to its final name, so a
killed or retried task never leaves a half-written file under a real name. Names are claimed without
overwriting (a hard link, which fails when the name exists), so two rows of the same job that want
the same name both survive: the later one gets a deterministic suffix.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import time
import uuid
from dataclasses import dataclass
from urllib.parse import unquote

import pyarrow as pa

log = logging.getLogger(__name__)

MODES = ("error", "overwrite", "skip")
#: Folder for rows whose ``partition_by`` value is null.
NULL_FOLDER = "__null__"
#: Files whose modification time is this much before the job's start count as existing before it.
CLOCK_SLACK_S = 2.0

_UNSAFE = re.compile(r"[\x00-\x1f/\\:*?\"<>|]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")

REPORT_FIELDS = (("origin", pa.string()), ("path", pa.string()), ("bytes", pa.int64()),
                 ("status", pa.string()), ("reason", pa.string()))


@dataclass(frozen=True)
class WritePlan:
    """What every write task needs to know (picklable)."""

    root: str  # destination folder (local path or URI)
    input_col: str
    input_is_struct: bool  # image structs (encoded in the task) or encoded bytes (written as they are)
    origin_col: str | None  # binary input: column naming the source file
    name_col: str | None  # a column with the file name to use instead of the origin's
    partition_by: str | None  # a column whose value names a sub-folder (ImageFolder layout)
    mode: str  # "error", "overwrite" or "skip"
    job_start: float  # driver clock at the start of the job (seconds since the epoch)
    extension: str | None  # "jpg"/"png" for image structs; None: from the bytes' signature
    error_col: str | None = None  # a reason column of the input (e.g. read_images' "error"), kept in the report


def is_local(root: str) -> bool:
    """True for plain paths (FUSE mounts included) and ``file:`` URIs."""
    m = _SCHEME.match(root)
    return m is None or m.group(1).lower() == "file" or len(m.group(1)) == 1  # "C:" drive letters


def local_path(root: str) -> str:
    """A plain path for a local root (``file:///tmp/x`` -> ``/tmp/x``)."""
    if root.lower().startswith("file:"):
        rest = root[5:]
        if rest.startswith("//"):
            rest = rest[2:]
            rest = rest[rest.find("/"):] if not rest.startswith("/") else rest
        return unquote(rest)
    return root


def signature_extension(blob: bytes) -> str | None:
    """File extension from the leading bytes (JPEG, PNG, GIF, BMP, WebP, TIFF), else None."""
    if blob[:3] == b"\xff\xd8\xff":
        return "jpg"
    if blob[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if blob[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if blob[:2] == b"BM":
        return "bmp"
    if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP":
        return "webp"
    if blob[:4] in (b"II*\x00", b"MM\x00*"):
        return "tif"
    return None


def safe_part(text: str) -> str:
    """A file or folder name with separators and control characters replaced, never "", "." or ".."."""
    cleaned = _UNSAFE.sub("_", text).strip()
    return cleaned if cleaned.strip(".") else (cleaned.replace(".", "_") or "_")


def file_stem(origin: str | None, name: str | None) -> tuple[str | None, str | None]:
    """Stem and extension of the target file from ``name`` (a name column) or the origin's last part."""
    source = name if name else origin
    if not source:
        return None, None
    last = unquote(str(source)).rstrip("/").rsplit("/", 1)[-1]
    stem, dot, ext = last.rpartition(".")
    if not dot or not stem:
        return safe_part(last), None
    return safe_part(stem), ext.lower() or None


def clash_suffix(key: str) -> str:
    """A short deterministic suffix for a name already taken (same inputs: same suffix on a retry)."""
    return hashlib.blake2b(key.encode(), digest_size=4).hexdigest()


class LocalStore:
    """Atomic file writes on a local or FUSE-mounted filesystem."""

    def __init__(self, root: str) -> None:
        self.root = local_path(root)

    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def makedirs(self, folder: str) -> None:
        os.makedirs(folder, exist_ok=True)

    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def mtime(self, path: str) -> float | None:
        try:
            return os.stat(path).st_mtime
        except OSError:
            return None

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError:
            return None

    def put(self, path: str, data: bytes, replace: bool) -> bool:
        """Write ``data`` at ``path`` through a temporary file; False when the name was taken (not replaced)."""
        folder, name = os.path.split(path)
        tmp = os.path.join(folder, f".{name}.{uuid.uuid4().hex[:12]}.tmp")
        try:
            with open(tmp, "wb") as fh:
                fh.write(data)
            if replace:
                os.replace(tmp, path)
                return True
            try:
                os.link(tmp, path)  # atomic claim: fails if the name exists
            except FileExistsError:
                return False
            except OSError as exc:  # FUSE mounts without hard links: check, then rename
                if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EACCES):
                    raise
                if os.path.lexists(path):
                    return False
                os.replace(tmp, path)
                return True
            return True
        finally:
            if os.path.lexists(tmp):
                os.unlink(tmp)


class FsspecStore:
    """Writes through an fsspec filesystem (object stores: a PUT appears whole, so no rename is needed)."""

    def __init__(self, root: str) -> None:
        try:
            import fsspec
        except ImportError as exc:
            raise ImportError(
                f"writing to {root!r} needs fsspec and the filesystem's package (s3fs, gcsfs, adlfs, ...): "
                'pip install "gpuimages[fsspec]"'
            ) from exc
        self.fs, self.root = fsspec.core.url_to_fs(root)
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def makedirs(self, folder: str) -> None:
        self.fs.makedirs(folder, exist_ok=True)

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def mtime(self, path: str) -> float | None:
        try:
            value = self.fs.modified(path)
        except Exception:  # noqa: BLE001 - not every filesystem reports it
            return None
        return value.timestamp() if value is not None else None

    def read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except Exception:  # noqa: BLE001
            return None

    def put(self, path: str, data: bytes, replace: bool) -> bool:
        if not replace and self.fs.exists(path):
            return False
        self.fs.pipe_file(path, data)
        return True

    def uri(self, path: str) -> str:
        return path if _SCHEME.match(path) else f"{self.protocol}://{path}"


def open_store(root: str) -> LocalStore | FsspecStore:
    """The store for a destination folder."""
    return LocalStore(root) if is_local(root) else FsspecStore(root)


def folder_entries(root: str) -> int:
    """How many entries the destination folder holds (0 when it does not exist)."""
    store = open_store(root)
    if isinstance(store, LocalStore):
        try:
            return len(os.listdir(store.root))
        except FileNotFoundError:
            return 0
        except NotADirectoryError:
            return 1
    if not store.fs.exists(store.root):
        return 0
    return len(store.fs.ls(store.root))


class _Writer:
    """Claims names and writes one file per row, following the plan's existing-file policy."""

    def __init__(self, plan: WritePlan, store: LocalStore | FsspecStore, partition: int) -> None:
        self.plan = plan
        self.store = store
        self.partition = partition
        self.used: dict[str, int] = {}  # names taken in this task -> rows that asked for them
        self.folders: set[str] = set()

    def _target(self, row: int, origin: str | None, name: str | None, folder: str | None, ext: str) -> str:
        stem, _ = file_stem(origin, name)
        stem = stem or f"part{self.partition:05d}-{row:06d}"
        rel = f"{stem}.{ext}" if folder is None else f"{folder}/{stem}.{ext}"
        seen = self.used.get(rel, 0)
        self.used[rel] = seen + 1
        if seen:  # the same name twice in one task: -1, -2, ... in row order (stable on a retry)
            rel = f"{stem}-{seen}.{ext}" if folder is None else f"{folder}/{stem}-{seen}.{ext}"
            self.used[rel] = self.used.get(rel, 0) + 1
        return rel

    def _pre_existing(self, path: str) -> bool:
        mtime = self.store.mtime(path)
        return mtime is not None and mtime < self.plan.job_start - CLOCK_SLACK_S

    def write(self, row: int, origin: str | None, name: str | None, folder: str | None,
              data: bytes) -> tuple[str, str, str | None]:
        """Write one file; returns (path, status, reason)."""
        _, own_ext = file_stem(origin, name)
        ext = self.plan.extension or signature_extension(data) or own_ext or "bin"
        rel = self._target(row, origin, name, folder, ext)
        parts = rel.split("/")
        path = self.store.join(*parts)
        folder_rel = "/".join(parts[:-1])
        if folder_rel not in self.folders:
            self.store.makedirs(self.store.join(*parts[:-1]))
            self.folders.add(folder_rel)
        mode = self.plan.mode
        if self.store.exists(path) and self._pre_existing(path):
            if mode == "skip":
                return path, "skipped", "a file with this name existed before the write (mode='skip')"
            if mode == "overwrite":
                self.store.put(path, data, replace=True)
                return path, "written", None
        if self.store.put(path, data, replace=False):
            return path, "written", None
        if self.store.read(path) == data:  # a retried task (or an identical row) wrote it already
            return path, "written", None
        # another row of this job took the name: keep both, with a deterministic suffix
        stem, _, _ = parts[-1].rpartition(".")
        key = f"{origin}\0{name}\0{self.partition}\0{row}"
        parts[-1] = f"{stem}-{clash_suffix(key)}.{ext}"
        path = self.store.join(*parts)
        if self.store.put(path, data, replace=False) or self.store.read(path) == data:
            return path, "written", None
        return path, "failed", "could not find a free file name"


def now() -> float:
    """The driver's clock (seconds since the epoch) for :attr:`WritePlan.job_start`."""
    return time.time()

"""Writing image files from a Spark task: target names, atomic writes, claims, the existing-file policy.

Executor side (the task's :class:`gpuimages.task.steps.Write` step; the per-row logic is
:class:`_Writer` over a store), plus small helpers the driver uses (:func:`open_store`,
:func:`folder_entries`, :func:`remove_claims`). Local paths, FUSE mounts (``/dbfs``, ``/Volumes``) and
``file:`` URIs are written with the standard library; other URIs (``s3://``, ``gs://``, ``abfss://``,
...) through fsspec when it is installed.

How a row becomes a file (see docs/writing.md, "Policies"):

- **Names**: the origin's (or ``name_col``'s) file name with separators and control characters replaced,
  cut to :data:`NAME_MAX` bytes when longer (with a hash of the whole name, so it stays unique).
- **Claims**: every ``write_images`` call has a job id (made on the driver, in :class:`WritePlan`). A
  row claims its target name in the job's hidden claims folder (``<dest>/.gpuimages-write-<job id>/``)
  before touching the name; a claim is created without overwriting, records the row that holds it
  (partition, row, origin, name), what it decided (``write``, ``skip``, ``taken``) and, on local
  filesystems, the identity (device, inode) of the file it placed. So exactly one row of a job owns a
  name; a retried task finds its own claims and files (no duplicates), and a file not claimed by this
  job existed before it (or was written by someone else) whatever its timestamps say. The driver
  removes the folder when the job ends.
- **Atomic**: a file is written to a temporary name in its folder (``.gpuimages-<random>.tmp``, short
  whatever the final name) and then linked to its final name (which fails when the name exists) or,
  for ``mode="overwrite"``, renamed over the old file.
- **Links**: local folders are opened relative to the destination with ``O_NOFOLLOW``; a symbolic
  link inside the destination (a folder or the final name) is never followed, so nothing is written
  outside the destination. The destination path itself may be a link (it is the caller's own path).
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import re
import stat
import unicodedata
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

log = logging.getLogger(__name__)

MODES = ("error", "overwrite", "skip")
#: Folder for rows whose ``partition_by`` value is null.
NULL_FOLDER = "__null__"
#: Longest file or folder name written, in bytes (the limit of ext4, XFS, btrfs, NTFS, APFS, S3 UIs).
NAME_MAX = 255
#: Prefix of the job's hidden claims folder under the destination.
CLAIMS_PREFIX = ".gpuimages-write-"
#: Prefix of temporary files (short and fixed, whatever the final name's length).
TMP_PREFIX = ".gpuimages-"
#: Candidate names a row tries (its name, then deterministic suffixes) before it fails.
MAX_CANDIDATES = 4
#: Where Databricks mounts ``dbfs:/`` on every node (``dbfs:/Volumes/...`` is mounted at ``/Volumes``).
DBFS_MOUNT = "/dbfs"
#: Folder handles a local task keeps open at once.
_OPEN_FOLDERS = 64

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f/\\:*?\"<>|]+")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):")
# filesystems without hard links (some FUSE mounts): the claim is a check, then a rename
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EACCES, errno.EMLINK)

REPORT_FIELDS = (("origin", pa.string()), ("path", pa.string()), ("bytes", pa.int64()),
                 ("status", pa.string()), ("reason", pa.string()))


def new_job_id() -> str:
    """A fresh job id (32 hex characters) for :attr:`WritePlan.job_id`."""
    return uuid.uuid4().hex


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
    extension: str | None  # "jpg"/"png" for image structs; None: from the bytes' signature
    error_col: str | None = None  # a reason column of the input (e.g. read_images' "error"), kept in the report
    job_id: str = field(default_factory=new_job_id)  # names this job's claims folder (made on the driver)
    # Spark's Hadoop store settings (gpuimages.sources.stores); keys and secrets: never in a repr or a log
    store_settings: dict[str, str] | None = field(default=None, repr=False)

    @property
    def claims_folder(self) -> str:
        """Name of this job's hidden claims folder under :attr:`root`."""
        return claims_folder_name(self.job_id)


def claims_folder_name(job_id: str) -> str:
    """The hidden folder (under the destination) that holds a job's claims."""
    return f"{CLAIMS_PREFIX}{job_id}"


def is_local(root: str) -> bool:
    """True for plain paths (FUSE mounts included) and ``file:`` URIs."""
    m = _SCHEME.match(root)
    return m is None or m.group(1).lower() in ("file", "dbfs") or len(m.group(1)) == 1  # "C:" drive letters


def local_path(root: str) -> str:
    """A plain path for a local root (``file:///tmp/x`` -> ``/tmp/x``; ``dbfs:/x`` -> ``/dbfs/x`` and
    ``dbfs:/Volumes/x`` -> ``/Volumes/x``, the Databricks FUSE mounts reads use too)."""
    if root.lower().startswith("dbfs:"):
        rest = root[5:].lstrip("/")
        return f"/{rest}" if rest == "Volumes" or rest.startswith("Volumes/") else f"{DBFS_MOUNT}/{rest}".rstrip("/")
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


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _short_hash(text: str) -> str:
    return hashlib.blake2b(_encoded(text), digest_size=4).hexdigest()


def fit_name(stem: str, ext: str | None = None, limit: int = NAME_MAX) -> str:
    """``stem.ext`` within ``limit`` bytes (UTF-8). A longer stem is cut at a character boundary and
    marked with ``~`` and a hash of the whole stem, so two long names that share their start stay apart
    and the same name is always cut the same way; the extension is kept."""
    suffix = f".{ext}" if ext else ""
    if len(_encoded(suffix)) > limit // 2:  # an absurd "extension": part of the stem
        stem, suffix = stem + suffix, ""
    name = stem + suffix
    if len(_encoded(name)) <= limit:
        return name
    mark = f"~{_short_hash(stem)}"
    room = limit - len(_encoded(mark + suffix))
    cut = _encoded(stem)[:room].decode("utf-8", "ignore")
    return f"{cut}{mark}{suffix}"


def file_stem(origin: str | None, name: str | None) -> tuple[str | None, str | None]:
    """Stem and extension of the target file from ``name`` (a name column) or the origin's last part."""
    if not name and not origin:
        return None, None
    # a name column is taken literally; an origin is a URI, %-escaped
    source = str(name) if name else unquote(str(origin))
    last = source.rstrip("/").rsplit("/", 1)[-1]
    stem, dot, ext = last.rpartition(".")
    if not dot or not stem:
        return safe_part(last), None
    return safe_part(stem), safe_part(ext).lower() or None


def clash_suffix(key: str) -> str:
    """A short deterministic suffix for a name already taken (same inputs: same suffix on a retry)."""
    return _short_hash(key)


def claim_key(rel: str) -> str:
    """The claim file name for a target path relative to the destination.

    Names that differ only in case or Unicode normalisation share a claim, so they never land on one
    file of a case-insensitive or normalising filesystem (macOS, SMB, some FUSE mounts).
    """
    canonical = unicodedata.normalize("NFC", rel).casefold()
    return hashlib.blake2b(_encoded(canonical), digest_size=16).hexdigest()


class RefusedPath(Exception):  # noqa: N818 - reads as a reason
    """A folder of the destination the writer will not write into (its message is the row's reason)."""


@dataclass(frozen=True)
class Entry:
    """What a name in a folder holds: ``kind`` is "missing", "file" or what else is there."""

    kind: str
    ident: str | None = None  # "device:inode" of a regular file on a local filesystem


@dataclass
class Staged:
    """Bytes ready to be placed at a name: a temporary file (local) or the bytes (fsspec)."""

    folder: Any
    data: bytes
    tmp: str | None = None
    ident: str | None = None


@dataclass(frozen=True)
class Claim:
    """A row's claim on a target name in this job: who holds it, what it decided, the file it placed."""

    owner: str
    state: str  # "write": its file is (to be) at the name; "skip": a file not of this job was kept; "taken": moved on
    ident: str | None = None

    def text(self) -> str:
        return f"{self.owner}\n{self.state}\n{self.ident or ''}\n"

    @staticmethod
    def parse(text: str) -> Claim | None:
        lines = text.split("\n")
        if len(lines) < 3 or not lines[0] or lines[1] not in ("write", "skip", "taken"):
            return None
        return Claim(lines[0], lines[1], lines[2] or None)


def _kind(mode: int) -> str:
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "symbolic link"
    if stat.S_ISDIR(mode):
        return "folder"
    return "special file"


class LocalStore:
    """Atomic, link-safe file writes on a local or FUSE-mounted filesystem.

    Every operation below the destination works on folder descriptors (``openat`` and friends), and
    folders are opened with ``O_NOFOLLOW``: a symbolic link inside the destination is never followed.
    """

    def __init__(self, root: str) -> None:
        self.root = local_path(root)
        self.shown = root.rstrip("/") if root.lower().startswith("dbfs:") else None  # reported as given
        self._root_fd: int | None = None
        self._folders: dict[str, int] = {}
        self._pinned: dict[str, int] = {}

    # -- paths and folders
    def join(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    def path(self, folder: str | None, name: str) -> str:
        """The path reported for ``name`` in ``folder`` (None: the destination itself)."""
        if self.shown is not None:  # dbfs:/ written through its FUSE mount, reported in the user's spelling
            return "/".join([self.shown, name] if folder is None else [self.shown, folder, name])
        return self.join(name) if folder is None else self.join(folder, name)

    def _root(self) -> int:
        if self._root_fd is None:
            os.makedirs(self.root, exist_ok=True)  # the caller's own path: links in it are followed
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._root_fd

    def folder(self, name: str | None, pin: bool = False) -> int:
        """A descriptor of the destination (None) or of its sub-folder ``name`` (created, never a link).

        Up to 64 sub-folders stay open (least recently used closed first); ``pin`` keeps one open until
        :meth:`close`."""
        root = self._root()
        if name is None:
            return root
        fd = self._pinned.get(name) or self._folders.pop(name, None)
        if fd is not None:
            if name not in self._pinned:
                self._folders[name] = fd  # most recently used last
            return fd
        try:
            os.mkdir(name, dir_fd=root)
        except FileExistsError:
            pass
        try:
            fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root)
        except OSError as exc:
            if exc.errno not in (errno.ELOOP, errno.ENOTDIR):
                raise
            try:
                kind = _kind(os.stat(name, dir_fd=root, follow_symlinks=False).st_mode)
            except OSError:
                kind = "not a folder"
            raise RefusedPath(
                f"{self.join(name)} is a {kind}, not a folder: gpuimages does not write through links or "
                "other entries in the destination"
            ) from None
        if pin:
            self._pinned[name] = fd
            return fd
        if len(self._folders) >= _OPEN_FOLDERS:
            oldest = next(iter(self._folders))
            os.close(self._folders.pop(oldest))
        self._folders[name] = fd
        return fd

    def close(self) -> None:
        """Close the folder descriptors this store opened."""
        for fd in [*self._folders.values(), *self._pinned.values()]:
            os.close(fd)
        self._folders.clear()
        self._pinned.clear()
        if self._root_fd is not None:
            os.close(self._root_fd)
            self._root_fd = None

    # -- names in a folder
    def entry(self, folder: int, name: str) -> Entry:
        """What ``name`` holds in ``folder`` (links are not followed)."""
        try:
            st = os.stat(name, dir_fd=folder, follow_symlinks=False)
        except FileNotFoundError:
            return Entry("missing")
        kind = _kind(st.st_mode)
        return Entry(kind, f"{st.st_dev}:{st.st_ino}" if kind == "file" else None)

    def stage(self, folder: int, data: bytes) -> Staged:
        """Write ``data`` to a new temporary file in ``folder``."""
        tmp = f"{TMP_PREFIX}{uuid.uuid4().hex[:16]}.tmp"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
        fd = os.open(tmp, flags, 0o666, dir_fd=folder)
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            st = os.fstat(fd)
        except BaseException:
            os.close(fd)
            self._unlink(folder, tmp)
            raise
        os.close(fd)
        return Staged(folder, data, tmp, f"{st.st_dev}:{st.st_ino}")

    def place(self, staged: Staged, name: str, replace: bool) -> bool:
        """Move a staged file to ``name``: False when the name exists and ``replace`` is False.

        With ``replace`` an existing file (or link) at the name is replaced by a rename: its target is
        never opened or written.
        """
        folder, tmp = staged.folder, staged.tmp
        try:
            if replace:
                os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
                return True
            try:
                os.link(tmp, name, src_dir_fd=folder, dst_dir_fd=folder, follow_symlinks=False)
            except FileExistsError:
                return False
            except OSError as exc:
                if exc.errno not in _NO_LINKS:
                    raise
                if self.entry(folder, name).kind != "missing":
                    return False
                os.rename(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            return True
        finally:
            self.discard(staged)

    def discard(self, staged: Staged) -> None:
        """Remove a staged temporary file that was not placed."""
        if staged.tmp is not None:
            self._unlink(staged.folder, staged.tmp)
            staged.tmp = None

    @staticmethod
    def _unlink(folder: int, name: str) -> None:
        try:
            os.unlink(name, dir_fd=folder)
        except FileNotFoundError:
            pass

    # -- claims (small files in the job's claims folder)
    def read_text(self, folder: int, name: str) -> str | None:
        """The text of a small file, None when it does not exist."""
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=folder)
        except FileNotFoundError:
            return None
        try:
            return os.read(fd, 1 << 16).decode("utf-8", "replace")
        finally:
            os.close(fd)

    def create_text(self, folder: int, name: str, text: str) -> bool:
        """Create ``name`` holding ``text``, whole or not at all; False when it exists."""
        return self.place(self.stage(folder, text.encode()), name, replace=False)

    def replace_text(self, folder: int, name: str, text: str) -> None:
        """Replace ``name``'s text atomically."""
        self.place(self.stage(folder, text.encode()), name, replace=True)

    # -- whole paths (helpers and tests)
    def exists(self, path: str) -> bool:
        return os.path.lexists(path)

    def read(self, path: str) -> bytes | None:
        try:
            with open(path, "rb") as fh:
                return fh.read()
        except OSError:
            return None

    def put(self, path: str, data: bytes, replace: bool) -> bool:
        """Write ``data`` at ``path`` through a temporary file; False when the name was taken (not replaced)."""
        folder, name = os.path.split(path)
        fd = os.open(folder or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return self.place(self.stage(fd, data), name, replace)
        finally:
            os.close(fd)

    def remove_tree(self, name: str) -> None:
        """Remove a folder of the destination (not following links)."""
        import shutil

        path = self.join(name)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)


class FsspecStore:
    """Writes through an fsspec filesystem (object stores: a PUT appears whole, so no rename is needed).

    The filesystem is a fresh instance without a listing cache (:func:`gpuimages.task.filesystems.
    open_filesystem`), configured from Spark's store settings. On S3 a name is taken with a conditional
    PUT (``If-None-Match: *``: the object is created only where none exists, atomically), so a row costs
    two requests (its claim and its file); elsewhere with an existence check followed by a PUT. Buckets
    are never created: a missing one is an error.
    """

    def __init__(self, root: str, settings: dict[str, str] | None = None) -> None:
        from gpuimages.task.filesystems import OBJECT_STORES, open_filesystem

        self.fs, inner, self.scheme = open_filesystem(root, settings)
        self.root = inner.rstrip("/") or inner
        self.protocol = self.fs.protocol if isinstance(self.fs.protocol, str) else self.fs.protocol[0]
        self.object_store = self.scheme in OBJECT_STORES
        #: a missing name is created with one conditional PUT (no check first)
        self.conditional = self.protocol == "s3"
        self._made: set[str] = set()

    def join(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *parts])

    def path(self, folder: str | None, name: str) -> str:
        return self.join(name) if folder is None else self.join(folder, name)

    def bucket(self) -> str:
        """The bucket (or container) of the destination."""
        return self.root.split("/", 1)[0]

    def bucket_exists(self) -> bool:
        """Whether the destination's bucket exists (one request)."""
        try:
            return bool(self.fs.exists(self.bucket()))
        except FileNotFoundError:
            return False

    def check_bucket(self) -> None:
        """Raise ``FileNotFoundError`` when the destination's bucket does not exist (never creates one)."""
        if self.object_store and not self.bucket_exists():
            raise FileNotFoundError(
                f"the bucket {self.bucket()!r} of {self.uri(self.root)!r} does not exist (gpuimages does not "
                "create buckets: check its name, or create it first)"
            )

    def folder(self, name: str | None, pin: bool = False) -> str:
        path = self.root.rstrip("/") if name is None else self.join(name)
        if path not in self._made:
            if self.object_store:  # folders are key prefixes: nothing to make, but the bucket must be there
                if not self._made:
                    self.check_bucket()
            else:
                self.fs.makedirs(path, exist_ok=True)
            self._made.add(path)
        return path

    def close(self) -> None:
        """Nothing to release."""

    def entry(self, folder: str, name: str) -> Entry:
        path = f"{folder}/{name}"
        if not self.fs.exists(path):
            return Entry("missing")
        return Entry("file" if self.fs.isfile(path) else "folder")

    def stage(self, folder: str, data: bytes) -> Staged:
        return Staged(folder, data)

    def _create(self, path: str, data: bytes) -> bool:
        if self.conditional:
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                return False
            return True
        if self.fs.exists(path):
            return False
        self.fs.pipe_file(path, data)
        return True

    def place(self, staged: Staged, name: str, replace: bool) -> bool:
        path = f"{staged.folder}/{name}"
        if not replace:
            return self._create(path, staged.data)
        self.fs.pipe_file(path, staged.data)
        return True

    def discard(self, staged: Staged) -> None:
        """Nothing was written yet."""

    def read_text(self, folder: str, name: str) -> str | None:
        try:
            return self.fs.cat_file(f"{folder}/{name}").decode("utf-8", "replace")
        except FileNotFoundError:
            return None

    def create_text(self, folder: str, name: str, text: str) -> bool:
        return self.place(Staged(folder, text.encode()), name, replace=False)

    def replace_text(self, folder: str, name: str, text: str) -> None:
        self.fs.pipe_file(f"{folder}/{name}", text.encode())

    def exists(self, path: str) -> bool:
        return self.fs.exists(path)

    def read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except Exception:  # noqa: BLE001
            return None

    def put(self, path: str, data: bytes, replace: bool) -> bool:
        if not replace:
            return self._create(path, data)
        self.fs.pipe_file(path, data)
        return True

    def remove_tree(self, name: str) -> None:
        path = self.join(name)
        try:
            found = self.fs.find(path) if self.object_store else ([path] if self.fs.exists(path) else [])
            if found:
                self.fs.rm(found if self.object_store else path, recursive=not self.object_store)
        except FileNotFoundError:
            pass

    def uri(self, path: str) -> str:
        """``path`` (inside the filesystem) as a URI in the destination's own scheme (``s3a://`` stays ``s3a://``)."""
        return path if _SCHEME.match(path) else f"{self.scheme or self.protocol}://{path}"


def open_store(root: str, settings: dict[str, str] | None = None) -> LocalStore | FsspecStore:
    """The store for a destination folder (``settings``: Spark's store settings, for URIs)."""
    return LocalStore(root) if is_local(root) else FsspecStore(root, settings)


def folder_entries(root: str, settings: dict[str, str] | None = None) -> int:
    """How many entries the destination folder holds (0 when it does not exist), listed now (no cache)."""
    store = open_store(root, settings)
    if isinstance(store, LocalStore):
        try:
            return len(os.listdir(store.root))
        except FileNotFoundError:
            return 0
        except NotADirectoryError:
            return 1
    if store.object_store:  # a prefix: one listing request, nothing cached
        try:
            return len(store.fs.ls(store.root, detail=False))
        except FileNotFoundError:
            return 0
    if not store.fs.exists(store.root):
        return 0
    return len(store.fs.ls(store.root))


def remove_claims(root: str, job_id: str, settings: dict[str, str] | None = None) -> None:
    """Remove a job's claims folder (driver, when the job has ended); never raises."""
    try:
        open_store(root, settings).remove_tree(claims_folder_name(job_id))
    except Exception as exc:  # noqa: BLE001 - cleaning up must not hide the job's own outcome
        log.warning("gpuimages: could not remove the claims folder of write job %s under %s: %s", job_id, root, exc)


#: A row's outcome: (path, status, reason); None from a candidate name means "taken: try the next".
Outcome = tuple[str, str, str | None]


class _Writer:
    """Claims names and writes one file per row, following the plan's existing-file policy.

    See the module docstring for the claim protocol. Within a task, rows wanting the same name get
    ``-1``, ``-2``, ... in row order; across tasks the row that finds the name claimed by another row
    of the job tries ``<stem>-<hash>`` (a hash of its partition, row, origin and name).
    """

    def __init__(self, plan: WritePlan, store: LocalStore | FsspecStore, partition: int) -> None:
        self.plan = plan
        self.store = store
        self.partition = partition
        self.used: dict[str, int] = {}  # names taken in this task -> rows that asked for them

    def close(self) -> None:
        """Release the store's handles."""
        self.store.close()

    def _claims_folder(self) -> Any:
        return self.store.folder(self.plan.claims_folder, pin=True)

    def _base(self, row: int, origin: str | None, name: str | None, folder: str | None) -> str:
        stem, _ = file_stem(origin, name)
        stem = stem or f"part{self.partition:05d}-{row:06d}"
        key = stem if folder is None else f"{folder}/{stem}"
        seen = self.used.get(key, 0)
        self.used[key] = seen + 1
        if seen:  # the same name twice in one task: -1, -2, ... in row order (stable on a retry)
            stem = f"{stem}-{seen}"
            key = stem if folder is None else f"{folder}/{stem}"
            self.used[key] = self.used.get(key, 0) + 1
        return stem

    def write(self, row: int, origin: str | None, name: str | None, folder: str | None,
              data: bytes) -> Outcome:
        """Write one file; returns (path, status, reason)."""
        _, own_ext = file_stem(origin, name)
        ext = self.plan.extension or signature_extension(data) or own_ext or "bin"
        folder = None if folder is None else fit_name(safe_part(folder))
        stem = self._base(row, origin, name, folder)
        owner = clash_suffix(f"{origin}\0{name}\0{self.partition}\0{row}") + f":{self.partition}:{row}"
        first = fit_name(stem, ext)
        try:
            handle = self.store.folder(folder)
        except RefusedPath as exc:
            return self.store.path(folder, first), "failed", str(exc)
        candidates = [first] + [
            fit_name(f"{stem}-{clash_suffix(f'{owner}' + ('' if i == 1 else f'#{i}'))}", ext)
            for i in range(1, MAX_CANDIDATES)
        ]
        for fname in candidates:
            outcome = self._attempt(handle, folder, fname, owner, data)
            if outcome is not None:
                return outcome
        return self.store.path(folder, first), "failed", (
            f"could not find a free file name: {', '.join(candidates)} are taken by other rows or files"
        )

    # -- one candidate name
    def _read_claim(self, key: str) -> Claim | None:
        text = self.store.read_text(self._claims_folder(), key)
        if text is None:
            return None
        parsed = Claim.parse(text)
        return parsed if parsed is not None else Claim("?", "taken")  # half-written by another row: not ours

    def _set_claim(self, key: str, claim: Claim, held: bool) -> bool:
        if held:
            self.store.replace_text(self._claims_folder(), key, claim.text())
            return True
        return self.store.create_text(self._claims_folder(), key, claim.text())

    def _attempt(self, handle: Any, folder: str | None, fname: str, owner: str, data: bytes) -> Outcome | None:
        rel = fname if folder is None else f"{folder}/{fname}"
        key = claim_key(rel)
        path = self.store.path(folder, fname)
        if getattr(self.store, "conditional", False):
            outcome = self._create_first(handle, key, fname, path, owner, data)
            if outcome is not _RETRY:
                return outcome  # type: ignore[return-value]
        for _ in range(4):  # a claim another attempt created in between, or a name that changed: look again
            claim = self._read_claim(key)
            if claim is not None and claim.owner != owner:
                return None  # another row of this job holds the name
            held = claim is not None
            entry = self.store.entry(handle, fname)
            if claim is not None:  # an earlier (or twin) attempt of this task claimed it: recognise what it did
                if claim.state == "taken":
                    return None
                if claim.state == "write" and entry.kind == "file" and claim.ident in (None, entry.ident):
                    return path, "written", None
                if claim.state == "skip" and entry.kind != "missing":
                    return path, "skipped", _skip_reason(entry)
            if entry.kind == "missing":
                outcome = self._place_new(handle, key, fname, path, owner, data, held)
            else:
                outcome = self._existing(handle, key, fname, path, owner, entry, data, held)
            if outcome is not _RETRY:
                return outcome  # type: ignore[return-value]
        return path, "failed", f"{path} kept changing while this row claimed it"

    def _create_first(self, handle: Any, key: str, fname: str, path: str, owner: str, data: bytes
                      ) -> Outcome | None | object:
        """Where names are created atomically (a conditional PUT): create the claim, then the file, one request
        each; anything already there (an earlier attempt's claim, a file) goes the careful way."""
        if not self._set_claim(key, Claim(owner, "write"), held=False):
            return _RETRY  # a claim exists: read it (another row's, or an earlier attempt of this one)
        staged = self.store.stage(handle, data)
        if self.store.place(staged, fname, replace=self.plan.mode == "overwrite"):
            return path, "written", None
        entry = self.store.entry(handle, fname)
        if entry.kind == "missing":
            return _RETRY
        return self._existing(handle, key, fname, path, owner, entry, data, held=True)

    def _place_new(self, handle: Any, key: str, fname: str, path: str, owner: str, data: bytes,
                   held: bool) -> Outcome | None | object:
        """Claim a missing name and link the row's file to it."""
        staged = self.store.stage(handle, data)
        try:
            if not self._set_claim(key, Claim(owner, "write", staged.ident), held):
                return _RETRY
            if self.store.place(staged, fname, replace=False):
                return path, "written", None
        finally:
            self.store.discard(staged)
        # the name appeared after the check: a twin attempt of this task, or a writer outside this job
        entry = self.store.entry(handle, fname)
        claim = self._read_claim(key)
        if (claim is not None and claim.owner == owner and claim.state == "write" and entry.kind == "file"
                and claim.ident is not None and claim.ident == entry.ident):
            return path, "written", None
        if entry.kind == "missing":
            return _RETRY
        return self._existing(handle, key, fname, path, owner, entry, data, held=True)

    def _existing(self, handle: Any, key: str, fname: str, path: str, owner: str, entry: Entry, data: bytes,
                  held: bool) -> Outcome | None | object:
        """``fname`` holds an entry this job did not write: apply the existing-file policy."""
        mode = self.plan.mode
        if mode == "skip":
            if not self._set_claim(key, Claim(owner, "skip"), held):
                return _RETRY
            return path, "skipped", _skip_reason(entry)
        if entry.kind != "file":
            return path, "failed", (
                f"{path} is a {entry.kind}: gpuimages does not write through or replace links and other "
                "entries in the destination"
            )
        if mode == "overwrite":
            staged = self.store.stage(handle, data)
            try:
                if not self._set_claim(key, Claim(owner, "write", staged.ident), held):
                    return _RETRY
                self.store.place(staged, fname, replace=True)
            finally:
                self.store.discard(staged)
            return path, "written", None
        # mode "error": a file from outside this job holds the name; keep it, move on to a suffixed name
        if not self._set_claim(key, Claim(owner, "taken"), held):
            return _RETRY
        return None


_RETRY = object()


def _skip_reason(entry: Entry) -> str:
    if entry.kind == "file":
        return "a file with this name exists and was not written by this write (mode='skip')"
    return f"a {entry.kind} with this name exists in the destination (mode='skip')"

"""Where a task writes: atomic, link-safe local writes and object stores through fsspec.

Local paths, FUSE mounts (``/dbfs``, ``/Volumes``) and ``file:`` URIs are written with the standard
library (:class:`LocalStore`); other URIs (``s3://``, ``gs://``, ``abfss://``, ...) through fsspec when it
is installed (:class:`FsspecStore`). Both offer the same operations to the writers
(:class:`gpuimages.task.claims.Writer`, the shard step):

- **Atomic**: a file is written to a temporary name in its folder (``.gpuimages-<random>.tmp``, short
  whatever the final name) and then linked to its final name (which fails when the name exists) or,
  for ``mode="overwrite"``, renamed over the old file.
- **Links**: local folders are opened relative to the destination with ``O_NOFOLLOW``; a symbolic
  link inside the destination (a folder or the final name) is never followed, so nothing is written
  outside the destination. The destination path itself may be a link (it is the caller's own path).
"""

from __future__ import annotations

import errno
import os
import stat
import uuid
from dataclasses import dataclass
from typing import Any

from gpuimages.uris import is_local, local_root_path, scheme_of

#: Prefix of temporary files (short and fixed, whatever the final name's length).
TMP_PREFIX = ".gpuimages-"
#: Folder handles a local task keeps open at once.
_OPEN_FOLDERS = 64

# filesystems without hard links (some FUSE mounts): the claim is a check, then a rename
_NO_LINKS = (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV, errno.EACCES, errno.EMLINK)


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
        self.root = local_root_path(root)
        self.shown = root.rstrip("/") if scheme_of(root) == "dbfs" else None  # reported as given
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
        return path if scheme_of(path) else f"{self.scheme or self.protocol}://{path}"


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

"""Why Spark's ``binaryFile`` read would return no bytes for a listed local file (checked in the task just
before the file is read).

See :class:`gpuimages.task.steps.read_local.ReadLocal` and :mod:`gpuimages.sources.unread` (the driver's plan).
"""

from __future__ import annotations

import errno
import os
import stat

from gpuimages.uris import file_uri_path

#: Reasons of listed files Spark's binary read returns no bytes for (see :func:`local_file_problem`).
EMPTY_REASON = "no bytes read: the file is empty (0 bytes)"
PERMISSION_REASON = "no bytes read: permission denied (the file cannot be opened for reading)"
VANISHED_REASON = "no bytes read: the file vanished after listing"
COLON_REASON = "no bytes read: unreadable: Hadoop cannot open a local file whose name contains ':'"
NOT_REGULAR_REASON = "no bytes read: not a regular file ({kind})"
CHECKSUM_REASON = (
    "no bytes read: the file does not match its Hadoop checksum file {name} (Hadoop's local filesystem "
    "refuses to read it)"
)
OPEN_FAILED_REASON = "no bytes read: the file cannot be opened ({error})"
BROKEN_LINK_REASON = "no bytes read: a broken symbolic link (its target {target!r} does not exist)"
LINK_LOOP_REASON = "no bytes read: a symbolic link loop (the link leads back to itself)"


_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a named pipe"), (stat.S_ISSOCK, "a socket"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def local_file_problem(origin: str) -> str | None:
    """Why Spark's ``binaryFile`` read will return no bytes for this listed local file, or None.

    Opens the file (``O_NONBLOCK``: a named pipe does not block) without reading it, and looks at what
    was opened: a file that cannot be opened (no permission, vanished), is not a regular file, or is
    empty gets its reason. Then what Hadoop's local filesystem does with checksum files: it opens
    ``.<name>.crc`` beside each file, which a name with ``:`` makes an invalid path (the read fails), and
    where that file exists it checks every chunk against it (a stale one fails the read); only files
    with a checksum file are read, to check them.
    """
    path = file_uri_path(origin)
    if path is None:
        return None
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        if os.path.islink(path):
            return BROKEN_LINK_REASON.format(target=os.readlink(path))
        return VANISHED_REASON
    except PermissionError:
        return PERMISSION_REASON
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return LINK_LOOP_REASON
        code = errno.errorcode.get(exc.errno or 0, "error")
        return OPEN_FAILED_REASON.format(error=f"{code}: {exc.strerror}")
    try:
        info = os.fstat(fd)
    finally:
        os.close(fd)
    if not stat.S_ISREG(info.st_mode):
        kind = next((name for test, name in _KINDS if test(info.st_mode)), "a special file")
        return NOT_REGULAR_REASON.format(kind=kind)
    if info.st_size == 0:
        return EMPTY_REASON
    folder, name = path.rsplit("/", 1) if "/" in path else (".", path)
    if ":" in name:
        return COLON_REASON
    if f".{name}.crc" in _checksum_files(folder):
        return _checksum_problem(path, f"{folder}/.{name}.crc")
    return None


#: ``.<name>.crc`` files of the folders checked last (one listing per folder, not a lookup per file).
_CHECKSUM_CACHE: dict[str, frozenset[str]] = {}
_CHECKSUM_CACHE_FOLDERS = 256
_CRC_HEADER = b"crc\x00"


def _checksum_files(folder: str) -> frozenset[str]:
    names = _CHECKSUM_CACHE.get(folder)
    if names is None:
        try:
            names = frozenset(n for n in os.listdir(folder) if n.startswith(".") and n.endswith(".crc"))
        except OSError:
            names = frozenset()
        if len(_CHECKSUM_CACHE) >= _CHECKSUM_CACHE_FOLDERS:
            _CHECKSUM_CACHE.clear()
        _CHECKSUM_CACHE[folder] = names
    return names


def _checksum_problem(path: str, crc_path: str) -> str | None:
    """Read the file against its ``.crc`` file as Hadoop's ``ChecksumFileSystem`` does (a CRC-32 per
    chunk); the reason when Hadoop would refuse it. Only files with such a checksum file are read here."""
    import zlib

    reason = CHECKSUM_REASON.format(name=os.path.basename(crc_path))
    try:
        sums = open(crc_path, "rb")  # noqa: SIM115 - closed below
    except OSError:
        return None  # Hadoop reads the file without checksums when it cannot open them
    with sums:
        header = sums.read(8)
        if len(header) < 8 or header[:4] != _CRC_HEADER:
            return None  # "Not a checksum file": Hadoop reads without checksums
        per_sum = int.from_bytes(header[4:], "big", signed=True)
        if per_sum <= 0:
            return reason
        try:
            with open(path, "rb") as data:
                while True:
                    chunk = data.read(per_sum)
                    if not chunk:
                        return None
                    expected = sums.read(4)
                    if len(expected) != 4 or zlib.crc32(chunk) != int.from_bytes(expected, "big"):
                        return reason
        except OSError:
            return None  # opened a moment ago: leave it to Spark


def forget_checksums() -> None:
    """Forget the checksum files seen so far (a new task lists folders afresh)."""
    _CHECKSUM_CACHE.clear()

"""Local trees before Spark lists them: directory links, Hadoop globs, files Spark's scan skips.

Spark's (Hadoop's) local listing follows directory links without asking where they lead, drops file links
whose target is missing, and gives no row to files beside partition folders. These walks find such cases
on the driver (local paths only: object stores have no links), holding one entry per directory.
"""

from __future__ import annotations

import errno
import os
import re
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpuimages.sources.file_index import is_connect_session
from gpuimages.task.archive_members import archive_suffix
from gpuimages.uris import GLOB_CHARS, file_uri_path, split_scheme

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession


def hidden(name: str) -> bool:
    """Names Spark's file index skips (``InMemoryFileIndex.shouldFilterOutPathName``)."""
    excluded = (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")
    return excluded and not (name.startswith("_common_metadata") or name.startswith("_metadata"))


def glob_regex(component: str) -> re.Pattern | None:
    """A Hadoop glob path component (``*``, ``?``, ``[^a-c]``, ``{a,b}``, ``\\`` escapes) as a regex,
    or None when it has no glob characters or cannot be translated."""
    if not GLOB_CHARS.search(component):
        return None
    out, i, braces, in_set = [], 0, 0, False
    while i < len(component):
        ch = component[i]
        if ch == "\\" and i + 1 < len(component):
            out.append(re.escape(component[i + 1]))
            i += 2
            continue
        if in_set:
            if ch == "]":
                in_set = False
            out.append("\\\\" if ch == "\\" else ch)
        elif ch == "[":
            in_set = True
            out.append("[")
            if component[i + 1 : i + 2] == "!":
                out.append("^")
                i += 1
        elif ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "{":
            braces += 1
            out.append("(?:")
        elif ch == "}" and braces:
            braces -= 1
            out.append(")")
        elif ch == "," and braces:
            out.append("|")
        else:
            out.append(re.escape(ch))
        i += 1
    if braces or in_set:
        return None
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        return None


def glob_roots(path: str) -> list[str]:
    """The local folders and files a Hadoop glob names (the path itself when it is no glob). A part
    that cannot be translated keeps its folder as a root, so the link check covers more, never less."""
    if not GLOB_CHARS.search(path.replace("\\\\", "")):
        return [path]
    parts = path.split("/")
    roots = ["/" if path.startswith("/") else "."]
    for part in parts:
        if not part:
            continue
        regex = glob_regex(part)
        if regex is None and GLOB_CHARS.search(part):
            return roots  # untranslatable: walk from here
        nxt = []
        for root in roots:
            if regex is None:
                candidate = os.path.join(root, part.replace("\\", ""))
                if os.path.lexists(candidate):
                    nxt.append(candidate)
                continue
            try:
                with os.scandir(root) as entries:
                    nxt.extend(e.path for e in entries if regex.fullmatch(e.name))
            except OSError:
                continue
        roots = nxt
    return roots


def default_fs(spark: SparkSession) -> str | None:
    """The Hadoop default filesystem paths without a scheme resolve against; None when the session does
    not say (a Connect server's ``core-site.xml`` is not visible from the client)."""
    try:
        if not is_connect_session(spark):
            return spark.sparkContext._jsc.hadoopConfiguration().get("fs.defaultFS") or "file:///"
        return spark.conf.get("spark.hadoop.fs.defaultFS", None)
    except Exception:  # noqa: BLE001 - unknown
        return None


def local_root(path: str, default_fs: str = "file:///") -> str | None:
    """The local filesystem path a ``load()`` path names, or None when it is on another filesystem."""
    scheme, _ = split_scheme(path)
    if scheme is not None:
        return file_uri_path(path, escaped=False)
    if not default_fs.lower().startswith("file:"):
        return None
    return os.path.abspath(path)


class DirectoryLinkError(ValueError):
    """A directory reached a second time through a directory link while listing recursively."""


@dataclass(frozen=True)
class LocalTrees:
    """What the walk of a read's local trees found (see :func:`check_directory_links`).

    ``all_local``: every path is on the local filesystem (``any_local``: some path is). ``dead_links``: file
    links Spark's listing drops.
    ``archives`` and ``archive_bytes``: the archive-named files (``.tar``, ``.zip``, ...) in the folders the read
    covers, and their sizes: a count at least as large as Spark's listing has (the walk may cover more).
    """

    all_local: bool
    dead_links: list[str]
    archives: int = 0
    archive_bytes: int = 0
    any_local: bool = False  # some path is on the local filesystem


def check_directory_links(
    spark: SparkSession, paths: Sequence[str], *, recursive: bool = True, path_glob_filter: str | None = None
) -> LocalTrees:
    """Refuse local trees in which Spark's listing would reach a directory twice through a link, and find
    the file links Spark's listing leaves out.

    Spark's (Hadoop's) local listing follows directory links and never asks where they lead: a link to
    an ancestor lists the same files ~40 times (until the kernel's link limit), two such links never
    finish, and a second link to one directory lists its files twice. Walked here first, holding one
    entry per directory (none per file), following links exactly as Spark does (hidden folders
    skipped), and refused with a :class:`DirectoryLinkError` (a ``ValueError``) naming the link.
    Links to folders reached once (outside the tree, say) are followed, as Spark follows them.

    The same walk notes the file links whose target is missing or which loop: Spark's listing drops
    them without a trace, so they are returned (local paths, in the folders the read covers: every
    folder when ``recursive``, else the top folders and partition folders ``k=v``; names matching
    ``path_glob_filter``) to get a row with the reason. Paths on other filesystems are not walked
    (object stores have no links). The same walk counts the archives in those folders. Returns what it
    found (:class:`LocalTrees`).
    """
    fs_default = default_fs(spark)
    every_path_local = True
    name_filter = glob_regex(path_glob_filter) if path_glob_filter else _ANY_NAME
    broken: list[str] = []
    archives = [0, 0]
    some_path_local = False
    for path in paths:
        local = local_root(path, fs_default or "file:///")
        if local is None:
            every_path_local = False
            continue
        some_path_local = True
        if fs_default is None and not path.lower().startswith("file:"):
            every_path_local = False  # probably local (then walked), but the server may resolve it elsewhere
        roots = glob_roots(local)
        for root in roots:
            if roots != [local] and _is_dead_link(root):
                broken.append(root)  # a glob matched the link itself
            _walk_once(root, broken, recursive, name_filter, archives)
    return LocalTrees(every_path_local, broken, *archives, any_local=some_path_local)


def files_beside_partitions(spark: SparkSession, paths: Sequence[str], path_glob_filter: str | None) -> list[str]:
    """Local files directly in a folder read without ``recursive`` that also holds partition folders.

    Spark lists them, but its scan gives them no row (they have no partition value), silently. Only
    called when the read found partition columns; plain folder paths only (a glob's matches are left
    to Spark)."""
    fs_default = default_fs(spark) or "file:///"
    name_filter = glob_regex(path_glob_filter) if path_glob_filter else _ANY_NAME
    found: list[str] = []
    for path in paths:
        local = local_root(path, fs_default)
        if local is None or glob_roots(local) != [local] or not os.path.isdir(local):
            continue
        try:
            with os.scandir(local) as entries:
                for entry in entries:
                    if hidden(entry.name) or name_filter is None or not name_filter.fullmatch(entry.name):
                        continue
                    try:
                        if entry.is_file():
                            found.append(entry.path)
                    except OSError:
                        continue
        except OSError:
            continue
    return found


#: Stands for "no name filter" (a filter that cannot be translated keeps no link: ``None``).
_ANY_NAME = re.compile(".*", re.DOTALL)


def _is_dead_link(path: str) -> bool:
    """A symbolic link whose target is missing, or which loops."""
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno in (errno.ENOENT, errno.ELOOP) and os.path.islink(path)
    return False


def _walk_once(root: str, broken: list[str], recursive: bool, name_filter: re.Pattern | None,
               archives: list[int]) -> None:
    try:
        top = os.stat(root)
    except OSError:
        return  # missing: Spark says so
    if not stat.S_ISDIR(top.st_mode):
        if archive_suffix(root) is not None:  # a path (or a glob's match) naming an archive
            archives[0] += 1
            archives[1] += top.st_size
        return
    seen: dict[tuple[int, int], str] = {(top.st_dev, top.st_ino): root}
    stack = [(root, True)]  # (folder, whether the read covers its files)
    while stack:
        folder, covered = stack.pop()
        try:
            entries = os.scandir(folder)
        except OSError:
            continue  # unreadable folder: Spark reports or skips it
        with entries:
            for entry in entries:
                if hidden(entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()  # follows a link; False for a link whose target is missing
                except OSError:
                    is_dir = False  # a link loop (ELOOP), or unreadable
                try:
                    if not is_dir:
                        if name_filter is not None and not name_filter.fullmatch(entry.name):
                            continue
                        if entry.is_symlink() and _is_dead_link(entry.path):
                            if covered and name_filter is not None:  # an untranslatable filter keeps no link
                                broken.append(entry.path)
                        elif archive_suffix(entry.name) is not None:  # in any folder: Spark lists below
                            # partition folders' sub-folders too, so more are counted, never fewer
                            archives[0] += 1
                            archives[1] += entry.stat(follow_symlinks=True).st_size
                        continue
                    info = entry.stat(follow_symlinks=True)
                except OSError:
                    continue  # unreadable link: Spark lists nothing there
                key = (info.st_dev, info.st_ino)
                first = seen.get(key)
                if first is not None:
                    raise DirectoryLinkError(_link_message(entry.path, first))
                seen[key] = entry.path
                stack.append((entry.path, covered and (recursive or "=" in entry.name)))


def _link_message(path: str, first: str) -> str:
    target = os.path.realpath(path)
    if path.startswith(first.rstrip(os.sep) + os.sep):
        what = "a directory link back to a folder above it, which Spark's listing would follow endlessly"
    else:
        what = "a second way into a folder listed already, whose files Spark's listing would list again"
    return (
        f"path: expected a tree in which each folder is reached once, got {path!r}, the folder {target!r} "
        f"(first reached as {first!r}) again through {what}. Spark's listing follows directory links; "
        "remove the link, or read the folder it points to by its own path"
    )

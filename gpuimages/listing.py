"""Listing, sampling and partition columns through Spark's ``binaryFile`` source (DataFrame API only).

The listing is Spark's own file index: the driver holds no Python object per file. Sampling is a
seeded hash of each file's ``_metadata.file_path``, a filter Spark evaluates on its file listing,
so files not sampled are never opened. Spark's file sources skip zero-byte files when they plan
splits, and drop files they cannot open (``ignoreCorruptFiles``) without a trace; :func:`stage_input`
gives each listed file exactly one row of a stage's input, with the reason where Spark returns no
bytes (see ``docs/listing.md``). Partition columns (``root/cls=kittens/a.jpg`` -> ``cls``) come from
Spark's partition discovery, exactly as ``spark.read.format("image")`` gives them, even when a
partition folder is named like one of ``binaryFile``'s own columns.

The probe of listed local files runs on executors as a stage on the task runtime
(:class:`gpuimages.task.steps.probe.Probe`, through :func:`gpuimages.stage.run_stage`).
"""

from __future__ import annotations

import errno
import logging
import os
import re
import stat
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, DataFrameReader, SparkSession

log = logging.getLogger(__name__)

# Characters java.net.URI leaves unquoted in a path (unreserved, punct, '/', '@'); others are %-escaped.
_URI_PATH_SAFE = "/@_-!.~'()*,;:$&+="
_GLOB_CHARS = re.compile(r"([\\*?\[\]{}])")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$", re.DOTALL)

#: The columns ``binaryFile`` gives; a partition folder with one of these names replaces that column.
BINARY_FILE_COLUMNS = ("path", "modificationTime", "length", "content")
#: Names a partition column shares with ``binaryFile``'s columns or its metadata column (case-insensitive).
_SHADOWING = {"path", "modificationtime", "length", "content", "_metadata"}
#: Spark's name for a null partition value in a directory name.
HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"
#: Sampling compares 53 bits of a seeded 64-bit hash with ``ratio * 2**53``.
_SAMPLE_BITS = 53

#: Internal columns of a stage's input (a partition folder may not take these names).
INTERNAL_PREFIX = "__gpuimages_"
ORIGIN_COL = INTERNAL_PREFIX + "origin"
CONTENT_COL = INTERNAL_PREFIX + "content"
REASON_COL = INTERNAL_PREFIX + "reason"
_LISTED_COL = INTERNAL_PREFIX + "listed"

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
BESIDE_PARTITIONS_REASON = (
    "not read: a file beside partition folders (Spark's scan gives files in the folder read no row when it "
    "holds partition folders k=v); read it by its own path, or the folder with recursive=True"
)
#: Files not on the local filesystem (``hdfs:``, ``s3a:``, ...) are not probed; those the scan returns
#: no row for are either of these (a file Spark fails to open there is dropped by Spark unseen).
REMOTE_UNREAD_REASON = "no bytes read: the file is empty (0 bytes) or vanished after listing"


def normalize_paths(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Validate ``path`` (a path, glob, or list of them) and return a list of strings."""
    items: Iterable = [path] if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"path: expected a string, a path or a list of them, got {type(path).__name__}")
    out = []
    for p in items:
        if not isinstance(p, (str, os.PathLike)) or not str(p):
            raise TypeError(f"path: expected non-empty strings or paths, got {p!r}")
        out.append(os.fspath(p))
    if not out:
        raise ValueError("path: expected at least one path, got an empty list")
    return out


def _java_quotes(ch: str) -> bool:
    """Whether ``java.net.URI`` %-escapes this non-ASCII character: ISO controls and space separators."""
    return 0x80 <= ord(ch) <= 0x9F or unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def _uri_quote(text: str) -> str:
    """%-escape like ``java.net.URI``: ASCII outside the path's legal set (controls such as a newline
    included), and of the rest only C1 controls and Unicode space separators; other characters stay."""
    if text.isascii():
        return quote(text, safe=_URI_PATH_SAFE)
    out = []
    for ch in text:
        if ord(ch) > 127 and not _java_quotes(ch):
            out.append(ch)
        else:
            out.append(quote(ch, safe=_URI_PATH_SAFE))
    return "".join(out)


def to_origin(path: str) -> str:
    """Spark image-source ``origin`` for a Hadoop path string as ``binaryFile`` gives it.

    ``file:/tmp/a b.jpg`` -> ``file:///tmp/a%20b.jpg``; ``s3a://bucket/a b.jpg`` ->
    ``s3a://bucket/a%20b.jpg`` (the path part %-escaped as ``java.net.URI`` does, a newline as ``%0A``).
    """
    m = _SCHEME.match(path)
    if not m:
        return _uri_quote(path)
    scheme, rest = m.groups()
    if rest.startswith("//"):
        slash = rest.find("/", 2)
        authority, rest = (rest[2:], "") if slash < 0 else (rest[2:slash], rest[slash:])
    else:
        authority = ""
    return f"{scheme}://{authority}{_uri_quote(rest)}"


def escape_glob(path: str) -> str:
    """Escape Hadoop glob characters so a listed file name is loaded literally."""
    return _GLOB_CHARS.sub(r"\\\1", path)


def load_path(origin: str) -> str:
    """The string to ``load()`` one listed file by (``inputFiles()`` entries are %-escaped URIs)."""
    return escape_glob(unquote(origin))


def quoted(name: str) -> str:
    """A column name for ``F.col``/``select`` taken literally (dots, backticks)."""
    return "`" + name.replace("`", "``") + "`"


# --- Column expressions (evaluated by Spark, on classic and Connect sessions alike) -------------


def origin_column(file_path: Column) -> Column:
    """``_metadata.file_path`` (``file:/tmp/a%20b.jpg``) as the image origin (``file:///tmp/a%20b.jpg``).

    Both are %-escaped URIs; a scheme followed by a single slash gets the empty authority ``//``
    that ``java.net.URI`` (and so ``inputFiles()`` and Spark's image source) writes.
    """
    from pyspark.sql import functions as F

    return F.regexp_replace(file_path, r"^([A-Za-z][A-Za-z0-9+.-]*):/(?!/)", "$1:///")


def sample_condition(origin: Column, ratio: float, seed: int) -> Column:
    """A seeded Bernoulli(``ratio``) choice per file, as a boolean column over its origin.

    The same choice as :func:`file_sample_condition` makes over the file's ``_metadata.file_path``
    (the origin is turned back into that form first).
    """
    from pyspark.sql import functions as F

    return file_sample_condition(F.regexp_replace(origin, r"^([A-Za-z][A-Za-z0-9+.-]*):///", "$1:/"), ratio, seed)


def file_sample_condition(file_path: Column, ratio: float, seed: int) -> Column:
    """A seeded Bernoulli(``ratio``) choice per file, over ``_metadata.file_path`` (``file:/tmp/a.jpg``).

    ``xxhash64(seed, file_path)`` is Spark's own hash, so the choice is the same on every session
    (classic or Connect), every run and every Spark version that has ``xxhash64`` (3.0+). It is
    evaluated for every listed file when Spark prunes its listing, so it is kept to one hash (no
    string rewriting). A ratio of 0 is a constant false, which Spark's optimiser turns into an empty
    relation (nothing is read).
    """
    from pyspark.sql import functions as F

    if ratio <= 0:
        return F.lit(False)
    threshold = int(round(ratio * (1 << _SAMPLE_BITS)))
    seed64 = (int(seed) + (1 << 63)) % (1 << 64) - (1 << 63)  # any Python int, as a signed 64-bit value
    # S3 spelled s3a:// (or s3n://) hashes as s3://: the same objects are sampled whichever a user writes
    file_path = F.when(file_path.startswith("s3a://") | file_path.startswith("s3n://"),
                       F.concat(F.lit("s3://"), F.substring(file_path, 7, 1 << 30))).otherwise(file_path)
    bits = F.shiftrightunsigned(F.xxhash64(F.lit(seed64).cast("long"), file_path), 64 - _SAMPLE_BITS)
    return bits < F.lit(threshold).cast("long")


def _url_decode(col: Column, lenient: bool = False) -> Column:
    """Undo one level of %-escaping (``+`` kept: it is a literal plus in a path). ``lenient``: a
    malformed escape (``100%``) leaves the text as it is, as Spark's ``unescapePathName`` does."""
    from pyspark.sql import functions as F

    plus_kept = F.call_function("replace", col, F.lit("+"), F.lit("%2B"))
    if not lenient:
        return F.call_function("url_decode", plus_kept)
    return F.coalesce(F.call_function("try_url_decode", plus_kept), col)


#: Characters Spark's ``ExternalCatalogUtils.escapePathName`` %-escapes in partition folder names.
_SPARK_ESCAPED = {chr(c) for c in range(1, 0x20)} | set("\"#%'*/:=?\\\x7f{[]^")


def spark_escape_path_name(text: str) -> str:
    """A partition column name or value as Spark writes it in a folder name (``escapePathName``)."""
    return "".join(f"%{ord(ch):02X}" if ch in _SPARK_ESCAPED else ch for ch in text)


def partition_value(origin: Column, name: str, data_type, lenient: bool = False) -> Column:
    """The value of partition column ``name`` parsed from a file's origin, cast to ``data_type``.

    Spark writes ``name=value`` directory names with both parts escaped (``escapePathName``); the
    origin is a URI, %-escaped once more. The last ``/name=`` segment wins, as in Spark's partition
    discovery of the directories below the base path; null without one. ``lenient`` (Spark 4+, which has
    ``try_url_decode``): a value with a stray ``%`` is kept as written, as Spark keeps it.
    """
    from pyspark.sql import functions as F

    pattern = ".*/" + re.escape(_uri_quote(spark_escape_path_name(name))) + "=([^/]*)/"
    raw = F.regexp_extract(origin, pattern, 1)
    value = _url_decode(_url_decode(raw), lenient=lenient)
    value = F.when(value == F.lit(HIVE_DEFAULT_PARTITION), F.lit(None)).otherwise(value)
    value = F.when(origin.rlike(pattern), value)  # no such folder (a file beside the partitions): null
    return value.cast(data_type)


def folder_column(origin: Column) -> Column:
    """The parent folder's name of a file, decoded, from its origin (``label_from_folder``)."""
    from pyspark.sql import functions as F

    return _url_decode(F.element_at(F.split(origin, "/"), -2))


# --- Directory links -----------------------------------------------------------------------------


def _hidden(name: str) -> bool:
    """Names Spark's file index skips (``InMemoryFileIndex.shouldFilterOutPathName``)."""
    excluded = (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")
    return excluded and not (name.startswith("_common_metadata") or name.startswith("_metadata"))


def _glob_regex(component: str) -> re.Pattern | None:
    """A Hadoop glob path component (``*``, ``?``, ``[^a-c]``, ``{a,b}``, ``\\`` escapes) as a regex,
    or None when it has no glob characters or cannot be translated."""
    if not _GLOB_CHARS.search(component):
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


def _glob_roots(path: str) -> list[str]:
    """The local folders and files a Hadoop glob names (the path itself when it is no glob). A part
    that cannot be translated keeps its folder as a root, so the link check covers more, never less."""
    if not _GLOB_CHARS.search(path.replace("\\\\", "")):
        return [path]
    parts = path.split("/")
    roots = ["/" if path.startswith("/") else "."]
    for part in parts:
        if not part:
            continue
        regex = _glob_regex(part)
        if regex is None and _GLOB_CHARS.search(part):
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


def _default_fs(spark: SparkSession) -> str | None:
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
    m = _SCHEME.match(path)
    if m and len(m.group(1)) > 1:  # a one-letter "scheme" is a Windows drive
        if m.group(1).lower() != "file":
            return None
        rest = m.group(2)
        if rest.startswith("//"):
            slash = rest.find("/", 2)
            if slash < 0 or rest[2:slash] not in ("", "localhost"):
                return None
            rest = rest[slash:]
        return rest
    if not default_fs.lower().startswith("file:"):
        return None
    return os.path.abspath(path)


class DirectoryLinkError(ValueError):
    """A directory reached a second time through a directory link while listing recursively."""


def check_directory_links(
    spark: SparkSession, paths: Sequence[str], *, recursive: bool = True, path_glob_filter: str | None = None
) -> tuple[bool, list[str]]:
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
    (object stores have no links). Returns whether every path is on the local filesystem, and those
    links.
    """
    default_fs = _default_fs(spark)
    every_path_local = True
    name_filter = _glob_regex(path_glob_filter) if path_glob_filter else _ANY_NAME
    broken: list[str] = []
    for path in paths:
        local = local_root(path, default_fs or "file:///")
        if local is None:
            every_path_local = False
            continue
        if default_fs is None and not path.lower().startswith("file:"):
            every_path_local = False  # probably local (then walked), but the server may resolve it elsewhere
        roots = _glob_roots(local)
        for root in roots:
            if roots != [local] and _is_dead_link(root):
                broken.append(root)  # a glob matched the link itself
            _walk_once(root, broken, recursive, name_filter)
    return every_path_local, broken


def files_beside_partitions(spark: SparkSession, paths: Sequence[str], path_glob_filter: str | None) -> list[str]:
    """Local files directly in a folder read without ``recursive`` that also holds partition folders.

    Spark lists them, but its scan gives them no row (they have no partition value), silently. Only
    called when the read found partition columns; plain folder paths only (a glob's matches are left
    to Spark)."""
    default_fs = _default_fs(spark) or "file:///"
    name_filter = _glob_regex(path_glob_filter) if path_glob_filter else _ANY_NAME
    found: list[str] = []
    for path in paths:
        local = local_root(path, default_fs)
        if local is None or _glob_roots(local) != [local] or not os.path.isdir(local):
            continue
        try:
            with os.scandir(local) as entries:
                for entry in entries:
                    if _hidden(entry.name) or name_filter is None or not name_filter.fullmatch(entry.name):
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


def _walk_once(root: str, broken: list[str], recursive: bool, name_filter: re.Pattern | None) -> None:
    try:
        top = os.stat(root)
    except OSError:
        return  # missing: Spark says so
    if not stat.S_ISDIR(top.st_mode):
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
                if _hidden(entry.name):
                    continue
                try:
                    is_dir = entry.is_dir()  # follows a link; False for a link whose target is missing
                except OSError:
                    is_dir = False  # a link loop (ELOOP), or unreadable
                try:
                    if not is_dir:
                        if covered and entry.is_symlink() and name_filter is not None \
                                and name_filter.fullmatch(entry.name) and _is_dead_link(entry.path):
                            broken.append(entry.path)
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


# --- Listing -------------------------------------------------------------------------------------


def binary_reader(spark: SparkSession, recursive: bool, path_glob_filter: str | None) -> DataFrameReader:
    """A ``binaryFile`` reader that keeps going past unreadable files (they get rows later)."""
    reader = spark.read.format("binaryFile").option("ignoreCorruptFiles", "true").option("ignoreMissingFiles", "true")
    if recursive:
        reader = reader.option("recursiveFileLookup", "true")
    if path_glob_filter:
        reader = reader.option("pathGlobFilter", path_glob_filter)
    return reader


@dataclass
class Listing:
    """Files found for a read: the (sampled) scan and what is known of the listing.

    ``frame`` has one row per file the scan returns bytes for: :data:`ORIGIN_COL` (the image-source
    URI), :data:`CONTENT_COL` (the bytes) and the ``partition_columns`` (Spark's partition discovery,
    typed as ``partition_types``). ``source`` is the sampled ``binaryFile`` DataFrame behind it (its
    ``_metadata`` column still there). ``listed`` is a one-column DataFrame (``origin``) of every listed
    file after sampling, zero-byte files included, or None where the listing could not reach the
    driver (see :func:`listed_origins`). ``num_files`` and ``total_bytes`` are Spark's figures
    before sampling (None when unknown).
    """

    frame: DataFrame
    source: DataFrame
    partition_columns: tuple[str, ...]
    partition_types: dict[str, Any]
    listed: DataFrame | None
    num_files: int | None
    total_bytes: int | None
    sample_ratio: float = 1.0
    lenient: bool = False  # partition values parsed with try_url_decode (Spark 4+)
    all_local: bool = False  # every path is on the local filesystem (no file elsewhere can be listed)
    #: Listed local files the scan gives no row by Spark's rules, with the reason (see :func:`list_files`).
    known_unread: tuple[tuple[str, str], ...] = ()

    def planned_files(self) -> int | None:
        """Files expected after sampling (an estimate when sampling)."""
        if self.num_files is None:
            return None
        if self.sample_ratio <= 0:
            return 0
        return max(1, round(self.num_files * self.sample_ratio)) if self.num_files else 0

    def planned_bytes(self) -> int | None:
        """Encoded bytes expected after sampling (an estimate when sampling)."""
        return None if self.total_bytes is None else int(self.total_bytes * self.sample_ratio)


def is_connect_session(spark: SparkSession) -> bool:
    return type(spark).__module__.startswith("pyspark.sql.connect")


def has_try_url_decode(spark: SparkSession) -> bool:
    """Whether the session's Spark has ``try_url_decode`` (4.0+)."""
    try:
        return int(str(spark.version).split(".", 1)[0]) >= 4
    except Exception:  # noqa: BLE001 - assume the older function set
        return False


def list_files(
    spark: SparkSession,
    paths: list[str],
    *,
    recursive: bool,
    path_glob_filter: str | None,
    sample_ratio: float = 1.0,
    seed: int = 0,
    keep_listing: bool = True,
) -> Listing:
    """List ``paths`` with Spark and sample them, without a Spark job and without opening a file.

    Local trees are checked for directory links first (:func:`check_directory_links`). Raises
    ``FileNotFoundError`` naming the missing path when Spark reports one. ``keep_listing=False`` skips
    bringing the listing to a DataFrame (reads that give no row to files the scan cannot read).
    """
    from pyspark.sql import functions as F

    all_local, dead_links = check_directory_links(spark, paths, recursive=recursive, path_glob_filter=path_glob_filter)
    lenient = has_try_url_decode(spark)
    frame = _load(binary_reader(spark, recursive, path_glob_filter), paths)
    parts = partition_columns(frame)
    types = {f.name: f.dataType for f in frame.schema.fields if f.name in parts}
    if keep_listing:
        listed, num_files, total_bytes = listed_origins(spark, frame)
        if listed is not None and dead_links:  # links Spark's listing drops: listed here, the probe says why
            log.info("gpuimages: %d file link(s) with a missing target or a loop get a row", len(dead_links))
            origins = [(to_origin("file:" + p),) for p in sorted(set(dead_links))]
            listed = listed.unionByName(spark.createDataFrame(origins, "origin string"))
            num_files = None if num_files is None else num_files + len(origins)
    else:
        listed, num_files, total_bytes = None, *_counts(spark, frame)
    if sample_ratio < 1.0 and listed is not None:
        listed = listed.filter(sample_condition(F.col("origin"), sample_ratio, seed))

    shadowed = sorted(p for p in parts if p.lower() in _SHADOWING)
    if shadowed:
        # A partition folder named like a binaryFile column (or the metadata column) replaces it in this
        # relation (the bytes, for content=), and Spark's optimiser fails on some of these relations
        # (length=, modificationTime=): read the bytes from a listing without partition inference, limited
        # to this one's files, and parse the partition values from the paths as Spark does.
        log.info("gpuimages: partition column(s) %s shadow binaryFile's columns; bytes come from a second listing",
                 shadowed)
        source = _load(binary_reader(spark, True, path_glob_filter), paths)
    else:
        source = frame
    origin = origin_column(F.col("_metadata.file_path"))
    if sample_ratio < 1.0:
        source = source.filter(file_sample_condition(F.col("_metadata.file_path"), sample_ratio, seed))
    if shadowed:
        scanned = source.select(origin.alias(ORIGIN_COL), F.col("content").alias(CONTENT_COL))
        if listed is not None:
            scanned = scanned.join(F.broadcast(listed.withColumnRenamed("origin", ORIGIN_COL)), ORIGIN_COL, "left_semi")
        else:
            log.warning("gpuimages: without the listing, a partition folder named %s cannot be told from other "
                        "folders; files below folders that are not partitions are read too", shadowed)
        origin_col = F.col(ORIGIN_COL)
        scanned = scanned.select(
            ORIGIN_COL, CONTENT_COL, *[partition_value(origin_col, p, types[p], lenient).alias(p) for p in parts]
        )
    else:
        scanned = source.select(
            origin.alias(ORIGIN_COL), F.col("content").alias(CONTENT_COL), *[F.col(quoted(p)) for p in parts]
        )
    known_unread: tuple[tuple[str, str], ...] = ()
    if parts and not recursive and listed is not None:
        beside = files_beside_partitions(spark, paths, path_glob_filter)
        if beside:
            log.warning("gpuimages: %d file(s) beside partition folders get no pixels (Spark's scan skips them); "
                        "they come back as rows with the reason", len(beside))
            known_unread = tuple((to_origin("file:" + p), BESIDE_PARTITIONS_REASON) for p in sorted(beside))
    return Listing(scanned, source, parts, types, listed, num_files, total_bytes, sample_ratio, lenient, all_local,
                   known_unread)


def _load(reader: DataFrameReader, paths: list[str]) -> DataFrame:
    try:
        frame = reader.load(paths)
        frame.columns  # noqa: B018 - Connect resolves (and lists) lazily: make a missing path fail here
    except Exception as exc:  # noqa: BLE001 - classic and Connect raise different classes
        text = str(exc)
        if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
            missing = re.search(r"Path does not exist: (\S+?)\.?(\s|$)", text)
            where = missing.group(1) if missing else ", ".join(paths)
            raise FileNotFoundError(f"path: expected an existing file, folder or glob, got {where}") from None
        denied = re.search(r"AccessDeniedException: (.+?): Permission denied", text)
        if denied:
            raise PermissionError(
                f"path: expected folders Spark can list, got {denied.group(1)}: permission denied (Spark's "
                "listing stops at a folder it cannot read, so none of the files below it can be counted; "
                "read the folders you can list, or fix the permission)"
            ) from None
        raise
    return frame


_READ_SCHEMA = re.compile(r"ReadSchema: struct<([^>]*)>")


def parse_read_schema(plan: str) -> list[str] | None:
    """The field names of a file scan's ``ReadSchema: struct<...>`` in a plan's text (None if absent or cut)."""
    m = _READ_SCHEMA.search(plan)
    if not m or m.group(1).endswith("..."):
        return None
    return [field.split(":", 1)[0].strip("`") for field in m.group(1).split(",") if field]


def partition_columns(frame: DataFrame) -> tuple[str, ...]:
    """The partition columns of a freshly loaded ``binaryFile`` DataFrame, in its column order.

    A partition folder named like a ``binaryFile`` column (``path=``, ``content=``, ...; Spark resolves
    names case-insensitively) replaces that column in the relation, so the names alone do not tell.
    Classic sessions read the relation's partition schema in the JVM; Connect sessions read which data
    columns the file scan reads (``ReadSchema`` of the physical plan): every other column is a partition.
    """
    columns = frame.columns
    names: list[str] | None = None
    if not is_connect_session(frame.sparkSession):
        try:
            relation = frame._jdf.queryExecution().analyzed().collectLeaves().apply(0).relation()
            names = list(relation.partitionSchema().fieldNames())
        except Exception as exc:  # noqa: BLE001 - a JVM API that moved: read the plan instead
            log.info("gpuimages: partition schema unavailable from the JVM (%s); reading the plan", exc)
    if names is None:
        try:
            read = parse_read_schema(_plan_text(frame))
        except Exception:  # noqa: BLE001 - fall back to the names and types below
            read = None
        if read is not None:
            names = [c for c in columns if c not in read]
    if names is None:
        from pyspark.sql.types import BinaryType, LongType, StringType, TimestampType

        standard = {"path": StringType(), "modificationTime": TimestampType(), "length": LongType(),
                    "content": BinaryType()}
        names = [f.name for f in frame.schema.fields if standard.get(f.name) != f.dataType]
    wanted = set(names)
    return tuple(c for c in columns if c in wanted)


def _plan_text(frame: DataFrame) -> str:
    if is_connect_session(frame.sparkSession):
        return frame._explain_string(mode="simple")
    return frame._sc._jvm.PythonSQLUtils.explainString(frame._jdf.queryExecution(), "simple")


def _counts(spark: SparkSession, frame: DataFrame) -> tuple[int | None, int | None]:
    """File count and total bytes of the listing without bringing the listing anywhere."""
    if not is_connect_session(spark):
        try:
            jdf = frame._jdf
            return len(jdf.inputFiles()), _jvm_size(jdf)
        except Exception:  # noqa: BLE001 - hints only
            return None, None
    return None, _connect_size_in_bytes(frame)


def listed_origins(spark: SparkSession, frame: DataFrame) -> tuple[DataFrame | None, int | None, int | None]:
    """Every file of ``frame``'s file index as a DataFrame of origins, the file count and total bytes.

    Classic sessions: the listing stays in the JVM (``inputFiles()``'s array is wrapped into a local
    Dataset there; one py4j call, no Python string per file), and the byte total is the relation's
    statistics (the sum of the listed files' sizes Spark keeps). Spark Connect: ``inputFiles()``
    comes back as one gRPC message; past the client's message limit the listing cannot reach the
    driver, and a warning says so (files the scan returns no bytes for then get no row; every other
    file is still read).
    """
    if not is_connect_session(spark):
        try:
            return _listed_on_jvm(spark, frame)
        except Exception as exc:  # noqa: BLE001 - a JVM API that moved: fall back to the client path
            log.warning("gpuimages: JVM-side listing unavailable (%s); listing through inputFiles()", exc)
    try:
        files = frame.inputFiles()
    except Exception as exc:  # noqa: BLE001 - RESOURCE_EXHAUSTED and friends
        log.warning(
            "gpuimages: the file listing could not be brought to the driver (%s); files the scan returns "
            "no bytes for (zero-byte, unreadable, vanished) cannot be counted and get no row. Every other "
            "file is read. Raise the client's gRPC message limit or read fewer files per call to keep them.",
            error_summary(exc),
        )
        return None, None, None
    count = len(files)
    try:
        listed = _listing_view(spark, files)
    except Exception as exc:  # noqa: BLE001 - the listing did not fit in one message to the server
        log.warning(
            "gpuimages: the listing of %d file(s) could not be sent back to the server (%s); files the "
            "scan returns no bytes for (zero-byte, unreadable, vanished) get no row. Every other file is read.",
            count, error_summary(exc),
        )
        listed = None
    del files
    return listed, count, _connect_size_in_bytes(frame)


_GRPC_DETAILS = re.compile(r'details = "([^"]*)"')


def error_summary(exc: BaseException) -> str:
    """One line for a log: the class, the gRPC status and details where there are, else the first line."""
    text = str(exc)
    parts = [type(exc).__name__]
    if "RESOURCE_EXHAUSTED" in text:
        parts.append("RESOURCE_EXHAUSTED, the gRPC message limit")
    details = _GRPC_DETAILS.search(text)
    parts.append(details.group(1) if details else (text.splitlines()[0] if text else ""))
    return ": ".join(p for p in parts if p)[:400]


def _listing_view(spark: SparkSession, files: list[str]) -> DataFrame:
    """The listing as a temporary view on the server (Connect), sent once, now.

    Sending it here (one command) rather than inside the result's plan means a listing too large
    for one message fails on the driver, before anything runs, and the result's plan stays small.
    """
    import uuid

    name = f"gpuimages_listing_{uuid.uuid4().hex}"
    spark.createDataFrame([(f,) for f in files], "origin string").createOrReplaceTempView(name)
    return spark.table(name)


def _listed_on_jvm(spark: SparkSession, frame: DataFrame) -> tuple[DataFrame, int, int | None]:
    """The listing as a Dataset over an RDD of ``inputFiles()``'s Java array (no copy of a path in Python).

    An RDD-backed relation, not a local one: a plan holding every path as a literal row (a
    ``LocalRelation``) is hashed, copied and re-analysed by every DataFrame operation built on it, which
    at 100k files cost more than a second per ``read_images`` call; the RDD's slices stay in the driver
    JVM and travel with the tasks that scan them.
    """
    try:
        from pyspark.sql.classic.dataframe import DataFrame as ClassicFrame
    except ImportError:  # pyspark 3.5
        from pyspark.sql.dataframe import DataFrame as ClassicFrame

    jvm = spark.sparkContext._jvm
    jdf = frame._jdf
    files = jdf.inputFiles()  # a Java String[] proxy: its elements stay in the JVM
    count = len(files)
    slices = max(1, min(count, spark.sparkContext.defaultParallelism))
    try:  # Scala 2.13 (Spark 4)
        paths = jvm.scala.jdk.javaapi.CollectionConverters.asJava(
            jvm.scala.collection.immutable.ArraySeq.unsafeWrapArray(files)
        )
    except Exception:  # noqa: BLE001 - Scala 2.12 (Spark 3.5)
        paths = jvm.scala.collection.JavaConverters.seqAsJavaListConverter(
            jvm.scala.Predef.genericWrapArray(files)
        ).asJava()
    rdd = spark.sparkContext._jsc.parallelize(paths, slices)  # a java.util.List view of the array
    jds = spark._jsparkSession.createDataset(rdd.rdd(), jvm.org.apache.spark.sql.Encoders.STRING())
    listed = ClassicFrame(jds.toDF(), spark).withColumnRenamed("value", "origin")
    return listed, count, _jvm_size(jdf)


def _jvm_size(jdf) -> int | None:
    try:
        return int(str(jdf.queryExecution().analyzed().stats().sizeInBytes()))
    except Exception:  # noqa: BLE001 - statistics are a hint
        return None


_SIZE = re.compile(r"sizeInBytes=([0-9.]+)\s*(B|KiB|MiB|GiB|TiB|PiB|EiB)")
_UNITS = {"B": 0, "KiB": 1, "MiB": 2, "GiB": 3, "TiB": 4, "PiB": 5, "EiB": 6}


def parse_size_in_bytes(plan: str) -> int | None:
    """The first ``sizeInBytes=60.3 MiB`` of an ``explain(mode="cost")`` text, in bytes."""
    m = _SIZE.search(plan)
    return int(float(m.group(1)) * 1024 ** _UNITS[m.group(2)]) if m else None


def _connect_size_in_bytes(frame: DataFrame) -> int | None:
    try:
        return parse_size_in_bytes(frame._explain_string(mode="cost"))
    except Exception:  # noqa: BLE001 - statistics are a hint
        return None


# --- Files the scan returns no bytes for --------------------------------------------------------


def local_path(origin: str) -> str | None:
    """The local filesystem path of a ``file:`` origin (``file:///tmp/a%20b.jpg`` -> ``/tmp/a b.jpg``)."""
    if not origin.startswith("file:"):
        return None
    rest = origin[5:]
    if rest.startswith("//"):
        slash = rest.find("/", 2)
        if slash < 0 or rest[2:slash] not in ("", "localhost"):
            return None
        rest = rest[slash:]
    return unquote(rest)


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
    path = local_path(origin)
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


#: ``.<name>.crc`` files of the folders probed last (one listing per folder, not a lookup per file).
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


def stage_input(found: Listing, keep_unread: bool, slots: int, conf: dict[str, str | None]) -> DataFrame:
    """A stage's input: one row per listed (and sampled) file, exactly once.

    Columns :data:`ORIGIN_COL`, :data:`CONTENT_COL`, the partition columns and :data:`REASON_COL`
    (null for the files the scan read; the reason, with null content, for the others). With
    ``keep_unread`` and the listing at hand:

    * local files (``file:``): the listing goes through a lazy probe stage
      (:class:`gpuimages.task.steps.probe.Probe`, which opens each file, never reads it); its few rows
      are broadcast once and decide, file by file, which side gives the row: a file with a reason
      comes from the listing, every other from the scan. One join on one evaluation of the probe, so
      a file the JVM reads although the probe found a problem (or the reverse) is never counted twice;
    * other filesystems: a left anti join of the listing against the scan's file paths (Spark's
      statuses, no content read); left out when every path read is local.

    Nothing here runs before the result does.
    """
    from pyspark.sql import functions as F

    parts = found.partition_columns
    scanned = found.frame
    null_reason = F.lit(None).cast("string").alias(REASON_COL)
    if not keep_unread or found.listed is None:
        return scanned.select(ORIGIN_COL, CONTENT_COL, *map(quoted, parts), null_reason)

    listed = found.listed.select(F.col("origin").alias(ORIGIN_COL))
    flagged = probe_stage(listed.filter(F.col(ORIGIN_COL).startswith("file:")), conf)
    if found.known_unread:  # listed files Spark's scan skips by its own rules (the probe finds nothing wrong)
        known = listed.sparkSession.createDataFrame(list(found.known_unread), flagged.schema)
        flagged = flagged.join(known, ORIGIN_COL, "left_anti").unionByName(known)
    listing_rows = listed.select(
        ORIGIN_COL, F.lit(None).cast("binary").alias(CONTENT_COL),
        *[F.lit(None).cast(found.partition_types[p]).alias(p) for p in parts], F.lit(True).alias(_LISTED_COL),
    )
    both = scanned.select(ORIGIN_COL, CONTENT_COL, *map(quoted, parts), F.lit(False).alias(_LISTED_COL))
    both = both.unionByName(listing_rows)
    joined = both.join(F.broadcast(flagged), ORIGIN_COL, "left")
    listed_flag, reason = F.col(_LISTED_COL), F.col(REASON_COL)
    joined = joined.filter((listed_flag & reason.isNotNull()) | (~listed_flag & reason.isNull()))
    origin = F.col(ORIGIN_COL)
    local = joined.select(
        ORIGIN_COL, CONTENT_COL,
        *[
            F.when(listed_flag, partition_value(origin, p, found.partition_types[p], found.lenient))
            .otherwise(F.col(quoted(p)))
            .alias(p)
            for p in parts
        ],
        REASON_COL,
    )
    return local if found.all_local else local.unionByName(_remote_unread(found, slots))


def probe_stage(listed: DataFrame, conf: dict[str, str | None]) -> DataFrame:
    """``(ORIGIN_COL, REASON_COL)`` of the listed local files Spark's binary read returns no bytes for."""
    from pyspark.sql.types import StringType, StructField, StructType

    from gpuimages.stage import run_stage
    from gpuimages.task.runner import StageSpec
    from gpuimages.task.steps.probe import Probe

    spec = StageSpec(
        "probe", "cpu", ORIGIN_COL, "values", (Probe(ORIGIN_COL, REASON_COL),), (ORIGIN_COL, REASON_COL),
        error_col=None,
    )
    schema = StructType([StructField(ORIGIN_COL, StringType(), True), StructField(REASON_COL, StringType(), True)])
    return run_stage(listed, spec, schema, conf)


def _remote_unread(found: Listing, slots: int) -> DataFrame:
    """Rows for listed files on other filesystems that the scan returns nothing for (no content read)."""
    from pyspark.sql import functions as F

    path = F.col("_metadata.file_path")
    remote_scanned = (
        found.source.filter(~path.startswith("file:"))
        .select(origin_column(path).alias(ORIGIN_COL))
        .coalesce(max(1, slots))
    )
    remote = found.listed.select(F.col("origin").alias(ORIGIN_COL)).filter(~F.col(ORIGIN_COL).startswith("file:"))
    unread = remote.join(remote_scanned, ORIGIN_COL, "left_anti")
    origin, types = F.col(ORIGIN_COL), found.partition_types
    return unread.select(
        ORIGIN_COL, F.lit(None).cast("binary").alias(CONTENT_COL),
        *[partition_value(origin, p, types[p], found.lenient).alias(p) for p in found.partition_columns],
        F.lit(REMOTE_UNREAD_REASON).alias(REASON_COL),
    )

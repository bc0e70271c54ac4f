"""Listing, sampling and partition columns through Spark's ``binaryFile`` source.

The listing is Spark's own file index: the driver holds no Python object per file on classic sessions
(see :mod:`gpuimages.sources.file_index` for Connect). Sampling is a seeded hash of each file's
``_metadata.file_path``, a filter Spark evaluates on its file listing, so files not sampled are never
opened. Partition columns (``root/cls=kittens/a.jpg`` -> ``cls``) come from Spark's partition discovery,
exactly as ``spark.read.format("image")`` gives them, even when a partition folder is named like one of
``binaryFile``'s own columns. Which listed files the scan returns no bytes for, and their rows, is
:mod:`gpuimages.sources.unread`.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpuimages.sources.columns import (
    CONTENT_COL,
    ORIGIN_COL,
    SHADOWING,
    file_sample_sql,
    origin_sql,
    partition_alias,
    partition_value_sql,
    quoted,
    sample_sql,
    to_partition_aliases,
)
from gpuimages.sources.file_index import counts, is_connect_session, listed_origins
from gpuimages.sources.links import check_directory_links, files_beside_partitions
from gpuimages.uris import to_origin

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, DataFrameReader, SparkSession

log = logging.getLogger(__name__)

BESIDE_PARTITIONS_REASON = (
    "not read: a file beside partition folders (Spark's scan gives files in the folder read no row when it "
    "holds partition folders k=v); read it by its own path, or the folder with recursive=True"
)


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

    ``frame`` has one row per file the scan returns bytes for: :data:`ORIGIN_COL` (the image-source URI),
    :data:`CONTENT_COL` (the bytes) and the ``partition_columns`` (Spark's partition discovery, typed as
    ``partition_types``), each under its :func:`~gpuimages.sources.columns.partition_alias`. ``source`` is the
    sampled ``binaryFile`` DataFrame behind it (its ``_metadata`` column still there). ``listed`` is a one-column
    DataFrame (``origin``) of every listed file after sampling, zero-byte files included, or None where the listing
    could not reach the driver (see :func:`listed_origins`). ``num_files`` and ``total_bytes`` are Spark's figures
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
    #: Where every path is local: the archive-named files the driver's walk saw and their bytes (at least
    #: as many as the listing has); None otherwise.
    local_archives: tuple[int, int] | None = None
    any_local: bool = False  # some path is on the local filesystem

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
    slots: int = 1,
) -> Listing:
    """List ``paths`` with Spark and sample them, without a Spark job and without opening a file.

    Local trees are checked for directory links first (:func:`check_directory_links`). Raises
    ``FileNotFoundError`` naming the missing path when Spark reports one. ``keep_listing=False`` skips
    bringing the listing to a DataFrame where some path is not local (reads that give no row to files the
    scan cannot read); local files are always read from it, and ``slots`` (the cluster's task slots)
    sizes its partitions.
    """
    from pyspark.sql import functions as F

    trees = check_directory_links(spark, paths, recursive=recursive, path_glob_filter=path_glob_filter)
    all_local, dead_links = trees.all_local, trees.dead_links
    lenient = has_try_url_decode(spark)
    frame = _load(binary_reader(spark, recursive, path_glob_filter), paths)
    parts = partition_columns(frame)
    types = {f.name: f.dataType for f in frame.schema.fields if f.name in parts}
    if keep_listing or all_local:  # local files: the stage reads them from the listing (sources.unread)
        listed, num_files, total_bytes = listed_origins(spark, frame, slots)
        if listed is not None and dead_links:  # links Spark's listing drops: listed here, the task's check says why
            log.info("gpuimages: %d file link(s) with a missing target or a loop get a row", len(dead_links))
            origins = [(to_origin("file:" + p),) for p in sorted(set(dead_links))]
            listed = listed.unionByName(spark.createDataFrame(origins, "origin string"))
            num_files = None if num_files is None else num_files + len(origins)
    else:
        listed, num_files, total_bytes = None, *counts(spark, frame)
    if sample_ratio < 1.0 and listed is not None:
        listed = listed.filter(sample_sql("origin", sample_ratio, seed))

    shadowed = sorted(p for p in parts if p.lower() in SHADOWING)
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
    origin = f"{origin_sql()} AS {quoted(ORIGIN_COL)}"
    content = f"content AS {quoted(CONTENT_COL)}"
    if sample_ratio < 1.0:
        source = source.filter(file_sample_sql("_metadata.file_path", sample_ratio, seed))
    if shadowed:
        scanned = source.selectExpr(origin, content)
        if listed is not None:
            scanned = scanned.join(F.broadcast(listed.withColumnRenamed("origin", ORIGIN_COL)), ORIGIN_COL, "left_semi")
        else:
            log.warning("gpuimages: without the listing, a partition folder named %s cannot be told from other "
                        "folders; files below folders that are not partitions are read too", shadowed)
        scanned = scanned.selectExpr(
            quoted(ORIGIN_COL), quoted(CONTENT_COL),
            *[f"{partition_value_sql(quoted(ORIGIN_COL), p, types[p], lenient)} AS {partition_alias(i)}"
              for i, p in enumerate(parts)],
        )
    else:  # partition columns by name (F.col), never in SQL text: see to_partition_names
        scanned = to_partition_aliases(source.select(F.expr(origin), F.expr(content),
                                                     *[F.col(quoted(p)) for p in parts]), parts)
    # The driver's walk counts the archives where the tasks see the same disk (not through a Connect server).
    connect = is_connect_session(spark)
    local_archives = (trees.archives, trees.archive_bytes) if all_local and not connect else None
    known_unread: tuple[tuple[str, str], ...] = ()
    if parts and not recursive and listed is not None:
        beside = files_beside_partitions(spark, paths, path_glob_filter)
        if beside:
            log.warning("gpuimages: %d file(s) beside partition folders get no pixels (Spark's scan skips them); "
                        "they come back as rows with the reason", len(beside))
            known_unread = tuple((to_origin("file:" + p), BESIDE_PARTITIONS_REASON) for p in sorted(beside))
    return Listing(scanned, source, parts, types, listed, num_files, total_bytes, sample_ratio, lenient, all_local,
                   known_unread, local_archives, trees.any_local)


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
            read = parse_read_schema(plan_text(frame))
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


def plan_text(frame: DataFrame) -> str:
    if is_connect_session(frame.sparkSession):
        return frame._explain_string(mode="simple")
    return frame._sc._jvm.PythonSQLUtils.explainString(frame._jdf.queryExecution(), "simple")

"""A read's stage input: one row per listed (and sampled) file, exactly once, each with its bytes or a way to them.

Spark's file sources skip zero-byte files when they plan splits, and drop files they cannot open
(``ignoreCorruptFiles``) without a trace, so a stage fed by Spark's scan alone would lose them. Where the
listing reaches the driver:

* local files (``file:``) come from the listing alone, with null bytes: the stage's first step reads each
  one in the task (:class:`gpuimages.task.steps.read_local.ReadLocal`) and gives a file it cannot read
  the reason Spark's scan would have dropped it for. Spark's ``binaryFile`` scan never runs on them, so
  no bytes cross the JVM and no probe or join is needed;
* files on other filesystems come from Spark's scan (their bytes), and a left anti join of the listing
  against the scan's file paths (Spark's statuses, no content read) gives the others a row.

Without the listing (a Spark Connect session past its message limit) the scan alone is the input. See
``docs/listing.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuimages.sources.columns import (
    CONTENT_COL,
    ORIGIN_COL,
    REASON_COL,
    origin_sql,
    partition_alias,
    partition_value_sql,
    quoted,
    sql_string,
)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

    from gpuimages.sources.scan import Listing

#: Files not on the local filesystem (``hdfs:``, ``s3a:``, ...) that the scan returns no row for are either
#: of these (a file Spark fails to open there is dropped by Spark unseen).
REMOTE_UNREAD_REASON = "no bytes read: the file is empty (0 bytes) or vanished after listing"
LOCAL_PREFIX = "file:"


def stage_input(found: Listing, keep_unread: bool, slots: int) -> DataFrame:
    """A stage's input: :data:`ORIGIN_COL`, :data:`CONTENT_COL` (null where the task reads the file), the partition
    columns (under their :func:`~gpuimages.sources.columns.partition_alias`) and :data:`REASON_COL` (null, or why
    the file gives no bytes), one row per listed (and sampled) file. ``keep_unread``: files on other filesystems
    that Spark's scan returns no bytes for get a row with the reason (local files always do: the task finds out;
    ``drop_invalid`` drops them there). Nothing here runs before the result does."""
    from pyspark.sql import functions as F

    parts = found.partition_columns
    columns = (quoted(ORIGIN_COL), quoted(CONTENT_COL), *map(partition_alias, range(len(parts))))
    null_reason = f"CAST(NULL AS STRING) AS {quoted(REASON_COL)}"
    if found.listed is None:
        return found.frame.selectExpr(*columns, null_reason)
    local = _listed_rows(found, found.listed.filter(f"origin LIKE '{LOCAL_PREFIX}%'"))
    if found.known_unread:  # listed local files Spark's scan skips by its own rules: the reason, never read
        known = local.sparkSession.createDataFrame(list(found.known_unread), f"{ORIGIN_COL} string, known string")
        local = local.join(F.broadcast(known), ORIGIN_COL, "left").selectExpr(
            *columns, f"known AS {quoted(REASON_COL)}")
    if found.all_local:
        return local
    scanned = found.frame.filter(f"{quoted(ORIGIN_COL)} NOT LIKE '{LOCAL_PREFIX}%'")
    remote = scanned.selectExpr(*columns, null_reason)
    if keep_unread:
        remote = remote.unionByName(_remote_unread(found, slots))
    return local.unionByName(remote)


def _listed_rows(found: Listing, listed: DataFrame, reason: str | None = None) -> DataFrame:
    """Listing rows as stage input: null bytes, partition values parsed from the origin as Spark's
    partition discovery gives them (under their :func:`partition_alias`), ``reason``."""
    types, lenient = found.partition_types, found.lenient
    reason_sql = "NULL" if reason is None else sql_string(reason)
    return listed.selectExpr(
        f"origin AS {quoted(ORIGIN_COL)}", f"CAST(NULL AS BINARY) AS {quoted(CONTENT_COL)}",
        *[f"{partition_value_sql('origin', p, types[p], lenient)} AS {partition_alias(i)}"
          for i, p in enumerate(found.partition_columns)],
        f"CAST({reason_sql} AS STRING) AS {quoted(REASON_COL)}",
    )


def _remote_unread(found: Listing, slots: int) -> DataFrame:
    """Rows for listed files on other filesystems that the scan returns nothing for (no content read)."""
    remote_scanned = (
        found.source.filter(f"_metadata.file_path NOT LIKE '{LOCAL_PREFIX}%'")
        .selectExpr(f"{origin_sql()} AS origin")
        .coalesce(max(1, slots))
    )
    remote = found.listed.filter(f"origin NOT LIKE '{LOCAL_PREFIX}%'")
    unread = remote.join(remote_scanned, "origin", "left_anti")
    return _listed_rows(found, unread, REMOTE_UNREAD_REASON)

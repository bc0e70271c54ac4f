"""Rows for the listed files Spark's scan returns no bytes for (zero-byte, unreadable, vanished, skipped).

Spark's file sources skip zero-byte files when they plan splits, and drop files they cannot open
(``ignoreCorruptFiles``) without a trace; :func:`stage_input` gives each listed file exactly one row of a
stage's input, with the reason where Spark returns no bytes (see ``docs/listing.md``). The probe of
listed local files runs on executors, as a stage on the task runtime
(:class:`gpuimages.task.steps.probe.Probe`, through :func:`gpuimages.stage.run_stage`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gpuimages.sources.columns import (
    CONTENT_COL,
    LISTED_COL,
    ORIGIN_COL,
    REASON_COL,
    origin_column,
    partition_value,
    quoted,
)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

    from gpuimages.sources.scan import Listing

#: Files not on the local filesystem (``hdfs:``, ``s3a:``, ...) are not probed; those the scan returns
#: no row for are either of these (a file Spark fails to open there is dropped by Spark unseen).
REMOTE_UNREAD_REASON = "no bytes read: the file is empty (0 bytes) or vanished after listing"


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
        *[F.lit(None).cast(found.partition_types[p]).alias(p) for p in parts], F.lit(True).alias(LISTED_COL),
    )
    both = scanned.select(ORIGIN_COL, CONTENT_COL, *map(quoted, parts), F.lit(False).alias(LISTED_COL))
    both = both.unionByName(listing_rows)
    joined = both.join(F.broadcast(flagged), ORIGIN_COL, "left")
    listed_flag, reason = F.col(LISTED_COL), F.col(REASON_COL)
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
    from gpuimages.task.spec import StageSpec
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

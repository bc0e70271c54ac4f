"""``gpuimages info``: what a folder of images holds — counts, formats, sizes and failures."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession


def summarize(spark: SparkSession, path: Any, *, recursive: bool = False, device: str = "cpu") -> dict:
    """Decode everything under ``path`` and summarise it (a dict, ready for JSON)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    import gpuimages
    from gpuimages.sources.scan import binary_reader, normalize_paths
    from gpuimages.stage import run_stage, session_conf
    from gpuimages.task.spec import StageSpec
    from gpuimages.task.steps.sniff import Sniff

    images: DataFrame = gpuimages.read_images(spark, path, recursive=recursive, device=device)
    stats = images.select(
        F.col("image.height").alias("h"),
        F.col("image.width").alias("w"),
        F.col("image.nChannels").alias("c"),
        F.col("error"),
    ).cache()
    try:
        total = stats.count()
        valid = stats.filter(F.col("error").isNull())
        sizes = valid.agg(
            F.count("*").alias("n"),
            F.min("w"),
            F.max("w"),
            F.min("h"),
            F.max("h"),
            F.percentile_approx("w", 0.5).alias("median_w"),
            F.percentile_approx("h", 0.5).alias("median_h"),
        ).first()
        channels = {int(r["c"]): int(r["count"]) for r in valid.groupBy("c").count().collect()}
        failed = stats.filter(F.col("error").isNotNull()).groupBy("error").count().collect()
        failures = Counter({r["error"]: int(r["count"]) for r in failed})
    finally:
        stats.unpersist()
    raw = binary_reader(spark, recursive, None).load(normalize_paths(path)).select("content")
    spec = StageSpec("sniff", "cpu", "content", "bytes", (Sniff(),), ("format",), error_col=None, rows_per_batch=256)
    formats_df = run_stage(raw, spec, StructType([StructField("format", StringType(), True)]), session_conf(spark))
    by_format = formats_df.groupBy("format").count().collect()
    formats = {r["format"]: int(r["count"]) for r in by_format}
    unread = total - sum(formats.values())  # zero-byte files: the binary scan skips them
    if unread > 0:
        formats["empty"] = formats.get("empty", 0) + unread
    return {
        "files": total,
        "decoded": int(sizes["n"]),
        "failed": total - int(sizes["n"]),
        "formats": formats,
        "channels": channels,
        "width": {"min": sizes["min(w)"], "median": sizes["median_w"], "max": sizes["max(w)"]},
        "height": {"min": sizes["min(h)"], "median": sizes["median_h"], "max": sizes["max(h)"]},
        "failures": dict(failures.most_common(20)),
    }

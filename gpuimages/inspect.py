"""``gpuimages info``: what a folder of images holds — counts, formats, sizes and failures."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from gpuimages.engines.formats import sniff

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession


def _formats(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    """Executor side: the format each file's header names, without decoding it."""
    from PIL import Image

    for batch in batches:
        names = []
        for blob in batch.column("content").to_pylist():
            info = sniff(blob or b"")
            if info.format == "other":
                import io

                try:
                    info_name = (Image.open(io.BytesIO(blob)).format or "unknown").lower() if blob else "empty"
                except Exception:  # noqa: BLE001 - not an image
                    info_name = "unknown"
                names.append(info_name)
            else:
                names.append(info.format)
        yield pa.RecordBatch.from_arrays([pa.array(names, pa.string())], names=["format"])


def summarize(spark: SparkSession, path: Any, *, recursive: bool = False, device: str = "cpu") -> dict:
    """Decode everything under ``path`` and summarise it (a dict, ready for JSON)."""
    from pyspark.sql import functions as F

    import gpuimages
    from gpuimages.listing import binary_reader, normalize_paths

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
    by_format = raw.mapInArrow(_formats, "format string").groupBy("format").count().collect()
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

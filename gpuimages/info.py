"""``gpuimages info``: what a path holds, for everything the command line reads or writes.

- Images (``kind`` "images"): a file, folder or glob of images, ``.tar``/``.tar.gz``/``.zip`` archives and
  WebDataset shards (what ``gpuimages write`` and ``convert --format webdataset`` write), read as
  ``read_images`` reads them: one row per file or archive member. Each row's format is sniffed from its
  header, its size in bytes counted and its image decoded (pixels are not returned to Spark); labels are the
  WebDataset ``.cls`` members, or with ``recursive`` the parent folders (the layout ``write`` makes).
- Parquet (``kind`` "parquet"), what ``gpuimages convert`` writes: Spark's image structs (``image``) or encoded
  bytes (``encoded`` with ``origin``, ``height``, ``width``), with their ``error`` column.

:func:`summarize` returns a dict ready for JSON; :func:`render` is the table a person reads.
"""

from __future__ import annotations

import glob
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

#: Values of ``kind``.
KINDS = ("auto", "images", "parquet")
#: How many failure reasons and failed rows a summary lists.
TOP_FAILURES, EXAMPLES = 20, 10
#: WebDataset siblings read by ``info`` (as text: a label need not be an integer).
SIBLINGS = {"cls": "string"}


def detect_kind(path: str) -> str:
    """"parquet" for a ``.parquet`` path or a folder holding ``.parquet`` files (a table Spark wrote), else
    "images"."""
    from gpuimages.uris import is_local, local_root_path

    target = local_root_path(path) if is_local(path) else path
    if target.rstrip("/").lower().endswith(".parquet"):
        return "parquet"
    if is_local(path) and not glob.has_magic(target) and os.path.isdir(target):
        names = [n for n in os.listdir(target) if not n.startswith((".", "_"))]
        if names and all(n.endswith(".parquet") or os.path.isdir(os.path.join(target, n)) and "=" in n
                         for n in names) and any(n.endswith(".parquet") for n in names):
            return "parquet"
    return "images"


def summarize(spark: SparkSession, path: Any, *, recursive: bool = False, device: str = "cpu",
              kind: str = "auto") -> dict:
    """Summarise ``path`` (see the module's docstring): a dict ready for JSON."""
    if kind not in KINDS:
        raise ValueError(f"kind: expected one of {', '.join(KINDS)}, got {kind!r}")
    if kind == "auto":
        kind = detect_kind(str(path)) if isinstance(path, (str, os.PathLike)) else "images"
    summary = _parquet(spark, str(path)) if kind == "parquet" else _images(spark, path, recursive, device)
    return {"path": str(path), "kind": kind, **summary}


def _images(spark: SparkSession, path: Any, recursive: bool, device: str) -> dict:
    """One stage over every file and archive member: format, bytes, decoded size, WebDataset label."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

    from gpuimages import scheduling
    from gpuimages.options import make_decode_options
    from gpuimages.sources.archives import archive_plan, folder_origin_sql
    from gpuimages.sources.columns import CONTENT_COL, ORIGIN_COL, REASON_COL, folder_sql
    from gpuimages.sources.inputs import file_inputs
    from gpuimages.sources.scan import normalize_paths
    from gpuimages.stage import run_stage, session_conf
    from gpuimages.task.local_files import EMPTY_REASON
    from gpuimages.task.spec import StageSpec
    from gpuimages.task.steps.decode import Decode
    from gpuimages.task.steps.describe import Describe, Measure

    paths = normalize_paths(path)
    conf = session_conf(spark)
    options = make_decode_options(device=device)
    device = scheduling.resolve_device(options.device, conf)
    reading = archive_plan(True, SIBLINGS, paths)
    inputs = file_inputs(spark, paths, recursive=recursive, path_glob_filter=None, sample_ratio=1.0, seed=0,
                         keep_unread=True, label_from_folder=False, conf=conf, archive_plan=reading,
                         output_columns=("origin", "format", "bytes", "height", "width", "channels", "error"))
    decode = Decode(options)
    feeding = inputs.steps(decode, options.max_batch_bytes)
    siblings = tuple(SIBLINGS)
    spec = StageSpec(
        name="info", device=device, input_col=CONTENT_COL, input_kind="bytes",
        steps=(*feeding, Describe(EMPTY_REASON), decode, Measure()),
        columns=("origin", "format", "bytes", "height", "width", "channels", *siblings, "error"),
        origin_col=ORIGIN_COL, error_col="error", prior_error_col=REASON_COL,
        rows_per_batch=options.batch_size, max_batch_bytes=options.max_batch_bytes,
    )
    schema = StructType(
        [StructField("origin", StringType()), StructField("format", StringType()), StructField("bytes", LongType())]
        + [StructField(c, IntegerType()) for c in ("height", "width", "channels")]
        + [StructField(c, StringType()) for c in siblings]
        + [StructField("error", StringType())]
    )
    rows = run_stage(inputs.frame, spec, schema, conf, total_bytes=inputs.total_bytes, num_files=inputs.num_files,
                     coalesce=not inputs.keeps_partitions)
    member = F.col("origin").contains("#")
    label = F.col("cls") if not recursive else F.expr(f"coalesce(cls, {folder_sql(folder_origin_sql('origin'))})")
    rows = rows.select("*", member.alias("member"), label.alias("label"),
                       F.when(member, F.substring_index("origin", "#", 1)).alias("archive"))
    rows = rows.cache()
    try:
        summary = _common(rows, "format")
        counts = rows.agg(F.sum(F.col("member").cast("long")).alias("members"),
                          F.countDistinct("archive").alias("archives")).first()
        summary["archives"] = int(counts["archives"] or 0)
        summary["members"] = int(counts["members"] or 0)
        summary["labels"] = _counts(rows.filter(F.col("label").isNotNull()), "label")
    finally:
        rows.unpersist()
    return summary


def _parquet(spark: SparkSession, path: str) -> dict:
    """A table ``convert`` wrote: image structs (``layout`` "raw") or encoded bytes (``layout`` "encoded")."""
    from pyspark.sql import functions as F

    table = spark.read.parquet(path)
    names = set(table.columns)
    error = F.col("error") if "error" in names else F.lit(None).cast("string")
    if "image" in names and table.schema["image"].dataType.typeName() == "struct":
        image = F.col("image")
        rows = table.select(
            image["origin"].alias("origin"), F.lit("raw").alias("format"),
            F.when(image["nChannels"] > 0, F.length(image["data"]).cast("long")).alias("bytes"),
            *[F.when(image["nChannels"] > 0, image[f]).alias(n)
              for f, n in (("height", "height"), ("width", "width"), ("nChannels", "channels"))],
            F.coalesce(error, F.when(image["nChannels"] <= 0, F.lit("invalid image struct"))).alias("error"),
        )
        layout = "raw"
    elif "encoded" in names:
        rows = _sniffed(table, error)
        layout = "encoded"
    else:
        raise ValueError(
            f"path: expected a Parquet table with an image struct column 'image' or an 'encoded' bytes column "
            f"(what gpuimages convert writes), got columns {table.columns}"
        )
    rows = rows.cache()
    try:
        return {"layout": layout, **_common(rows, "format")}
    finally:
        rows.unpersist()


def _sniffed(table: DataFrame, error: Any) -> DataFrame:
    """Encoded rows with their format sniffed in a stage (:class:`~gpuimages.task.steps.sniff.Sniff`)."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import StringType, StructField, StructType

    from gpuimages.stage import run_stage, session_conf
    from gpuimages.task.spec import StageSpec
    from gpuimages.task.steps.sniff import Sniff

    names = set(table.columns)

    def col(name: str, kind: str):
        return F.col(name).cast(kind) if name in names else F.lit(None).cast(kind)

    source = table.select(col("origin", "string").alias("origin"), F.col("encoded"),
                          F.length("encoded").cast("long").alias("bytes"), col("height", "int").alias("h"),
                          col("width", "int").alias("w"), error.alias("error"))
    passed = ("origin", "bytes", "h", "w", "error")
    spec = StageSpec("sniff", "cpu", "encoded", "bytes", (Sniff(),), (*passed, "format"), error_col=None,
                     rows_per_batch=256)
    fields = {f.name: f for f in source.schema.fields}
    schema = StructType([*(fields[c] for c in passed), StructField("format", StringType(), True)])
    sniffed = run_stage(source, spec, schema, session_conf(table.sparkSession))
    valid = F.col("error").isNull() & F.col("bytes").isNotNull()
    return sniffed.select(
        "origin", "format", "bytes",
        F.when(valid, F.col("h")).alias("height"), F.when(valid, F.col("w")).alias("width"),
        F.lit(None).cast("int").alias("channels"),
        F.coalesce(F.col("error"), F.when(F.col("bytes").isNull(), F.lit("no encoded bytes"))).alias("error"),
    )


def _counts(frame: DataFrame, column: str, limit: int | None = None) -> dict:
    """``{value: count}``, most common first."""
    from pyspark.sql import functions as F

    grouped = frame.groupBy(column).count().orderBy(F.desc("count"), F.asc(column))
    rows = grouped.limit(limit).collect() if limit else grouped.collect()
    return {(r[column] if isinstance(r[column], str) else str(r[column])): int(r["count"]) for r in rows}


def _common(rows: DataFrame, format_col: str) -> dict:
    """Counts, formats, channels, sizes and failures of rows ``origin, format, bytes, height, width, channels,
    error`` (a decoded row has a null ``error``)."""
    from pyspark.sql import functions as F

    valid = rows.filter(F.col("error").isNull())
    failed = rows.filter(F.col("error").isNotNull())
    stats = rows.agg(
        F.count("*").alias("rows"),
        F.count(F.when(F.col("error").isNull(), 1)).alias("valid"),
        *[f(F.col(c)).alias(f"{name}_{c}") for c in ("width", "height", "bytes")
          for name, f in (("min", F.min), ("max", F.max))],
        *[F.percentile_approx(F.when(F.col("error").isNull(), F.col(c)), 0.5).alias(f"median_{c}")
          for c in ("width", "height")],
        F.percentile_approx("bytes", 0.5).alias("median_bytes"),
        F.sum("bytes").alias("total_bytes"),
    ).first()
    channels = _counts(valid.filter(F.col("channels").isNotNull()), "channels")
    examples = failed.select("origin", "error").orderBy("origin").limit(EXAMPLES).collect()

    def span(c: str) -> dict:
        return {"min": stats[f"min_{c}"], "median": stats[f"median_{c}"], "max": stats[f"max_{c}"]}

    total, ok = int(stats["rows"]), int(stats["valid"])
    return {
        "rows": total,
        "decoded": ok,
        "failed": total - ok,
        "formats": _counts(rows, format_col),
        "channels": channels,
        "width": span("width"),
        "height": span("height"),
        "bytes": {**span("bytes"), "total": int(stats["total_bytes"] or 0)},
        "failures": _counts(failed, "error", TOP_FAILURES),
        "examples": [{"origin": r["origin"], "error": r["error"]} for r in examples],
    }


def _pairs(counts: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in counts.items()) or "-"


def _span(values: dict, unit: str = "") -> str:
    if values.get("min") is None:
        return "-"
    return f"{values['min']}{unit} .. {values['max']}{unit} (median {values['median']}{unit})"


def render(summary: dict) -> str:
    """The table ``gpuimages info`` prints for a person."""
    what = {"images": "images (files and archive members)", "parquet": f"Parquet table ({summary.get('layout')})"}
    lines = [f"{summary['path']}: {what.get(summary['kind'], summary['kind'])}"]
    rows = [
        ("rows", str(summary["rows"])),
        ("decoded" if summary["kind"] == "images" else "valid", str(summary["decoded"])),
        ("invalid", str(summary["failed"])),
        ("formats", _pairs(summary["formats"])),
    ]
    if summary.get("archives"):
        rows.append(("archives", f"{summary['archives']} ({summary['members']} members)"))
    if summary["channels"]:
        rows.append(("channels", _pairs(summary["channels"])))
    rows += [("width", _span(summary["width"], " px")), ("height", _span(summary["height"], " px")),
             ("bytes", _span(summary["bytes"]) + (f", {summary['bytes']['total']} in all"
                                                  if summary["bytes"].get("min") is not None else ""))]
    if summary.get("labels"):
        shown = dict(list(summary["labels"].items())[:TOP_FAILURES])
        more = len(summary["labels"]) - len(shown)
        rows.append(("labels", f"{len(summary['labels'])}: {_pairs(shown)}" + (f", ... {more} more" if more else "")))
    lines += [f"  {name:<9} {value}" for name, value in rows]
    if summary["failures"]:
        lines.append("  failures:")
        lines += [f"  {count:>9} {reason}" for reason, count in summary["failures"].items()]
    if summary["examples"]:
        lines.append("  invalid rows:")
        lines += [f"    {e['origin']}: {e['error']}" for e in summary["examples"]]
    return "\n".join(lines)

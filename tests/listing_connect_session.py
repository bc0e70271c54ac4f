"""Run the listing cases (partition columns, sampling) on a local Spark Connect session, for
``test_listing_connect.py``; a child process, for the reasons given in ``connect_session.py``.

    python tests/listing_connect_session.py --root DIR --out OUT

Each case's collected Arrow table is written as ``OUT/<case>.parquet``; ``OUT/results.json`` has the
session class, row counts and errors.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

#: Sampling options shared with the test, so both sides run the same read.
SAMPLE = {"sample_ratio": 0.5, "seed": 7}


def cases(spark: Any, root: str, hostile: str | None = None, shadow: str | None = None) -> dict:
    import gpuimages
    from gpuimages.transcode import transcode_files

    out = {
        "partitions": lambda: gpuimages.read_images(spark, root, device="cpu", label_from_folder=True),
        "partitions_drop_invalid": lambda: gpuimages.read_images(spark, root, device="cpu", drop_invalid=True),
        "sampled": lambda: gpuimages.read_images(spark, root, device="cpu", **SAMPLE),
        "spark_image": lambda: spark.read.format("image").load(root),
    }
    if hostile:
        out["hostile"] = lambda: gpuimages.read_images(spark, hostile, device="cpu")
        out["hostile_transcoded"] = lambda: transcode_files(spark, hostile, device="cpu", format="png")
    if shadow:
        out["shadow"] = lambda: gpuimages.read_images(spark, shadow, device="cpu")
        out["shadow_spark_image"] = lambda: spark.read.format("image").load(shadow)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--hostile", help="a folder of files Spark's binary read returns nothing for")
    parser.add_argument("--shadow", help="a folder with partition folders named like binaryFile's columns")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import pyarrow.parquet as pq

    from gpuimages.java import ensure_java

    ensure_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote("local[2]").getOrCreate()
    summary: dict[str, Any] = {"session_class": f"{type(spark).__module__}.{type(spark).__name__}", "cases": {}}
    try:
        for name, build in cases(spark, args.root, args.hostile, args.shadow).items():
            entry: dict[str, Any] = {}
            summary["cases"][name] = entry
            try:
                table = build().toArrow()
                pq.write_table(table, out / f"{name}.parquet")
                entry["rows"] = table.num_rows
            except Exception as exc:  # noqa: BLE001 - reported to the test
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = traceback.format_exc()
    finally:
        spark.stop()
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())

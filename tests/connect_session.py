"""Run gpuimages on a local Spark Connect session and save what it returns, for ``test_connect.py``.

Run as a script in its own process::

    python tests/connect_session.py --odd-dir DIR --out OUT [--master local[2]]

A process cannot hold a classic session and a local Connect session side by side:
``SparkSession.builder.remote("local[N]")`` refuses to start when a classic SparkContext is running
(``SESSION_ALREADY_EXIST``), and a Connect session sets ``SPARK_CONNECT_MODE_ENABLED`` for the
whole process, which turns ``pyspark.sql.functions`` and friends into their Connect versions for
any classic code that runs after it. The test process keeps its classic session; this script
starts the Connect one.

Each case's result is collected through the Connect client (``DataFrame.toArrow()``) and written
as ``OUT/<case>.parquet``; ``OUT/results.json`` records the session type, per-case row counts,
timings, skip reasons, errors (with tracebacks) and the ``gpuimages`` log messages.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: Case names, in the order they run.
CASES = ("read_odd", "read_resize", "decode_binary", "transformer", "read_gpu")
#: Options of the ``read_resize`` case (shared with the test so both sides run the same read).
RESIZE = (10, 16)
#: The ImageTransformer chain of the ``transformer`` case: resize to this (height, width).
TRANSFORM_SIZE = (8, 8)


class _Collect(logging.Handler):
    """Keeps every log record's message."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def cases(spark: Any, odd_dir: str) -> dict[str, Callable[[], Any]]:
    """Each case builds a DataFrame on ``spark`` (the same code runs on a classic session)."""
    import gpuimages

    def transformer() -> Any:
        from gpuimages.ml import ImageTransformer

        height, width = TRANSFORM_SIZE
        images = gpuimages.read_images(spark, odd_dir, device="cpu")
        return ImageTransformer().setOutputCol("t").resize(height=height, width=width).transform(images)

    return {
        "read_odd": lambda: gpuimages.read_images(spark, odd_dir, device="cpu"),
        "read_resize": lambda: gpuimages.read_images(spark, odd_dir, device="cpu", resize=RESIZE),
        "decode_binary": lambda: gpuimages.decode_images(spark.read.format("binaryFile").load(odd_dir), device="cpu"),
        "transformer": transformer,
        "read_gpu": lambda: gpuimages.read_images(spark, odd_dir, device="gpu"),
    }


def _skip_reason(name: str) -> str | None:
    """Why a case cannot run in this checkout (a component not written or not installed yet)."""
    import importlib.util

    if name == "transformer":
        try:
            from gpuimages.ml import ImageTransformer  # noqa: F401
        except ImportError as exc:
            return f"gpuimages.ml.ImageTransformer is not importable: {exc}"
    if name == "read_gpu" and importlib.util.find_spec("nvidia.dali") is None:
        return "nvidia.dali is not installed"
    if name == "read_gpu" and importlib.util.find_spec("gpuimages.engines.dali") is None:
        return "gpuimages/engines/dali.py does not exist yet"
    return None


def run(odd_dir: str, out: Path, master: str) -> dict[str, Any]:
    """Start the Connect session, run every case, write the parquet files; return the summary."""
    import pyarrow.parquet as pq

    from gpuimages.java import ensure_java

    ensure_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    collect = _Collect()
    logger = logging.getLogger("gpuimages")
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)

    from pyspark.sql import SparkSession

    started = time.perf_counter()
    spark = SparkSession.builder.remote(master).getOrCreate()
    summary: dict[str, Any] = {
        "session_class": f"{type(spark).__module__}.{type(spark).__name__}",
        "startup_s": round(time.perf_counter() - started, 2),
        "master": spark.conf.get("spark.master", None),
        "cases": {},
    }
    try:
        for name, build in cases(spark, odd_dir).items():
            entry: dict[str, Any] = {}
            summary["cases"][name] = entry
            reason = _skip_reason(name)
            if reason:
                entry["skipped"] = reason
                continue
            first_log = len(collect.messages)
            t0 = time.perf_counter()
            try:
                df = build()
                entry["dataframe_class"] = f"{type(df).__module__}.{type(df).__name__}"
                table = df.toArrow()
                pq.write_table(table, out / f"{name}.parquet")
                entry["rows"] = table.num_rows
            except Exception as exc:  # noqa: BLE001 - reported to the test, which fails on it
                entry["error"] = f"{type(exc).__name__}: {exc}"
                entry["traceback"] = traceback.format_exc()
            entry["seconds"] = round(time.perf_counter() - t0, 2)
            entry["logs"] = collect.messages[first_log:]
    finally:
        spark.stop()
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--odd-dir", required=True, help="folder of images to read")
    parser.add_argument("--out", required=True, help="folder for <case>.parquet and results.json")
    parser.add_argument("--master", default="local[2]", help="the local master the Connect server runs")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary = run(args.odd_dir, out, args.master)
    (out / "results.json").write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    # The repository root first, so this checkout's gpuimages is the one imported (and inherited
    # through PYTHONPATH by the Connect server's Python workers).
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    sys.exit(main())

"""A local SparkSession for the CLI, the demo and the benchmarks."""

from __future__ import annotations

import os
import sys

from gpuimages.java import ensure_java


def local_session(master: str = "local[*]", app_name: str = "gpuimages", **conf: str):
    """Start (or get) a local SparkSession with this interpreter on both driver and workers."""
    ensure_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.driver.memory", os.environ.get("GPUIMAGES_DRIVER_MEMORY", "4g"))
    )
    for key, value in conf.items():
        builder = builder.config(key, value)
    return builder.getOrCreate()

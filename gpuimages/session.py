"""A local SparkSession for the CLI, the demo and the benchmarks."""

from __future__ import annotations

import os
import sys

from gpuimages.java import ensure_java


def session_settings(master: str = "local[*]", app_name: str = "gpuimages", **conf: str) -> dict[str, str]:
    """The Spark settings :func:`local_session` starts a session with (``conf`` last, so it wins)."""
    return {
        "spark.master": master,
        "spark.app.name": app_name,
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",  # the CLI draws its own bar (gpuimages.progress)
        "spark.sql.shuffle.partitions": "4",
        "spark.driver.memory": os.environ.get("GPUIMAGES_DRIVER_MEMORY", "4g"),
        **conf,
    }


def local_session(master: str = "local[*]", app_name: str = "gpuimages", **conf: str):
    """Start (or get) a local SparkSession with this interpreter on both driver and workers."""
    ensure_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    builder = SparkSession.builder
    for key, value in session_settings(master, app_name, **conf).items():
        builder = builder.config(key, value)
    return builder.getOrCreate()

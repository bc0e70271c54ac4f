"""gpuimages on Spark Connect gives the same rows as on a classic session.

The Connect side runs through a client in this process on the run's one local Connect server (the
``connect_server`` fixture; see ``connect_server.py`` for why the server is a child process): each case
builds its DataFrame on the Connect session and collects it as Arrow, and the same case runs on the
classic session for the comparison.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from connect_server import connect_session
from optional import has_module

pytestmark = pytest.mark.connect

#: Options of the ``read_resize`` case.
RESIZE = (10, 16)
#: The ImageTransformer chain of the ``transformer`` case: resize to this (height, width).
TRANSFORM_SIZE = (8, 8)
#: Largest per-channel difference allowed between DALI's and Pillow's JPEG decodes.
JPEG_TOLERANCE = 2


class _Collect(logging.Handler):
    """Keeps every log record's message."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(f"{record.name}: {record.getMessage()}")


def cases(spark: Any, odd_dir: str) -> dict[str, Callable[[], Any]]:
    """Each case builds a DataFrame on ``spark``: the same code runs on the Connect and the classic session."""
    import gpuimages
    from gpuimages.ml import ImageTransformer

    def transformer() -> Any:
        height, width = TRANSFORM_SIZE
        images = gpuimages.read_images(spark, odd_dir, device="cpu")
        return ImageTransformer().setOutputCol("t").resize(height=height, width=width).transform(images)

    built = {
        "read_odd": lambda: gpuimages.read_images(spark, odd_dir, device="cpu"),
        "read_resize": lambda: gpuimages.read_images(spark, odd_dir, device="cpu", resize=RESIZE),
        "decode_binary": lambda: gpuimages.decode_images(spark.read.format("binaryFile").load(odd_dir), device="cpu"),
        "transformer": transformer,
    }
    if has_module("nvidia.dali"):
        built["read_gpu"] = lambda: gpuimages.read_images(spark, odd_dir, device="gpu")
    return built


@pytest.fixture(scope="module")
def connect_run(connect_server, odd_dir) -> dict[str, Any]:
    """Every case collected through the Connect client, with the classes seen and each case's gpuimages logs."""
    collect = _Collect()
    logger = logging.getLogger("gpuimages")
    old_level = logger.level
    logger.addHandler(collect)
    logger.setLevel(logging.INFO)
    try:
        with connect_session(connect_server) as spark:
            run: dict[str, Any] = {"session_class": f"{type(spark).__module__}.{type(spark).__name__}",
                                   "master": spark.conf.get("spark.master", None), "cases": {}}
            for name, build in cases(spark, str(odd_dir)).items():
                first_log = len(collect.messages)
                df = build()
                table = df.toArrow()
                run["cases"][name] = {"dataframe_class": f"{type(df).__module__}.{type(df).__name__}",
                                      "table": table, "logs": collect.messages[first_log:]}
    finally:
        logger.removeHandler(collect)
        logger.setLevel(old_level)
    return run


@pytest.fixture(scope="module")
def classic_cases(spark, odd_dir) -> dict:
    return cases(spark, str(odd_dir))


def connect_table(connect_run, name: str) -> pa.Table:
    if name not in connect_run["cases"]:
        pytest.skip("nvidia.dali is not installed")
    return connect_run["cases"][name]["table"]


def sorted_rows(table: pa.Table, key: str) -> list[dict]:
    rows = table.to_pylist()
    if key == "path":
        return sorted(rows, key=lambda r: r["path"])
    return sorted(rows, key=lambda r: r["image"]["origin"])


def assert_same_table(connect: pa.Table, classic: pa.Table, key: str) -> None:
    assert connect.schema.names == classic.schema.names
    assert [f.type for f in connect.schema] == [f.type for f in classic.schema]
    assert connect.num_rows == classic.num_rows
    assert sorted_rows(connect, key) == sorted_rows(classic, key)


def test_classic_and_local_connect_cannot_share_a_process(spark):
    """Why the Connect server is a child process (the refusal changes nothing in this process)."""
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    if "SPARK_LOCAL_REMOTE" in os.environ:
        pytest.skip("this process already started a local Connect server")
    before = dict(os.environ)
    with pytest.raises(PySparkRuntimeError, match="SESSION_ALREADY_EXIST"):
        SparkSession.builder.remote("local[2]").getOrCreate()
    assert dict(os.environ) == before
    assert spark.range(3).count() == 3  # the classic session is untouched


def test_cases_ran_on_spark_connect(connect_run, spark):
    assert connect_run["session_class"] == "pyspark.sql.connect.session.SparkSession"
    assert connect_run["master"] == "local[2]"
    assert set(connect_run["cases"]) >= {"read_odd", "read_resize", "decode_binary", "transformer"}
    for name, entry in connect_run["cases"].items():
        assert entry["dataframe_class"] == "pyspark.sql.connect.dataframe.DataFrame", name
    assert "SPARK_CONNECT_MODE_ENABLED" not in os.environ  # Connect mode ended with the block
    assert not type(spark.range(1)).__module__.startswith("pyspark.sql.connect")


def test_read_images_same_rows_as_classic(connect_run, classic_cases, odd_dir):
    table = connect_table(connect_run, "read_odd")
    assert table.num_rows == len(list(odd_dir.iterdir()))  # every file, the zero-byte one included
    assert_same_table(table, classic_cases["read_odd"]().toArrow(), "origin")


def test_read_images_with_resize_same_rows_as_classic(connect_run, classic_cases):
    table = connect_table(connect_run, "read_resize")
    heights = {r["image"]["height"] for r in table.to_pylist()}
    assert heights == {RESIZE[0], -1}
    assert_same_table(table, classic_cases["read_resize"]().toArrow(), "origin")


def test_decode_images_on_binary_file_same_rows_as_classic(connect_run, classic_cases):
    table = connect_table(connect_run, "decode_binary")
    assert table.schema.names == ["path", "modificationTime", "length", "image", "error"]
    assert_same_table(table, classic_cases["decode_binary"]().toArrow(), "path")


def test_image_transformer_same_rows_as_classic(connect_run, classic_cases):
    table = connect_table(connect_run, "transformer")
    sizes = {(r["t"]["height"], r["t"]["width"]) for r in table.to_pylist() if r["t"] and r["t"]["nChannels"] > 0}
    assert sizes == {TRANSFORM_SIZE}
    assert_same_table(table, classic_cases["transformer"]().toArrow(), "origin")


def test_gpu_read_skips_the_resource_profile_in_local_mode(connect_run):
    """On Connect the driver still reads ``spark.master`` and leaves the profile out in local mode."""
    connect_table(connect_run, "read_gpu")
    entry = connect_run["cases"]["read_gpu"]
    profile_logs = [m for m in entry["logs"] if "resource profile" in m]
    assert profile_logs, entry["logs"]
    assert all("no resource profile" in m and "local mode" in m for m in profile_logs), profile_logs


def test_gpu_read_matches_cpu_read(connect_run):
    """device="gpu" (DALI; its CPU operators without a GPU) gives the CPU read's rows on Connect."""
    gpu = {r["image"]["origin"]: r for r in connect_table(connect_run, "read_gpu").to_pylist()}
    cpu = {r["image"]["origin"]: r for r in connect_table(connect_run, "read_odd").to_pylist()}
    assert sorted(gpu) == sorted(cpu)
    for origin, row in gpu.items():
        a, b = row["image"], cpu[origin]["image"]
        assert [a[k] for k in ("height", "width", "nChannels", "mode")] == [
            b[k] for k in ("height", "width", "nChannels", "mode")
        ], origin
        assert (row["error"] is None) == (cpu[origin]["error"] is None), origin
        x = np.frombuffer(a["data"], np.uint8).astype(np.int16)
        y = np.frombuffer(b["data"], np.uint8).astype(np.int16)
        assert x.shape == y.shape and (x.size == 0 or np.abs(x - y).max() <= JPEG_TOLERANCE), origin

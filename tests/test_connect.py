"""gpuimages on Spark Connect gives the same rows as on a classic session.

The Connect side runs in a child process (``tests/connect_session.py``): a process that holds a
classic SparkContext cannot start a local Connect session (checked below), and a Connect session
switches the whole process into Connect mode. The child starts ``SparkSession.builder.remote
("local[2]")``, runs each case, and saves the collected Arrow tables as parquet; this process runs
the same cases on its classic session and compares.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import connect_session
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytestmark = pytest.mark.connect

REPO = Path(__file__).resolve().parent.parent
HELPER = Path(connect_session.__file__).resolve()
#: The child's whole run (Connect server start ≈6–11 s plus five small reads) must fit in this.
TIMEOUT_S = 300
#: Largest per-channel difference allowed between DALI's and Pillow's JPEG decodes.
JPEG_TOLERANCE = 2


def _connect_available() -> str | None:
    try:
        from pyspark.sql.connect.utils import check_dependencies

        check_dependencies()
    except ImportError as exc:
        return f"Spark Connect client dependencies are missing: {exc}"
    return None


@pytest.fixture(scope="module")
def connect_run(odd_dir, tmp_path_factory) -> tuple[dict, Path]:
    """Run every case on a local Connect session in a child process; (summary, output folder)."""
    reason = _connect_available()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("connect")
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PYSPARK_PYTHON"] = sys.executable
    proc = subprocess.run(
        [sys.executable, str(HELPER), "--odd-dir", str(odd_dir), "--out", str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    results = out / "results.json"
    assert proc.returncode == 0 and results.exists(), f"connect helper failed:\n{proc.stderr[-6000:]}"
    return json.loads(results.read_text()), out


@pytest.fixture(scope="module")
def classic_cases(spark, odd_dir) -> dict:
    return connect_session.cases(spark, str(odd_dir))


def connect_table(connect_run, name: str) -> pa.Table:
    summary, out = connect_run
    entry = summary["cases"][name]
    if "skipped" in entry:
        pytest.skip(entry["skipped"])
    assert "error" not in entry, entry.get("traceback")
    table = pq.read_table(out / f"{name}.parquet")
    assert table.num_rows == entry["rows"]
    return table


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
    """Why the Connect side runs in a child process (the refusal changes nothing in this process)."""
    from pyspark.errors import PySparkRuntimeError
    from pyspark.sql import SparkSession

    if "SPARK_LOCAL_REMOTE" in os.environ:
        pytest.skip("this process already started a local Connect server")
    before = dict(os.environ)
    with pytest.raises(PySparkRuntimeError, match="SESSION_ALREADY_EXIST"):
        SparkSession.builder.remote("local[2]").getOrCreate()
    assert dict(os.environ) == before
    assert spark.range(3).count() == 3  # the classic session is untouched


def test_helper_ran_on_spark_connect(connect_run):
    summary, _ = connect_run
    assert summary["session_class"] == "pyspark.sql.connect.session.SparkSession"
    assert summary["master"] == "local[2]"
    for name, entry in summary["cases"].items():
        if "skipped" not in entry:
            assert "error" not in entry, f"{name}: {entry.get('traceback')}"
            assert entry["dataframe_class"] == "pyspark.sql.connect.dataframe.DataFrame", name


def test_read_images_same_rows_as_classic(connect_run, classic_cases, odd_dir):
    table = connect_table(connect_run, "read_odd")
    assert table.num_rows == len(list(odd_dir.iterdir()))  # every file, the zero-byte one included
    assert_same_table(table, classic_cases["read_odd"]().toArrow(), "origin")


def test_read_images_with_resize_same_rows_as_classic(connect_run, classic_cases):
    table = connect_table(connect_run, "read_resize")
    heights = {r["image"]["height"] for r in table.to_pylist()}
    assert heights == {connect_session.RESIZE[0], -1}
    assert_same_table(table, classic_cases["read_resize"]().toArrow(), "origin")


def test_decode_images_on_binary_file_same_rows_as_classic(connect_run, classic_cases):
    table = connect_table(connect_run, "decode_binary")
    assert table.schema.names == ["path", "modificationTime", "length", "image", "error"]
    assert_same_table(table, classic_cases["decode_binary"]().toArrow(), "path")


def test_image_transformer_same_rows_as_classic(connect_run, classic_cases):
    table = connect_table(connect_run, "transformer")  # skips when gpuimages.ml is not there yet
    sizes = {(r["t"]["height"], r["t"]["width"]) for r in table.to_pylist() if r["t"] and r["t"]["nChannels"] > 0}
    assert sizes == {connect_session.TRANSFORM_SIZE}
    assert_same_table(table, classic_cases["transformer"]().toArrow(), "origin")


def test_gpu_read_skips_the_resource_profile_in_local_mode(connect_run):
    """On Connect the driver still reads ``spark.master`` and leaves the profile out in local mode."""
    summary, _ = connect_run
    entry = summary["cases"]["read_gpu"]
    if "skipped" in entry:
        pytest.skip(entry["skipped"])
    assert "error" not in entry, entry.get("traceback")
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

"""The command line: convert writes Spark's image schema to Parquet, info summarises a folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
from images import encode, rgb_array


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "a.png").write_bytes(encode(rgb_array(6, 8), "PNG"))
    (d / "b.jpg").write_bytes(encode(rgb_array(10, 12), "JPEG"))
    (d / "bad.jpg").write_bytes(b"nope")
    (d / "empty.png").write_bytes(b"")
    return d


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    return subprocess.run(
        [sys.executable, "-m", "gpuimages", *args], env=env, capture_output=True, text=True, timeout=300
    )


def test_convert_writes_image_schema_parquet(spark, folder, tmp_path):
    dest = tmp_path / "out.parquet"
    proc = _run("convert", str(folder), str(dest), "--master", "local[1]", "--device", "cpu", "--resize", "4", "5")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 4 images (2 invalid)" in proc.stdout
    rows = {r.image.origin.rsplit("/", 1)[-1]: r for r in spark.read.parquet(str(dest)).collect()}
    assert set(rows) == {"a.png", "b.jpg", "bad.jpg", "empty.png"}
    a = rows["a.png"].image
    assert (a.height, a.width, a.nChannels, a.mode, len(a.data)) == (4, 5, 3, 16, 60)
    assert rows["bad.jpg"].image.height == -1 and "not a recognised image format" in rows["bad.jpg"].error
    assert np.frombuffer(a.data, np.uint8).max() > 0


def test_info_counts_formats_and_failures(folder):
    proc = _run("info", str(folder), "--master", "local[1]")
    assert proc.returncode == 0, proc.stderr[-3000:]
    info = json.loads(proc.stdout)
    assert (info["files"], info["decoded"], info["failed"]) == (4, 2, 2)
    assert info["formats"] == {"png": 1, "jpeg": 1, "unknown": 1, "empty": 1}
    assert info["width"]["max"] == 12 and info["height"]["min"] == 6
    assert sum(info["failures"].values()) == 2


def test_bad_option_is_a_usage_error():
    proc = _run("convert", "x", "y", "--device", "tpu")
    assert proc.returncode == 2 and "invalid choice: 'tpu'" in proc.stderr


def test_convert_jpeg_writes_encoded_bytes_with_metadata(spark, folder, tmp_path):
    import io

    from PIL import Image

    dest = tmp_path / "jpeg.parquet"
    proc = _run("convert", str(folder), str(dest), "--master", "local[1]", "--device", "cpu", "--resize", "5",
                "--format", "jpeg", "--quality", "80")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 4 JPEG images (2 invalid)" in proc.stdout
    table = spark.read.parquet(str(dest))
    assert table.columns == ["origin", "height", "width", "encoded", "error"]
    rows = {r.origin.rsplit("/", 1)[-1]: r for r in table.collect()}
    assert set(rows) == {"a.png", "b.jpg", "bad.jpg", "empty.png"}
    assert (rows["a.png"].height, rows["a.png"].width) == (5, 7)  # shorter side 5, aspect 6x8 kept
    assert Image.open(io.BytesIO(rows["b.jpg"].encoded)).size == (6, 5)
    assert rows["empty.png"].encoded is None and "no bytes read" in rows["empty.png"].error
    assert rows["bad.jpg"].encoded is None and "not a recognised image format" in rows["bad.jpg"].error


def test_write_command_writes_image_folder_layout(tmp_path):
    src = tmp_path / "src"
    for label, seed in (("cats", 1), ("dogs", 2)):
        (src / label).mkdir(parents=True)
        (src / label / f"{label}.jpg").write_bytes(encode(rgb_array(12, 16, seed=seed), "JPEG"))
    (src / "dogs" / "bad.jpg").write_bytes(b"nope")
    dest = tmp_path / "out"
    proc = _run("write", str(src), str(dest), "--master", "local[1]", "--device", "cpu", "--recursive",
                "--label-from-folder", "--format", "png", "--resize", "6", "8")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 2 files (1 failed, 0 skipped)" in proc.stdout
    assert "bad.jpg: not a recognised image format" in proc.stderr
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "cats/cats.png", "dogs/dogs.png"
    ]
    again = _run("write", str(src), str(dest), "--master", "local[1]", "--device", "cpu", "--recursive")
    assert again.returncode != 0 and "expected a missing or empty folder" in again.stderr


def test_resize_takes_one_or_two_sizes():
    proc = _run("convert", "x", "y", "--resize", "1", "2", "3")
    assert proc.returncode != 0 and "--resize: expected one size (shorter side) or H W" in proc.stderr

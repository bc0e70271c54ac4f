"""The command line: convert writes Spark's image schema to Parquet, write writes files, info summarises a
folder; option errors are one-line usage errors (exit 2) before Spark starts, failed rows exit 1."""

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
    assert proc.returncode == 1, proc.stderr[-3000:]  # rows failed
    assert "wrote 4 images (2 invalid)" in proc.stdout
    assert "bad.jpg: not a recognised image format" in proc.stderr and "empty.png: no bytes read" in proc.stderr
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
    assert len(proc.stderr.strip().splitlines()) == 1


def _usage_cases(folder, tmp_path):
    a_file = tmp_path / "a_file.jpg"
    a_file.write_bytes(b"x")
    full = tmp_path / "full"
    full.mkdir(exist_ok=True)
    (full / "x.jpg").write_bytes(b"x")
    src, out = str(folder), str(tmp_path / "out")
    return [
        (["write", src, out, "--quality", "0"], "--quality: expected an integer in 1..100, got 0"),
        (["write", src, out, "--quality", "101"], "--quality: expected an integer in 1..100, got 101"),
        (["write", src, out, "--quality", "high"], "argument --quality: invalid int value: 'high'"),
        (["convert", src, out, "--format", "jpeg", "--quality", "-5"], "--quality: expected an integer in 1..100"),
        (["write", src, out, "--resize", "0"], "--resize: expected a positive integer, got 0"),
        (["write", src, out, "--resize", "8", "-1"], "--resize[1] (width): expected a positive integer, got -1"),
        (["convert", src, out, "--resize", "1", "2", "3"], "--resize: expected one size (shorter side) or H W"),
        (["write", src, out, "--num-partitions", "0"], "--num-partitions: expected a positive integer, got 0"),
        (["write", src, out, "--show-failures", "-1"], "--show-failures: expected a count of 0 or more"),
        (["write", src, out, "--mode", "append"], "argument --mode: invalid choice: 'append'"),
        (["write", str(tmp_path / "missing"), out], "src: expected an existing file, folder or glob, got"),
        (["convert", str(tmp_path / "nothing*.jpg"), out], "(glob matching nothing)"),
        (["info", str(tmp_path / "missing")], "path: expected an existing file, folder or glob"),
        (["write", src, str(a_file), "--mode", "overwrite"], "dest: expected a folder (missing or existing), got"),
        (["write", src, str(a_file / "sub"), "--mode", "skip"], "dest: expected a folder that can be created"),
        (["write", src, str(full)], "dest: expected a missing or empty folder with mode='error'"),
        (["convert", src, str(a_file)], "dest: expected a path that does not exist (or --overwrite)"),
        (["write", src], "the following arguments are required: dest"),
    ]


def test_every_option_error_is_one_line_before_spark_starts(folder, tmp_path):
    for args, message in _usage_cases(folder, tmp_path):
        proc = _run(*args, "--master", "local[1]")
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        assert len(lines) == 1 and message in lines[0] and f"gpuimages {args[0]}: error: " in lines[0], (args, lines)
        assert "Traceback" not in proc.stderr and not proc.stdout
    assert not (tmp_path / "out").exists()  # nothing was written, no Spark warehouse either
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["x.jpg"]


def test_help_documents_the_exit_status():
    for command in ("write", "convert"):
        proc = _run(command, "--help")
        assert proc.returncode == 0
        text = " ".join(proc.stdout.split())
        assert "exit status: 0 when every" in text and ", 1 when" in text and "2 for a usage error" in text


def test_convert_jpeg_writes_encoded_bytes_with_metadata(spark, folder, tmp_path):
    import io

    from PIL import Image

    dest = tmp_path / "jpeg.parquet"
    proc = _run("convert", str(folder), str(dest), "--master", "local[1]", "--device", "cpu", "--resize", "5",
                "--format", "jpeg", "--quality", "80")
    assert proc.returncode == 1, proc.stderr[-3000:]  # two images are invalid
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
    assert proc.returncode == 1, proc.stderr[-3000:]  # a row failed
    assert "wrote 2 files (1 failed, 0 skipped)" in proc.stdout
    assert "failed: " in proc.stderr and "bad.jpg: not a recognised image format" in proc.stderr
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "cats/cats.png", "dogs/dogs.png"
    ]
    again = _run("write", str(src), str(dest), "--master", "local[1]", "--device", "cpu", "--recursive")
    assert again.returncode == 2 and "expected a missing or empty folder" in again.stderr
    clean = _run("write", str(src / "cats"), str(dest), "--master", "local[1]", "--device", "cpu", "--mode", "skip",
                 "--format", "png", "--resize", "6", "8", "--label-from-folder")
    assert clean.returncode == 0, clean.stderr[-3000:]  # nothing failed: the existing file is skipped
    assert "wrote 0 files (0 failed, 1 skipped)" in clean.stdout


def test_resize_takes_one_or_two_sizes(folder, tmp_path):
    proc = _run("convert", str(folder), str(tmp_path / "y"), "--resize", "1", "2", "3")
    assert proc.returncode == 2 and "--resize: expected one size (shorter side) or H W" in proc.stderr


def test_convert_drop_invalid_exits_zero(folder, tmp_path):
    proc = _run("convert", str(folder), str(tmp_path / "ok.parquet"), "--master", "local[1]", "--device", "cpu",
                "--format", "png", "--drop-invalid")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 2 PNG images (0 invalid)" in proc.stdout and "failed:" not in proc.stderr

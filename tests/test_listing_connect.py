"""Partition columns and sampling on Spark Connect give the classic session's rows (the run's Connect server)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from connect_server import connect_session
from images import encode, rgb_array, write_files

from gpuimages.task.local_files import COLON_REASON, EMPTY_REASON

pytestmark = pytest.mark.connect

#: Sampling options shared by both sides, so both run the same read.
SAMPLE = {"sample_ratio": 0.5, "seed": 7}


def cases(spark: Any, root: str, hostile: str | None = None, shadow: str | None = None) -> dict:
    """Each case builds a DataFrame on ``spark``: the same code runs on the Connect and the classic session."""
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


@pytest.fixture(scope="module")
def root(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("connect-parts") / "images"
    files = {}
    for i, (cls, year) in enumerate([("kittens", 2017), ("kittens", 2018), ("dogs", 2018)]):
        for j in range(4):
            files[f"cls={cls}/year={year}/f{j}.png"] = encode(rgb_array(5, 7, seed=i * 10 + j), "PNG")
        files[f"cls={cls}/year={year}/empty.png"] = b""
    files["cls=dogs/year=2018/broken.png"] = b"not a png"
    write_files(folder, files)
    return folder


@pytest.fixture(scope="module")
def hostile(tmp_path_factory) -> Path:
    """Files Spark lists but its binary read returns nothing for."""
    folder = tmp_path_factory.mktemp("connect-hostile") / "hostile"
    write_files(folder, {"ok.png": encode(rgb_array(5, 7), "PNG"), "a:b.png": encode(rgb_array(4, 4), "PNG"),
                         "empty.png": b"", "new\nline.png": encode(rgb_array(3, 3), "PNG")})
    os.mkfifo(folder / "pipe.png")
    return folder


@pytest.fixture(scope="module")
def shadow(tmp_path_factory) -> Path:
    """Partition folders named like binaryFile's content column."""
    folder = tmp_path_factory.mktemp("connect-shadow") / "images"
    write_files(folder, {"content=a/x.png": encode(rgb_array(5, 7, seed=1), "PNG"),
                         "content=b/y.jpg": encode(rgb_array(6, 8, seed=2), "JPEG"), "content=b/empty.png": b""})
    return folder


@pytest.fixture(scope="module")
def connect_run(connect_server, root, hostile, shadow) -> dict:
    """Every case collected as Arrow through the Connect client."""
    with connect_session(connect_server) as spark:
        assert type(spark).__module__ == "pyspark.sql.connect.session"
        return {name: build().toArrow() for name, build in cases(spark, str(root), str(hostile), str(shadow)).items()}


def _table(connect_run, name):
    return connect_run[name]


def _rows(table) -> list[dict]:
    return sorted(table.to_pylist(), key=lambda r: r["image"]["origin"])


@pytest.mark.parametrize("name", ["partitions", "partitions_drop_invalid", "sampled"])
def test_same_rows_and_columns_as_classic(spark, root, connect_run, name):
    connect = _table(connect_run, name)
    classic = cases(spark, str(root))[name]().toArrow()
    assert connect.schema.names == classic.schema.names
    assert [f.type for f in connect.schema] == [f.type for f in classic.schema]
    assert _rows(connect) == _rows(classic)


def test_partition_columns_match_spark_image_source_on_connect(connect_run):
    ours = _table(connect_run, "partitions")
    theirs = _table(connect_run, "spark_image")
    assert ours.schema.names == ["image", "error", "cls", "year", "label"]
    assert theirs.schema.names == ["image", "cls", "year"]
    assert ours.schema.field("year").type == theirs.schema.field("year").type
    assert ours.num_rows == theirs.num_rows + 3  # plus the three zero-byte files
    ref = {r["image"]["origin"]: (r["cls"], r["year"]) for r in theirs.to_pylist()}
    mine = {r["image"]["origin"]: (r["cls"], r["year"]) for r in ours.to_pylist()}
    assert {k: v for k, v in mine.items() if k in ref} == ref
    empties = [r for r in ours.to_pylist() if r["image"]["origin"].endswith("empty.png")]
    assert sorted((r["cls"], r["year"]) for r in empties) == [("dogs", 2018), ("kittens", 2017), ("kittens", 2018)]


def test_sample_is_the_same_on_connect_and_classic(spark, root, connect_run):
    import gpuimages

    connect = {r["image"]["origin"] for r in _table(connect_run, "sampled").to_pylist()}
    classic = {r.image.origin for r in gpuimages.read_images(spark, str(root), device="cpu", **SAMPLE).collect()}
    assert connect == classic and 0 < len(connect) < 16


@pytest.mark.parametrize("name", ["hostile", "hostile_transcoded", "shadow"])
def test_hostile_folders_give_the_classic_rows_on_connect(spark, hostile, shadow, connect_run, name):

    connect = _table(connect_run, name)
    classic = cases(spark, "unused", str(hostile), str(shadow))[name]().toArrow()
    assert connect.schema.names == classic.schema.names
    assert [f.type for f in connect.schema] == [f.type for f in classic.schema]
    key = "origin" if name == "hostile_transcoded" else "image"
    rows = sorted(connect.to_pylist(), key=lambda r: r[key] if key == "origin" else r[key]["origin"])
    assert rows == sorted(classic.to_pylist(), key=lambda r: r[key] if key == "origin" else r[key]["origin"])
    if name.startswith("hostile"):
        reasons = {r[key] if key == "origin" else r[key]["origin"]: r["error"] for r in rows}
        assert len(reasons) == 5
        assert sorted(v for v in reasons.values() if v) == sorted(
            [COLON_REASON, EMPTY_REASON, "no bytes read: not a regular file (a named pipe)"]
        )
    else:
        assert connect.schema.names == ["image", "error", "content"]
        theirs = _table(connect_run, "shadow_spark_image")
        ref = {r["image"]["origin"]: (r["content"], r["image"]["data"]) for r in theirs.to_pylist()}
        mine = {r["image"]["origin"]: (r["content"], r["image"]["data"]) for r in rows if r["error"] is None}
        assert mine == ref and len(ref) == 2

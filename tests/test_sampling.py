"""Sampling: a seeded per-file choice Spark evaluates on its listing, so unsampled files are never opened."""

from __future__ import annotations

import pytest
from images import encode, rgb_array, write_files

import gpuimages
from gpuimages.reader import UNREAD_REASON
from gpuimages.sources.columns import sample_sql

MAX_LENGTH = "spark.sql.sources.binaryFile.maxLength"


def _chosen(spark, origins: list[str], ratio: float, seed: int) -> set[str]:
    df = spark.createDataFrame([(o,) for o in origins], "origin string")
    return {r.origin for r in df.filter(sample_sql("origin", ratio, seed)).collect()}


def test_sample_sql_is_seeded_stable_and_close_to_ratio(spark):
    origins = [f"file:///data/c{i % 7}/img{i}.jpg" for i in range(4000)]
    a = _chosen(spark, origins, 0.25, seed=1)
    assert a == _chosen(spark, origins, 0.25, seed=1)
    assert a != _chosen(spark, origins, 0.25, seed=2)
    assert 850 < len(a) < 1150
    assert _chosen(spark, origins, 1.0, seed=1) == set(origins)
    assert a <= _chosen(spark, origins, 0.5, seed=1)  # a larger ratio keeps every file a smaller one kept


@pytest.fixture()
def mixed_dir(tmp_path):
    files = {f"img{i:02d}.png": encode(rgb_array(6, 8, seed=i), "PNG") for i in range(30)}
    files.update({f"empty{i:02d}.png": b"" for i in range(30)})
    write_files(tmp_path, files)
    return tmp_path


def test_sampled_rows_are_exactly_the_chosen_files_zero_byte_ones_included(spark, mixed_dir):
    origins = spark.read.format("binaryFile").load(str(mixed_dir)).inputFiles()
    assert len(origins) == 60
    chosen = _chosen(spark, origins, 0.5, seed=11)
    rows = gpuimages.read_images(spark, str(mixed_dir), sample_ratio=0.5, seed=11, device="cpu").collect()
    assert sorted(r.image.origin for r in rows) == sorted(chosen)
    empties = {r.image.origin for r in rows if "empty" in r.image.origin}
    assert 0 < len(empties) < 30  # sampled zero-byte files get rows; unsampled ones do not
    assert all(r.error == UNREAD_REASON for r in rows if r.image.origin in empties)
    assert all(r.error is None and r.image.height == 6 for r in rows if r.image.origin not in empties)


def test_a_file_over_max_length_is_a_row_with_the_reason_and_unsampled_it_is_never_opened(spark, tmp_path):
    from gpuimages.task.steps.read_local import TOO_LARGE_REASON

    small = encode(rgb_array(4, 4), "PNG")
    files = {f"small{i}.png": small for i in range(10)}
    files["huge.png"] = encode(rgb_array(64, 64, seed=3), "PNG")
    write_files(tmp_path, files)
    huge = next(o for o in spark.read.format("binaryFile").load(str(tmp_path)).inputFiles() if "huge" in o)
    seed = next(s for s in range(100) if huge not in _chosen(spark, [huge], 0.5, s))
    limit = len(small) + 10
    spark.conf.set(MAX_LENGTH, str(limit))
    try:
        with pytest.raises(Exception, match="maxLength|exceeds"):  # Spark's own scan fails the whole job
            spark.read.format("binaryFile").load(str(tmp_path)).collect()
        every = gpuimages.read_images(spark, str(tmp_path), device="cpu").collect()
        rows = gpuimages.read_images(spark, str(tmp_path), sample_ratio=0.5, seed=seed, device="cpu").collect()
    finally:
        spark.conf.unset(MAX_LENGTH)
    reasons = {r.image.origin: r.error for r in every}
    assert len(reasons) == 11 and reasons[huge] == TOO_LARGE_REASON.format(size=len(files["huge.png"]), limit=limit)
    assert all(e is None for o, e in reasons.items() if o != huge)
    assert rows and all("huge" not in r.image.origin and r.error is None for r in rows)


def test_a_sample_that_keeps_nothing_is_an_empty_frame_with_the_columns(spark, mixed_dir):
    origins = spark.read.format("binaryFile").load(str(mixed_dir)).inputFiles()
    seed = next(s for s in range(1000) if not _chosen(spark, origins, 0.01, s))
    df = gpuimages.read_images(spark, str(mixed_dir), sample_ratio=0.01, seed=seed, device="cpu")
    assert df.columns == ["image", "error"]
    assert df.count() == 0


def test_a_ratio_of_zero_is_an_empty_result_and_opens_nothing(spark, tmp_path):
    from gpuimages.transcode import transcode_files

    write_files(tmp_path, {"big.png": encode(rgb_array(64, 64, seed=3), "PNG"), "empty.png": b""})
    spark.conf.set(MAX_LENGTH, "10")  # opening big.png would fail the job
    try:
        df = gpuimages.read_images(spark, str(tmp_path), sample_ratio=0, device="cpu")
        assert df.columns == ["image", "error"]
        assert df.count() == 0
        assert transcode_files(spark, str(tmp_path), sample_ratio=0.0, device="cpu").count() == 0
    finally:
        spark.conf.unset(MAX_LENGTH)


@pytest.mark.parametrize("bad", [-0.01, 1.01, True, "0.5", None])
def test_sample_ratio_outside_zero_to_one_is_refused(spark, tmp_path, bad):
    with pytest.raises(ValueError, match=r"sample_ratio: expected a number in \[0, 1\]"):
        gpuimages.read_images(spark, str(tmp_path), sample_ratio=bad)

"""write_images: one readable file per valid image, reasons for the rest, folders by label, existing-file policy."""

from __future__ import annotations

import io
import os

import numpy as np
import pytest
from images import encode, rgb_array, write_files
from PIL import Image

from gpuimages.task import stores
from gpuimages.task.claims import WritePlan
from gpuimages.task.naming import clash_suffix, file_stem, safe_part, signature_extension
from gpuimages.task.stores import FsspecStore, LocalStore, folder_entries, open_store


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    folder = tmp_path_factory.mktemp("write-src")
    content = {}
    for i in range(3):
        content[f"cats/c{i}.jpg"] = encode(rgb_array(30, 40, seed=i), "JPEG", quality=90)
        content[f"dogs/d{i}.png"] = encode(rgb_array(20, 24, seed=10 + i), "PNG")
    content["dogs/c0.jpg"] = encode(rgb_array(16, 16, seed=99), "JPEG")  # same name as cats/c0.jpg
    content["dogs/bad.jpg"] = b"not an image"
    write_files(folder, content)
    return folder


def _listing(root) -> list[str]:
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_one_readable_file_per_valid_image_and_reasons(spark, src, tmp_path):
    import gpuimages

    df = gpuimages.read_images(spark, str(src), recursive=True, device="cpu")
    out = tmp_path / "flat"
    report = gpuimages.write_images(df, str(out), format="jpeg", device="cpu")
    assert report.columns == ["origin", "path", "bytes", "status", "reason"]
    rows = report.collect()
    assert len(rows) == 8
    written = [r for r in rows if r.status == "written"]
    failed = [r for r in rows if r.status == "failed"]
    assert len(written) == 7 and len(failed) == 1
    assert failed[0].origin.endswith("bad.jpg") and "not a recognised image format" in failed[0].reason
    names = _listing(out)
    assert len(names) == 7 and all(n.endswith(".jpg") for n in names)  # no temporary file left
    assert "c0.jpg" in names and any(n.startswith("c0-") for n in names)  # the clash kept both files
    for r in written:
        with Image.open(r.path) as im:
            assert im.format == "JPEG" and os.path.getsize(r.path) == r.bytes
            im.load()


def test_status_counts_run_a_job_only_for_a_log_that_shows_them(spark, src, tmp_path, caplog):
    """write_images computes the report once; the status counts (one more Spark job) only where INFO is logged."""
    import logging

    import gpuimages

    df = gpuimages.read_images(spark, str(src), recursive=True, device="cpu")
    tracker = spark.sparkContext.statusTracker()

    def jobs(level: int, out: str) -> int:
        group = f"status-counts-{level}"
        spark.sparkContext.setJobGroup(group, group)
        try:
            with caplog.at_level(level, logger="gpuimages"):
                gpuimages.write_images(df, str(tmp_path / out), format="png", device="cpu")
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        return len(tracker.getJobIdsForGroup(group))

    quiet, logged = jobs(logging.WARNING, "quiet"), jobs(logging.INFO, "logged")
    assert quiet == 1 and logged > quiet  # the write stage itself; the counts' aggregation (AQE: stage jobs)
    assert "'written': 7" in caplog.text and "'failed': 1" in caplog.text


def test_image_folder_layout_by_label(spark, src, tmp_path):
    import gpuimages

    df = gpuimages.read_images(spark, str(src), recursive=True, label_from_folder=True, device="cpu",
                               drop_invalid=True, resize=(8, 8))
    out = tmp_path / "byclass"
    report = gpuimages.write_images(df, out, format="png", partition_by="label")
    assert {r.status for r in report.collect()} == {"written"}
    names = _listing(out)
    assert sorted(names) == sorted(
        ["cats/c0.png", "cats/c1.png", "cats/c2.png", "dogs/c0.png", "dogs/d0.png", "dogs/d1.png", "dogs/d2.png"]
    )
    with Image.open(out / "dogs" / "d1.png") as im:
        assert im.size == (8, 8) and im.mode == "RGB"


def test_encoded_bytes_are_written_as_they_are(spark, src, tmp_path):
    import gpuimages

    binary = spark.read.format("binaryFile").load(str(src / "dogs"))
    small = gpuimages.transcode_images(binary, resize=(10, 12), format="png", device="cpu")
    out = tmp_path / "encoded"
    rows = {r.origin.rsplit("/", 1)[-1]: r for r in gpuimages.write_images(small, out).collect()}
    assert rows["bad.jpg"].status == "failed" and "not a recognised image format" in rows["bad.jpg"].reason
    assert rows["d0.png"].status == "written" and rows["c0.jpg"].path.endswith("c0.png")  # extension from bytes
    with Image.open(rows["c0.jpg"].path) as im:
        assert im.size == (12, 10) and im.format == "PNG"
    # the source files themselves, named by a column
    named = binary.selectExpr("content", "concat('copy_', length) AS name", "path")
    report = gpuimages.write_images(named, tmp_path / "named", name_col="name").collect()
    assert all(r.status == "written" for r in report)
    for r in report:
        assert os.path.basename(r.path).startswith("copy_")
    assert sorted(os.path.getsize(r.path) for r in report) == sorted(r.length for r in binary.collect())


def test_existing_file_policy(spark, src, tmp_path):
    import gpuimages

    df = gpuimages.read_images(spark, str(src / "cats"), device="cpu")
    out = tmp_path / "policy"
    out.mkdir()
    (out / "c1.jpg").write_bytes(b"old")
    old = os.path.getmtime(out / "c1.jpg") - 60
    os.utime(out / "c1.jpg", (old, old))
    with pytest.raises(FileExistsError, match="expected a missing or empty folder with mode='error'"):
        gpuimages.write_images(df, out)
    skipped = {r.path.rsplit("/", 1)[-1]: r for r in gpuimages.write_images(df, out, mode="skip").collect()}
    assert skipped["c1.jpg"].status == "skipped" and (out / "c1.jpg").read_bytes() == b"old"
    assert skipped["c0.jpg"].status == "written"
    os.utime(out / "c0.jpg", (old, old))
    again = gpuimages.write_images(df, out, mode="overwrite").collect()
    assert {r.status for r in again} == {"written"}
    assert (out / "c1.jpg").read_bytes()[:3] == b"\xff\xd8\xff"
    assert _listing(out) == ["c0.jpg", "c1.jpg", "c2.jpg"]  # replaced in place, nothing suffixed


def test_driver_side_errors(spark, tmp_path):
    import gpuimages

    df = spark.createDataFrame([(1,)], "n int")
    with pytest.raises(ValueError, match="input_col: expected an image-struct or binary column"):
        gpuimages.write_images(df, tmp_path / "x")
    with pytest.raises(TypeError, match="input_col 'n': expected an image struct"):
        gpuimages.write_images(df, tmp_path / "x", "n")
    df = spark.createDataFrame([(b"x",)], "content binary")
    with pytest.raises(ValueError, match="mode: expected one of error, overwrite, skip, got 'append'"):
        gpuimages.write_images(df, tmp_path / "x", mode="append")
    with pytest.raises(ValueError, match="partition_by: expected one of the columns"):
        gpuimages.write_images(df, tmp_path / "x", partition_by="label")


# ---------------------------------------------------------------- executor helpers (no Spark)


def test_names_are_safe_and_unique():
    assert file_stem("file:///a/b/my%20cat.JPG", None) == ("my cat", "jpg")
    assert file_stem("s3://b/x/noext", None) == ("noext", None)
    assert file_stem("file:///a/b.jpg", "../../etc/passwd") == ("passwd", None)
    assert safe_part("..") == "~.." and safe_part("a/b:c") == "a_b_c" and safe_part("_x") == "~_x"
    assert signature_extension(b"\x89PNG\r\n\x1a\n....") == "png"
    assert signature_extension(b"\xff\xd8\xff\xe0") == "jpg"
    assert signature_extension(b"hello") is None
    assert clash_suffix("a") == clash_suffix("a") != clash_suffix("b")


def test_local_put_claims_without_overwriting(tmp_path):
    store = LocalStore(f"file://{tmp_path}")
    target = str(tmp_path / "x.jpg")
    assert store.put(target, b"one", replace=False) is True
    assert store.put(target, b"two", replace=False) is False and store.read(target) == b"one"
    assert store.put(target, b"three", replace=True) is True and store.read(target) == b"three"
    assert os.listdir(tmp_path) == ["x.jpg"]  # temporary files never stay


def test_fsspec_store_writes_through_fsspec():
    pytest.importorskip("fsspec")
    store = open_store("memory://gpuimages-test/out")
    assert isinstance(store, FsspecStore)
    path = store.join("cats", "a.jpg")
    store.folder("cats")
    assert store.put(path, b"abc", replace=False) and not store.put(path, b"xyz", replace=False)
    assert store.read(path) == b"abc" and store.uri(path).startswith("memory://")
    assert folder_entries("memory://gpuimages-test/out") == 1
    assert folder_entries("memory://gpuimages-test/none") == 0


def test_write_stage_report_in_process(tmp_path):
    import pyarrow as pa

    from gpuimages.encoders import make_encode_options
    from gpuimages.task.images import batch_of
    from gpuimages.task.runner import run_partition
    from gpuimages.task.spec import StageSpec
    from gpuimages.task.steps import Encode, Write

    plan = WritePlan(root=str(tmp_path), input_col="image", input_is_struct=True, origin_col=None,
                           name_col=None, partition_by=None, mode="error", extension="png")
    pixels = rgb_array(4, 6)
    images = batch_of([pixels, None], [None, "unused"])
    images.present = np.array([True, False])
    column = images.to_struct(pa.array(["file:///x/a.png", None]))
    batch = pa.RecordBatch.from_arrays([column], names=["image"])
    options = make_encode_options(format="png", device="cpu")
    spec = StageSpec("write", "cpu", "image", "struct", (Encode(options), Write(plan)),
                     ("origin", "path", "bytes", "status", "reason"), error_col="reason")
    out = pa.Table.from_batches(list(run_partition(iter([batch]), spec)))
    report = out.to_pylist()
    assert report[0]["status"] == "written" and report[0]["path"] == str(tmp_path / "a.png")
    assert report[1] == {"origin": None, "path": None, "bytes": None, "status": "failed",
                         "reason": "no image (null value)"}
    back = np.asarray(Image.open(io.BytesIO((tmp_path / "a.png").read_bytes())))
    assert np.array_equal(back, pixels[:, :, ::-1])  # struct data is BGR: the file is the RGB view of it


def test_write_through_fsspec_from_executors(spark, src, tmp_path):
    pytest.importorskip("fsspec")
    import gpuimages

    df = gpuimages.read_images(spark, str(src / "cats"), device="cpu", resize=(6, 6))
    root = f"local://{tmp_path}/viafsspec"  # fsspec's local filesystem under a non-file scheme: the fsspec store
    assert isinstance(open_store(root), FsspecStore)
    rows = gpuimages.write_images(df, root, format="png", partition_by=None).collect()
    assert sorted(r.status for r in rows) == ["written"] * 3
    assert all(r.path.startswith("local://") or r.path.startswith("file://") for r in rows)
    assert _listing(tmp_path / "viafsspec") == ["c0.png", "c1.png", "c2.png"]
    with pytest.raises(FileExistsError):
        gpuimages.write_images(df, root, format="png")


def test_local_put_without_hard_links_as_on_fuse_mounts(tmp_path, monkeypatch):
    import errno

    def no_links(src, dst, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(stores.os, "link", no_links)  # /dbfs and some FUSE mounts refuse hard links
    store = LocalStore(str(tmp_path))
    target = str(tmp_path / "y.png")
    assert store.put(target, b"first", replace=False) is True
    assert store.put(target, b"second", replace=False) is False and store.read(target) == b"first"
    assert os.listdir(tmp_path) == ["y.png"]

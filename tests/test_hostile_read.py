"""Hostile inputs on the read side: files Spark cannot open, files that change under the read,
directory links, and resizes far larger than the image. Every listed file must come back exactly once,
with the reason when it has no pixels."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from children import spark_child_env
from images import encode, rgb_array, write_files

import gpuimages
from gpuimages.options import DEFAULT_MAX_PIXELS
from gpuimages.sources.columns import sample_sql
from gpuimages.sources.links import glob_regex
from gpuimages.sources.scan import BESIDE_PARTITIONS_REASON
from gpuimages.task.local_files import (
    BROKEN_LINK_REASON,
    CHECKSUM_REASON,
    COLON_REASON,
    EMPTY_REASON,
    LINK_LOOP_REASON,
    PERMISSION_REASON,
    VANISHED_REASON,
    local_file_problem,
)
from gpuimages.transcode import transcode_files
from gpuimages.uris import file_uri_path, load_path

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
#: Run a command as root without the capabilities that let root read any file (chmod 000 then holds).
DROP_DAC = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def _name(origin: str) -> str:
    return unquote(origin).rsplit("/", 1)[-1]


def _rows(df, origin: str = "image.origin") -> dict:
    rows = df.collect()
    out = {}
    for r in rows:
        key = _name(r["image"]["origin"] if origin == "image.origin" else r[origin])
        assert key not in out, f"{key!r} came back twice"
        out[key] = r
    return out


@pytest.fixture()
def hostile(tmp_path) -> Path:
    """A folder of files Spark lists but its binary read returns nothing for, next to valid ones."""
    folder = tmp_path / "hostile"
    write_files(folder, {
        "ok.jpg": encode(rgb_array(8, 12, seed=1), "JPEG", quality=90),
        "ok.png": encode(rgb_array(5, 7, seed=2), "PNG"),
        "a:b.png": encode(rgb_array(6, 6, seed=3), "PNG"),
        "empty.jpg": b"",
        "new\nline.png": encode(rgb_array(4, 9, seed=4), "PNG"),
    })
    os.mkfifo(folder / "pipe.jpg")
    return folder


EXPECTED_REASONS = {
    "a:b.png": COLON_REASON,
    "empty.jpg": EMPTY_REASON,
    "pipe.jpg": "no bytes read: not a regular file (a named pipe)",
}


def test_files_spark_cannot_open_get_one_row_each_with_the_reason(spark, hostile):
    listed = spark.read.format("binaryFile").load(str(hostile)).inputFiles()
    assert len(listed) == 6
    image_source = spark.read.format("image").option("ignoreCorruptFiles", "true").load(str(hostile))
    theirs = {_name(r.image.origin): r.image for r in image_source.collect()}
    assert set(theirs) == {"ok.jpg", "ok.png", "new\nline.png"}  # Spark's source drops the other three unseen

    df = gpuimages.read_images(spark, str(hostile), device="cpu")
    assert df.columns == ["image", "error"]
    rows = _rows(df)
    assert sorted(r.image.origin for r in rows.values()) == sorted(listed)
    assert {k: r.error for k, r in rows.items() if r.error} == EXPECTED_REASONS
    for name in EXPECTED_REASONS:
        assert (rows[name].image.height, rows[name].image.nChannels, rows[name].image.data) == (-1, -1, b"")
    for name, ref in theirs.items():
        mine = rows[name].image
        assert (mine.origin, mine.height, mine.width, mine.nChannels, mine.mode) == (
            ref.origin, ref.height, ref.width, ref.nChannels, ref.mode,
        )
        assert mine.data == ref.data


def test_transcode_files_and_drop_invalid_follow_the_same_rows(spark, hostile):
    out = transcode_files(spark, str(hostile), device="cpu", format="png")
    rows = _rows(out, origin="origin")
    assert set(rows) == {"ok.jpg", "ok.png", "new\nline.png", *EXPECTED_REASONS}
    assert {k: r.error for k, r in rows.items() if r.error} == EXPECTED_REASONS
    assert all(rows[k].encoded is None for k in EXPECTED_REASONS)
    assert (rows["ok.png"].height, rows["ok.png"].width) == (5, 7)

    kept = _rows(gpuimages.read_images(spark, str(hostile), device="cpu", drop_invalid=True))
    assert set(kept) == {"ok.jpg", "ok.png", "new\nline.png"}


def test_a_sample_keeps_the_reasons_of_the_files_it_chose(spark, hostile):
    listed = spark.read.format("binaryFile").load(str(hostile)).inputFiles()
    frame = spark.createDataFrame([(o,) for o in listed], "origin string")
    seed = next(
        s for s in range(200)
        if 2 <= frame.filter(sample_sql("origin", 0.5, s)).count() <= 4
    )
    chosen = {r.origin for r in frame.filter(sample_sql("origin", 0.5, seed)).collect()}
    rows = _rows(gpuimages.read_images(spark, str(hostile), device="cpu", sample_ratio=0.5, seed=seed))
    assert {r.image.origin for r in rows.values()} == chosen
    assert all(r.error == EXPECTED_REASONS.get(k) for k, r in rows.items())


def test_a_file_the_jvm_could_read_but_the_check_refuses_gives_one_row(spark, hostile):
    """A local filesystem configured without checksum files opens ``a:b.png``; the task's check still refuses
    it by name, as Spark's default filesystem does. The file must come back once, with the reason."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    before = {k: conf.get(k) for k in ("fs.file.impl", "fs.file.impl.disable.cache")}
    conf.set("fs.file.impl", "org.apache.hadoop.fs.RawLocalFileSystem")
    conf.set("fs.file.impl.disable.cache", "true")
    try:
        colon = [o for o in spark.read.format("binaryFile").load(str(hostile)).inputFiles() if "a:b" in o]
        jvm_rows = spark.read.format("binaryFile").load(load_path(colon[0])).select("length").collect()
        assert [r.length for r in jvm_rows] == [len((hostile / "a:b.png").read_bytes())]  # the JVM does read it
        rows = _rows(gpuimages.read_images(spark, str(hostile), device="cpu"))
    finally:
        for key, value in before.items():
            conf.unset(key) if value is None else conf.set(key, value)
    assert len(rows) == 6
    assert rows["a:b.png"].error == COLON_REASON


def test_files_emptied_or_deleted_after_listing_come_back_once(spark, hostile):
    df = gpuimages.read_images(spark, str(hostile), device="cpu")  # listed now: ok.png has bytes
    (hostile / "ok.png").write_bytes(b"")  # emptied after listing: the task's check sees 0 bytes
    (hostile / "ok.jpg").unlink()
    rows = _rows(df)
    assert len(rows) == 6
    assert rows["ok.png"].error == EMPTY_REASON
    assert rows["ok.jpg"].error == VANISHED_REASON


def _hadoop_crc(data: bytes, per_sum: int = 512) -> bytes:
    """A checksum file as Hadoop's ChecksumFileSystem writes it: ``crc\\0``, the chunk size, a CRC-32 per chunk."""
    import zlib

    sums = b"".join(zlib.crc32(data[i : i + per_sum]).to_bytes(4, "big") for i in range(0, len(data), per_sum))
    return b"crc\x00" + per_sum.to_bytes(4, "big") + sums


def test_a_stale_hadoop_checksum_file_gets_a_row_and_valid_ones_decode(spark, tmp_path):
    data = {name: encode(rgb_array(40, 40, seed=i), "PNG") for i, name in enumerate(["good.png", "stale.png",
                                                                                      "short.png", "junk.png"])}
    folder = tmp_path / "crc"
    write_files(folder, data)
    (folder / ".good.png.crc").write_bytes(_hadoop_crc(data["good.png"]))
    (folder / ".stale.png.crc").write_bytes(_hadoop_crc(data["good.png"]))  # another file's sums
    (folder / ".short.png.crc").write_bytes(_hadoop_crc(data["short.png"])[:12])  # sums end early
    (folder / ".junk.png.crc").write_bytes(b"not a checksum file")  # Hadoop ignores it
    theirs = spark.read.format("image").option("ignoreCorruptFiles", "true").load(str(folder))
    assert sorted(_name(r.image.origin) for r in theirs.collect()) == ["good.png", "junk.png"]
    rows = _rows(gpuimages.read_images(spark, str(folder), device="cpu"))
    assert sorted(rows) == ["good.png", "junk.png", "short.png", "stale.png"]
    assert rows["good.png"].error is None and rows["junk.png"].error is None
    for name in ("stale.png", "short.png"):
        assert rows[name].error == CHECKSUM_REASON.format(name=f".{name}.crc")


def _cli(commands: list[list[str]], drop_dac: bool) -> subprocess.CompletedProcess:
    """Run the ``gpuimages`` commands one after the other in one child process (one Spark start)."""
    env = spark_child_env()
    prefix = DROP_DAC if drop_dac else []
    code = "import json, sys; from gpuimages.cli import main; sys.exit(max(main(a) for a in json.loads(sys.argv[1])))"
    return subprocess.run([*prefix, sys.executable, "-c", code, json.dumps(commands)], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.skipif(IS_ROOT and shutil.which("setpriv") is None, reason="root without setpriv reads any file")
def test_permission_denied_gets_its_reason_in_the_cli_read_images_and_transcode_files(spark, hostile, tmp_path):
    """As root, the command runs without the capabilities that bypass file permissions (``setpriv``)."""
    (hostile / "secret.jpg").write_bytes(encode(rgb_array(8, 8), "JPEG"))
    (hostile / "secret.jpg").chmod(0)
    expected = {**EXPECTED_REASONS, "secret.jpg": PERMISSION_REASON}
    try:
        raw, jpeg = tmp_path / "raw.parquet", tmp_path / "jpeg.parquet"
        proc = _cli([["convert", str(hostile), str(dest), "--master", "local[1]", "--device", "cpu", "--format", fmt]
                     for dest, fmt in ((raw, "raw"), (jpeg, "jpeg"))], drop_dac=IS_ROOT)
        assert raw.exists() and jpeg.exists(), proc.stderr[-3000:]
        images = _rows(spark.read.parquet(str(raw)))
        encoded = _rows(spark.read.parquet(str(jpeg)), origin="origin")
        for rows in (images, encoded):
            assert len(rows) == 7
            assert {k: r.error for k, r in rows.items() if r.error} == expected
        if not IS_ROOT:
            assert {k: r.error for k, r in _rows(gpuimages.read_images(spark, str(hostile))).items()
                    if r.error} == expected
            assert {k: r.error for k, r in _rows(transcode_files(spark, str(hostile)), "origin").items()
                    if r.error} == expected
    finally:
        (hostile / "secret.jpg").chmod(0o644)


def test_probe_reasons_without_spark(tmp_path):
    (tmp_path / "ok.jpg").write_bytes(b"x")
    (tmp_path / "a:b.jpg").write_bytes(b"x")
    (tmp_path / "empty:1.jpg").write_bytes(b"")
    (tmp_path / "d").mkdir()
    os.mkfifo(tmp_path / "p")
    uri = tmp_path.as_uri()
    assert local_file_problem(f"{uri}/ok.jpg") is None
    assert local_file_problem(f"{uri}/a:b.jpg") == COLON_REASON
    assert local_file_problem(f"{uri}/empty:1.jpg") == EMPTY_REASON  # never opened by Spark
    assert local_file_problem(f"{uri}/gone.jpg") == VANISHED_REASON
    assert local_file_problem(f"{uri}/d") == "no bytes read: not a regular file (a directory)"
    assert local_file_problem(f"{uri}/p") == "no bytes read: not a regular file (a named pipe)"
    assert local_file_problem("s3a://bucket/a:b.jpg") is None  # not probed: not local
    assert file_uri_path("file:///tmp/a%20b%0Ac.jpg") == "/tmp/a b\nc.jpg"


# --- Directory links -----------------------------------------------------------------------------


def _tree_with(tmp_path: Path, links: dict[str, str]) -> Path:
    root = tmp_path / "tree"
    write_files(root, {
        "a/x.jpg": encode(rgb_array(8, 8, seed=1), "JPEG"),
        "b/y.png": encode(rgb_array(6, 6, seed=2), "PNG"),
    })
    for link, target in links.items():
        os.symlink(target, root / link)
    return root


@pytest.mark.timeout(120)
@pytest.mark.parametrize("links, why", [
    ({"a/loop": ".."}, "link back to a folder above it"),
    ({"a/loop": "..", "b/loop": "../a"}, "(link back to a folder above it|second way into a folder)"),
    ({"a/loop": "..", "b/loop": ".."}, "link back to a folder above it"),
    ({"a/self": "."}, "link back to a folder above it"),
])
def test_directory_link_loops_are_a_clear_error_and_fast(spark, tmp_path, links, why):
    root = _tree_with(tmp_path, links)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=f"again through a directory {why}"):
        gpuimages.read_images(spark, str(root), recursive=True, device="cpu")
    with pytest.raises(ValueError, match="directory link"):
        transcode_files(spark, str(root), recursive=True, device="cpu")
    assert time.perf_counter() - started < 60


@pytest.mark.timeout(120)
def test_a_loop_below_a_partition_folder_is_refused_without_recursive(spark, tmp_path):
    root = tmp_path / "parts"
    write_files(root, {"cls=a/x.jpg": encode(rgb_array(8, 8), "JPEG")})
    os.symlink("..", root / "cls=a" / "loop")
    with pytest.raises(ValueError, match="link back to a folder above it"):
        gpuimages.read_images(spark, str(root), device="cpu")


def test_links_reached_once_are_followed_and_twice_refused(spark, tmp_path):
    outside = tmp_path / "outside"
    write_files(outside, {"z.png": encode(rgb_array(4, 4, seed=5), "PNG")})
    root = _tree_with(tmp_path, {"ext": str(outside), "dangling": str(tmp_path / "nowhere"),
                                 "a/file_link.jpg": "x.jpg"})
    rows = _rows(gpuimages.read_images(spark, str(root), recursive=True, device="cpu"))
    assert sorted(rows) == ["dangling", "file_link.jpg", "x.jpg", "y.png", "z.png"]
    # Spark lists nothing for the dangling link; here it is a row with the reason
    assert rows["dangling"].error == BROKEN_LINK_REASON.format(target=str(tmp_path / "nowhere"))
    assert rows["dangling"].image.height == -1
    valid = {k: r for k, r in rows.items() if r.error is None}
    assert sorted(valid) == ["file_link.jpg", "x.jpg", "y.png", "z.png"]
    theirs = spark.read.format("image").option("recursiveFileLookup", "true").load(str(root))
    assert sorted(r.image.origin for r in valid.values()) == sorted(r.image.origin for r in theirs.collect())

    os.symlink(str(outside), root / "b" / "ext_again")
    with pytest.raises(ValueError, match="second way into a folder"):
        gpuimages.read_images(spark, str(root), recursive=True, device="cpu")


def test_file_links_spark_drops_are_rows_with_the_reason(spark, tmp_path):
    """A link to a missing file and two links to each other: Spark's listing leaves them out without a
    trace; each is a row with its reason, in the folders the read covers, as the glob filter says."""
    root = tmp_path / "links"
    write_files(root, {"ok.jpg": encode(rgb_array(8, 8, seed=1), "JPEG")})
    os.symlink(str(tmp_path / "gone.jpg"), root / "dead.jpg")
    os.symlink("loop_b.jpg", root / "loop_a.jpg")
    os.symlink("loop_a.jpg", root / "loop_b.jpg")
    os.symlink("missing.jpg", root / "_hidden_dead.jpg")
    dead = BROKEN_LINK_REASON.format(target=str(tmp_path / "gone.jpg"))
    names = ["dead.jpg", "loop_a.jpg", "loop_b.jpg", "ok.jpg"]

    rows = _rows(gpuimages.read_images(spark, str(root), device="cpu"))
    assert sorted(rows) == names
    assert rows["dead.jpg"].error == dead and rows["dead.jpg"].image.height == -1
    assert rows["loop_a.jpg"].error == rows["loop_b.jpg"].error == LINK_LOOP_REASON
    assert rows["ok.jpg"].error is None and rows["ok.jpg"].image.width == 8
    assert rows["dead.jpg"].image.origin == (root / "dead.jpg").as_uri()
    assert gpuimages.read_images(spark, str(root), sample_ratio=0.0, device="cpu").count() == 0
    assert gpuimages.read_images(spark, str(root), drop_invalid=True, device="cpu").count() == 1
    assert sorted(_rows(gpuimages.read_images(spark, str(root), path_glob_filter="loop_*", device="cpu"))) == [
        "loop_a.jpg", "loop_b.jpg"]

    out = _rows(transcode_files(spark, str(root), device="cpu"), origin="origin")
    assert sorted(out) == names
    assert out["loop_a.jpg"].error == LINK_LOOP_REASON and out["ok.jpg"].error is None

    # in a partition folder: the partition value parsed from the path
    parts = tmp_path / "parts"
    write_files(parts, {"cls=a/in_part.jpg": encode(rgb_array(8, 8, seed=2), "JPEG"),
                        "cls=b/other.jpg": encode(rgb_array(8, 8, seed=3), "JPEG")})
    os.symlink("missing.png", parts / "cls=a" / "dead_in_part.png")
    rows = _rows(gpuimages.read_images(spark, str(parts), device="cpu"))
    assert sorted(rows) == ["dead_in_part.png", "in_part.jpg", "other.jpg"]
    assert rows["dead_in_part.png"].error == BROKEN_LINK_REASON.format(target="missing.png")
    assert rows["dead_in_part.png"].cls == "a" and rows["other.jpg"].cls == "b"


def test_files_beside_partition_folders_are_rows_with_the_reason(spark, tmp_path):
    """Spark lists a file beside partition folders, but its scan (and its image source) gives it no row."""
    parts = tmp_path / "parts"
    write_files(parts, {"cls=a/in_part.jpg": encode(rgb_array(8, 8, seed=2), "JPEG"),
                        "loose.jpg": encode(rgb_array(8, 8, seed=3), "JPEG"),
                        "empty.png": b""})
    theirs = spark.read.format("image").load(str(parts)).collect()
    assert [_name(r.image.origin) for r in theirs] == ["in_part.jpg"]

    rows = _rows(gpuimages.read_images(spark, str(parts), device="cpu"))
    assert sorted(rows) == ["empty.png", "in_part.jpg", "loose.jpg"]
    assert rows["loose.jpg"].error == rows["empty.png"].error == BESIDE_PARTITIONS_REASON
    assert rows["loose.jpg"].cls is None and rows["loose.jpg"].image.height == -1
    assert rows["in_part.jpg"].error is None and rows["in_part.jpg"].cls == "a"
    assert sorted(_rows(gpuimages.read_images(spark, str(parts), path_glob_filter="*.jpg", device="cpu"))) == [
        "in_part.jpg", "loose.jpg"]
    assert gpuimages.read_images(spark, str(parts), drop_invalid=True, device="cpu").count() == 1

    rows = _rows(gpuimages.read_images(spark, str(parts), recursive=True, device="cpu"))
    assert rows["loose.jpg"].error is None and rows["loose.jpg"].image.width == 8

    # a folder that is no partition: covered with recursive=True only
    deep = tmp_path / "deep"
    write_files(deep, {"top.jpg": encode(rgb_array(8, 8, seed=3), "JPEG"),
                       "plain/inner.jpg": encode(rgb_array(8, 8, seed=4), "JPEG")})
    os.symlink("missing.jpg", deep / "plain" / "dead_inner.jpg")
    rows = _rows(gpuimages.read_images(spark, str(deep), recursive=True, device="cpu"))
    assert sorted(rows) == ["dead_inner.jpg", "inner.jpg", "top.jpg"]
    assert rows["dead_inner.jpg"].error == BROKEN_LINK_REASON.format(target="missing.jpg")
    os.remove(deep / "plain" / "inner.jpg")
    rows = _rows(gpuimages.read_images(spark, str(deep / "plain"), device="cpu"))
    assert sorted(rows) == ["dead_inner.jpg"]


def test_a_glob_only_walks_what_it_matches(spark, tmp_path):
    root = _tree_with(tmp_path, {"b/loop": ".."})
    rows = _rows(gpuimages.read_images(spark, str(root / "a"), device="cpu"))
    assert sorted(rows) == ["x.jpg"]
    rows = _rows(gpuimages.read_images(spark, str(root / "{a,c}"), recursive=True, device="cpu"))
    assert sorted(rows) == ["x.jpg"]
    with pytest.raises(ValueError, match="link back to a folder above it"):
        gpuimages.read_images(spark, str(root / "[ab]"), recursive=True, device="cpu")


def test_glob_translation():
    assert glob_regex("plain") is None
    assert glob_regex("*.jpg").fullmatch("a.jpg")
    assert not glob_regex("*.jpg").fullmatch("a.png")
    assert glob_regex("{a,b}?").fullmatch("bx")
    assert glob_regex("[!a]*").fullmatch("bcd") and not glob_regex("[^a]*").fullmatch("abc")
    assert glob_regex("\\*x").fullmatch("*x") and not glob_regex("\\*x").fullmatch("yx")
    assert glob_regex("{a,b") is None


# --- Resizes far larger than the image ------------------------------------------------------------


@pytest.fixture()
def tiny(tmp_path) -> Path:
    folder = tmp_path / "tiny"
    write_files(folder, {
        f"t{i}.{ext}": encode(rgb_array(16, 16, seed=i), "JPEG" if ext == "jpg" else "PNG")
        for i, ext in enumerate(["jpg", "png", "jpg"])
    })
    return folder


@pytest.mark.parametrize("kwargs", [
    {"resize": (100000, 100000)},
    {"resize": (100000, 100000), "center_crop": 8},
    {"resize": (300, 300), "max_pixels": 1000},
])
def test_a_fixed_resize_over_max_pixels_fails_on_the_driver(spark, tiny, kwargs):
    with pytest.raises(ValueError, match=r"resize: expected at most max_pixels=\d+ pixels"):
        gpuimages.read_images(spark, str(tiny), device="cpu", **kwargs)
    with pytest.raises(ValueError, match="resize.*max_pixels"):
        transcode_files(spark, str(tiny), device="cpu", **kwargs)


@pytest.mark.timeout(300)
def test_a_shorter_side_resize_over_max_pixels_is_an_invalid_row_per_file(spark, tiny):
    started = time.perf_counter()
    rows = _rows(gpuimages.read_images(spark, str(tiny), device="cpu", resize=100000))
    assert len(rows) == 3
    for row in rows.values():
        assert row.image.height == -1
        assert row.error.startswith("resize=100000 would make this 16x16 image 100000x100000")
        assert f"over max_pixels={DEFAULT_MAX_PIXELS}" in row.error
    out = _rows(transcode_files(spark, str(tiny), device="cpu", resize=100000, center_crop=8), origin="origin")
    assert all("max_pixels" in r.error and r.encoded is None for r in out.values())
    # Within the limit the same option decodes: 16x16 -> 2000x2000 pixels.
    ok = _rows(gpuimages.read_images(spark, str(tiny), device="cpu", resize=2000, max_pixels=4_000_000))
    assert all(r.error is None and (r.image.height, r.image.width) == (2000, 2000) for r in ok.values())
    assert time.perf_counter() - started < 240


def test_the_dali_router_sends_an_oversized_resize_to_pillow():
    pytest.importorskip("nvidia.dali")
    from gpuimages.engines import dali
    from gpuimages.engines.pillow import PillowEngine
    from gpuimages.options import make_decode_options

    blob = encode(rgb_array(16, 16), "JPEG")
    options = make_decode_options(resize=100000)
    assert dali.route(blob, options) == "over max_pixels"
    assert dali.route(blob, make_decode_options(resize=64)) == (16, 16, 3)
    decoded = PillowEngine(options).decode([blob])
    assert decoded.channels[0] == -1 and "resize=100000" in decoded.errors[0]
    assert np.asarray(decoded.data).size == 0


@pytest.mark.slow
@pytest.mark.skipif(IS_ROOT and shutil.which("setpriv") is None, reason="root without setpriv lists any folder")
def test_a_folder_spark_cannot_list_is_a_clear_permission_error(tmp_path):
    folder = tmp_path / "tree"
    write_files(folder, {"a/x.jpg": encode(rgb_array(8, 8), "JPEG"), "locked/y.jpg": encode(rgb_array(8, 8), "JPEG")})
    (folder / "locked").chmod(0)
    try:
        proc = _cli([["convert", str(folder), str(tmp_path / "out.parquet"), "--master", "local[1]", "--device",
                      "cpu", "--recursive"]], drop_dac=IS_ROOT)
    finally:
        (folder / "locked").chmod(0o755)
    assert proc.returncode != 0
    assert "PermissionError: path: expected folders Spark can list, got " in proc.stderr
    assert "locked: permission denied" in proc.stderr

"""``gpuimages info`` on every kind of path the command line reads or writes: image folders, WebDataset shards
(written by ``convert --format webdataset``), ImageFolder output of ``write``, and the Parquet tables
``convert`` writes (image structs and encoded bytes); figures checked against the files (sizes, tar members,
Pillow). Run in-process on the test run's session."""

from __future__ import annotations

import io
import json
import tarfile
import zipfile

import pytest
from cli_run import run_cli
from images import encode, rgb_array
from PIL import Image


def info(capsys, *args: str) -> dict:
    code, out, err = run_cli(capsys, "info", *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """Two class folders: 3 cats (JPEG 10x12), 2 dogs (PNG 6x8), a file that is not an image, an empty file."""
    d = tmp_path_factory.mktemp("info-src")
    (d / "cats").mkdir()
    (d / "dogs").mkdir()
    for i in range(3):
        (d / "cats" / f"c{i}.jpg").write_bytes(encode(rgb_array(10, 12, seed=i), "JPEG"))
    for i in range(2):
        (d / "dogs" / f"d{i}.png").write_bytes(encode(rgb_array(6, 8, seed=10 + i), "PNG"))
    (d / "dogs" / "bad.jpg").write_bytes(b"nope")
    (d / "dogs" / "empty.png").write_bytes(b"")
    return d


def test_image_folder(source, capsys):
    summary = info(capsys, str(source), "--recursive")
    files = [p for p in source.rglob("*") if p.is_file()]
    sizes = sorted(p.stat().st_size for p in files if p.stat().st_size)
    assert (summary["kind"], summary["rows"], summary["decoded"], summary["failed"]) == ("images", 7, 5, 2)
    assert summary["formats"] == {"jpeg": 3, "png": 2, "empty": 1, "unknown": 1}
    assert summary["channels"] == {"3": 5}
    assert summary["width"] == {"min": 8, "median": 12, "max": 12}  # widths 8, 8, 12, 12, 12
    assert summary["height"] == {"min": 6, "median": 10, "max": 10}
    assert (summary["bytes"]["min"], summary["bytes"]["max"], summary["bytes"]["total"]) == (
        sizes[0], sizes[-1], sum(sizes))
    assert summary["labels"] == {"dogs": 4, "cats": 3}  # the parent folders (--recursive)
    assert summary["failures"] == {"no bytes read: the file is empty (0 bytes)": 1,
                                   "not a recognised image format": 1}
    assert sorted(e["origin"].rsplit("/", 1)[-1] for e in summary["examples"]) == ["bad.jpg", "empty.png"]
    assert (summary["archives"], summary["members"]) == (0, 0)


def test_webdataset_shards_written_by_convert(source, tmp_path, capsys):
    shards = tmp_path / "shards"
    code, _, err = run_cli(capsys, "convert", str(source), str(shards), "--recursive", "--format", "webdataset",
                           "--label-from-folder", "--resize", "5", "--shard-samples", "2", "--device", "cpu")
    assert code == 1, err  # two files are not images
    members = {}
    for shard in shards.glob("*.tar"):
        with tarfile.open(shard) as tar:
            for m in tar.getmembers():
                members[m.name] = tar.extractfile(m).read()
    images = {k: v for k, v in members.items() if k.endswith(".jpg")}
    labels = sorted(v.decode() for k, v in members.items() if k.endswith(".cls"))
    summary = info(capsys, str(shards))
    assert (summary["kind"], summary["rows"], summary["decoded"], summary["failed"]) == ("images", 5, 5, 0)
    assert summary["formats"] == {"jpeg": 5}  # the members, not the tar files
    assert (summary["archives"], summary["members"]) == (len(list(shards.glob("*.tar"))), 5)
    # .cls holds the class index (folders in sorted order: cats 0, dogs 1), as webdataset's readers take it
    assert summary["labels"] == {"0": labels.count("0"), "1": labels.count("1")} == {"0": 3, "1": 2}
    assert summary["bytes"]["total"] == sum(len(v) for v in images.values())
    pil = [Image.open(io.BytesIO(v)).size for v in images.values()]
    assert summary["width"]["max"] == max(w for w, _ in pil) and summary["height"]["min"] == min(h for _, h in pil)
    assert summary["height"]["min"] == 5  # shorter side 5


def test_image_folder_written_by_write(source, tmp_path, capsys):
    out = tmp_path / "folders"
    code, _, err = run_cli(capsys, "write", str(source), str(out), "--recursive", "--label-from-folder",
                           "--format", "png", "--device", "cpu")
    assert code == 1, err
    summary = info(capsys, str(out), "--recursive")
    assert (summary["rows"], summary["decoded"], summary["formats"]) == (5, 5, {"png": 5})
    assert summary["labels"] == {"cats": 3, "dogs": 2}
    code, table, _ = run_cli(capsys, "info", str(out), "--recursive")
    assert code == 0
    assert "labels    2: cats 3, dogs 2" in table and "formats   png 5" in table and "rows      5" in table


def test_parquet_of_image_structs(source, tmp_path, capsys):
    dest = tmp_path / "raw.parquet"
    code, _, err = run_cli(capsys, "convert", str(source), str(dest), "--recursive", "--resize", "4", "6",
                           "--device", "cpu")
    assert code == 1, err
    summary = info(capsys, str(dest))
    assert (summary["kind"], summary["layout"]) == ("parquet", "raw")
    assert (summary["rows"], summary["decoded"], summary["failed"]) == (7, 5, 2)
    assert summary["formats"] == {"raw": 7} and summary["channels"] == {"3": 5}
    assert summary["width"] == {"min": 6, "median": 6, "max": 6} and summary["height"]["max"] == 4
    assert summary["bytes"]["total"] == 5 * 4 * 6 * 3  # BGR pixels of the valid rows
    assert summary["failures"] == {"no bytes read: the file is empty (0 bytes)": 1,
                                   "not a recognised image format": 1}


def test_parquet_of_encoded_bytes(spark, source, tmp_path, capsys):
    dest = tmp_path / "png.parquet"
    code, _, err = run_cli(capsys, "convert", str(source), str(dest), "--recursive", "--format", "png",
                           "--device", "cpu")
    assert code == 1, err
    encoded = [r.encoded for r in spark.read.parquet(str(dest)).collect() if r.encoded is not None]
    summary = info(capsys, str(dest))
    assert (summary["kind"], summary["layout"]) == ("parquet", "encoded")
    assert (summary["rows"], summary["decoded"], summary["failed"]) == (7, 5, 2)
    assert summary["formats"] == {"png": 5, "empty": 2}
    assert summary["bytes"]["total"] == sum(len(b) for b in encoded)
    assert (summary["width"]["min"], summary["width"]["max"]) == (8, 12)
    code, table, _ = run_cli(capsys, "info", str(dest))
    assert code == 0 and "Parquet table (encoded)" in table and "invalid   2" in table
    assert "bad.jpg: not a recognised image format" in table


def test_zip_archive_members(tmp_path, capsys):
    archive = tmp_path / "photos.zip"
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("x/a.jpg", encode(rgb_array(10, 12), "JPEG"))
        z.writestr("x/b.png", encode(rgb_array(6, 8), "PNG"))
        z.writestr("x/readme.txt", b"not an image member")
    summary = info(capsys, str(archive))
    assert (summary["rows"], summary["decoded"], summary["formats"]) == (2, 2, {"jpeg": 1, "png": 1})
    assert (summary["archives"], summary["members"]) == (1, 2)
    assert (summary["width"]["min"], summary["width"]["max"], summary["height"]["max"]) == (8, 12, 10)


def test_a_parquet_table_without_images_is_a_usage_error(spark, tmp_path, capsys):
    dest = tmp_path / "numbers"  # a folder of .parquet files is a table, whatever its name
    spark.range(3).write.parquet(str(dest))
    code, out, err = run_cli(capsys, "info", str(dest))
    assert code == 2 and not out
    assert "gpuimages info: error: path: expected a Parquet table with an image struct column" in err

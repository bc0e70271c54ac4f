"""Shards as the ``webdataset`` package reads and writes them (its default decoders, its TarWriter and
ShardWriter): every image member a row, ``.cls`` integers a trainer parses, bytes a trainer decodes."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest
from images import encode, rgb_array
from PIL import Image

wds = pytest.importorskip("webdataset")

IMAGE_EXTS = {"jpg", "png"}


def _urls(folder: Path) -> list[str]:
    return sorted(str(p) for p in folder.iterdir() if p.name.endswith(".tar"))


@pytest.fixture(scope="module")
def classes_dir(tmp_path_factory) -> Path:
    """Three class folders (c10 sorts before c2) of JPEGs and PNGs, one truncated JPEG among them."""
    folder = tmp_path_factory.mktemp("interop")
    for c, name in enumerate(["c2", "c10", "bg"]):
        (folder / name).mkdir()
        for i in range(2):
            (folder / name / f"{i}.jpg").write_bytes(encode(rgb_array(24 + i, 32, seed=10 * c + i), "JPEG",
                                                            quality=90))
        (folder / name / "p.png").write_bytes(encode(rgb_array(12, 10, seed=c), "PNG"))
    whole = encode(rgb_array(64, 64, seed=7), "JPEG", quality=90)
    (folder / "c2" / "cut.jpg").write_bytes(whole[: len(whole) * 2 // 3])
    return folder


def test_webdataset_writer_shards_give_one_row_per_image_member(spark, tmp_path):
    """TarWriter/ShardWriter shards: keys with leading `_`, folders, dots; gpuimages reads what webdataset reads."""
    import gpuimages

    src = tmp_path / "src"
    src.mkdir()
    keys = ["_0001", "_under/0009", "a/b/0003", "0004", "__x/0005", "k=1/_6"]
    with wds.ShardWriter(str(src / "part-%04d.tar"), maxcount=4, verbose=0) as sink:
        for i, key in enumerate(keys):
            sample = {"__key__": key, "jpg": encode(rgb_array(8 + i, 9, seed=i), "JPEG"), "cls": i, "txt": f"t{i}"}
            if i == 3:
                sample["png"] = encode(rgb_array(5, 6, seed=i), "PNG")  # two images in one sample: two rows
            sink.write(sample)
    with tarfile.open(src / "part-0000.tar", "a") as tar:  # a macOS resource fork: no key for WebDataset
        info = tarfile.TarInfo("._0001.jpg")
        info.size = 4
        tar.addfile(info, io.BytesIO(b"\x00\x05\x16\x07"))

    theirs = {(s["__key__"], ext): (s["cls"], s[ext].size) for s in
              wds.WebDataset(_urls(src), shardshuffle=False).decode("pil") for ext in IMAGE_EXTS if ext in s}
    assert len(theirs) == 7  # six samples, one with two images; the resource fork is no sample

    rows = gpuimages.read_images(spark, str(src), webdataset=True, device="cpu").collect()
    ours = {}
    for r in rows:
        assert r.error is None, (r.image.origin, r.error)
        member = r.image.origin.split("#", 1)[1]
        key, ext = member.rsplit(".", 1)
        ours[(key, ext)] = (r.cls, (r.image.width, r.image.height))
    assert ours == theirs


def test_gpuimages_shards_read_with_webdataset_defaults(spark, classes_dir, tmp_path):
    """Class names become sorted indices in .cls, the name in .json, the list beside the shards."""
    import gpuimages

    images = gpuimages.read_images(spark, str(classes_dir), recursive=True, label_from_folder=True, device="cpu")
    dest = tmp_path / "shards"
    report = gpuimages.write_webdataset(images, str(dest), label_col="label", json_cols=["label"], max_samples=4)
    written = sum(r.samples for r in report.collect())
    assert written == 10  # every image (the truncated JPEG is decoded and re-encoded)
    classes = json.loads((dest / "_shard-classes.json").read_text())
    assert classes == ["bg", "c10", "c2"]  # sorted names, as torchvision's ImageFolder numbers them

    samples = list(wds.WebDataset(_urls(dest), shardshuffle=False).decode("pil"))
    assert len(samples) == written
    for s in samples:
        assert isinstance(s["cls"], int) and classes[s["cls"]] == s["json"]["label"]
        assert s["jpg"].mode == "RGB"
    back = gpuimages.read_images(spark, str(dest), webdataset=True, device="cpu")  # the class list is no row
    assert back.count() == written and back.filter("error IS NOT NULL").count() == 0


def test_bytes_a_trainer_cannot_decode_are_reported_not_written(spark, classes_dir, tmp_path):
    import gpuimages

    images = gpuimages.read_images(spark, str(classes_dir / "c2"), device="cpu")
    assert images.filter("error IS NULL").count() == 4  # Spark's rule: the truncated JPEG is a valid row
    cut = (classes_dir / "c2" / "cut.jpg").read_bytes()
    with pytest.raises(OSError, match="truncated"):
        Image.open(io.BytesIO(cut)).load()  # what webdataset's decode("pil") would do mid-epoch

    binary = spark.read.format("binaryFile").load(str(classes_dir / "c2"))
    report = gpuimages.write_webdataset(binary, str(tmp_path / "raw"), num_partitions=1).collect()
    assert sum(r.samples for r in report) == 3 and sum(r.skipped for r in report) == 1
    assert "cut.jpg" in report[0].reason and "training readers cannot decode" in report[0].reason
    assert "image file is truncated" in report[0].reason
    samples = list(wds.WebDataset(_urls(tmp_path / "raw"), shardshuffle=False).decode("pil"))
    assert len(samples) == 3

    report = gpuimages.write_webdataset(images, str(tmp_path / "encoded")).collect()  # pixels re-encoded: fine
    assert sum(r.samples for r in report) == 4
    assert len(list(wds.WebDataset(_urls(tmp_path / "encoded"), shardshuffle=False).decode("pil"))) == 4


def test_labels_only_as_integers_a_trainer_parses(spark, tmp_path):
    import gpuimages

    png = [encode(rgb_array(4, 4, seed=i), "PNG") for i in range(4)]
    df = spark.createDataFrame([(png[0], 1.0, "b", [1]), (png[1], 2.5, "a", [2]), (png[2], None, "zz", [3]),
                                (png[3], 3.0, None, [4])], "content binary, score double, name string, arr array<int>")
    report = gpuimages.write_webdataset(df, str(tmp_path / "f"), label_col="score", num_partitions=1).collect()
    assert (report[0].samples, report[0].skipped) == (3, 1) and "label 2.5 is not an integer" in report[0].reason
    cls = sorted(s.get("cls") for s in wds.WebDataset(_urls(tmp_path / "f"), shardshuffle=False).decode("pil")
                 if "cls" in s)
    assert cls == [1, 3]

    report = gpuimages.write_webdataset(df, str(tmp_path / "c"), label_col="name", classes=["b", "a"],
                                        num_partitions=1).collect()
    assert (report[0].samples, report[0].skipped) == (3, 1)
    assert "label 'zz' is not among the classes" in report[0].reason
    got = {s["json"]["name"]: s["cls"] for s in wds.WebDataset(_urls(tmp_path / "c"), shardshuffle=False).decode()
           if "cls" in s}
    assert got == {"b": 0, "a": 1}
    assert json.loads((tmp_path / "c" / "_shard-classes.json").read_text()) == ["b", "a"]
    with pytest.raises(TypeError, match="label_col 'arr': expected integers"):
        gpuimages.write_webdataset(df, str(tmp_path / "x"), label_col="arr")


def test_folder_classes_of_archives_are_numbered_without_decoding(spark, tmp_path):
    """transcode_files(label_from_folder=True) over loose files and tars: the classes come from the listing and
    the members' names (an ImageNet-style per-class tar counts as its folder), the same as the composed job's."""
    import gpuimages
    from gpuimages.transcode import transcode_files

    src = tmp_path / "src"
    (src / "loose").mkdir(parents=True)
    (src / "loose" / "a.png").write_bytes(encode(rgb_array(10, 12, seed=1), "PNG"))
    for name, members in [("n02.tar", ["x.jpg", "y.jpg"]), ("mixed.tar", ["cats/1.jpg", "_dogs/2.jpg"])]:
        with tarfile.open(src / name, "w") as tar:
            for i, member in enumerate(members):
                data = encode(rgb_array(12, 14, seed=i), "JPEG")
                info = tarfile.TarInfo(member)
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    want = ["_dogs", "cats", "loose", "n02"]
    for how in ("fused", "composed"):
        jobs = transcode_files(spark, str(src), recursive=True, resize=8, device="cpu", label_from_folder=True)
        dest = tmp_path / how
        gpuimages.write_webdataset(jobs if how == "fused" else jobs.select("*"), str(dest), label_col="label")
        assert json.loads((dest / "_shard-classes.json").read_text()) == want
        samples = list(wds.WebDataset(_urls(dest), shardshuffle=False).decode("pil"))
        assert sorted((s["json"]["label"], s["cls"]) for s in samples) == [
            ("_dogs", 0), ("cats", 1), ("loose", 2), ("n02", 3), ("n02", 3)]

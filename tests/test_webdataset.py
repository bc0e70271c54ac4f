"""write_webdataset: shards of samples (image, cls, txt, json), their sizes, names and keys, atomic and
retry-safe writes, the round trip through read_images and DALI's WebDataset reader, the img2dataset job
(transcode_files into shards) and the command line."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from children import spark_child_env
from images import encode, rgb_array

from gpuimages.task.runner import run_partition
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps.shards import REPORT_FIELDS, ShardPlan, WriteShards, safe_key, shard_name

#: Largest mean absolute difference (levels) between an image and its JPEG (quality 95) written to a shard:
#: photographs, and the small synthetic test patterns (sharp gradients, which JPEG blurs more).
JPEG_MEAN_TOLERANCE = {"photo": 2.5, "pattern": 8.0}


def _tar_names(path: Path) -> list[str]:
    with tarfile.open(path) as tar:
        return tar.getnames()


def _shards(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.endswith(".tar"))


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """Real-looking photographs (JPEG) and PNGs (one with alpha, one grey) in two class folders."""
    pytest.importorskip("skimage")
    from benchmarks.data import photo_rgb

    folder = tmp_path_factory.mktemp("photos")
    rng = np.random.default_rng(3)
    for i, (h, w) in enumerate([(120, 160), (160, 120), (90, 140), (128, 128), (100, 150), (140, 100)]):
        cls = "cats" if i % 2 else "dogs"
        (folder / cls).mkdir(exist_ok=True)
        (folder / cls / f"p{i}.jpg").write_bytes(encode(photo_rgb(rng, h, w), "JPEG", quality=92))
    (folder / "cats" / "alpha.png").write_bytes(
        encode(np.concatenate([rgb_array(30, 40, seed=1), np.full((30, 40, 1), 200, np.uint8)], 2), "PNG"))
    (folder / "dogs" / "grey.png").write_bytes(encode(rgb_array(20, 24, seed=2)[:, :, 0], "PNG"))
    (folder / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    return folder


def _pixels(image) -> np.ndarray:
    return np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, image.nChannels).astype(np.int16)


@pytest.mark.parametrize("fmt", ["png", "jpeg"])
def test_round_trip_sizes_pixels_and_labels(spark, photos, tmp_path, fmt):
    from pyspark.sql import functions as F

    import gpuimages

    source = gpuimages.read_images(spark, str(photos), recursive=True, device="cpu", label_from_folder=True)
    source = source.withColumn("label_id", F.when(F.col("label") == "cats", 1).otherwise(0))
    dest = tmp_path / "shards"
    report = gpuimages.write_webdataset(source, str(dest), label_col="label_id", text_col="label",
                                        json_cols=["label", "error"], format=fmt, quality=95, max_samples=3)
    assert report.columns == [n for n, _ in REPORT_FIELDS]
    rows = report.collect()
    written = [r for r in rows if r.status == "written"]
    assert sum(r.samples for r in written) == 8 and sum(r.skipped for r in rows) == 1  # broken.jpg is not written
    assert any("broken.jpg" in (r.reason or "") for r in rows)
    assert {Path(r.shard).name for r in written} == {p.name for p in _shards(dest)}
    assert all(r.samples <= 3 and r.bytes == os.path.getsize(r.shard) for r in written)
    assert not [p for p in dest.iterdir() if p.name.startswith(".")]  # no temporary file left
    ext = "png" if fmt == "png" else "jpg"
    for shard in _shards(dest):
        names = _tar_names(shard)
        keys = [n.split(".", 1)[0] for n in names[::4]]
        assert names == [f"{k}.{e}" for k in keys for e in (ext, "cls", "txt", "json")]  # samples adjacent
        assert len(set(keys)) == len(keys)

    back = gpuimages.read_images(spark, str(dest), device="cpu", webdataset={"cls": "long", "txt": "string",
                                                                            "json": "string"})
    assert back.count() == 8
    originals = {r.image.origin: r for r in source.filter("error IS NULL").collect()}
    for r in back.collect():
        meta = json.loads(r.json)
        assert meta["error"] is None and r.txt == meta["label"] and r.cls == (1 if r.txt == "cats" else 0)
        match = [o for o in originals.values() if o.label == r.txt and o.image.height == r.image.height
                 and o.image.width == r.image.width]
        assert match, r.image.origin
        a = _pixels(r.image)
        diffs = [np.abs(a - _pixels(o.image)[:, :, : a.shape[2]]).mean() for o in match]  # JPEG drops alpha
        if fmt == "png":
            assert min(diffs) == 0  # PNG: bit for bit, alpha and grey kept
        else:
            kind = "photo" if match[diffs.index(min(diffs))].image.origin.endswith(".jpg") else "pattern"
            assert min(diffs) <= JPEG_MEAN_TOLERANCE[kind]
    assert sorted(r.image.nChannels for r in back.collect()) == (
        [1, 3, 3, 3, 3, 3, 3, 4] if fmt == "png" else [1, 3, 3, 3, 3, 3, 3, 3])


@pytest.mark.dali
def test_dali_webdataset_reader_reads_the_shards(spark, photos, tmp_path):
    pytest.importorskip("nvidia.dali")
    from nvidia.dali import fn, pipeline_def, types
    from pyspark.sql import functions as F

    import gpuimages

    source = gpuimages.read_images(spark, str(photos), recursive=True, device="cpu", label_from_folder=True,
                                   drop_invalid=True)
    source = source.withColumn("label_id", F.when(F.col("label") == "cats", 1).otherwise(0))
    dest = tmp_path / "shards"
    gpuimages.write_webdataset(source, str(dest), label_col="label_id", format="png", max_samples=5,
                               num_partitions=2)
    paths = [str(p) for p in _shards(dest)]
    assert len(paths) >= 2

    @pipeline_def(batch_size=1, num_threads=1, device_id=None, exec_dynamic=True)
    def pipe():
        encoded, cls = fn.readers.webdataset(paths=paths, ext=["png", "cls"], missing_component_behavior="error",
                                             name="reader")  # no index files: DALI infers them
        return fn.decoders.image(encoded, device="cpu", output_type=types.RGB), cls

    p = pipe()
    p.build()
    total = p.epoch_size("reader")
    assert total == 8
    dali = []
    for _ in range(total):
        image, cls = p.run()
        dali.append((np.array(image.at(0)), int(np.array(cls.at(0)).tobytes().decode())))
    back = gpuimages.read_images(spark, str(dest), device="cpu", webdataset=["cls"]).collect()
    ours = sorted((r.image.height, r.image.width, r.cls) for r in back)
    assert sorted((a.shape[0], a.shape[1], c) for a, c in dali) == ours
    for r in back:  # DALI's pixels (RGB) equal gpuimages' (BGR) for the same sample
        bgr = _pixels(r.image)
        if r.image.nChannels != 3:
            continue
        same = [a for a, c in dali if a.shape == bgr.shape and c == r.cls
                and np.array_equal(a[:, :, ::-1].astype(np.int16), bgr)]
        assert same, r.image.origin


def test_img2dataset_job_transcode_files_into_shards(spark, photos, tmp_path):
    import gpuimages
    from gpuimages.transcode import transcode_files

    jobs = transcode_files(spark, str(photos), recursive=True, resize=64, format="jpeg", quality=90, device="cpu",
                           label_from_folder=True)
    dest = tmp_path / "shards"
    report = gpuimages.write_webdataset(jobs, str(dest), label_col="label", json_cols=["origin", "height", "width"])
    assert sum(r.samples for r in report.collect()) == 8
    back = gpuimages.read_images(spark, str(dest), device="cpu", webdataset=True)
    rows = back.collect()
    assert len(rows) == 8 and all(r.error is None and min(r.image.height, r.image.width) == 64 for r in rows)
    assert json.loads((dest / "_shard-classes.json").read_text()) == ["cats", "dogs"]
    for r in rows:
        meta = json.loads(r.json)
        assert (meta["height"], meta["width"]) == (r.image.height, r.image.width)
        assert f"/{meta['label']}/" in meta["origin"]  # the label is the source's folder, its name in .json
        assert r.cls == ["cats", "dogs"].index(meta["label"])  # and its index (sorted names) in .cls
    # shards of shards: the written shards read and rewritten, the labels carried through
    again = transcode_files(spark, str(dest), resize=32, device="cpu", webdataset=["cls"])
    report = gpuimages.write_webdataset(again, str(tmp_path / "again"), label_col="cls")
    assert sum(r.samples for r in report.collect()) == 8
    names = [n for p in _shards(tmp_path / "again") for n in _tar_names(p)]
    assert sum(n.endswith(".cls") for n in names) == 8
    assert sorted(r.cls for r in gpuimages.read_images(spark, str(tmp_path / "again"), webdataset=["cls"],
                                                        device="cpu").collect()) == sorted(r.cls for r in rows)


def _samples(folder: Path) -> list[tuple]:
    """Every sample of the shards under ``folder`` as (image bytes, cls, json), sorted."""
    out = {}
    for shard in _shards(folder):
        with tarfile.open(shard) as tar:
            for m in tar:
                key, ext = m.name.split(".", 1)
                out.setdefault((shard.name, key), {})[ext] = tar.extractfile(m).read()
    return sorted((s["jpg"], s.get("cls"), s.get("json")) for s in out.values())


def test_transcode_files_result_is_written_in_its_own_tasks(spark, photos, tmp_path, caplog):
    import logging

    import gpuimages
    from gpuimages.transcode import transcode_files

    jobs = transcode_files(spark, str(photos), recursive=True, resize=48, device="cpu", label_from_folder=True)
    kwargs = {"label_col": "label", "json_cols": ["origin", "width", "height"], "num_partitions": 1}
    with caplog.at_level(logging.INFO, logger="gpuimages.webdataset"):
        fused = gpuimages.write_webdataset(jobs, str(tmp_path / "fused"), **kwargs).collect()
        assert "in the transcode's tasks" in caplog.text
        caplog.clear()
        composed = gpuimages.write_webdataset(jobs.select("*"), str(tmp_path / "composed"), **kwargs).collect()
        assert "in the transcode's tasks" not in caplog.text
    assert [(r.samples, r.skipped, r.status) for r in fused] == [(r.samples, r.skipped, r.status) for r in composed]
    assert fused[0].samples == 8 and fused[0].skipped == 1 and "broken.jpg" in fused[0].reason
    a, b = _samples(tmp_path / "fused"), _samples(tmp_path / "composed")
    assert len(a) == 8 and a == b  # the same bytes, labels (the folder) and metadata either way
    assert all(min(json.loads(j)["width"], json.loads(j)["height"]) == 48 for _, _, j in a)
    assert {c for _, c, _ in a} == {b"0", b"1"}  # cats, dogs: indices of the sorted folder names
    assert {json.loads(j)["label"] for _, _, j in a} == {"cats", "dogs"}


def test_modes_and_checks(spark, photos, tmp_path):
    import gpuimages

    source = gpuimages.read_images(spark, str(photos), recursive=True, device="cpu", drop_invalid=True)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="mode='error'"):
        gpuimages.write_webdataset(source, str(dest))
    (dest / "shard-00099-00000.tar").write_bytes(b"old")
    (dest / "other-00000-00000.tar").write_bytes(b"other prefix")
    gpuimages.write_webdataset(source, str(dest), mode="overwrite", num_partitions=1)
    names = sorted(p.name for p in dest.iterdir())
    assert names == ["notes.txt", "other-00000-00000.tar", "shard-00000-00000.tar"]
    for bad, match in [({"max_samples": 0}, "max_samples"), ({"prefix": "a.b"}, "prefix"),
                       ({"prefix": "_shard"}, "prefix: expected a prefix that does not start with '_'"),
                       ({"classes": ["a"]}, "classes: expected None unless label_col holds strings"),
                       ({"label_col": "nope"}, "label_col"), ({"json_cols": "origin"}, "json_cols"),
                       ({"mode": "append"}, "mode")]:
        with pytest.raises((ValueError, TypeError), match=match):
            gpuimages.write_webdataset(source, str(tmp_path / "x"), **bad)


# ------------------------------------------------------------------------- the task: sizes, retries, stores


def _batch(n: int, start: int = 0, size: int = 300, keys=None) -> pa.RecordBatch:
    blobs = [b"\x89PNG\r\n\x1a\n" + bytes([i % 256]) * size for i in range(start, start + n)]
    blobs[1] = None  # a row without an image
    columns = {"content": pa.array(blobs, pa.binary()), "origin": pa.array([f"o{i}" for i in range(start, start + n)]),
               "label": pa.array(list(range(start, start + n)), pa.int64())}
    if keys is not None:
        columns["key"] = pa.array(keys)
    return pa.RecordBatch.from_pydict(columns)


def _write(root: str, batches, **plan) -> pa.Table:
    step = WriteShards(ShardPlan(root=root, **{"max_samples": 4, "max_bytes": 1 << 20, **plan}), rows_per_chunk=3)
    spec = StageSpec("shards", "cpu", "content", "bytes", (step,), tuple(n for n, _ in REPORT_FIELDS),
                     origin_col="origin", error_col=None)
    return pa.Table.from_batches(list(run_partition(iter(batches), spec)))


def test_shards_cut_by_samples_and_bytes(tmp_path):
    report = _write(str(tmp_path / "a"), [_batch(10)], label_col="label").to_pylist()
    assert [(r["shard"].rsplit("/", 1)[-1], r["samples"]) for r in report] == [
        ("shard-00000-00000.tar", 4), ("shard-00000-00001.tar", 4), ("shard-00000-00002.tar", 1)]
    assert report[0]["skipped"] == 1 and "o1: no bytes (null value)" in report[0]["reason"]
    names = _tar_names(tmp_path / "a" / "shard-00000-00000.tar")
    assert names == ["00000-00000000.png", "00000-00000000.cls", "00000-00000002.png", "00000-00000002.cls",
                     "00000-00000003.png", "00000-00000003.cls", "00000-00000004.png", "00000-00000004.cls"]
    report = _write(str(tmp_path / "b"), [_batch(6, size=1500)], max_bytes=5120).to_pylist()
    assert [(r["samples"], r["bytes"]) for r in report] == [(2, 5120), (2, 5120), (1, 3072)]
    report = _write(str(tmp_path / "d"), [_batch(40, size=1500)], max_bytes=64 * 1024, max_samples=100).to_pylist()
    assert [r["samples"] for r in report] == [31, 8] and all(r["bytes"] <= 64 * 1024 for r in report)
    report = _write(str(tmp_path / "c"), [_batch(3, size=10_000)], max_bytes=4096).to_pylist()
    assert [r["samples"] for r in report] == [1, 1]  # a sample over the bound goes alone


def test_keys_from_a_column_are_safe_and_unique_in_a_shard(tmp_path):
    keys = ["a.b/c", "x", "a.b/c", "a b", None, "é" * 200]
    _write(str(tmp_path), [_batch(6, keys=keys)], key_col="key", max_samples=10)
    names = _tar_names(tmp_path / "shard-00000-00000.tar")
    assert names[:3] == ["a_b_c.png", "a_b_c-1.png", "a_b.png"]
    assert names[3] == "00000-00000004.png" and len(names[4].split(".")[0]) <= 80
    assert safe_key("..") == "_"


def test_a_retried_task_leaves_no_partial_or_duplicate_shard(tmp_path):
    root = str(tmp_path)

    def failing():
        yield _batch(6)
        raise RuntimeError("executor lost")

    with pytest.raises(RuntimeError):
        _write(root, failing(), max_samples=2)
    first = sorted(p.name for p in tmp_path.iterdir())
    assert first == ["shard-00000-00000.tar", "shard-00000-00001.tar"]  # complete shards only, no temporary
    _write(root, [_batch(6), _batch(6, start=6)], max_samples=3)  # the retry cuts differently: 11 samples
    _write(root, [_batch(6), _batch(6, start=6)], max_samples=5)  # and again: fewer shards than before
    shards = sorted(tmp_path.iterdir())
    assert [p.name for p in shards] == [shard_name("shard", 0, i) for i in range(2)]  # 3 and 2: removed
    keys = [n for p in shards for n in _tar_names(p)]
    assert len(keys) == len(set(keys)) == 10  # no duplicate sample (row 1 of each batch has no image)


def test_fsspec_store(tmp_path, monkeypatch):
    import tempfile

    fsspec = pytest.importorskip("fsspec")
    spool = tmp_path / "spool"  # the shards' local spool files go here, not to the machine's shared temp folder
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    made, temporary_file = [], tempfile.TemporaryFile
    names_seen: list[list[str]] = []

    def recorded_temporary_file(*args, **kwargs):
        made.append(temporary_file(*args, **kwargs))
        names_seen.append(os.listdir(spool))  # an unnamed spool file: nothing to leave behind if killed
        return made[-1]

    monkeypatch.setattr(tempfile, "TemporaryFile", recorded_temporary_file)
    report = _write("memory://gpuimages-test/shards", [_batch(6)], max_samples=2, label_col="label").to_pylist()
    assert [r["shard"] for r in report] == [f"memory:///gpuimages-test/shards/{shard_name('shard', 0, i)}"
                                            for i in range(3)]
    fs = fsspec.filesystem("memory")
    data = fs.cat_file("/gpuimages-test/shards/shard-00000-00000.tar")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        assert tar.getnames() == ["00000-00000000.png", "00000-00000000.cls", "00000-00000002.png",
                                  "00000-00000002.cls"]
    assert len(made) == 3 and all(f.closed for f in made)  # one spool file per shard, closed once stored
    assert names_seen == [[], [], []] and list(spool.iterdir()) == []


# --------------------------------------------------------------------------------------- command line


@pytest.mark.slow
def test_cli_convert_to_webdataset(spark, photos, tmp_path):
    dest = tmp_path / "shards"
    env = spark_child_env()
    proc = subprocess.run(
        [sys.executable, "-m", "gpuimages", "-v", "convert", str(photos), str(dest), "--format", "webdataset",
         "--resize", "32", "--label-from-folder", "--recursive", "--master", "local[1]", "--device", "cpu",
         "--shard-samples", "5"],
        env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]  # broken.jpg is not in a shard
    assert "wrote 8 samples in 2 shards (1 invalid)" in proc.stdout
    assert "broken.jpg" in proc.stderr
    names = [n for p in _shards(dest) for n in _tar_names(p)]
    assert sum(n.endswith(".jpg") for n in names) == 8 and sum(n.endswith(".cls") for n in names) == 8
    assert json.loads((dest / "_shard-classes.json").read_text()) == ["cats", "dogs"]
    assert "_shard-classes.json" in proc.stderr
    import webdataset as wds  # the package trainers read shards with, its default decoders

    samples = list(wds.WebDataset([str(p) for p in _shards(dest)], shardshuffle=False).decode("pil"))
    assert len(samples) == 8 and {s["cls"] for s in samples} == {0, 1}
    assert all(s["cls"] == ["cats", "dogs"].index(s["json"]["label"]) for s in samples)
    assert all(min(s["jpg"].size) == 32 for s in samples)
    import gpuimages

    assert gpuimages.read_images(spark, str(dest), device="cpu").count() == 8  # every decodable source image


@pytest.mark.dali
def test_training_data_example_runs(spark, photos, tmp_path, capsys):
    pytest.importorskip("nvidia.dali")
    page = (Path(__file__).resolve().parents[1] / "docs" / "training-data.md").read_text()
    code = page.split("<!-- example: training-data -->\n```python\n", 1)[1].split("```", 1)[0]
    line = 'SRC, SHARDS = "/data/photos", "/data/shards"'
    assert line in code
    code = code.replace(line, f"SRC, SHARDS = {str(photos)!r}, {str(tmp_path / 'shards')!r}")
    exec(compile(code, "docs/training-data.md", "exec"), {"__name__": "example"})  # noqa: S102 - the page's example
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "Row(sum(samples)=8, sum(skipped)=1)"
    count, labels = out[-1].split(" ", 1)[0], out[-1].rsplit("[", 1)[1].strip("]").split(", ")
    assert count == "8" and "[4, 3, 224, 224]" in out[-1]  # the epoch, a batch of normalised crops
    assert len(labels) == 4 and set(labels) <= {"0", "1"}

"""Images inside archives: tar, tar.gz and zip members as rows, WebDataset siblings, broken archives,
member sampling by Spark's rule, streaming, and the reads (read_images, decode_images, transcode_files)."""

from __future__ import annotations

import gzip
import io
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from images import encode, rgb_array

from gpuimages.options import DecodeOptions
from gpuimages.task.archive_members import ArchiveReader, Sibling, group_samples, member_origin, member_path
from gpuimages.task.hashing import sampled, spark_xxhash64
from gpuimages.task.runner import run_partition
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps.decode import Decode
from gpuimages.task.steps.unpack import Unpack

JPEG_TOLERANCE = 3  # the same JPEG bytes decode alike loose or in an archive: equal in practice


def tar_bytes(members: list[tuple[str, bytes]], mode: str = "w", fmt: int = tarfile.PAX_FORMAT) -> bytes:
    """A tar (``mode`` "w" or "w:gz") of ``(name, data)`` members, written by the standard library."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode, format=fmt) as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def zip_bytes(members: list[tuple[str, bytes]]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for name, data in members:
            z.writestr(name, data)
    return buf.getvalue()


def jpeg(seed: int, h: int = 24, w: int = 32) -> bytes:
    return encode(rgb_array(h, w, seed=seed), "JPEG", quality=92)


def png(seed: int, h: int = 10, w: int = 14) -> bytes:
    return encode(rgb_array(h, w, seed=seed), "PNG")


def webdataset_members(n: int, start: int = 0, label=lambda i: i % 3) -> list[tuple[str, bytes]]:
    """WebDataset layout: ``key.jpg``, ``key.cls``, ``key.json`` per sample (the ``.cls`` first for odd keys)."""
    out = []
    for i in range(start, start + n):
        key = f"s{i:04d}"
        sample = [(f"{key}.jpg", jpeg(i)), (f"{key}.cls", str(label(i)).encode()),
                  (f"{key}.json", f'{{"i": {i}}}'.encode())]
        out += sample[::-1] if i % 2 else sample
    return out


def _entries(data: bytes, kind: str = "tar", siblings=(), want=lambda levels: True):
    reader = ArchiveReader(tuple(siblings), want)
    return list(reader.entries(io.BytesIO(data), kind)), reader


# ----------------------------------------------------------------------------------- the task's reader


def test_tar_members_hidden_and_other_members_and_nested_tars():
    inner = tar_bytes([("n1_a.JPEG", jpeg(1)), ("n1_b.JPEG", jpeg(2))])
    data = tar_bytes([
        ("a/1.jpg", jpeg(0)), ("a/.hidden.jpg", jpeg(3)), ("_tmp/x.png", png(1)), ("k=1/_y.png", png(2)),
        ("README.txt", b"hello"), ("b/2.png", png(4)), ("n01.tar", inner),
    ])
    entries, reader = _entries(data)
    assert [e.levels for e in entries] == [("a/1.jpg",), ("_tmp/x.png",), ("k=1/_y.png",), ("b/2.png",),
                                           ("n01.tar", "n1_a.JPEG"), ("n01.tar", "n1_b.JPEG")]
    assert all(e.reason is None for e in entries)
    assert entries[0].data == jpeg(0) and entries[5].data == jpeg(2)
    assert reader.skipped == 2  # `.hidden.jpg` (no WebDataset key) and README.txt: not read; `_x` members are rows
    assert member_origin("file:///d/t.tar", ("n01.tar", "n1_a.JPEG")) == "file:///d/t.tar#n01.tar#n1_a.JPEG"
    assert member_path("file:/d/train.tar", ("n01.tar", "n1_a.JPEG")) == "file:/d/train/n01/n1_a.JPEG"


def test_members_named_from_the_current_folder():
    data = tar_bytes([("./", b""), ("./cats/1.jpg", jpeg(1)), ("./.DS_Store", b"x"), ("./2.png", png(2))])
    entries, reader = _entries(data)
    assert [e.levels for e in entries] == [("./cats/1.jpg",), ("./2.png",)] and reader.skipped == 2
    assert member_path("file:/d/x.tar", ("./cats/1.jpg",)) == "file:/d/x/cats/1.jpg"
    assert member_path("file:/d/x.tar", ("./2.png",)) == "file:/d/x/2.png"


def test_origin_escapes_hash_and_spaces_so_the_first_hash_splits():
    origin = member_origin("file:///d/a%23b.tar", ("x#y/p q%.jpg",))
    assert origin == "file:///d/a%23b.tar#x%23y/p%20q%25.jpg"
    archive, member = origin.split("#", 1)
    from urllib.parse import unquote

    assert archive == "file:///d/a%23b.tar" and unquote(member) == "x#y/p q%.jpg"


@pytest.mark.parametrize("kind", ["tar", "tgz", "zip"])
def test_siblings_grouped_by_key(kind):
    members = webdataset_members(5)
    data = {"tar": lambda m: tar_bytes(m), "tgz": lambda m: tar_bytes(m, "w:gz"), "zip": zip_bytes}[kind](members)
    siblings = (Sibling("cls", "cls", "long"), Sibling("json", "json", "string"))
    entries, _ = _entries(data, "zip" if kind == "zip" else "tar", siblings)
    rows = list(group_samples(iter(entries)))
    assert [e.levels[0] for e, _ in rows] == [f"s{i:04d}.jpg" for i in range(5)]
    assert [v["cls"] for _, v in rows] == [i % 3 for i in range(5)]
    assert [v["json"] for _, v in rows] == [f'{{"i": {i}}}' for i in range(5)]
    assert Sibling("cls", "c", "long").value(b" 7\n") == 7 and Sibling("cls", "c", "long").value(b"cat") is None
    unparsed = {}
    text = tar_bytes([("a.jpg", jpeg(1)), ("a.cls", b"cats"), ("b.jpg", jpeg(2)), ("b.cls", b"2")])
    entries, _ = _entries(text, "tar", siblings)
    assert [v["cls"] for _, v in group_samples(iter(entries), unparsed)] == [None, 2] and unparsed == {"cls": "cats"}


def test_truncated_and_broken_tars_keep_the_members_before_the_break():
    members = [(f"k{i}.jpg", jpeg(i, 40, 50)) for i in range(3)]
    full = tar_bytes(members, fmt=tarfile.USTAR_FORMAT)
    ends = []
    offset = 0
    for _, data in members:  # header + data padded to 512
        offset += 512 + (len(data) + 511) // 512 * 512
        ends.append(offset)

    def summary(data):
        entries, _ = _entries(data)
        return [(e.levels, e.reason is None) for e in entries], [e.reason for e in entries if e.reason]

    assert summary(full) == ([((f"k{i}.jpg",), True) for i in range(3)], [])
    rows, reasons = summary(full[: ends[0] + 512 + 100])  # cut inside the second member's data
    assert rows == [(("k0.jpg",), True), (("k1.jpg",), False)]
    assert reasons[0].startswith("truncated archive member: ReadError")
    rows, reasons = summary(full[: ends[1]])  # cut exactly after the second member: no end blocks
    assert rows[:2] == [(("k0.jpg",), True), (("k1.jpg",), True)] and rows[2] == ((), False)
    assert reasons[0].startswith("truncated archive: it ends after 2 member(s)")
    rows, reasons = summary(full[: ends[1] + 100])  # cut inside the third header
    assert rows[2] == ((), False) and "truncated header" in reasons[0]
    rows, reasons = summary(full[:100])
    assert rows == [((), False)] and reasons[0].startswith("broken archive: ReadError")
    rows, reasons = summary(b"not a tar at all" * 100)
    assert rows == [((), False)] and reasons[0].startswith("broken archive")
    garbage = full[: ends[0]] + b"\x01" * 512 + full[ends[0]:]  # a corrupt header after the first member
    rows, reasons = summary(garbage)
    assert rows == [(("k0.jpg",), True), ((), False)] and "after 1 member(s)" in reasons[0]


def test_truncated_gzip_tar_and_zip():
    members = [(f"k{i}.png", png(i, 60, 80)) for i in range(4)]
    tgz = tar_bytes(members, "w:gz")
    entries, _ = _entries(tgz[: len(tgz) * 2 // 3])
    assert any(e.reason is None for e in entries) and entries[-1].reason is not None
    assert all(e.data == members[int(e.levels[0][1])][1] for e in entries if e.reason is None)
    zipped = zip_bytes(members)
    entries, _ = _entries(zipped[:-30], "zip")  # the central directory is cut: the zip cannot be opened
    assert [(e.levels, e.reason.split(":")[0]) for e in entries] == [((), "broken archive")]
    corrupt = bytearray(zipped)
    start = zipped.index(b"k1.png") + len(b"k1.png") + 10  # inside the second member's deflated data
    corrupt[start:start + 20] = b"\x00" * 20
    entries, _ = _entries(bytes(corrupt), "zip")
    assert [e.reason is None for e in entries] == [True, False, True, True]
    assert entries[1].reason.startswith("broken archive member:")


def test_members_not_wanted_are_not_read():
    members = [(f"k{i}.png", png(i)) for i in range(6)]
    entries, _ = _entries(tar_bytes(members), want=lambda levels: levels[-1] in ("k1.png", "k4.png"))
    assert [e.levels[-1] for e in entries] == ["k1.png", "k4.png"]


class _Recorder(io.RawIOBase):
    """A non-seekable stream that records how far it was read."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:
        n = min(len(b), len(self.data) - self.pos)
        b[:n] = self.data[self.pos:self.pos + n]
        self.pos += n
        return n


def test_a_tar_is_streamed_member_by_member():
    members = [(f"k{i:03d}.png", png(i, 64, 64)) for i in range(40)]
    data = tar_bytes(members)
    stream = _Recorder(data)
    reader = ArchiveReader((), lambda levels: True)
    seen = []
    for entry in reader.entries(io.BufferedReader(stream, 16384), "tar"):
        seen.append((entry.levels[0], stream.pos))
    assert len(seen) == 40
    first_read_at = seen[0][1]
    assert first_read_at < len(data) // 10  # the first member came long before the archive was read
    assert all(a[1] <= b[1] for a, b in zip(seen, seen[1:], strict=False))


# ------------------------------------------------------------------------------- sampling: Spark's rule


def test_member_sampling_is_sparks_xxhash64_rule(spark):
    from pyspark.sql import functions as F

    from gpuimages.sources.columns import sample_sql

    origins = [member_origin("file:///data/shard-0.tar", (f"d/{i:05d}.jpg",)) for i in range(400)]
    for seed in (0, 11, -5, -(2**63), 2**63 - 1):
        df = spark.createDataFrame([(o,) for o in origins], "origin string")
        hashes = {r.origin: r.h & ((1 << 64) - 1) for r in
                  df.select("origin", F.xxhash64(F.lit(seed).cast("long"), "origin").alias("h")).collect()}
        assert all(hashes[o] == spark_xxhash64(seed, o) for o in origins)
        kept = {r.origin for r in df.filter(sample_sql("origin", 0.3, seed)).collect()}
        assert kept == {o for o in origins if sampled(o, 0.3, seed)}
        assert 80 < len(kept) < 160


# ------------------------------------------------------------------------------------ the runner's parts


class _Sizer:
    """A stand-in for the decode step: rows per chunk and predicted bytes (= the member's length)."""

    name = "sizer"

    def chunk_rows(self, rows_per_batch):
        return rows_per_batch

    def predicted_bytes(self, value):
        return len(value.as_py() or b"")


def test_unpack_parts_are_bounded_and_repeat_the_archive_row(tmp_path):
    from gpuimages.task.steps.base import Step

    class Lengths(Step):
        name = "lengths"

        def run(self, work):
            work.columns["n"] = pa.array([len(b or b"") for b in work.blobs], pa.int64())
            work.columns["k"] = pa.array([len(work)] * len(work), pa.int64())  # rows in this part

    members = [(f"m{i:02d}.png", bytes([i]) * (100 + i)) for i in range(10)]
    (tmp_path / "a.tar").write_bytes(tar_bytes(members))
    batch = pa.RecordBatch.from_arrays(
        [pa.array([1, 2, 3]), pa.array([b"loose", None, b"x" * 50], pa.binary()),
         pa.array([f"file:{tmp_path}/l.png", f"file:{tmp_path}/a.tar", f"file:{tmp_path}/z.png"])],
        names=["id", "content", "path"],
    )
    unpack = Unpack("content", _Sizer(), max_batch_bytes=450, path_col="path")
    spec = StageSpec("t", "cpu", "content", "bytes", (unpack, Lengths()), ("id", "path", "n", "k", "error"),
                     origin_col="path", origin_is_path=True, rows_per_batch=4)
    out = pa.Table.from_batches(list(run_partition(iter([batch]), spec))).to_pydict()
    assert out["id"] == [1] + [2] * 10 + [3]
    assert out["n"] == [5] + [100 + i for i in range(10)] + [50]
    assert max(out["k"]) <= 4  # rows per part
    starts = np.cumsum([0] + out["k"][:-1])
    assert out["path"][1] == f"file:{tmp_path}/a/m00.png" and out["path"][0] == f"file:{tmp_path}/l.png"
    # every part's predicted bytes within the budget (one larger row alone)
    sizes = out["n"]
    i = 0
    while i < len(sizes):
        k = out["k"][i]
        assert k == 1 or sum(sizes[i:i + k]) <= 450
        i += k
    assert len(starts) == 12


# --------------------------------------------------------------------------------------- Spark reads


@pytest.fixture(scope="module")
def shard_dir(tmp_path_factory) -> Path:
    """``split=train/``: two WebDataset tars (stdlib), a tgz, a zip with class folders, a loose file;
    ``split=val/``: a tar; plus broken archives under ``broken/``."""
    root = tmp_path_factory.mktemp("shards")
    train = root / "split=train"
    train.mkdir()
    (train / "shard-000.tar").write_bytes(tar_bytes(webdataset_members(6)))
    (train / "shard-001.tar").write_bytes(tar_bytes(webdataset_members(5, start=6)))
    (train / "extra.tar.gz").write_bytes(tar_bytes([("cats/c1.png", png(31)), ("dogs/d1.png", png(32))], "w:gz"))
    (train / "classes #1.zip").write_bytes(zip_bytes([("cats/a b.jpg", jpeg(40)), ("dogs/x#y.png", png(41))]))
    (train / "loose.png").write_bytes(png(50))
    val = root / "split=val"
    val.mkdir()
    (val / "n01440764.tar").write_bytes(tar_bytes([("n01440764_1.JPEG", jpeg(60)), ("n01440764_2.JPEG", jpeg(61))]))
    return root


@pytest.fixture(scope="module")
def loose_images(shard_dir) -> dict[str, bytes]:
    """Every image member's bytes by its member name (what the archives hold)."""
    found = {}
    for path in shard_dir.rglob("*"):
        if path.suffix == ".zip":
            with zipfile.ZipFile(path) as z:
                found.update({n: z.read(n) for n in z.namelist()})
        elif path.name.endswith((".tar", ".tar.gz")):
            with tarfile.open(path) as t:
                found.update({m.name: t.extractfile(m).read() for m in t if m.isfile()})
    return {k: v for k, v in found.items() if k.rsplit(".", 1)[-1].lower() in ("jpg", "jpeg", "png")}


def _short(origin: str) -> str:
    """``<archive file name>#<member>`` (or the file name) of an origin."""
    archive, hash_, member = origin.partition("#")
    return archive.rsplit("/", 1)[-1] + hash_ + member


def _pixels(image) -> np.ndarray:
    return np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, image.nChannels)


def test_read_images_rows_origins_partitions_labels_siblings_and_pixels(spark, shard_dir, loose_images):
    import gpuimages
    from gpuimages.engines.pillow import PillowEngine
    from gpuimages.uris import to_origin

    df = gpuimages.read_images(spark, str(shard_dir), device="cpu", label_from_folder=True, webdataset=["cls", "json"])
    assert df.columns == ["image", "error", "cls", "json", "split", "label"]
    rows = df.collect()
    assert len(rows) == 6 + 5 + 2 + 2 + 1 + 2 and all(r.error is None for r in rows)
    by = {_short(r.image.origin): r for r in rows}
    archive = to_origin(f"file:{shard_dir}/split=train/shard-000.tar")
    assert f"{archive}#s0003.jpg" in {r.image.origin for r in rows}
    assert "classes%20%231.zip#cats/a%20b.jpg" in by and "classes%20%231.zip#dogs/x%23y.png" in by
    s3 = by["shard-000.tar#s0003.jpg"]
    assert (s3.cls, s3.json, s3.split, s3.label) == (0, '{"i": 3}', "train", "shard-000")
    assert by["classes%20%231.zip#dogs/x%23y.png"].label == "dogs" and by["extra.tar.gz#cats/c1.png"].label == "cats"
    assert by["n01440764.tar#n01440764_2.JPEG"].label == "n01440764"  # ImageNet's per-class tars
    assert by["n01440764.tar#n01440764_2.JPEG"].split == "val" and by["loose.png"].cls is None
    assert sorted(r.cls for r in rows if r.cls is not None) == sorted(i % 3 for i in range(11))
    engine = PillowEngine(DecodeOptions())
    for r in rows:
        if r.image.origin.endswith("loose.png"):
            continue
        from urllib.parse import unquote

        member = unquote(r.image.origin.split("#", 1)[1])
        expected = engine.decode([loose_images[member]]).images()[0]
        got = _pixels(r.image)
        assert got.shape == expected.shape, member
        tolerance = 0 if member.endswith(".png") else JPEG_TOLERANCE
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance, member


def test_read_archives_through_spark_equals_by_path(spark, shard_dir):
    import gpuimages

    def read(mode):
        df = gpuimages.read_images(spark, str(shard_dir), device="cpu", archives=mode, webdataset=True)
        return sorted((r.image.origin, bytes(r.image.data), r.cls, r.txt) for r in df.collect())

    by_path, by_spark = read(True), read("content")
    assert by_path == by_spark and len(by_path) == 18


def test_archives_off_gives_one_invalid_row_per_archive(spark, shard_dir):
    import gpuimages

    rows = gpuimages.read_images(spark, str(shard_dir), device="cpu", archives=False).collect()
    assert len(rows) == 6  # five archives and the loose file
    assert sum(r.error is None for r in rows) == 1


def test_member_sampling_in_reads_is_sparks_rule_and_loose_files_unchanged(spark, shard_dir, tmp_path):

    import gpuimages
    from gpuimages.sources.columns import sample_sql

    everything = gpuimages.read_images(spark, str(shard_dir), device="cpu").select("image.origin")
    for seed in (0, 3):
        sample = gpuimages.read_images(spark, str(shard_dir), device="cpu", sample_ratio=0.5, seed=seed)
        got = sorted(r.origin for r in sample.select("image.origin").collect())
        expected = sorted(r.origin for r in everything.filter(sample_sql("origin", 0.5, seed)).collect())
        assert got == expected and 0 < len(got) < 18
    loose = tmp_path / "loose"
    loose.mkdir()
    for i in range(30):
        (loose / f"f{i}.png").write_bytes(png(i, 4, 4))

    def origins(archives):
        df = gpuimages.read_images(spark, str(loose), device="cpu", sample_ratio=0.4, seed=9, archives=archives)
        return sorted(r.origin for r in df.select("image.origin").collect())

    assert origins(True) == origins(False) and 0 < len(origins(True)) < 30


def test_broken_archives_are_rows_with_reasons(spark, tmp_path):
    import gpuimages

    members = [(f"k{i}.jpg", jpeg(i, 40, 50)) for i in range(3)]
    full = tar_bytes(members, fmt=tarfile.USTAR_FORMAT)
    (tmp_path / "cut.tar").write_bytes(full[: 512 * 2 + len(full) // 4])
    (tmp_path / "garbage.tar").write_bytes(b"\x00garbage" * 300)
    (tmp_path / "empty.tar").write_bytes(b"")
    z = zip_bytes(members)
    (tmp_path / "cut.zip").write_bytes(z[: len(z) // 2])
    (tmp_path / "cut.tgz").write_bytes(gzip.compress(full)[:200])
    (tmp_path / "text.tar").write_bytes(tar_bytes([("README.txt", b"no images here")]))
    rows = gpuimages.read_images(spark, str(tmp_path), device="cpu").collect()
    by = {_short(r.image.origin): r for r in rows}
    assert by["garbage.tar"].error.startswith("broken archive") and by["garbage.tar"].image.height == -1
    assert by["cut.zip"].error.startswith("broken archive: BadZipFile")
    assert by["empty.tar"].error.startswith("no bytes read")
    assert by["text.tar"].error == "archive holds no image member (its other members are not read as images)"
    assert set(k for k in by if k.startswith("cut.tgz")) == {"cut.tgz#k0.jpg"}  # the gzip stream ends in it
    assert by["cut.tgz#k0.jpg"].error.startswith("truncated archive member")
    cut = sorted(k for k in by if k.startswith("cut.tar"))
    assert by["cut.tar#k0.jpg"].error is None  # the member before the break keeps its row
    assert any(by[k].error and by[k].error.startswith("truncated archive member") for k in cut)
    assert gpuimages.read_images(spark, str(tmp_path), device="cpu", drop_invalid=True).count() == 1


def test_decode_images_of_archive_bytes(spark, shard_dir):
    import gpuimages

    binary = spark.read.format("binaryFile").option("pathGlobFilter", "*.tar").option("recursiveFileLookup", "true") \
        .load(str(shard_dir))
    one = gpuimages.decode_images(binary, device="cpu")
    assert one.count() == 3 and one.filter("error IS NULL").count() == 0  # a tar is not an image
    out = gpuimages.decode_images(binary, device="cpu", archives=True, webdataset=["cls"], keep_input=True)
    assert out.columns == ["path", "modificationTime", "length", "content", "cls", "image", "error"]
    rows = out.collect()
    assert len(rows) == 6 + 5 + 2 and all(r.error is None for r in rows)
    r = next(r for r in rows if r.image.origin.endswith("shard-001.tar#s0007.jpg"))
    assert r.path.endswith("shard-001.tar") and r.cls == 1 and r.content == jpeg(7)


def test_transcode_files_reads_members(spark, shard_dir):
    from gpuimages.transcode import transcode_files

    out = transcode_files(spark, str(shard_dir), resize=8, device="cpu", webdataset=["cls"], label_from_folder=True)
    assert out.columns == ["origin", "height", "width", "encoded", "error", "cls", "split", "label"]
    rows = out.collect()
    assert len(rows) == 18 and all(r.error is None and min(r.height, r.width) == 8 for r in rows)
    assert {r.label for r in rows if "#n01440764" in r.origin} == {"n01440764"}


def test_local_archives_are_found_by_the_drivers_walk_without_a_spark_job(spark, tmp_path):
    import re

    from gpuimages.reader import file_inputs
    from gpuimages.sources.archives import archive_plan
    from gpuimages.stage import session_conf

    for i in range(4):
        (tmp_path / f"f{i}.png").write_bytes(png(i, 4, 4))
    conf = session_conf(spark)
    tracker = spark.sparkContext.statusTracker()

    def plan(archives) -> tuple[str, list[str]]:
        spark.sparkContext.setJobGroup("plan-archives", "planning only")
        try:
            inputs = file_inputs(spark, [str(tmp_path)], recursive=False, path_glob_filter=None, sample_ratio=1.0,
                                 seed=0, keep_unread=True, label_from_folder=False, conf=conf, archive_plan=archives)
        finally:
            spark.sparkContext.setLocalProperty("spark.jobGroup.id", None)
        text = re.sub(r"#\d+|plan_id=\d+", "", inputs.frame._jdf.queryExecution().optimizedPlan().toString())
        return text, [s.name for s in inputs.steps(Decode(DecodeOptions()), 1 << 20)]

    without = plan(None)
    assert plan(archive_plan(True, False, [str(tmp_path)])) == without
    assert without[1] == ["read-local"] and "binaryFile" not in without[0]  # local files: read in the task
    (tmp_path / "a.tar").write_bytes(tar_bytes([("x.png", png(9))]))
    text, steps = plan(archive_plan(True, False, [str(tmp_path)]))
    assert steps == ["read-local", "unpack"] and "binaryFile" not in text
    assert tracker.getJobIdsForGroup("plan-archives") == []  # neither plan ran a job


def test_archives_keep_the_scans_partitions(spark, shard_dir):
    """Spark packs archives into scan partitions by size (here one each); the stage keeps them, so archives
    are spread over tasks that Spark's scheduler balances, not coalesced into the 2 slots' tasks."""
    from pyspark.sql import functions as F

    import gpuimages

    old = spark.conf.get("spark.sql.files.maxPartitionBytes")
    spark.conf.set("spark.sql.files.maxPartitionBytes", "1")  # as with archives of more than 128 MB each
    try:
        rows = gpuimages.read_images(spark, str(shard_dir), device="cpu").select(
            "image.origin", F.spark_partition_id().alias("task")).collect()
    finally:
        spark.conf.set("spark.sql.files.maxPartitionBytes", old)
    tasks = {}
    for r in rows:
        tasks.setdefault(r.origin.split("#", 1)[0], set()).add(r.task)
    archives = {a: t for a, t in tasks.items() if a.endswith((".tar", ".gz", ".zip"))}
    assert len(archives) == 5 and all(len(t) == 1 for t in archives.values())
    assert len(set().union(*archives.values())) == 5  # a task each


@pytest.mark.connect
def test_archives_on_spark_connect(spark, connect_server, shard_dir, tmp_path):
    from connect_server import connect_session

    import gpuimages

    options = {"device": "cpu", "webdataset": True, "sample_ratio": 0.7, "seed": 4, "label_from_folder": True}
    with connect_session(connect_server) as remote:
        df = gpuimages.read_images(remote, str(shard_dir), **options)
        assert type(df).__module__.startswith("pyspark.sql.connect")
        rows = [(r.image.origin, r.image.height, r.error, r.cls, r.label) for r in df.collect()]
        report = gpuimages.write_webdataset(df.filter("error IS NULL"), str(tmp_path / "shards"), label_col="cls",
                                            max_samples=4)
        samples = sum(r.samples for r in report.collect())
    df = gpuimages.read_images(spark, str(shard_dir), **options)
    classic = [(r.image.origin, r.image.height, r.error, r.cls, r.label) for r in df.collect()]
    assert sorted(rows) == sorted(classic) and 0 < len(classic) < 18
    assert samples == len(classic)

"""Object stores end to end: ``s3a://`` against a local S3 server (moto on 127.0.0.1, tests/s3.py).

Reads go through Spark's S3A filesystem (hadoop-aws, tests/s3_jars.py); archives and writes through
s3fs in the tasks, configured only from the session's ``spark.hadoop.fs.s3a.*`` settings (the
environment names no endpoint). Expectations are those of local files, checked against boto3's view
of the bucket and Pillow.
"""

from __future__ import annotations

import io
import os
import tarfile
from urllib.parse import unquote

import numpy as np
import pytest
import s3
from images import encode, rgb_array
from PIL import Image

BUCKET = "gpuimages-s3-tests"

# keys a new user's bucket holds: spaces, '#', '%', '+', '::', non-ASCII, a zero-byte object, a partition prefix
ODD_KEYS = {
    "images/plain.jpg": ("JPEG", 0),
    "images/with space.jpg": ("JPEG", 1),
    "images/hash#1.png": ("PNG", 2),
    "images/100% x.jpg": ("JPEG", 3),
    "images/a+b.png": ("PNG", 4),
    "images/colon::key.jpg": ("JPEG", 5),
    "images/café 猫.jpg": ("JPEG", 6),
}


def _image(fmt: str, seed: int) -> bytes:
    return encode(rgb_array(12, 16, seed=seed), fmt, **({"quality": 95} if fmt == "JPEG" else {}))


def _tar(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


@pytest.fixture(scope="module")
def bucket(spark):
    s3.require_s3()
    objects = {key: _image(fmt, seed) for key, (fmt, seed) in ODD_KEYS.items()}
    objects["images/empty.jpg"] = b""
    objects["parts/cls=cat/c1.jpg"] = _image("JPEG", 10)
    objects["parts/cls=dog/d1.png"] = _image("PNG", 11)
    members = {"m0.jpg": _image("JPEG", 20), "m0.cls": b"7", "m1.jpg": _image("JPEG", 21), "m2.jpg": _image("JPEG", 22)}
    objects["arch/shard::0 a.tar"] = _tar(members)  # WebDataset: a sample's members are adjacent
    for i in range(40):
        objects[f"many/f{i:03d}.png"] = _image("PNG", 100 + i)
    return s3.make_bucket(BUCKET, objects)


def _key(origin: str) -> str:
    """The object key an origin (a %-escaped URI) names."""
    return unquote(origin.split(f"{BUCKET}/", 1)[1])


def test_readme_example_reads_a_bucket(spark, bucket):
    import gpuimages

    df = gpuimages.read_images(spark, f"s3a://{BUCKET}/images/", recursive=True, device="auto")
    rows = {_key(r.image.origin): r for r in df.collect()}
    assert len(rows) == len(ODD_KEYS) + 1  # every object a row, the zero-byte one included
    for key, (fmt, seed) in ODD_KEYS.items():
        row = rows[key]
        assert row.error is None, (key, row.error)
        want = np.asarray(Image.open(io.BytesIO(_image(fmt, seed))).convert("RGB"))[:, :, ::-1]
        got = np.frombuffer(row.image.data, np.uint8).reshape(row.image.height, row.image.width, 3)
        assert np.array_equal(got, want), key
    empty = rows["images/empty.jpg"]
    assert empty.error


def test_partition_columns_from_key_prefixes(spark, bucket):
    import gpuimages

    df = gpuimages.read_images(spark, f"s3a://{BUCKET}/parts/")
    assert sorted((r.cls, r.image.origin.rsplit("/", 1)[-1]) for r in df.collect()) == [("cat", "c1.jpg"),
                                                                                      ("dog", "d1.png")]


def test_sample_is_the_same_for_s3_and_s3a(spark, bucket):
    import gpuimages

    def sampled(scheme: str) -> list[str]:
        df = gpuimages.read_images(spark, f"{scheme}://{BUCKET}/many/", sample_ratio=0.3, seed=7)
        return sorted(r.origin.split("://", 1)[1] for r in df.select("image.origin").collect())

    a, b = sampled("s3a"), sampled("s3")
    assert a == b and 0 < len(a) < 40


def test_object_deleted_between_listing_and_read_is_a_row(spark, bucket):
    import gpuimages

    s3.make_bucket("gpuimages-s3-deleted", {"d/a.jpg": _image("JPEG", 1), "d/b.jpg": _image("JPEG", 2)})
    df = gpuimages.read_images(spark, "s3a://gpuimages-s3-deleted/d/")
    s3.client().delete_object(Bucket="gpuimages-s3-deleted", Key="d/b.jpg")
    rows = {r.image.origin.rsplit("/", 1)[-1]: r.error for r in df.collect()}
    assert set(rows) == {"a.jpg", "b.jpg"} and rows["a.jpg"] is None and rows["b.jpg"]
    kept = gpuimages.read_images(spark, "s3a://gpuimages-s3-deleted/d/", drop_invalid=True)
    assert [r.image.origin.rsplit("/", 1)[-1] for r in kept.collect()] == ["a.jpg"]


def test_decode_images_of_binary_read(spark, bucket):
    import gpuimages

    raw = spark.read.format("binaryFile").load(f"s3a://{BUCKET}/parts/cls=cat/")
    out = gpuimages.decode_images(raw, "content").collect()
    assert len(out) == 1 and out[0].image.height == 12 and out[0].image.width == 16


def test_archive_streamed_by_ranges_with_colons_in_its_key(spark, bucket):
    import gpuimages

    server = s3.require_s3()
    previous = spark.conf.get("spark.sql.sources.binaryFile.maxLength", None)
    spark.conf.set("spark.sql.sources.binaryFile.maxLength", "1000")  # the tar is larger: Spark must not read it
    try:
        mark = server.mark()
        df = gpuimages.read_images(spark, f"s3a://{BUCKET}/arch/", webdataset=True)
        rows = sorted((r.image.origin.rsplit("#", 1)[-1], r.cls, r.error) for r in df.collect())
    finally:
        spark.conf.unset("spark.sql.sources.binaryFile.maxLength") if previous is None else \
            spark.conf.set("spark.sql.sources.binaryFile.maxLength", previous)
    assert rows == [("m0.jpg", 7, None), ("m1.jpg", None, None), ("m2.jpg", None, None)]
    gets = [r for r in server.since(mark) if r.method == "GET" and "shard" in r.path]
    assert gets  # read by the task through s3fs (range GETs), not through binaryFile's content


def test_transcode_files_from_a_bucket(spark, bucket):
    import gpuimages

    rows = gpuimages.transcode_files(spark, f"s3a://{BUCKET}/parts/", format="png").collect()
    assert len(rows) == 2
    for r in rows:
        assert r.error is None and Image.open(io.BytesIO(r.encoded)).size == (16, 12)


def _bytes_frame(spark, names: list[str]):
    data = [(n, _image("JPEG", i)) for i, n in enumerate(names)]
    return spark.createDataFrame(data, "name string, content binary").repartition(2)


def test_write_images_keeps_scheme_and_names_and_leaves_no_claims(spark, bucket):
    import gpuimages

    server = s3.require_s3()
    s3.make_bucket("gpuimages-s3-write")
    names = ["p%20q.jpg", "100%25 x%2Fy.jpg", "plain.jpg", "a::b.jpg"]
    df = _bytes_frame(spark, names)
    mark = server.mark()
    report = gpuimages.write_images(df, "s3a://gpuimages-s3-write/out/", "content", name_col="name")
    requests = server.since(mark)
    rows = sorted(report.collect(), key=lambda r: r.path)
    assert all(r.status == "written" for r in rows), [r.reason for r in rows]
    assert all(r.path.startswith("s3a://gpuimages-s3-write/out/") for r in rows)
    written = s3.keys("gpuimages-s3-write")
    # %-escapes taken literally; ':' is replaced in every file name written (as '/' and control characters)
    files = ["p%20q.jpg", "100%25 x%2Fy.jpg", "plain.jpg", "a_b.jpg"]
    assert written == sorted(f"out/{n}" for n in files)  # and no claims left
    for i, n in enumerate(files):
        assert s3.read("gpuimages-s3-write", f"out/{n}") == _image("JPEG", i)
    # Spark reads back what the report names
    back = spark.read.format("binaryFile").load([r.path for r in rows]).count()
    assert back == len(names)
    task_puts = [r for r in requests if r.method == "PUT" and "/out/" in r.path]
    assert len(task_puts) <= 2 * len(names)  # a claim and a file per row


def test_writes_are_exactly_once_across_retried_tasks(spark, bucket):
    from gpuimages.sources.stores import store_settings
    from gpuimages.task.claims import WritePlan, Writer
    from gpuimages.task.stores import FsspecStore

    s3.make_bucket("gpuimages-s3-retry")
    settings = store_settings(spark)
    plan = WritePlan(root="s3a://gpuimages-s3-retry/o", input_col="content", input_is_struct=False,
                     origin_col="origin", name_col=None, partition_by=None, mode="error", extension=None,
                     store_settings=settings)
    def attempt() -> list:  # one task attempt: a new writer (and store) over the same rows
        writer = Writer(plan, FsspecStore(plan.root, settings), 0)
        return [writer.write(r, f"s3a://x/{n}.jpg", None, None, b"\xff\xd8\xff1") for r, n in enumerate("aba")]

    first, again = attempt(), attempt()
    assert first == again and all(s == "written" for _, s, _ in first)
    files = [k for k in s3.keys("gpuimages-s3-retry") if not k.startswith("o/.gpuimages-write-")]
    assert files == ["o/a-1.jpg", "o/a.jpg", "o/b.jpg"]
    other = WritePlan(**{**plan.__dict__, "job_id": "f" * 32})  # another job: the files exist before it
    outcome = Writer(other, FsspecStore(plan.root, settings), 0).write(0, "s3a://x/a.jpg", None, None,
                                                                         b"\xff\xd8\xff2")
    assert outcome[1] == "written" and outcome[0] != "gpuimages-s3-retry/o/a.jpg"
    assert s3.read("gpuimages-s3-retry", "o/a.jpg") == b"\xff\xd8\xff1"


def test_mode_error_is_not_fooled_by_a_cached_listing(spark, bucket):
    import s3fs

    import gpuimages

    s3.make_bucket("gpuimages-s3-stale")
    user_fs = s3fs.S3FileSystem(key=s3.KEY, secret=s3.SECRET, client_kwargs={"endpoint_url": s3.require_s3().endpoint})
    user_fs.ls("gpuimages-s3-stale")  # a user's listing, cached in s3fs's shared instance
    df = _bytes_frame(spark, ["a.jpg", "b.jpg"])
    gpuimages.write_webdataset(df, "s3a://gpuimages-s3-stale/shards/", "content", num_partitions=2)
    before = {k: s3.read("gpuimages-s3-stale", k) for k in s3.keys("gpuimages-s3-stale")}
    assert before and all(k.endswith(".tar") for k in before)
    user_fs.ls("gpuimages-s3-stale/")
    with pytest.raises(FileExistsError):
        gpuimages.write_webdataset(df, "s3a://gpuimages-s3-stale/shards/", "content", num_partitions=2)
    assert {k: s3.read("gpuimages-s3-stale", k) for k in s3.keys("gpuimages-s3-stale")} == before


def test_webdataset_overwrite_replaces_every_old_shard(spark, bucket):
    import gpuimages

    s3.make_bucket("gpuimages-s3-shards")
    df = _bytes_frame(spark, [f"{i}.jpg" for i in range(8)])
    dest = "s3a://gpuimages-s3-shards/wds/"
    gpuimages.write_webdataset(df, dest, "content", num_partitions=4, mode="overwrite")
    report = gpuimages.write_webdataset(df, dest, "content", num_partitions=2, mode="overwrite").collect()
    assert all(r.shard.startswith("s3a://") for r in report)
    tars = [k for k in s3.keys("gpuimages-s3-shards") if k.endswith(".tar")]
    assert len(tars) == 2 and sorted(f"wds/{r.shard.rsplit('/', 1)[-1]}" for r in report) == tars
    samples = sum(len([m for m in tarfile.open(fileobj=io.BytesIO(s3.read("gpuimages-s3-shards", k))).getnames()
                       if m.endswith(".jpg")]) for k in tars)
    assert samples == 8
    assert s3.keys("gpuimages-s3-shards", "wds/.") == []  # no temporary objects


def test_missing_bucket_is_an_error_and_never_created(spark, bucket):
    import gpuimages

    df = _bytes_frame(spark, ["a.jpg"])
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gpuimages.write_images(df, "s3a://gpuimages-s3-mistyped/out/", "content")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        gpuimages.write_webdataset(df, "s3a://gpuimages-s3-mistyped/out/", "content")
    buckets = [b["Name"] for b in s3.client().list_buckets()["Buckets"]]
    assert "gpuimages-s3-mistyped" not in buckets


def test_convert_cli_writes_shards_to_a_bucket(spark, bucket, capsys):
    from gpuimages.cli import main

    s3.make_bucket("gpuimages-s3-cli")
    code = main(["convert", f"s3a://{BUCKET}/parts/", "s3a://gpuimages-s3-cli/wds/", "--format", "webdataset",
                 "--master", "local[2]"])
    assert code == 0, capsys.readouterr()
    tars = [k for k in s3.keys("gpuimages-s3-cli") if k.endswith(".tar")]
    members = [m for k in tars for m in tarfile.open(fileobj=io.BytesIO(s3.read("gpuimages-s3-cli", k))).getnames()]
    assert len([m for m in members if m.endswith(".jpg")]) == 2


def test_settings_reach_the_tasks_only_through_spark(spark, bucket):
    from gpuimages.sources.stores import store_settings
    from gpuimages.task.filesystems import fsspec_options

    assert not any(k.startswith("AWS_ENDPOINT_URL") for k in os.environ)
    options = fsspec_options(store_settings(spark), f"s3a://{BUCKET}/x")
    assert options["client_kwargs"]["endpoint_url"] == s3.require_s3().endpoint
    assert options["config_kwargs"] == {"s3": {"addressing_style": "path"}}
    assert (options["key"], options["secret"]) == (s3.KEY, s3.SECRET)

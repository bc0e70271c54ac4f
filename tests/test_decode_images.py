"""decode_images on tables of encoded bytes: same images as read_images, extra columns kept, options checked early.

Origins: ``decode_images`` copies ``origin_col`` into ``image.origin`` verbatim. Spark's ``binaryFile``
source gives Hadoop path strings (``file:/tmp/x/with space.jpg``) while ``read_images`` (like
Spark's image source) gives URIs (``file:///tmp/x/with%20space.jpg``); the tests below check both
forms and compare rows on the decoded local path.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest
from pyspark.sql import functions as F
from pyspark.sql.types import BinaryType, IntegerType, StringType, StructField, StructType

import gpuimages
from gpuimages.uris import to_origin

INVALID = {"empty.jpg", "text.jpg", "truncated.jpg", "bomb.png"}
TABLE_SCHEMA = StructType(
    [
        StructField("id", IntegerType(), False),
        StructField("label", StringType(), True),
        StructField("ds", StringType(), True),
        StructField("origin", StringType(), True),
        StructField("content", BinaryType(), True),
    ]
)


def local_path(origin: str) -> str:
    """The local file path of a ``file:`` origin in either form (URI or Hadoop path string)."""
    return unquote(urlparse(origin).path)


def image_tuple(image) -> tuple:
    """An image struct without its origin, for comparing decoded images."""
    return (image.height, image.width, image.nChannels, image.mode, bytes(image.data))


def assert_invalid(row, error_col: str = "error", image_col: str = "image") -> None:
    """Spark's invalid row (-1 sizes, mode -1, empty data) with a non-empty reason."""
    image = row[image_col]
    assert (image.height, image.width, image.nChannels, image.mode, bytes(image.data)) == (-1, -1, -1, -1, b"")
    assert isinstance(row[error_col], str) and row[error_col].strip()


@contextmanager
def no_spark_job(spark) -> Iterator[None]:
    """Fail if a Spark job starts inside the block (checked through a job group).

    The check runs when the block ends normally: nest ``pytest.raises`` inside it.
    """
    sc = spark.sparkContext
    group = f"no-job-{uuid.uuid4().hex}"
    sc.setJobGroup(group, "must not run a job")
    try:
        yield
    finally:
        jobs = sc.statusTracker().getJobIdsForGroup(group)
        sc.setLocalProperty("spark.jobGroup.id", None)
        sc.setLocalProperty("spark.job.description", None)
    assert list(jobs) == [], f"a Spark job ran: {list(jobs)}"


@pytest.fixture(scope="module")
def odd_bytes(odd_dir) -> dict[str, bytes]:
    """Every odd file's bytes, read on the test side."""
    return {p.name: p.read_bytes() for p in sorted(odd_dir.iterdir())}


@pytest.fixture(scope="module")
def expected(spark, odd_dir) -> dict[str, object]:
    """read_images on the odd files: file name -> row (image, error)."""
    rows = gpuimages.read_images(spark, str(odd_dir), device="cpu").collect()
    return {Path(local_path(r.image.origin)).name: r for r in rows}


@pytest.fixture(scope="module")
def table(spark, odd_dir, odd_bytes):
    """A table of bytes: int id, string label, partition-like ``ds``, URI origin and content."""
    rows = [
        (i, name.rsplit(".", 1)[-1], f"2026-11-{24 + i % 2}", (odd_dir / name).as_uri(), data)
        for i, (name, data) in enumerate(odd_bytes.items())
    ]
    return spark.createDataFrame(rows, TABLE_SCHEMA)


@pytest.fixture(scope="module")
def table_rows(table) -> dict[int, object]:
    return {r.id: r for r in table.collect()}


@pytest.fixture(scope="module")
def decoded_table(table) -> dict[int, object]:
    out = gpuimages.decode_images(table, origin_col="origin", device="cpu").collect()
    return {r.id: r for r in out}


def test_table_columns_and_one_row_per_input_row(table, table_rows, decoded_table):
    out = gpuimages.decode_images(table, origin_col="origin", device="cpu")
    assert out.columns == ["id", "label", "ds", "origin", "image", "error"]  # content dropped, order kept
    assert sorted(decoded_table) == sorted(table_rows)  # one row per input row, none duplicated
    assert len(decoded_table) == table.count()
    for i, row in decoded_table.items():
        src = table_rows[i]
        assert (row.label, row.ds, row.origin) == (src.label, src.ds, src.origin)
        assert row.image.origin == src.origin  # origin_col is copied verbatim


def test_table_images_equal_read_images(table_rows, decoded_table, expected):
    names = {i: Path(local_path(r.origin)).name for i, r in table_rows.items()}
    assert set(names.values()) == set(expected)
    for i, row in decoded_table.items():
        ref = expected[names[i]]
        assert row.image.origin == ref.image.origin  # the table's origins are URIs, as read_images gives
        if names[i] in INVALID:
            assert_invalid(row)
            assert_invalid(ref)
        else:
            assert row.error is None and row.image.height > 0
            assert image_tuple(row.image) == image_tuple(ref.image), names[i]
    assert {names[i] for i, r in decoded_table.items() if r.error is not None} == INVALID


def test_empty_bytes_in_a_table_are_invalid_with_a_reason(table_rows, decoded_table):
    """A zero-length value is in the table (unlike the binaryFile source, which skips empty files)."""
    (empty_id,) = [i for i, r in table_rows.items() if r.origin.endswith("/empty.jpg")]
    assert bytes(table_rows[empty_id].content) == b""
    assert_invalid(decoded_table[empty_id])


def test_drop_invalid_removes_exactly_the_invalid_rows(table, decoded_table):
    out = gpuimages.decode_images(table, origin_col="origin", device="cpu", drop_invalid=True).collect()
    valid = {i for i, r in decoded_table.items() if r.error is None}
    assert sorted(r.id for r in out) == sorted(valid)
    assert len(valid) == len(decoded_table) - len(INVALID)
    for row in out:
        assert row.error is None
        assert image_tuple(row.image) == image_tuple(decoded_table[row.id].image)


def test_null_content_is_an_invalid_row_with_a_reason(spark, odd_bytes):
    schema = StructType([StructField("id", IntegerType()), StructField("content", BinaryType())])
    df = spark.createDataFrame([(0, None), (1, odd_bytes["rgb.png"]), (2, None)], schema)
    out = {r.id: r for r in gpuimages.decode_images(df, origin_col=None, device="cpu").collect()}
    assert sorted(out) == [0, 1, 2]
    assert_invalid(out[0])
    assert_invalid(out[2])
    assert out[1].error is None and (out[1].image.height, out[1].image.width) == (20, 30)
    assert out[0].image.origin is None and out[1].image.origin is None  # origin_col=None
    dropped = gpuimages.decode_images(df, origin_col=None, device="cpu", drop_invalid=True).collect()
    assert [r.id for r in dropped] == [1]


def test_keep_input_keeps_the_bytes_column(table, table_rows):
    out = gpuimages.decode_images(table, origin_col="origin", device="cpu", keep_input=True)
    assert out.columns == ["id", "label", "ds", "origin", "content", "image", "error"]
    rows = out.collect()
    assert len(rows) == len(table_rows)
    for row in rows:
        assert bytes(row.content) == bytes(table_rows[row.id].content)


def test_custom_column_names(spark, odd_bytes):
    schema = StructType([StructField("key", StringType()), StructField("blob", BinaryType())])
    df = spark.createDataFrame([("a", odd_bytes["rgb.jpg"]), ("b", b"junk")], schema)
    out = gpuimages.decode_images(df, "blob", origin_col="key", output_col="pixels", error_col="why", device="cpu")
    assert out.columns == ["key", "pixels", "why"]
    rows = {r.key: r for r in out.collect()}
    assert rows["a"].pixels.origin == "a" and rows["a"].pixels.nChannels == 3 and rows["a"].why is None
    assert_invalid(rows["b"], error_col="why", image_col="pixels")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"input_col": "missing"}, ValueError, r"input_col: expected one of the columns \[.*\], got 'missing'"),
        ({"input_col": "label"}, TypeError, "input_col 'label': expected a binary column, got string"),  # not binary
        ({"origin_col": "nope"}, ValueError, r"origin_col: expected one of the columns \[.*\] or None, got 'nope'"),
        ({"origin_col": "id"}, TypeError, "origin_col 'id': expected a string column, got int"),
        ({"output_col": "label"}, ValueError, "output columns: expected a name not already in the DataFrame"
         ", got 'label'"),
        ({"error_col": "image"}, ValueError, "error_col: expected a name other than output_col, got 'image'"),
        ({"resize": (0, 5)}, ValueError, r"resize\[0\] \(height\): expected a positive integer, got 0 \(int\)"),
        ({"resize": "big"}, ValueError, r"resize: expected \(height, width\) of positive integers or a positive"),
        ({"center_crop": (-1, 2)}, ValueError, r"center_crop\[0\] \(height\): expected a positive integer, got -1"),
        ({"device": "tpu"}, ValueError, "device: expected one of auto, cpu, gpu, got 'tpu'"),
        ({"batch_size": 0}, ValueError, "batch_size: expected a positive integer, got 0"),
        ({"max_pixels": -1}, ValueError, "max_pixels: expected a positive integer, got -1"),
        ({"apply_exif": "yes"}, TypeError, "apply_exif: expected True or False, got 'yes'"),
        ({"num_partitions": 0}, ValueError, "num_partitions: expected a positive integer, got 0"),
        ({"hw_decoder_load": 2.0}, ValueError, r"hw_decoder_load: expected a number in \[0, 1\], got 2.0"),
        ({"drop_invalid": "no"}, TypeError, "drop_invalid: expected True or False, got 'no'"),
        ({"keep_input": 1}, TypeError, "keep_input: expected True or False, got 1"),
    ],
)
def test_bad_options_raise_before_any_job(spark, table, kwargs, error, message):
    kwargs = {"origin_col": "origin", "device": "cpu", **kwargs}
    with no_spark_job(spark), pytest.raises(error, match=message):
        gpuimages.decode_images(table, **kwargs)


def test_decode_images_is_lazy_and_the_job_check_works(spark, table):
    with no_spark_job(spark):
        out = gpuimages.decode_images(table, origin_col="origin", device="cpu", resize=8)
    with pytest.raises(AssertionError, match="a Spark job ran"), no_spark_job(spark):
        out.count()  # the check above is not vacuous: an action inside the block is caught


def test_num_partitions(spark, table, decoded_table, odd_dir):
    out = gpuimages.decode_images(table, origin_col="origin", device="cpu", num_partitions=3, batch_size=1)
    assert out.rdd.getNumPartitions() == 3
    rows = out.collect()
    assert sorted(r.id for r in rows) == sorted(decoded_table)
    for row in rows:
        assert image_tuple(row.image) == image_tuple(decoded_table[row.id].image)
        assert row.error == decoded_table[row.id].error
    # Default: the input is coalesced to one partition per core (local[2]), whatever it came with.
    files = spark.read.format("binaryFile").load(str(odd_dir)).repartition(5)
    assert files.rdd.getNumPartitions() == 5
    assert gpuimages.decode_images(files, device="cpu").rdd.getNumPartitions() == 2


@pytest.fixture(scope="module")
def partitioned_dir(tmp_path_factory, odd_dir) -> Path:
    """The odd files split over two ``ds=...`` folders (Spark's partition discovery adds ``ds``)."""
    root = tmp_path_factory.mktemp("partitioned")
    for i, path in enumerate(sorted(odd_dir.iterdir())):
        folder = root / f"ds=2026-11-{24 + i % 2}"
        folder.mkdir(exist_ok=True)
        shutil.copyfile(path, folder / path.name)
    return root


def test_binary_file_source_through_decode_images(spark, partitioned_dir):
    """binaryFile input with a partition column and added columns; compared with read_images.

    Spark's ``binaryFile`` source skips zero-byte files, so ``empty.jpg`` is in neither the input
    nor the output (read_images lists files separately and keeps a row for it).
    """
    files = (
        spark.read.format("binaryFile")
        .load(str(partitioned_dir))
        .withColumn("label", F.regexp_extract("path", r"\.(\w+)$", 1))
        .withColumn("id", F.hash("path"))
    )
    assert "ds" in files.columns  # discovered from the folder names
    inputs = {r.path: r for r in files.drop("content").collect()}
    out = gpuimages.decode_images(files, device="cpu")
    assert out.columns == ["path", "modificationTime", "length", "ds", "label", "id", "image", "error"]
    rows = out.collect()
    assert len(rows) == len(inputs) == len({r.path for r in rows})  # one row per input row

    ref = {
        r.image.origin: r
        for r in gpuimages.read_images(spark, str(partitioned_dir), recursive=True, device="cpu").collect()
    }
    names = {Path(local_path(o)).name for o in ref}
    assert len(ref) == len(rows) + 1 and "empty.jpg" in names
    assert not any(p.endswith("/empty.jpg") for p in inputs)  # skipped by the binaryFile source

    for row in rows:
        src = inputs[row.path]
        for col in ("modificationTime", "length", "ds", "label", "id"):
            assert row[col] == src[col], col
        # binaryFile paths are Hadoop strings; read_images origins are URIs of the same files.
        assert row.image.origin == row.path and row.path.startswith("file:/")
        assert local_path(row.image.origin) == local_path(to_origin(row.path))
        expected_row = ref[to_origin(row.path)]
        assert image_tuple(row.image) == image_tuple(expected_row.image)
        name = Path(local_path(row.path)).name
        if name in INVALID:
            assert_invalid(row)
        else:
            assert row.error is None
    assert any(" " in r.path and "%20" in to_origin(r.path) for r in rows)  # the two forms really differ


def test_output_schema_is_sparks_image_schema(spark, table, odd_dir):
    ours = gpuimages.decode_images(table, origin_col="origin", device="cpu").schema["image"].dataType
    theirs = spark.read.format("image").load(str(odd_dir / "rgb.png")).schema["image"].dataType
    assert [(f.name, f.dataType) for f in ours.fields] == [(f.name, f.dataType) for f in theirs.fields]


def test_empty_table_gives_an_empty_result(spark):
    out = gpuimages.decode_images(spark.createDataFrame([], TABLE_SCHEMA), origin_col="origin", device="cpu")
    assert out.columns == ["id", "label", "ds", "origin", "image", "error"]
    assert out.collect() == []

"""Partition columns: read_images gives the columns, values and types of Spark's own image source."""

from __future__ import annotations

from urllib.parse import unquote

import pytest
from images import encode, rgb_array, write_files

import gpuimages
from gpuimages.reader import UNREAD_REASON
from gpuimages.transcode import transcode_files

TYPE_INFERENCE = "spark.sql.sources.partitionColumnTypeInference.enabled"


def _name(origin: str) -> str:
    return origin.split("/images/", 1)[1]


@pytest.fixture(scope="module")
def layout(tmp_path_factory):
    """Spark's image-source test layout (cls=.../date=...), plus an empty file and a null partition."""
    root = tmp_path_factory.mktemp("parts") / "images"
    files = {}
    for cls, date in [("kittens", "2018-01"), ("kittens", "2018-02"), ("multichannel", "2018-01"), ("dogs", "2018-02")]:
        for i in range(2):
            files[f"cls={cls}/date={date}/{cls}{i}.jpg"] = encode(rgb_array(8 + i, 12, seed=i), "JPEG", quality=90)
    files["cls=kittens/date=2018-02/broken.jpg"] = b"not an image"
    files["cls=dogs/date=2018-02/empty.jpg"] = b""
    files["cls=__HIVE_DEFAULT_PARTITION__/date=2018-01/nulls.png"] = encode(rgb_array(4, 4), "PNG")
    write_files(root, files)
    return root


@pytest.fixture(scope="module")
def numeric_layout(tmp_path_factory):
    root = tmp_path_factory.mktemp("numeric") / "images"
    files = {}
    for year, score in [(2017, "0.5"), (2018, "1.25")]:
        files[f"year={year}/score={score}/a.png"] = encode(rgb_array(5, 6, seed=year), "PNG")
        files[f"year={year}/score={score}/empty.png"] = b""
    write_files(root, files)
    return root


def _spark_rows(spark, root, drop_invalid: bool) -> dict:
    df = spark.read.format("image").option("dropInvalid", str(drop_invalid).lower()).load(str(root))
    return df, {_name(r.image.origin): r for r in df.collect()}


@pytest.mark.parametrize("drop_invalid", [False, True])
def test_partition_columns_like_spark_image_source(spark, layout, drop_invalid):
    theirs_df, theirs = _spark_rows(spark, layout, drop_invalid)
    ours_df = gpuimages.read_images(spark, str(layout), drop_invalid=drop_invalid, device="cpu")
    assert theirs_df.columns == ["image", "cls", "date"]
    assert ours_df.columns == ["image", "error", "cls", "date"]
    for col in ("image", "cls", "date"):
        assert ours_df.schema[col].dataType == theirs_df.schema[col].dataType, col
    ours = {_name(r.image.origin): r for r in ours_df.collect()}
    extra = set(ours) - set(theirs)
    if drop_invalid:
        assert extra == set()
        assert "cls=kittens/date=2018-02/broken.jpg" not in ours
    else:
        assert extra == {"cls=dogs/date=2018-02/empty.jpg"}  # Spark's source drops the zero-byte file
        assert ours["cls=dogs/date=2018-02/empty.jpg"].error == UNREAD_REASON
        assert (ours["cls=dogs/date=2018-02/empty.jpg"].cls, ours["cls=dogs/date=2018-02/empty.jpg"].date) == (
            "dogs", "2018-02",
        )
        assert ours["cls=kittens/date=2018-02/broken.jpg"].image.height == -1
    assert len(theirs) == (9 if drop_invalid else 10)
    for name, ref in theirs.items():
        mine = ours[name]
        assert (mine.cls, mine.date) == (ref.cls, ref.date), name
        assert (mine.image.height, mine.image.width) == (ref.image.height, ref.image.width), name
    assert ours["cls=__HIVE_DEFAULT_PARTITION__/date=2018-01/nulls.png"].cls is None


def test_inferred_types_and_unread_rows_carry_typed_values(spark, numeric_layout):
    theirs_df = spark.read.format("image").load(str(numeric_layout))
    ours_df = gpuimages.read_images(spark, str(numeric_layout), device="cpu")
    assert [(f.name, f.dataType) for f in ours_df.schema.fields if f.name in ("year", "score")] == [
        (f.name, f.dataType) for f in theirs_df.schema.fields if f.name in ("year", "score")
    ]
    assert ours_df.schema["year"].dataType.simpleString() == "int"
    rows = {(_name(r.image.origin)): r for r in ours_df.collect()}
    assert len(rows) == 4
    assert rows["year=2018/score=1.25/empty.png"].error == UNREAD_REASON
    assert (rows["year=2018/score=1.25/empty.png"].year, float(rows["year=2018/score=1.25/empty.png"].score)) == (
        2018, 1.25,
    )
    theirs = {_name(r.image.origin): (r.year, r.score) for r in theirs_df.collect()}
    assert {k: (r.year, r.score) for k, r in rows.items() if k in theirs} == theirs


def test_type_inference_off_gives_strings_like_spark(spark, numeric_layout):
    spark.conf.set(TYPE_INFERENCE, "false")
    try:
        theirs = spark.read.format("image").load(str(numeric_layout))
        ours = gpuimages.read_images(spark, str(numeric_layout), device="cpu")
        assert ours.schema["year"].dataType == theirs.schema["year"].dataType
        assert ours.schema["year"].dataType.simpleString() == "string"
        assert sorted({r.year for r in ours.collect()}) == ["2017", "2018"]
    finally:
        spark.conf.unset(TYPE_INFERENCE)


def test_recursive_turns_partition_inference_off_like_spark(spark, layout):
    theirs = spark.read.format("image").option("recursiveFileLookup", "true").load(str(layout))
    ours = gpuimages.read_images(spark, str(layout), recursive=True, device="cpu")
    assert theirs.columns == ["image"]
    assert ours.columns == ["image", "error"]
    assert ours.count() == theirs.count() + 1  # plus the zero-byte file


def test_label_and_sampling_carry_partition_columns(spark, layout):
    full = gpuimages.read_images(spark, str(layout), label_from_folder=True, device="cpu")
    assert full.columns == ["image", "error", "cls", "date", "label"]
    by_name = {_name(r.image.origin): r for r in full.collect()}
    assert all(r.label == f"date={r.date}" for r in by_name.values())
    sampled = gpuimages.read_images(spark, str(layout), sample_ratio=0.5, seed=7, label_from_folder=True, device="cpu")
    rows = sampled.collect()
    assert 0 < len(rows) < len(by_name)
    for r in rows:
        ref = by_name[_name(r.image.origin)]
        assert (r.cls, r.date, r.label, r.error) == (ref.cls, ref.date, ref.label, ref.error)


def test_partition_folder_named_like_an_output_column_is_refused(spark, tmp_path):
    write_files(tmp_path, {"error=x/a.png": encode(rgb_array(4, 4), "PNG")})
    with pytest.raises(ValueError, match="partition columns: expected names other than"):
        gpuimages.read_images(spark, str(tmp_path), device="cpu")


# --- Partition folders named like binaryFile's columns --------------------------------------------

SHADOWING_FOLDERS = [
    "content=a",
    "content=7",
    "path=x",
    "Path=y",
    "length=5",
    "LENGTH=99999999999",
    "modificationTime=2020-01-01 00%3A00%3A00",
    "_metadata=q",
]


@pytest.mark.parametrize("folder", SHADOWING_FOLDERS)
def test_partition_folder_named_like_a_binary_file_column_is_decoded_like_spark(spark, tmp_path, folder):
    """Spark's image source decodes the files below ``content=a/`` and keeps the column; so must we."""
    root = tmp_path / "images"
    files = {
        f"{folder}/a.jpg": encode(rgb_array(8, 12, seed=1), "JPEG", quality=90),
        f"{folder}/b.png": encode(rgb_array(5, 7, seed=2), "PNG"),
        f"{folder}/empty.png": b"",
    }
    other = folder.split("=", 1)[0] + "=other"
    files[f"{other}/c.png"] = encode(rgb_array(6, 6, seed=3), "PNG")
    write_files(root, files)
    theirs_df = spark.read.format("image").load(str(root))
    ours_df = gpuimages.read_images(spark, str(root), device="cpu")
    name = theirs_df.columns[1]
    assert theirs_df.columns == ["image", name]
    assert ours_df.columns == ["image", "error", name]
    assert ours_df.schema[name].dataType == theirs_df.schema[name].dataType
    theirs = {unquote(_name(r.image.origin)): r for r in theirs_df.collect()}
    ours = {unquote(_name(r.image.origin)): r for r in ours_df.collect()}
    assert set(ours) == set(theirs) | {f"{folder}/empty.png"}
    assert ours[f"{folder}/empty.png"].error == UNREAD_REASON
    assert ours[f"{folder}/empty.png"][name] == ours[f"{folder}/a.jpg"][name]
    for key, ref in theirs.items():
        mine = ours[key]
        assert mine.error is None, (key, mine.error)
        assert mine[name] == ref[name], key
        assert (mine.image.origin, mine.image.height, mine.image.width, mine.image.nChannels) == (
            ref.image.origin, ref.image.height, ref.image.width, ref.image.nChannels,
        )
        assert mine.image.data == ref.image.data, key


def test_shadowing_partition_with_sampling_transcoding_and_label(spark, tmp_path):
    root = tmp_path / "images"
    write_files(root, {
        f"content={c}/f{i}.png": encode(rgb_array(4, 4 + i, seed=i), "PNG") for c in ("a", "b") for i in range(6)
    })
    full = {_name(r.image.origin): r for r in gpuimages.read_images(
        spark, str(root), device="cpu", label_from_folder=True).collect()}
    assert len(full) == 12 and all(r.error is None and r.label == f"content={r.content}" for r in full.values())
    sampled = gpuimages.read_images(spark, str(root), device="cpu", sample_ratio=0.5, seed=5).collect()
    assert 0 < len(sampled) < 12
    assert all(full[_name(r.image.origin)].content == r.content for r in sampled)
    out = transcode_files(spark, str(root), device="cpu", format="png")
    assert out.columns == ["origin", "height", "width", "encoded", "error", "content"]
    rows = out.collect()
    assert len(rows) == 12 and all(r.error is None and r.encoded for r in rows)
    assert {r.content for r in rows} == {"a", "b"}


def test_files_outside_the_partition_layout_stay_out_when_bytes_come_from_a_second_listing(spark, tmp_path):
    root = tmp_path / "images"
    write_files(root, {
        "content=a/x.png": encode(rgb_array(4, 4), "PNG"),
        "content=a/sub/y.png": encode(rgb_array(4, 5), "PNG"),
        "_hidden/z.png": encode(rgb_array(4, 6), "PNG"),
    })
    listed = sorted(spark.read.format("binaryFile").load(str(root)).inputFiles())
    ours = gpuimages.read_images(spark, str(root), device="cpu").collect()
    assert sorted(r.image.origin for r in ours) == listed
    assert all(r.content == "a" and r.error is None for r in ours)


@pytest.mark.parametrize("folder", ["IMAGE=x", "Error=x", "__gpuimages_reason=x"])
def test_output_column_names_are_refused_in_any_case(spark, tmp_path, folder):
    write_files(tmp_path, {f"{folder}/a.png": encode(rgb_array(4, 4), "PNG")})
    with pytest.raises(ValueError, match="partition columns: expected names other than"):
        gpuimages.read_images(spark, str(tmp_path), device="cpu")


@pytest.mark.parametrize("folder, kwargs", [
    ("Label=x", {"label_from_folder": True}),
    ("ORIGIN=x", {}),
    ("height=1", {}),
    ("Encoded=x", {}),
])
def test_transcode_files_refuses_its_own_column_names(spark, tmp_path, folder, kwargs):
    write_files(tmp_path, {f"{folder}/a.png": encode(rgb_array(4, 4), "PNG")})
    with pytest.raises(ValueError, match="partition columns: expected names other than"):
        transcode_files(spark, str(tmp_path), device="cpu", **kwargs)


def test_dotted_partition_names_pass_through(spark, tmp_path):
    root = tmp_path / "images"
    write_files(root, {"a.b=1/x.png": encode(rgb_array(4, 4), "PNG"), "a.b=2/empty.png": b""})
    theirs = spark.read.format("image").load(str(root))
    ours = gpuimages.read_images(spark, str(root), device="cpu")
    assert ours.columns == ["image", "error", "a.b"]
    assert ours.schema["a.b"].dataType == theirs.schema["a.b"].dataType
    assert sorted((r["a.b"], r.error is None) for r in ours.collect()) == [(1, True), (2, False)]

"""Path handling, origins, glob escaping and sampling."""

from __future__ import annotations

import pytest
from images import bomb_png, encode, odd_files, rgb_array, write_files

import gpuimages
from gpuimages.engines.formats import sniff
from gpuimages.sources.columns import origin_sql, partition_value_sql, spark_escape_path_name, sql_regex, sql_string
from gpuimages.sources.file_index import error_summary, parse_size_in_bytes
from gpuimages.sources.scan import normalize_paths, parse_read_schema, partition_columns, plan_text
from gpuimages.uris import load_path, to_origin


@pytest.mark.parametrize(
    "path, origin",
    [
        ("file:/tmp/a b.jpg", "file:///tmp/a%20b.jpg"),
        ("file:/tmp/x%y#z?.png", "file:///tmp/x%25y%23z%3F.png"),
        ("file:/tmp/caf\u00e9.jpg", "file:///tmp/caf\u00e9.jpg"),
        ("s3a://bucket/dir/a b.jpg", "s3a://bucket/dir/a%20b.jpg"),
        ("hdfs://nn:8020/x/y.jpg", "hdfs://nn:8020/x/y.jpg"),
        ("file:/tmp/new\nline.jpg", "file:///tmp/new%0Aline.jpg"),
        ("file:/tmp/t\tb\x01\x7f.jpg", "file:///tmp/t%09b%01%7F.jpg"),
        ("file:/tmp/nbsp\u00a0nel\u0085ls\u2028.jpg", "file:///tmp/nbsp%C2%A0nel%C2%85ls%E2%80%A8.jpg"),
        ("file:/tmp/zw\u200bsp\U0001f600.jpg", "file:///tmp/zw\u200bsp\U0001f600.jpg"),
    ],
)
def test_to_origin_matches_java_uri(path, origin):
    assert to_origin(path) == origin


def test_origins_equal_spark_image_source_for_odd_names(spark, tmp_path):
    data = encode(rgb_array(4, 4), "PNG")
    for name in ["a b.png", "pct%41.png", "caf\u00e9.png", "brackets[1].png", "hash#.png", "plus+sign.png"]:
        (tmp_path / name).write_bytes(data)
    expected = sorted(r.image.origin for r in spark.read.format("image").load(str(tmp_path)).collect())
    frame = spark.read.format("binaryFile").load(str(tmp_path))
    assert sorted(to_origin(r.path) for r in frame.select("path").collect()) == expected
    assert sorted(frame.inputFiles()) == expected
    # Escaped names load literally (no glob expansion) even with brackets.
    loaded = spark.read.format("binaryFile").load([load_path(f) for f in expected])
    assert loaded.count() == len(expected)


def test_origin_column_equals_input_files_and_image_origins(spark, tmp_path):

    data = encode(rgb_array(4, 4), "PNG")
    for name in ["a b.png", "pct%41.png", "caf\u00e9.png", "plus+sign.png", "k=v/x y.png"]:
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_bytes(data)
    frame = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(tmp_path))
    got = sorted(r.o for r in frame.selectExpr(f"{origin_sql()} AS o").collect())
    assert got == sorted(frame.inputFiles())
    image = spark.read.format("image").option("recursiveFileLookup", "true").load(str(tmp_path))
    assert got == sorted(r.image.origin for r in image.collect())


@pytest.mark.parametrize(
    "name, value, expected",
    [("cls", "kittens", "kittens"), ("cls", "a%20b+c", "a b+c"), ("cls", "x%252Fy", "x/y"), ("d", "1", "1")],
)
def test_partition_value_parses_the_escaped_folder_name(spark, name, value, expected):

    origin = f"file:///r/{name}=other/{name}={value}/f.jpg"
    df = spark.createDataFrame([(origin,)], "origin string")
    assert df.selectExpr(partition_value_sql("origin", name, "string")).first()[0] == expected
    assert df.selectExpr(partition_value_sql("origin", "missing", "string")).first()[0] is None  # no such folder


@pytest.mark.parametrize("escaped", [True, False])
@pytest.mark.parametrize("name", ["a.b", "x(1)$+|{2}?*", "it's", "back\\slash", "[br]^", "é ü", "p%q"])
def test_partition_value_takes_any_folder_name_literally(spark, name, escaped):
    """Regex and SQL syntax in a name is plain text, in a folder Spark escaped (``escapePathName``) or one made by
    hand (Spark's partition discovery unescapes either)."""
    from gpuimages.uris import uri_quote

    folder = uri_quote(spark_escape_path_name(name) if escaped else name)
    decoy = "".join(ch if ch.isalnum() and ch.isascii() else "Z" for ch in name)  # what a wildcard would match
    origin = f"file:///r/{folder}=v%2520w/{decoy}=no/f.jpg"
    df = spark.createDataFrame([(origin,)], "origin string")
    assert df.selectExpr(partition_value_sql("origin", name, "string")).first()[0] == "v w"


def test_sql_regex_and_string_refuse_what_they_cannot_hold():
    assert sql_regex("a.b(c)$") == "a[.]b[(]c[)][$]"
    assert "'" not in sql_regex("it's")
    for text in ("a\\b", "[x]", "^x"):
        with pytest.raises(ValueError, match="expected text without"):
            sql_regex(text)
    assert sql_string("a b:c") == "'a b:c'"
    with pytest.raises(ValueError, match="expected text without"):
        sql_string("it's")


def test_parse_size_in_bytes():
    assert parse_size_in_bytes("Relation [path] Statistics(sizeInBytes=60.3 MiB)") == int(60.3 * 2**20)
    assert parse_size_in_bytes("Statistics(sizeInBytes=512.0 B)") == 512
    assert parse_size_in_bytes("no statistics") is None


@pytest.mark.parametrize(
    ("bad", "error", "message"),
    [
        ([], ValueError, "path: expected at least one path, got an empty list"),
        (3, TypeError, "path: expected a string, a path or a list of them, got int"),
        ([""], TypeError, "path: expected non-empty strings or paths, got ''"),
        (None, TypeError, "path: expected a string, a path or a list of them, got NoneType"),
    ],
)
def test_normalize_paths_rejects(bad, error, message):
    with pytest.raises(error, match=message):
        normalize_paths(bad)


def test_sniff_headers():
    files = odd_files()
    assert (sniff(files["rgb.jpg"]).format, sniff(files["rgb.jpg"]).width, sniff(files["rgb.jpg"]).height) == (
        "jpeg", 30, 20,
    )
    assert sniff(files["progressive.jpg"]).progressive
    assert sniff(files["cmyk.jpg"]).components == 4
    assert sniff(files["gray16.png"]).bit_depth == 16
    assert sniff(files["palette_trns.png"]).has_trns
    assert sniff(bomb_png()).pixels == 10**10
    assert sniff(b"hello").format == "other"
    assert sniff(files["truncated.jpg"]).format == "jpeg"
    assert {n: sniff(d).spark_channels() for n, d in files.items() if n.endswith(".png") and n != "bomb.png"} == {
        "rgb.png": 3, "gray.png": 1, "rgba.png": 4, "la.png": 1, "palette.png": 3, "palette_trns.png": 4,
        "rgb_trns.png": 4, "bilevel.png": 3, "gray16.png": 1, "la16.png": 1, "rgb16.png": 3, "rgba16.png": 4,
    }


def test_error_summary_names_the_grpc_limit():
    class FakeRpcError(Exception):
        pass

    text = (
        "<_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.RESOURCE_EXHAUSTED\n"
        '\tdetails = "Received message larger than max (5242880 vs. 1048576)"\n>'
    )
    summary = error_summary(FakeRpcError(text))
    assert summary == (
        "FakeRpcError: RESOURCE_EXHAUSTED, the gRPC message limit: "
        "Received message larger than max (5242880 vs. 1048576)"
    )
    assert error_summary(ValueError("first\nsecond")) == "ValueError: first"


CONTROL_NAMES = [
    "new\nline.png", "tab\there.png", "bell\x07.png", "del\x7f.png", "nbsp\u00a0.png", "nel\u0085.png",
    "ls\u2028.png", "zero\u200bwidth.png", "cr\r.png",
]


def test_origins_with_control_characters_equal_spark_image_source(spark, tmp_path):
    files = {name: encode(rgb_array(4, 4 + i, seed=i), "PNG") for i, name in enumerate(CONTROL_NAMES)}
    write_files(tmp_path, files)
    theirs = spark.read.format("image").load(str(tmp_path))
    expected = sorted(r.image.origin for r in theirs.collect())
    assert len(expected) == len(CONTROL_NAMES)
    assert any("%0A" in o for o in expected) and any("\u200b" in o for o in expected)
    ours = gpuimages.read_images(spark, str(tmp_path), device="cpu").collect()
    assert sorted(r.image.origin for r in ours) == expected
    assert all(r.error is None for r in ours)
    # to_origin turns binaryFile's decoded paths into the same URIs
    paths = [r.path for r in spark.read.format("binaryFile").load(str(tmp_path)).select("path").collect()]
    assert sorted(to_origin(p) for p in paths) == expected


def test_parse_read_schema():
    plan = "FileScan binaryFile [path#1,content#2,length#3] ... ReadSchema: struct<path:string,content:binary>"
    assert parse_read_schema(plan) == ["path", "content"]
    assert parse_read_schema("ReadSchema: struct<>") == []
    assert parse_read_schema("ReadSchema: struct<path:string,modificationTime:tim...>") is None
    assert parse_read_schema("no scan") is None


@pytest.mark.parametrize("folder, expected", [
    ("cls=a", ("cls",)), ("path=x", ("path",)), ("Content=7", ("Content",)), ("length=1/k=v", ("length", "k")),
])
def test_partition_columns_are_told_from_binary_file_columns_of_the_same_name(spark, tmp_path, folder, expected):
    write_files(tmp_path, {f"{folder}/a.png": encode(rgb_array(4, 4), "PNG")})
    frame = spark.read.format("binaryFile").load(str(tmp_path))
    assert partition_columns(frame) == expected
    plan = plan_text(frame)  # the Connect way, on this session
    read = parse_read_schema(plan)
    assert tuple(c for c in frame.columns if c not in read) == expected


def test_spark_escape_path_name_matches_folder_names_spark_writes(spark, tmp_path):
    df = spark.createDataFrame([("a:b/c d%e", 1)], "k string, v int")
    df.write.partitionBy("k").parquet(str(tmp_path / "t"))
    folder = next(p.name for p in (tmp_path / "t").iterdir() if p.name.startswith("k="))
    assert folder == "k=" + spark_escape_path_name("a:b/c d%e")


def test_the_walk_counts_the_archives_sparks_listing_holds(spark, tmp_path):
    """The driver's walk decides whether a local read has archives (no Spark job): it must count every archive
    Spark lists (it may count more), and their bytes."""
    from gpuimages.sources.links import check_directory_links
    from gpuimages.task.archive_members import archive_suffix

    write_files(tmp_path, {"a.tar": b"t" * 10, "b.ZIP": b"z" * 20, "x.png": b"p", "_hidden.tar": b"h",
                           "sub/c.tgz": b"c" * 30, "k=1/d.tar.gz": b"d" * 40, "k=1/y.png": b"p"})

    write_files(tmp_path / "parts", {"k=1/d.tar": b"d", "k=2/e.zip": b"e", "k=2/f.png": b"f"})
    write_files(tmp_path / "nested", {"k=1/b.png": b"b", "k=1/sub/a.tar": b"a"})  # listed without recursion too

    def listed(root, recursive: bool, glob: str | None = None) -> list[str]:
        reader = spark.read.format("binaryFile")
        if recursive:
            reader = reader.option("recursiveFileLookup", "true")
        if glob:
            reader = reader.option("pathGlobFilter", glob)
        return [f for f in reader.load(str(root)).inputFiles() if archive_suffix(f)]

    cases = ((tmp_path, True, None), (tmp_path, True, "*.png"), (tmp_path, True, "[ab]*"),
             (tmp_path / "parts", False, None), (tmp_path / "nested", False, None))
    for root, recursive, glob in cases:
        trees = check_directory_links(spark, [str(root)], recursive=recursive, path_glob_filter=glob)
        assert trees.all_local and trees.any_local and trees.archives >= len(listed(root, recursive, glob))
    assert check_directory_links(spark, [str(tmp_path / "parts")], recursive=False).archives == 2
    every = check_directory_links(spark, [str(tmp_path)], recursive=True)
    assert (every.archives, every.archive_bytes) == (7, 103) == (len(listed(tmp_path, True)), 103)
    assert len(listed(tmp_path / "nested", False)) == 1
    one = check_directory_links(spark, [str(tmp_path / "a.tar")], recursive=False)
    assert (one.archives, one.archive_bytes) == (1, 10)
    assert check_directory_links(spark, [str(tmp_path)], recursive=True, path_glob_filter="*.png").archives == 0


def test_url_decode_without_try_url_decode_keeps_malformed_escapes(spark):
    """Spark 3.5's path (no ``try_url_decode``): a malformed escape leaves the text as Spark leaves it, instead of
    failing the read."""

    from gpuimages.sources.columns import url_decode_sql

    df = spark.createDataFrame([("50%",), ("%41",), ("a+b",), ("x%2",), ("%7E%ZZ",)], "v string")
    assert [r[0] for r in df.selectExpr(url_decode_sql("v", lenient=False)).collect()] == \
        ["50%", "A", "a+b", "x%2", "%7E%ZZ"]


@pytest.mark.parametrize("folders", [("a${x}=1", "a${x}=2"), ("content=1/b${env:HOME}=2", "content=3/b${env:HOME}=4")])
def test_partition_folders_named_like_sql_variables_are_taken_literally(spark, tmp_path, folders):
    """Spark substitutes ``${...}`` in SQL text even between backticks; partition names never go into it, so
    the columns are Spark's own (names and values), whichever branch (shadowing a binaryFile column or not)."""
    import gpuimages
    from gpuimages.transcode import transcode_files

    write_files(tmp_path, {f"{f}/p{i}.png": encode(rgb_array(4, 4, seed=i), "PNG") for i, f in enumerate(folders)})
    image = spark.read.format("image").load(str(tmp_path))
    parts = [c for c in image.columns if c != "image"]
    assert any("${" in c for c in parts)
    expected = sorted(tuple(r[c] for c in ["origin", *parts]) for r in image.select("image.origin", *parts).collect())
    ours = gpuimages.read_images(spark, str(tmp_path))
    assert ours.columns == ["image", "error", *parts]
    assert sorted(tuple(r) for r in ours.select("image.origin", *parts).collect()) == expected
    coded = transcode_files(spark, str(tmp_path), format="png")
    assert sorted(tuple(r) for r in coded.select("origin", *parts).collect()) == expected
    assert coded.filter("error IS NOT NULL").count() == 0

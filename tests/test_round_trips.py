"""Everything written reads back through Spark's own readers: no file or folder name Spark's file sources
skip (a leading ``.`` or ``_``), whatever the names, labels or prefixes asked for. Oracles: Spark's hidden-name
rule in the JVM (``HadoopFSUtils.shouldFilterOutPathName``), the ``binaryFile`` source, ``read_images``."""

from __future__ import annotations

import os
import tempfile
from urllib.parse import unquote

import pytest
from images import encode, rgb_array

from gpuimages.task.naming import EMPTY_NAME, NULL_FOLDER, file_stem, fit_name, safe_part, spark_hidden

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

#: Names that were hidden, empty, separators or traversal before being written.
HOSTILE = [".", "..", "...", "%2F", "%2e%2e", "_0001", ".hidden", "_under", "__null__", "~null", "a._COPYING_",
           "x\x00y", " lead", "é" * 300, "a/b", "~_0001", "_metadata", "k=v", "_k=v", "normal", "normal",
           "中文.png", "..hidden", "   ", "\t", "_", "~empty", ".jpg"]
#: Characters the generated names are built from.
ALPHABET = st.sampled_from([".", "_", "/", "%", "\x00", " ", "é", "中", "a", "Z", "~", "=", "2", "F", "e", "\n"])
NAMES = st.text(ALPHABET, max_size=40) | st.text(ALPHABET, min_size=250, max_size=320)


def _jvm_hidden(spark, names: list[str]) -> list[bool]:
    """Spark's own rule: the file index's ``shouldFilterOutPathName`` with its default pattern."""
    utils = spark.sparkContext._jvm.org.apache.spark.util.HadoopFSUtils
    pattern = getattr(utils, "shouldFilterOutPathName$default$2")()  # Scala's default argument
    return [bool(utils.shouldFilterOutPathName(n, pattern)) for n in names]


def _written_name(name: str) -> str:
    stem, _ = file_stem(None, name)
    return fit_name(stem or "part", "png")


def test_hidden_rule_is_sparks(spark):
    names = [*HOSTILE, "_common_metadata_x", "a=_b", "x._COPYING_", "._COPYING_", "_a", "a_", ".a", "a."]
    ours, jvm = [spark_hidden(n) for n in names], _jvm_hidden(spark, names)
    # the same, but for the Parquet metadata names the listing keeps and the data-file filter then drops
    # (binaryFile reads no `_metadata.png`: the end-to-end test below writes one)
    assert [n for n, a, b in zip(names, ours, jvm, strict=True) if a != b] == ["_metadata", "_common_metadata_x"]
    assert all(a for a, b in zip(ours, jvm, strict=True) if b)


def test_written_names_and_folders_are_never_hidden(spark):
    names = [*HOSTILE, NULL_FOLDER, EMPTY_NAME]
    files = [_written_name(n) for n in names]
    folders = [fit_name(safe_part(n)) for n in names]
    assert not any(_jvm_hidden(spark, files + folders)), [n for n in files + folders if spark_hidden(n)]
    shown = {n: _written_name(n) for n in (".", "..", "...", "_0001", ".hidden", "_under", "   ", "__null__")}
    assert shown == {".": "~..png", "..": "~..png", "...": "~...png", "_0001": "~_0001.png", ".hidden": "~.hidden.png",
                     "_under": "~_under.png", "   ": "~empty.png", "__null__": "~__null__.png"}  # clashes: suffixed
    assert [safe_part(n) for n in (".", "..", "_", "", "a._COPYING_", "_metadata", "_k=v")] == [
        "~.", "~..", "~_", "~empty", "a._COPYING_~", "~_metadata", "_k=v"]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(NAMES)
def test_any_name_is_written_visible_and_inside_its_folder(name):
    """Property: a written file or folder name is never hidden, never a separator or `.`/`..`, fits 255 bytes."""
    for written in (_written_name(name), fit_name(safe_part(name))):
        assert not spark_hidden(written)
        assert "/" not in written and "\x00" not in written and written not in (".", "..", "")
        assert len(written.encode("utf-8", "surrogateescape")) <= 255
    assert safe_part(safe_part(name)) == safe_part(name)  # the task applies it to folders twice


def _bytes_df(spark, names: list[str], labels: list[str | None] | None = None):
    rows = [(encode(rgb_array(4, 5, seed=i), "PNG"), name, f"file:///src/{i}.png",
             None if labels is None else labels[i]) for i, name in enumerate(names)]
    return spark.createDataFrame(rows, "content binary, name string, origin string, label string")


def _read_back(spark, dest: str) -> tuple[dict[bytes, str], dict[bytes, tuple[str, str]]]:
    """bytes -> file name by ``binaryFile``; bytes -> (file name, label folder) by ``read_images``."""
    import gpuimages

    binary = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(dest).collect()
    by_binary = {bytes(r.content): r.path.rsplit("/", 1)[-1] for r in binary}  # a Hadoop path: not %-escaped
    images = gpuimages.read_images(spark, dest, recursive=True, label_from_folder=True, device="cpu")
    by_image = {}
    for r in images.collect():
        assert r.error is None, r
        path = unquote(r.image.origin.split(":", 1)[1])
        with open(path, "rb") as f:
            by_image[f.read()] = (os.path.basename(path), r.label)
    return by_binary, by_image


def test_write_images_hostile_names_read_back_whole(spark, tmp_path):
    import gpuimages

    dest = str(tmp_path / "names")
    report = gpuimages.write_images(_bytes_df(spark, HOSTILE), dest, name_col="name", num_partitions=2).collect()
    assert all(r.status == "written" for r in report), [r for r in report if r.status != "written"]
    by_binary, by_image = _read_back(spark, dest)
    written = {open(r.path, "rb").read(): os.path.basename(r.path) for r in report}
    assert len(written) == len(HOSTILE), sorted((r.origin, r.path) for r in report)
    assert len(written) == len(by_binary) == len(by_image)
    assert by_binary == written and {b: n for b, (n, _) in by_image.items()} == written
    assert not any(spark_hidden(n) for n in written.values())


def test_write_images_partition_folders_read_back_whole(spark, tmp_path):
    import gpuimages

    labels = [None, "_background", ".cache", "", "cats", "__null__", "~null", "a/b", "..", "k=v", "_", None]
    dest = str(tmp_path / "folders")
    report = gpuimages.write_images(_bytes_df(spark, [f"i{i}" for i in range(len(labels))], labels), dest,
                                    partition_by="label").collect()
    assert all(r.status == "written" for r in report)
    by_binary, by_image = _read_back(spark, dest)
    assert len(by_binary) == len(by_image) == len(labels)
    for r in report:
        data = open(r.path, "rb").read()
        folder = os.path.basename(os.path.dirname(r.path))
        assert by_image[data] == (os.path.basename(r.path), folder)  # the label folder read back
    folders = {os.path.basename(os.path.dirname(r.path)) for r in report}
    assert folders == {"~null", "~_background", "~.cache", "~empty", "cats", "~__null__", "a_b", "~..", "k=v", "~_"}


@settings(max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(st.lists(NAMES, min_size=15, max_size=30))
def test_generated_names_written_equal_read_back(spark, names):
    """Property, end to end: every row reported written is read back by Spark's binaryFile, with its name."""
    import gpuimages

    with tempfile.TemporaryDirectory() as tmp:
        dest = os.path.join(tmp, "out")
        report = gpuimages.write_images(_bytes_df(spark, names), dest, name_col="name", num_partitions=1).collect()
        written = {open(r.path, "rb").read(): os.path.basename(r.path) for r in report if r.status == "written"}
        assert len(written) == len(names)
        binary = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(dest).collect()
        assert {bytes(r.content): r.path.rsplit("/", 1)[-1] for r in binary} == written


def test_write_webdataset_reads_back_every_sample_and_label(spark, tmp_path):
    import gpuimages

    labels = ["_background", ".cache", "cats", None, "cats", "_background"]
    df = _bytes_df(spark, [f"_{i}" for i in range(len(labels))], labels)
    dest = str(tmp_path / "shards")
    report = gpuimages.write_webdataset(df, dest, label_col="label", key_col="name", num_partitions=2).collect()
    assert sum(r.samples for r in report) == len(labels)
    back = gpuimages.read_images(spark, dest, webdataset=True, device="cpu").collect()
    classes = sorted({v for v in labels if v is not None})
    got = sorted((unquote(r.image.origin.split("#", 1)[1]), r.cls) for r in back)
    want = sorted((f"{i}.png", None if v is None else classes.index(v)) for i, v in enumerate(labels))
    assert got == want  # `_i` keys lose their leading `_` (keys are kept to letters, digits, `-`, `_` inside)

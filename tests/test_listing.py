"""Path handling, origins, glob escaping and sampling."""

from __future__ import annotations

import pytest
from images import bomb_png, encode, odd_files, rgb_array

from gpuimages import listing
from gpuimages.engines.formats import sniff


@pytest.mark.parametrize(
    "path, origin",
    [
        ("file:/tmp/a b.jpg", "file:///tmp/a%20b.jpg"),
        ("file:/tmp/x%y#z?.png", "file:///tmp/x%25y%23z%3F.png"),
        ("file:/tmp/caf\u00e9.jpg", "file:///tmp/caf\u00e9.jpg"),
        ("s3a://bucket/dir/a b.jpg", "s3a://bucket/dir/a%20b.jpg"),
        ("hdfs://nn:8020/x/y.jpg", "hdfs://nn:8020/x/y.jpg"),
    ],
)
def test_to_origin_matches_java_uri(path, origin):
    assert listing.to_origin(path) == origin


def test_origins_equal_spark_image_source_for_odd_names(spark, tmp_path):
    data = encode(rgb_array(4, 4), "PNG")
    for name in ["a b.png", "pct%41.png", "caf\u00e9.png", "brackets[1].png", "hash#.png", "plus+sign.png"]:
        (tmp_path / name).write_bytes(data)
    expected = sorted(r.image.origin for r in spark.read.format("image").load(str(tmp_path)).collect())
    frame = spark.read.format("binaryFile").load(str(tmp_path))
    assert sorted(listing.to_origin(r.path) for r in frame.select("path").collect()) == expected
    assert sorted(frame.inputFiles()) == expected
    # Escaped names load literally (no glob expansion) even with brackets.
    loaded = spark.read.format("binaryFile").load([listing.load_path(f) for f in expected])
    assert loaded.count() == len(expected)


def test_sampling_is_stable_and_close_to_ratio():
    paths = [f"file:///data/img{i}.jpg" for i in range(2000)]
    kept = listing.sample_paths(paths, 0.25, seed=1)
    assert kept == listing.sample_paths(paths, 0.25, seed=1)
    assert 400 < len(kept) < 600
    assert listing.sample_paths(paths, 1.0, seed=1) == paths


def test_folder_label_decodes():
    assert listing.folder_label("file:///d/my%20cats/x.jpg") == "my cats"


@pytest.mark.parametrize("bad", [[], 3, [""], None])
def test_normalize_paths_rejects(bad):
    with pytest.raises((TypeError, ValueError), match="expected"):
        listing.normalize_paths(bad)


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

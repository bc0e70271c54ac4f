"""What the docs promise, checked against oracles outside gpuimages.

Origins against Hadoop's ``Path.toUri()`` in the session's JVM; resize against Pillow; centre crops
(and a crop larger than the image) against array slices of the original; the "histogram" backbone
against a vector computed by hand; writers refusing streams; file names (``part<p>-<row>``, ``~<hash>``
for long names, case-folded claims) against the files on disk and ``hashlib``.
"""

from __future__ import annotations

import hashlib
import os

import numpy as np
import pytest
from images import encode, rgb_array
from PIL import Image

import gpuimages
from gpuimages.ml import ImageFeaturizer
from gpuimages.schema import to_ndarray
from gpuimages.uris import to_origin

ODD_NAMES = [
    "a b.jpg", "x%y#z?.png", "caf\u00e9.jpg", "brackets[1].png", "plus+sign.png", "pct%41.png",
    "hat^.png", "curly{}.png", "pipe|bar.png", "back`tick.png", "new\nline.jpg", "t\tb\x01\x7f.jpg",
    "nbsp\u00a0nel\u0085ls\u2028.jpg", "zw\u200bsp\U0001f600.jpg", "semi;colon,comma=eq&amp@at.png",
]


@pytest.mark.parametrize("prefix", ["file:/tmp/d/", "s3a://bucket/d d/", "hdfs://nn:8020/x/", "abfss://c@acct.dfs.core.windows.net/p/"])
def test_origin_is_hadoop_paths_uri(spark, prefix):
    path_class = spark._jvm.org.apache.hadoop.fs.Path
    for name in ODD_NAMES:
        uri = path_class(prefix + name).toUri()
        # Spark's image source writes the authority slashes even when it is empty (file:///tmp/...)
        expected = f"{uri.getScheme()}://{uri.getRawAuthority() or ''}{uri.getRawPath()}"
        assert to_origin(prefix + name) == expected, repr(name)


@pytest.fixture(scope="module")
def picture(tmp_path_factory):
    """One 48x64 (h x w) PNG: lossless, so the decode is exact and only resize/crop is judged."""
    folder = tmp_path_factory.mktemp("picture")
    rgb = rgb_array(48, 64, seed=3)
    (folder / "p.png").write_bytes(encode(rgb, "PNG"))
    return folder, rgb


def _one(spark, folder, **options) -> np.ndarray:
    (row,) = gpuimages.read_images(spark, str(folder), device="cpu", **options).collect()
    assert row.error is None, row.error
    return to_ndarray(row.image)


@pytest.mark.parametrize("size", [(24, 32), (30, 50), (96, 128)])
def test_exact_resize_is_pillows_bilinear(spark, picture, size):
    folder, rgb = picture
    ours = _one(spark, folder, resize=size)
    theirs = np.asarray(Image.fromarray(rgb).resize((size[1], size[0]), Image.BILINEAR))[:, :, ::-1]
    assert ours.shape == theirs.shape
    assert int(np.abs(ours.astype(int) - theirs.astype(int)).max()) <= 1


def test_shorter_side_resize_keeps_the_aspect_ratio(spark, picture):
    folder, _ = picture
    assert _one(spark, folder, resize=24).shape == (24, 32, 3)  # 48x64 -> shorter side 24 -> 24x32


@pytest.mark.parametrize(
    ("crop", "rows", "cols"),
    [
        ((10, 20), slice(19, 29), slice(22, 42)),  # (48-10)/2 = 19, (64-20)/2 = 22
        (40, slice(4, 44), slice(12, 52)),
        ((100, 20), slice(0, 48), slice(22, 42)),  # taller than the image: clipped to its 48 rows
        ((200, 300), slice(0, 48), slice(0, 64)),  # larger both ways: the whole image
    ],
)
def test_center_crop_is_the_centre_slice_clipped_to_the_image(spark, picture, crop, rows, cols):
    folder, rgb = picture
    np.testing.assert_array_equal(_one(spark, folder, center_crop=crop), rgb[rows, cols, ::-1])


def _histogram_by_hand(rgb_value: tuple[int, int, int], grid: int, bins: int) -> list[float]:
    """The "histogram" vector of a one-colour image, from the layout models.md and guide.md describe."""
    spatial = [v / 255 for _ in range(grid * grid) for v in rgb_value]
    colour = [1.0 if b == v * bins // 256 else 0.0 for v in rgb_value for b in range(bins)]
    texture = [1.0] + [0.0] * 7  # no gradient anywhere: every pixel in the first of 8 bins
    return spatial + colour + texture + [0.0, 0.0]  # mean |dx|, mean |dy|


@pytest.mark.parametrize("source", ["structs", "bytes"])
def test_histogram_features_of_a_flat_image_by_hand(spark, tmp_path, source):
    rgb_value = (200, 100, 0)
    flat = np.zeros((20, 30, 3), np.uint8) + np.array(rgb_value, np.uint8)
    (tmp_path / "flat.png").write_bytes(encode(flat, "PNG"))
    if source == "structs":
        frame, column = gpuimages.read_images(spark, str(tmp_path), device="cpu"), "image"
    else:
        frame, column = spark.read.format("binaryFile").load(str(tmp_path)), "content"
    featurizer = ImageFeaturizer(inputCol=column, backbone="histogram", gridSize=2, histogramBins=4, device="cpu")
    (row,) = featurizer.transform(frame).collect()
    expected = _histogram_by_hand(rgb_value, 2, 4)
    assert len(expected) == 3 * 2**2 + 3 * 4 + 10
    np.testing.assert_allclose(row.features.toArray(), expected, atol=1e-9)


def test_writers_refuse_streaming_dataframes(spark, tmp_path):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.png").write_bytes(encode(rgb_array(4, 4), "PNG"))
    stream = spark.readStream.format("binaryFile").schema(spark.read.format("binaryFile").load(
        str(tmp_path / "in")).schema).load(str(tmp_path / "in"))
    assert stream.isStreaming
    with pytest.raises(ValueError, match="expected a batch DataFrame, got a streaming one.*foreachBatch"):
        gpuimages.write_images(stream, str(tmp_path / "out"), "content")
    with pytest.raises(ValueError, match="expected a batch DataFrame, got a streaming one.*foreachBatch"):
        gpuimages.write_webdataset(stream, str(tmp_path / "shards"), "content")
    assert not (tmp_path / "out").exists() and not (tmp_path / "shards").exists()


def _written(report) -> dict[str, str]:
    rows = report.collect()
    assert all(r.status == "written" for r in rows), [(r.status, r.reason) for r in rows]
    return {r.origin: os.path.basename(r.path) for r in rows}


def test_written_names_part_row_long_names_and_case_folded_claims(spark, tmp_path):
    png = encode(rgb_array(4, 4), "PNG")
    long_stem = "\u00e9" * 200  # 400 bytes of UTF-8: over the 255-byte name limit
    rows = [(None, png), (f"file:///in/{long_stem}.png", png), ("file:///in/Cat.png", png), ("file:///in/cat.png", png)]
    frame = spark.createDataFrame(rows, "origin string, content binary").coalesce(1)
    names = _written(gpuimages.write_images(frame, str(tmp_path / "out"), "content", origin_col="origin",
                                            format="png"))
    on_disk = sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("."))
    assert sorted(names.values()) == on_disk and len(on_disk) == 4
    assert names[None] == "part00000-000000.png"  # partition 0, row 0: no origin and no name column
    long_name = names[f"file:///in/{long_stem}.png"]
    mark = "~" + hashlib.blake2b(long_stem.encode(), digest_size=4).hexdigest() + ".png"
    assert long_name.endswith(mark) and len(long_name.encode()) <= 255
    assert long_stem.startswith(long_name[: -len(mark)])
    # "Cat" and "cat" would be one file on a case-insensitive filesystem: one keeps its name, the other moves on
    cats = sorted(names[o] for o in ("file:///in/Cat.png", "file:///in/cat.png"))
    assert len({c.casefold() for c in cats}) == 2
    assert {"Cat.png", "cat.png"} & set(cats)

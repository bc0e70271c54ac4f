"""read_images against Spark's own image source, on every odd case, plus options and failures."""

from __future__ import annotations

import numpy as np
import pytest
from pyspark.ml.image import ImageSchema

import gpuimages
from gpuimages.reader import UNREAD_REASON


def _name(origin: str) -> str:
    return origin.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def ours(spark, odd_dir):
    return {_name(r.image.origin): r for r in gpuimages.read_images(spark, str(odd_dir), device="cpu").collect()}


@pytest.fixture(scope="module")
def theirs(spark, odd_dir):
    return {_name(r.image.origin): r.image for r in spark.read.format("image").load(str(odd_dir)).collect()}


def test_same_rows_as_spark_plus_empty_files(ours, theirs, odd_dir):
    listed = {p.name.replace(" ", "%20") for p in odd_dir.iterdir()}
    assert set(ours) == listed  # every file has a row
    assert set(theirs) == listed - {"empty.jpg"}  # Spark drops the zero-byte file
    assert ours["empty.jpg"].error == UNREAD_REASON


def test_origins_match_spark_exactly(ours, theirs):
    for name, img in theirs.items():
        assert ours[name].image.origin == img.origin


@pytest.mark.parametrize(
    "name",
    [
        "rgb.png", "rgb.jpg", "progressive.jpg", "gray.png", "gray.jpg", "rgba.png", "la.png", "palette.png",
        "palette_trns.png", "rgb_trns.png", "bilevel.png", "gray16.png", "la16.png", "rgb16.png", "rgba16.png",
        "cmyk.jpg", "exif6.jpg", "icc_linear.jpg", "image.gif", "image.bmp", "with%20space.jpg",
    ],
)
def test_decoded_like_spark(ours, theirs, name):
    mine, ref = ours[name].image, theirs[name]
    assert (mine.height, mine.width, mine.nChannels, mine.mode) == (ref.height, ref.width, ref.nChannels, ref.mode)
    assert ref.height > 0 and ours[name].error is None
    a = np.frombuffer(mine.data, np.uint8).astype(int)
    b = np.frombuffer(ref.data, np.uint8).astype(int)
    if name.endswith(".jpg"):
        assert np.abs(a - b).max() <= 2
    else:
        assert np.array_equal(a, b)


def test_embedded_icc_profile_is_converted_to_srgb_like_spark(ours, odd_dir):
    from PIL import Image

    raw = np.asarray(Image.open(odd_dir / "icc_linear.jpg").convert("RGB"))[:, :, ::-1].astype(int)
    mine = np.frombuffer(ours["icc_linear.jpg"].image.data, np.uint8).reshape(raw.shape).astype(int)
    assert np.abs(mine - raw).max() > 40  # linear -> sRGB brightens: a real conversion happened


def test_channel_rules(ours):
    expected = {
        "gray.png": (1, 0), "gray.jpg": (1, 0), "la.png": (1, 0), "gray16.png": (1, 0), "la16.png": (1, 0),
        "rgb.jpg": (3, 16), "bilevel.png": (3, 16), "palette.png": (3, 16), "cmyk.jpg": (3, 16),
        "rgba.png": (4, 24), "palette_trns.png": (4, 24), "rgb_trns.png": (4, 24), "rgba16.png": (4, 24),
    }
    for name, (channels, mode) in expected.items():
        assert (ours[name].image.nChannels, ours[name].image.mode) == (channels, mode), name


@pytest.mark.parametrize(
    "name, reason",
    [
        ("text.jpg", "not a recognised image format"),
        ("truncated.jpg", "Truncated"),
        ("bomb.png", "100000x100000"),
        ("empty.jpg", "0 bytes"),
    ],
)
def test_invalid_rows_have_spark_shape_and_reason(ours, name, reason):
    row = ours[name]
    img = row.image
    assert (img.height, img.width, img.nChannels, img.mode, bytes(img.data)) == (-1, -1, -1, -1, b"")
    assert reason in row.error


def test_bgr_order_and_to_ndarray(spark, tmp_path):
    from images import encode

    arr = np.zeros((4, 5, 3), np.uint8)
    arr[..., 0] = 200  # red in RGB
    (tmp_path / "red.png").write_bytes(encode(arr, "PNG"))
    row = gpuimages.read_images(spark, str(tmp_path / "red.png"), device="cpu").first()
    nd = ImageSchema.toNDArray(row.image)
    assert nd.shape == (4, 5, 3)
    assert (nd[..., 2] == 200).all() and (nd[..., :2] == 0).all()  # BGR: red is last


def test_drop_invalid_keeps_only_decoded(spark, odd_dir, ours):
    df = gpuimages.read_images(spark, str(odd_dir), device="cpu", drop_invalid=True)
    rows = df.collect()
    assert len(rows) == sum(1 for r in ours.values() if r.error is None)
    assert all(r.image.height > 0 and r.error is None for r in rows)


def test_schema_matches_spark_image_source(spark, odd_dir):
    ref = spark.read.format("image").load(str(odd_dir)).schema["image"].dataType
    df = gpuimages.read_images(spark, str(odd_dir), device="cpu")
    assert df.schema["image"].dataType == ref
    assert df.columns == ["image", "error"]


def test_sampling_is_deterministic_and_unsampled_files_are_not_read(spark, class_dir):
    a = gpuimages.read_images(spark, str(class_dir), recursive=True, sample_ratio=0.5, seed=3, device="cpu")
    b = gpuimages.read_images(spark, str(class_dir), recursive=True, sample_ratio=0.5, seed=3, device="cpu")
    c = gpuimages.read_images(spark, str(class_dir), recursive=True, sample_ratio=0.5, seed=4, device="cpu")
    origins_a = sorted(r.image.origin for r in a.collect())
    assert origins_a == sorted(r.image.origin for r in b.collect())
    assert origins_a != sorted(r.image.origin for r in c.collect())
    assert 0 < len(origins_a) < 12
    # The scan behind the result reads only the sampled files (tests/test_sampling.py checks it with a
    # file the read would fail on).
    assert sorted(r.image.origin for r in a.filter("error is null").collect()) == origins_a


def test_label_from_folder_and_recursive(spark, class_dir):
    df = gpuimages.read_images(spark, str(class_dir), recursive=True, label_from_folder=True, device="cpu")
    rows = df.collect()
    assert len(rows) == 12
    for r in rows:
        assert r.label == ("cats" if "/cats/" in r.image.origin else "dogs")
    assert df.columns == ["image", "error", "label"]


def test_list_of_paths_and_glob(spark, class_dir):
    cats = str(class_dir / "cats")
    assert gpuimages.read_images(spark, [cats, str(class_dir / "dogs")], device="cpu").count() == 12
    assert gpuimages.read_images(spark, str(class_dir / "*" / "*.png"), device="cpu").count() == 6


def test_resize_and_center_crop(spark, class_dir):
    df = gpuimages.read_images(
        spark, str(class_dir), recursive=True, resize=(10, 12), center_crop=(8, 8), device="cpu"
    )
    for r in df.collect():
        assert (r.image.height, r.image.width, r.image.nChannels) == (8, 8, 3)
        assert len(r.image.data) == 8 * 8 * 3
    short = gpuimages.read_images(spark, str(class_dir / "cats"), resize=12, device="cpu").first().image
    assert (short.height, short.width) == (12, 16)  # 24x32 -> shorter side 12


def test_num_partitions(spark, class_dir):
    df = gpuimages.read_images(spark, str(class_dir), recursive=True, num_partitions=3, device="cpu")
    assert df.rdd.getNumPartitions() == 3
    assert df.count() == 12


def test_missing_path_is_a_clear_error(spark, tmp_path):
    with pytest.raises(FileNotFoundError, match="expected an existing file"):
        gpuimages.read_images(spark, str(tmp_path / "nope"), device="cpu")


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"device": "tpu"}, ValueError, "device: expected one of auto, cpu, gpu, got 'tpu'"),
        ({"sample_ratio": -0.1}, ValueError, r"sample_ratio: expected a number in \[0, 1\]"),
        ({"sample_ratio": 1.5}, ValueError, "sample_ratio: expected"),
        ({"resize": (0, 3)}, ValueError, "resize\\[0\\] \\(height\\): expected a positive integer"),
        ({"resize": "big"}, ValueError, "resize: expected \\(height, width\\)"),
        ({"num_partitions": -1}, ValueError, "num_partitions: expected a positive integer"),
        ({"recursive": "yes"}, TypeError, "recursive: expected True or False"),
        ({"seed": 1.5}, TypeError, "seed: expected an integer"),
        ({"max_pixels": 0}, ValueError, "max_pixels: expected a positive integer"),
    ],
)
def test_bad_options_fail_on_the_driver(spark, class_dir, kwargs, error, match):
    with pytest.raises(error, match=match):
        gpuimages.read_images(spark, str(class_dir), **kwargs)


def test_gpu_without_dali_names_the_extra(spark, class_dir, monkeypatch):
    from gpuimages import scheduling

    monkeypatch.setattr(scheduling, "installed", lambda module: module != "nvidia.dali")
    with pytest.raises(ImportError, match=r"pip install gpuimages\[gpu\]"):
        gpuimages.read_images(spark, str(class_dir), device="gpu")


def test_auto_without_dali_uses_pillow(spark, class_dir, monkeypatch, caplog):
    from gpuimages import scheduling

    monkeypatch.setattr(scheduling, "installed", lambda module: module != "nvidia.dali")
    with caplog.at_level("INFO", logger="gpuimages"):
        df = gpuimages.read_images(spark, str(class_dir), recursive=True, device="auto")
    assert df.count() == 12
    assert "NVIDIA DALI not installed; computing on CPU" in caplog.text

"""Broken and unusual files: read_images gives a valid row wherever Spark's image source does, with the same
shape, channels and mode (PNG pixels equal, JPEG within 3 levels mean), and an invalid row with a reason
wherever Spark's is invalid; ``strict=True`` refuses truncated files. Both engines."""

from __future__ import annotations

import io

import numpy as np
import pytest
from images import cmyk_array, cmyk_jpeg, parity_files, write_files
from PIL import Image, ImageFile

import gpuimages
from gpuimages.engines.pillow import STRICT_TRUNCATED, PillowEngine, decode_one
from gpuimages.options import DecodeOptions, make_decode_options

#: Files Java's readers refuse (measured with Spark's image source); all others must decode.
REFUSED = {name for name in parity_files() if "_refused" in name}
#: Files whose data ends before the image does.
TRUNCATED = {
    "jpeg_cut_in_header_refused.jpg", "jpeg_cut_in_scan_header_refused.jpg", "jpeg_cut_after_scan_header.jpg",
    "jpeg_cut_30.jpg", "jpeg_cut_60.jpg", "jpeg_cut_90.jpg", "jpeg_no_eoi.jpg", "progressive_cut_50.jpg",
    "png_no_iend.png", "png_last_crc_cut.png", "png_adler_cut.png", "png_rows_cut_refused.png",
    "png_cut_half_refused.png", "grey_png_cut_refused.png", "rgb16_no_iend.png", "rgba16_no_iend.png",
    "palette_no_iend_refused.png", "palette_trns_no_iend_refused.png", "interlaced_no_iend.png",
    "interlaced_cut_refused.png",
}
JPEG_MEAN_DIFF = 3


def _name(origin: str) -> str:
    return origin.rsplit("/", 1)[-1]


@pytest.fixture(scope="module")
def files():
    return parity_files()


@pytest.fixture(scope="module")
def parity_dir(tmp_path_factory, files):
    folder = tmp_path_factory.mktemp("parity")
    write_files(folder, files)
    return folder


@pytest.fixture(scope="module")
def theirs(spark, parity_dir):
    return {_name(r.image.origin): r.image for r in spark.read.format("image").load(str(parity_dir)).collect()}


@pytest.fixture(scope="module")
def ours(spark, parity_dir):
    return {_name(r.image.origin): r for r in gpuimages.read_images(spark, str(parity_dir), device="cpu").collect()}


def _pixels(image) -> np.ndarray:
    return np.frombuffer(image.data, np.uint8).reshape(image.height, image.width, image.nChannels).astype(int)


def _same_as_spark(name: str, mine, ref) -> None:
    assert (mine.height, mine.width, mine.nChannels, mine.mode) == (ref.height, ref.width, ref.nChannels, ref.mode)
    a, b = _pixels(mine), _pixels(ref)
    if name.endswith(".jpg"):
        assert np.abs(a - b).mean() <= JPEG_MEAN_DIFF, name
    else:
        assert np.array_equal(a, b), name


def test_spark_refuses_exactly_the_expected_files(theirs, files):
    assert set(theirs) == set(files)
    assert {name for name, img in theirs.items() if img.height < 0} == REFUSED


@pytest.mark.parametrize("name", sorted(set(parity_files()) - REFUSED))
def test_decoded_like_spark(ours, theirs, name):
    row = ours[name]
    assert row.error is None and row.image.height > 0, row.error
    _same_as_spark(name, row.image, theirs[name])


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refused_like_spark_with_a_reason(ours, name):
    row = ours[name]
    assert (row.image.height, row.image.width, row.image.nChannels, row.image.mode) == (-1, -1, -1, -1)
    assert row.error


def test_reasons_of_refused_files(ours):
    assert ours["ihdr_compression_1_refused.png"].error == "PNG header: unknown compression method 1"
    assert "runcated" in ours["jpeg_cut_in_header_refused.jpg"].error
    assert "truncated" in ours["png_rows_cut_refused.png"].error


def test_truncated_jpeg_missing_blocks_are_mid_grey_as_in_java(ours, theirs):
    mine, ref = _pixels(ours["jpeg_cut_30.jpg"].image), _pixels(theirs["jpeg_cut_30.jpg"])
    assert (mine[-8:] == 128).all() and (ref[-8:] == 128).all()
    assert not (mine[:8] == 128).all()  # the decoded part is real content


def test_channel_rules_for_trns_and_bit_depths(ours):
    expected = {
        "grey1.png": 3, "grey2.png": 3, "grey4.png": 3, "grey8.png": 1, "grey16.png": 1,
        "grey1_trns.png": 1, "grey2_trns.png": 1, "grey4_trns.png": 1, "grey8_trns.png": 1, "grey16_trns.png": 1,
        "palette1.png": 3, "palette8.png": 3, "palette1_trns.png": 4, "palette8_trns.png": 4,
        "rgb8.png": 3, "rgb16.png": 3, "rgb8_trns.png": 4, "rgb16_trns.png": 4,
        "grey_alpha8.png": 1, "grey_alpha16.png": 1, "rgba8.png": 4, "rgba16.png": 4,
    }
    got = {name: ours[name].image.nChannels for name in expected}
    assert got == expected


def test_cmyk_follows_javas_cmyk_formula_not_the_embedded_profile(ours, theirs):
    ink = cmyk_array().astype(float) / 255
    linear = (1 - ink[:, :, :3]) * (1 - ink[:, :, 3:])
    srgb = np.where(linear <= 0.0031308, linear * 12.92, 1.055 * linear ** (1 / 2.4) - 0.055) * 255
    for name in ("cmyk.jpg", "cmyk_profile.jpg", "ycck.jpg", "ycck_profile.jpg"):
        mine = _pixels(ours[name].image)[:, :, ::-1]
        assert np.abs(mine - srgb).mean() < 4, name  # JPEG loss only
        assert np.abs(mine - _pixels(theirs[name])[:, :, ::-1]).mean() <= 1, name


def test_strict_refuses_truncated_files_only(spark, parity_dir, ours):
    rows = {_name(r.image.origin): r for r in gpuimages.read_images(spark, str(parity_dir), device="cpu",
                                                                     strict=True).collect()}
    for name in TRUNCATED:
        assert rows[name].image.height == -1, name
        assert rows[name].error == STRICT_TRUNCATED, name
    for name in set(rows) - TRUNCATED - REFUSED:
        assert rows[name].error is None, name
        assert bytes(rows[name].image.data) == bytes(ours[name].image.data), name


def test_strict_on_decode_images(spark, files):
    df = spark.createDataFrame([(files["jpeg_cut_60.jpg"],), (files["mpf_gain_map.jpg"],)], "content binary")
    rows = gpuimages.decode_images(df, origin_col=None, device="cpu", strict=True).collect()
    assert [r.error for r in rows] == [STRICT_TRUNCATED, None]
    loose = gpuimages.decode_images(df, origin_col=None, device="cpu").collect()
    assert [r.image.height for r in loose] == [64, 64]


def test_truncated_flag_is_restored_after_each_load(files):
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    decode_one(files["jpeg_cut_60.jpg"], DecodeOptions())
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    ImageFile.LOAD_TRUNCATED_IMAGES = True  # a user's own choice is kept
    try:
        decode_one(files["png_no_iend.png"], DecodeOptions())
        assert ImageFile.LOAD_TRUNCATED_IMAGES is True
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def test_resize_and_crop_apply_to_rescued_files(files):
    options = DecodeOptions(resize=(16, 24), center_crop=(8, 8))
    out = PillowEngine(options).decode([files["jpeg_cut_60.jpg"], files["ztxt_over_limit.png"], files["cmyk.jpg"]])
    assert out.errors == [None, None, None]
    assert [out.pixels(i).shape for i in range(3)] == [(8, 8, 3)] * 3


def test_dali_engine_matches_pillow_on_every_parity_file(files):
    pytest.importorskip("nvidia.dali")
    from gpuimages.engines.dali import DaliEngine, route
    from gpuimages.task.device import TaskDevice

    names = sorted(files)
    blobs = [files[n] for n in names]
    pillow = PillowEngine(DecodeOptions()).decode(blobs)
    engine = DaliEngine(DecodeOptions(), TaskDevice("gpu", None, 1))
    dali = engine.decode(blobs)
    assert [e is None for e in dali.errors] == [e is None for e in pillow.errors]
    for i, name in enumerate(names):
        assert np.array_equal(dali.pixels(i), pillow.pixels(i)), name
    for name in TRUNCATED:
        assert route(files[name], DecodeOptions()) == "truncated"
    assert route(files["ihdr_compression_1_refused.png"], DecodeOptions()) == "png header methods"
    assert route(files["mpf_gain_map.jpg"], DecodeOptions()) == (64, 96, 3)


def test_options_are_validated():
    assert make_decode_options(strict=True).strict is True
    assert make_decode_options().max_batch_bytes == 128 * 1024 * 1024
    with pytest.raises(TypeError, match="strict: expected True or False, got 1"):
        make_decode_options(strict=1)
    with pytest.raises(ValueError, match="max_batch_bytes: expected a positive integer, got 0"):
        make_decode_options(max_batch_bytes=0)


def test_read_images_checks_the_new_options_on_the_driver(spark, parity_dir):
    with pytest.raises(ValueError, match="max_batch_bytes"):
        gpuimages.read_images(spark, str(parity_dir), max_batch_bytes=-1)
    with pytest.raises(TypeError, match="strict"):
        gpuimages.read_images(spark, str(parity_dir), strict="yes")


def test_cmyk_jpeg_builder_writes_the_adobe_transform():
    for ycck, transform in ((False, 0), (True, 2)):
        with Image.open(io.BytesIO(cmyk_jpeg(cmyk_array(), ycck=ycck))) as im:
            assert im.mode == "CMYK" and im.info["adobe_transform"] == transform

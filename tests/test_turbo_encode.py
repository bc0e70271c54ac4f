"""JPEG encoding through libjpeg-turbo directly: Pillow's quality and subsampling semantics, grey stays grey,
alpha dropped, sizes and fidelity close to Pillow's (identical bytes from quality 96), and the escape hatch."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import numpy as np
import pytest
from images import encode
from PIL import Image, JpegImagePlugin

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root

from benchmarks.data import photo_set  # noqa: E402
from gpuimages.encoders.base import EncodeOptions
from gpuimages.encoders.pillow import PillowEncoder, encode_turbo
from gpuimages.engines import turbo
from gpuimages.engines.pillow import decode_one
from gpuimages.options import DecodeOptions

pytest.importorskip("simplejpeg")


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> list[np.ndarray]:
    """BGR photographs resized to a shorter side of 256 (what transcode_images encodes)."""
    pytest.importorskip("skimage")
    data = photo_set(10, root=tmp_path_factory.mktemp("photos"))
    return [decode_one(data.folder.joinpath(name).read_bytes(), DecodeOptions(resize=256)) for name in data.files]


def pillow_bytes(image: np.ndarray, quality: int, subsampling: str = "4:2:0", monkeypatch=None) -> bytes:
    """Pillow's own JPEG of ``image`` (the encoder with ``GPUIMAGES_JPEG_ENCODER=pillow``)."""
    monkeypatch.setenv(turbo.ENCODER_ENV, "pillow")
    encoder = PillowEncoder(EncodeOptions(quality=quality, subsampling=subsampling))
    assert encoder.turbo is False
    return encoder.encode_one(image)


def psnr(decoded: np.ndarray, original: np.ndarray) -> float:
    mse = np.mean((decoded.astype(float) - original.astype(float)) ** 2)
    return float(10 * np.log10(255**2 / mse))


def test_the_choice_per_quality_and_setting(monkeypatch):
    monkeypatch.delenv(turbo.ENCODER_ENV, raising=False)
    assert PillowEncoder(EncodeOptions(quality=96)).turbo is True
    assert PillowEncoder(EncodeOptions(quality=95)).turbo is False  # auto: Pillow where the bytes would differ
    assert PillowEncoder(EncodeOptions(quality=96, optimize=True)).turbo is False
    assert PillowEncoder(EncodeOptions(format="png")).turbo is False
    monkeypatch.setenv(turbo.ENCODER_ENV, "turbo")
    assert PillowEncoder(EncodeOptions(quality=50)).turbo is True
    assert PillowEncoder(EncodeOptions(quality=50, optimize=True)).turbo is False
    monkeypatch.setenv(turbo.ENCODER_ENV, "pillow")
    assert PillowEncoder(EncodeOptions(quality=100)).turbo is False
    monkeypatch.setattr(turbo, "library", lambda: None)
    monkeypatch.setenv(turbo.ENCODER_ENV, "turbo")
    assert PillowEncoder(EncodeOptions(quality=90)).turbo is False


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
@pytest.mark.parametrize("quality", [96, 100])
def test_from_quality_96_the_bytes_are_pillows(images, subsampling, quality, monkeypatch):
    for image in images:
        expected = pillow_bytes(image, quality, subsampling, monkeypatch)
        assert encode_turbo(image, quality, subsampling) == expected
    grey = np.ascontiguousarray(images[0][:, :, 1:2])
    ours, theirs = encode_turbo(grey, quality, subsampling), pillow_bytes(grey, quality, subsampling, monkeypatch)
    if subsampling == "4:4:4":
        assert ours == theirs
    else:  # Pillow also writes the luma sampling factors into a grey frame header; decoders ignore them
        assert len(ours) == len(theirs)
        assert sum(a != b for a, b in zip(ours, theirs, strict=True)) == 1
        assert np.array_equal(decode_one(ours, DecodeOptions()), decode_one(theirs, DecodeOptions()))


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:2:2", "4:4:4"])
@pytest.mark.parametrize("quality", [50, 75, 90, 95])
def test_below_96_sizes_and_fidelity_are_close_to_pillows(images, subsampling, quality, monkeypatch):
    ours = [encode_turbo(image, quality, subsampling) for image in images]
    theirs = [pillow_bytes(image, quality, subsampling, monkeypatch) for image in images]
    assert 0.97 <= sum(map(len, ours)) / sum(map(len, theirs)) <= 1.03
    ours_psnr = np.mean([psnr(decode_one(b, DecodeOptions()), im) for b, im in zip(ours, images, strict=True)])
    theirs_psnr = np.mean([psnr(decode_one(b, DecodeOptions()), im) for b, im in zip(theirs, images, strict=True)])
    assert ours_psnr >= 33
    assert theirs_psnr - 1.0 <= ours_psnr <= theirs_psnr + 0.05  # the fast DCT: never better, at most 1 dB worse
    for blob in ours:
        with Image.open(io.BytesIO(blob)) as im:
            assert im.mode == "RGB"
            assert JpegImagePlugin.get_sampling(im) == {"4:4:4": 0, "4:2:2": 1, "4:2:0": 2}[subsampling]


def test_channel_order_grey_and_alpha():
    bgr = np.zeros((16, 24, 3), np.uint8)
    bgr[:, :, 2] = 200  # red in Spark's BGR
    with Image.open(io.BytesIO(encode_turbo(bgr, 90, "4:2:0"))) as im:
        assert im.mode == "RGB"
        r, g, b = np.asarray(im).reshape(-1, 3).mean(axis=0)
    assert abs(r - 200) < 3 and g < 3 and b < 3

    grey = np.arange(16 * 24, dtype=np.uint8).reshape(16, 24, 1)
    with Image.open(io.BytesIO(encode_turbo(grey, 90, "4:2:0"))) as im:
        assert im.mode == "L" and im.layers == 1
        assert np.abs(np.asarray(im).astype(int) - grey[:, :, 0]).mean() < 2

    bgra = np.dstack([bgr, np.full((16, 24), 7, np.uint8)])
    assert encode_turbo(bgra, 90, "4:2:0") == encode_turbo(bgr, 90, "4:2:0")


def test_strided_and_reversed_inputs(images):
    image = images[0]
    crop = image[10:90, 20:140]  # rows strided: read in place
    assert not crop.flags.c_contiguous
    assert encode_turbo(crop, 90, "4:4:4") == encode_turbo(np.ascontiguousarray(crop), 90, "4:4:4")
    flipped = image[:, ::-1]  # negative strides: copied first
    assert encode_turbo(flipped, 90, "4:4:4") == encode_turbo(np.ascontiguousarray(flipped), 90, "4:4:4")


def test_encoder_batches_with_turbo_and_failures(images, monkeypatch):
    monkeypatch.setenv(turbo.ENCODER_ENV, "turbo")
    encoder = PillowEncoder(EncodeOptions(quality=90, subsampling="4:4:4"))
    assert encoder.turbo
    wide = np.zeros((2, 70000, 3), np.uint8)
    batch = encoder.encode([images[0], None, wide, images[1][:, :, :1]])
    assert batch.data[0] == encode_turbo(images[0], 90, "4:4:4")
    assert batch.errors[1] == "no image to encode (null or invalid image)"
    assert batch.errors[2] == "image of 70000x2 exceeds JPEG's 65,500-pixel side limit"
    with Image.open(io.BytesIO(batch.data[3])) as im:
        assert im.mode == "L" and im.size == (images[1].shape[1], images[1].shape[0])


def test_a_failing_libjpeg_turbo_call_falls_back_to_pillow(images, monkeypatch):
    monkeypatch.setenv(turbo.ENCODER_ENV, "turbo")
    encoder = PillowEncoder(EncodeOptions(quality=90))

    def broken(*args, **kwargs):
        raise ValueError("simulated")

    monkeypatch.setattr(turbo.library(), "encode_jpeg", broken)
    assert encoder.encode_one(images[0]) == pillow_bytes(images[0], 90, "4:2:0", monkeypatch)


def test_optimize_stays_on_pillow(images, monkeypatch):
    monkeypatch.setenv(turbo.ENCODER_ENV, "turbo")
    encoder = PillowEncoder(EncodeOptions(quality=90, optimize=True))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(images[0][:, :, ::-1])).save(buf, "JPEG", quality=90, subsampling=2,
                                                                       optimize=True)
    assert encoder.encode_one(images[0]) == buf.getvalue()


def test_png_unchanged(monkeypatch):
    monkeypatch.setenv(turbo.ENCODER_ENV, "turbo")
    image = np.random.default_rng(3).integers(0, 256, (12, 20, 4), dtype=np.uint8)
    blob = PillowEncoder(EncodeOptions(format="png")).encode_one(image)
    assert blob == encode(np.ascontiguousarray(image[:, :, [2, 1, 0, 3]]), "PNG", compress_level=3)

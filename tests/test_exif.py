"""EXIF orientation: off by default (as Spark's image source), Pillow's exif_transpose when on, same on DALI."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from images import exif_jpeg, rgb_array, write_files
from optional import has_module
from PIL import Image, ImageOps

import gpuimages
from gpuimages.options import make_decode_options
from gpuimages.schema import to_ndarray

#: Stored size of every test JPEG: 40 wide, 20 high.
STORED_HEIGHT, STORED_WIDTH = 20, 40
ORIENTATIONS = (2, 3, 4, 5, 6, 7, 8)
#: Orientations that swap width and height.
SWAPS = {5, 6, 7, 8}
#: Largest per-channel difference allowed between two JPEG decoders (IDCT/upsampling rounding).
JPEG_TOLERANCE = 2



def _name(origin: str) -> str:
    return origin.rsplit("/", 1)[-1]


def pillow_bgr(data: bytes, apply_exif: bool) -> np.ndarray:
    """Pillow's decode (optionally ``ImageOps.exif_transpose``) as BGR."""
    im = Image.open(io.BytesIO(data))
    if apply_exif:
        im = ImageOps.exif_transpose(im)
    return np.asarray(im.convert("RGB"))[:, :, ::-1]


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    assert a.shape == b.shape
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.fixture(scope="module")
def exif_files() -> dict[str, bytes]:
    """Non-square JPEGs with every EXIF orientation but 1: mirrors (2, 4), 180° (3), transposes (5, 7), 90° (6, 8)."""
    return {f"orientation{o}.jpg": exif_jpeg(rgb_array(STORED_HEIGHT, STORED_WIDTH, seed=o), o) for o in ORIENTATIONS}


@pytest.fixture(scope="module")
def exif_dir(tmp_path_factory, exif_files) -> Path:
    folder = tmp_path_factory.mktemp("exif")
    write_files(folder, exif_files)
    return folder


def read(spark, folder: Path, **options) -> dict[str, object]:
    rows = gpuimages.read_images(spark, str(folder), **options).collect()
    assert all(r.error is None for r in rows), [r.error for r in rows]
    return {_name(r.image.origin): r.image for r in rows}


def test_files_are_tagged(exif_files):
    for name, data in exif_files.items():
        im = Image.open(io.BytesIO(data))
        assert im.size == (STORED_WIDTH, STORED_HEIGHT)
        assert im.getexif()[0x0112] == int(name[len("orientation")])


def test_default_keeps_the_stored_orientation_like_spark(spark, exif_dir, exif_files):
    ours = read(spark, exif_dir, device="cpu")
    assert ours == read(spark, exif_dir, device="cpu", apply_exif=False)
    spark_rows = spark.read.format("image").load(str(exif_dir)).collect()
    theirs = {_name(r.image.origin): r.image for r in spark_rows}
    assert sorted(ours) == sorted(theirs) == sorted(exif_files)
    for name, image in ours.items():
        assert (image.height, image.width, image.nChannels, image.mode) == (STORED_HEIGHT, STORED_WIDTH, 3, 16)
        ref = theirs[name]
        assert (ref.height, ref.width, ref.nChannels, ref.mode) == (image.height, image.width, 3, 16)
        assert image.origin == ref.origin
        assert max_diff(to_ndarray(image), to_ndarray(ref)) <= JPEG_TOLERANCE
        np.testing.assert_array_equal(to_ndarray(image), pillow_bgr(exif_files[name], apply_exif=False))


def test_apply_exif_matches_pillow_exif_transpose(spark, exif_dir, exif_files):
    ours = read(spark, exif_dir, device="cpu", apply_exif=True)
    for name, image in ours.items():
        orientation = int(name[len("orientation")])
        expected = (STORED_WIDTH, STORED_HEIGHT) if orientation in SWAPS else (STORED_HEIGHT, STORED_WIDTH)
        assert (image.height, image.width) == expected  # orientation 6/8: 20 wide, 40 high
        np.testing.assert_array_equal(to_ndarray(image), pillow_bgr(exif_files[name], apply_exif=True))


def test_apply_exif_with_resize_keeps_the_shorter_side_rule(spark, exif_dir):
    """``resize`` applies to the upright image: an int sets the shorter side after rotation."""
    ours = read(spark, exif_dir, device="cpu", apply_exif=True, resize=10)
    assert (ours["orientation6.jpg"].height, ours["orientation6.jpg"].width) == (20, 10)
    assert (ours["orientation3.jpg"].height, ours["orientation3.jpg"].width) == (10, 20)


# -- DALI (device="gpu"; DALI's CPU operators on a machine without a GPU) -----------------------


@pytest.fixture(scope="module")
def dali_engine_module():
    if not has_module("nvidia.dali"):
        pytest.skip("nvidia.dali is not installed")
    return pytest.importorskip("gpuimages.engines.dali")


@pytest.mark.dali
@pytest.mark.parametrize("apply_exif", [False, True])
def test_dali_engine_decodes_exif_like_pillow(dali_engine_module, exif_files, apply_exif):
    """The DALI engine itself (not its Pillow fallback) gives Pillow's dimensions and pixels."""
    from gpuimages.engines import create_engine
    from gpuimages.task.device import TaskDevice, visible_gpu_count

    device = TaskDevice("gpu", 0 if visible_gpu_count() > 0 else None)
    engine = create_engine(make_decode_options(device="gpu", apply_exif=apply_exif), device, "dali")
    names = sorted(exif_files)
    batch = engine.decode([exif_files[n] for n in names])
    assert engine.last_routes == ["dali"] * len(names)  # decoded by DALI, not routed to Pillow
    for i, name in enumerate(names):
        assert batch.errors[i] is None
        expected = pillow_bgr(exif_files[name], apply_exif=apply_exif)
        pixels = batch.pixels(i)
        assert pixels.shape == expected.shape, name
        assert max_diff(pixels, expected) <= JPEG_TOLERANCE, name


@pytest.mark.dali
@pytest.mark.parametrize("apply_exif", [False, True])
def test_read_images_gpu_device_matches_cpu(spark, exif_dir, dali_engine_module, apply_exif):
    cpu = read(spark, exif_dir, device="cpu", apply_exif=apply_exif)
    gpu = read(spark, exif_dir, device="gpu", apply_exif=apply_exif)
    assert sorted(gpu) == sorted(cpu)
    for name, image in gpu.items():
        ref = cpu[name]
        shape = (image.height, image.width, image.nChannels, image.mode)
        assert shape == (ref.height, ref.width, ref.nChannels, ref.mode), name
        assert max_diff(to_ndarray(image), to_ndarray(ref)) <= JPEG_TOLERANCE, name

"""Image operations of the ML stages against Pillow/numpy references, and the transform/featurize steps
on Arrow image columns through the task runtime (no Spark)."""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa
import pytest
from images import rgb_array
from PIL import Image

from gpuimages.schema import ARROW_IMAGE_TYPE
from gpuimages.task.device import TaskDevice
from gpuimages.task.images import ImageBatch, batch_of, list_column
from gpuimages.task.runner import run_partition
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps import Featurize, Transform
from gpuimages.transforms import ops
from gpuimages.transforms.arrays import NUMPY, NUMPY_ARRAYS, arrays_for
from gpuimages.transforms.histogram import histogram_features, histogram_size
from gpuimages.transforms.stages import apply_stages, check_stages, color_format, flip_direction

# ---------------------------------------------------------------- references


def pillow_two_pass(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reference resize: Pillow bilinear on each channel, horizontal pass then vertical pass."""
    planes = []
    for c in range(image.shape[2]):
        im = Image.fromarray(np.ascontiguousarray(image[:, :, c]))
        im = im.resize((width, im.height), Image.BILINEAR).resize((width, height), Image.BILINEAR)
        planes.append(np.asarray(im))
    return np.stack(planes, axis=-1)


def blur_reference(image: np.ndarray, kernel_size: int, sigma: float) -> np.ndarray:
    """Direct 2-D convolution with the outer-product Gaussian, borders mirrored (numpy 'reflect')."""
    if sigma <= 0:
        sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    r = kernel_size // 2
    x = np.arange(-r, r + 1, dtype=np.float64)
    k1 = np.exp(-(x**2) / (2 * sigma**2))
    k2 = np.outer(k1, k1) / k1.sum() ** 2
    padded = np.pad(image.astype(np.float64), ((r, r), (r, r), (0, 0)), mode="reflect")
    h, w = image.shape[:2]
    out = np.zeros(image.shape, dtype=np.float64)
    for dy in range(kernel_size):
        for dx in range(kernel_size):
            out += k2[dy, dx] * padded[dy : dy + h, dx : dx + w]
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def bgr(height: int, width: int, seed: int) -> np.ndarray:
    return np.ascontiguousarray(rgb_array(height, width, seed=seed)[:, :, ::-1])


# ---------------------------------------------------------------- resize


@pytest.mark.parametrize("channels", [1, 3, 4])
def test_resize_equals_pillow_two_pass_and_array_twin(channels):
    rng = np.random.default_rng(channels)
    for _ in range(25):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        oh, ow = (int(v) for v in rng.integers(1, 90, 2))
        stack = rng.integers(0, 256, (2, h, w, channels), dtype=np.uint8)
        cpu = ops.resize(stack, oh, ow, NUMPY)
        arrays = ops.resize(stack, oh, ow, NUMPY_ARRAYS)
        assert cpu.shape == (2, oh, ow, channels)
        np.testing.assert_array_equal(cpu, arrays)  # the GPU code path gives the CPU's pixels
        for i in range(2):
            np.testing.assert_array_equal(cpu[i], pillow_two_pass(stack[i], oh, ow))


def test_resize_matches_pillow_single_call_within_one_level():
    image = bgr(45, 64, seed=3)
    for oh, ow in [(41, 100), (20, 20), (90, 128), (45, 30), (10, 64)]:
        ours = ops.resize(image[None], oh, ow, NUMPY)[0].astype(int)
        pillow = np.asarray(Image.fromarray(image).resize((ow, oh), Image.BILINEAR)).astype(int)
        assert np.abs(ours - pillow).max() <= 1
        assert (ours != pillow).mean() < 0.4  # pass order only: never more than one level
        if oh == 45 or ow == 64:  # one axis only: one pass, so exactly Pillow
            np.testing.assert_array_equal(ours, pillow)


def test_resize_same_size_is_identity_and_shorter_side():
    stack = bgr(12, 20, seed=1)[None]
    assert ops.resize(stack, 12, 20, NUMPY) is stack
    np.testing.assert_array_equal(ops.resize_arrays(stack, 12, 20, np), stack)
    assert ops.shorter_side_size(375, 500, 224) == (224, 299)
    assert ops.shorter_side_size(10, 4, 2) == (5, 2)


# ---------------------------------------------------------------- geometry and colour


def test_crop_center_and_flip_exact():
    image = bgr(20, 30, seed=2)
    stack = image[None]
    box = ops.crop_box(20, 30, 5, 3, 10, 12)
    assert box == (3, 5, 10, 12)
    np.testing.assert_array_equal(ops.crop(stack, *box)[0], image[3:13, 5:17])
    assert ops.crop_box(20, 30, 25, 15, 10, 10) == (15, 25, 5, 5)  # clipped to the image
    assert ops.crop_box(20, 30, 40, 0, 5, 5) is None
    assert ops.center_box(20, 30, 10, 11) == (5, 9, 10, 11)
    assert ops.center_box(20, 30, 50, 50) == (0, 0, 20, 30)
    pil = Image.fromarray(image)
    np.testing.assert_array_equal(ops.flip(stack, "horizontal")[0], np.asarray(pil.transpose(Image.FLIP_LEFT_RIGHT)))
    np.testing.assert_array_equal(ops.flip(stack, "vertical")[0], np.asarray(pil.transpose(Image.FLIP_TOP_BOTTOM)))
    np.testing.assert_array_equal(ops.flip(stack, "both")[0], image[::-1, ::-1])


def test_gray_is_pillow_luma():
    image = bgr(20, 30, seed=4)
    rgb = np.ascontiguousarray(image[:, :, ::-1])
    gray = ops.convert_color(image[None], "BGR", "GRAY", np)[0]
    assert gray.shape == (20, 30, 1)
    np.testing.assert_array_equal(gray[:, :, 0], np.asarray(Image.fromarray(rgb).convert("L")))
    wide = rgb.astype(np.int64)
    formula = (19595 * wide[..., 0] + 38470 * wide[..., 1] + 7471 * wide[..., 2] + 32768) >> 16
    np.testing.assert_array_equal(gray[:, :, 0], formula)
    # "RGB2GRAY" reads the same bytes as RGB
    np.testing.assert_array_equal(ops.convert_color(rgb[None], "RGB", "GRAY", np)[0], gray)


def test_color_conversions():
    image = bgr(4, 5, seed=5)
    stack = image[None]
    np.testing.assert_array_equal(ops.convert_color(stack, "BGR", "RGB", np)[0], image[:, :, ::-1])
    bgra = ops.convert_color(stack, "BGR", "BGRA", np)[0]
    np.testing.assert_array_equal(bgra[:, :, :3], image)
    assert (bgra[:, :, 3] == 255).all()
    rgba = ops.convert_color(bgra[None], "BGRA", "RGBA", np)[0]
    np.testing.assert_array_equal(rgba, np.dstack([image[:, :, ::-1], bgra[:, :, 3]]))
    gray = image[:, :, :1]
    np.testing.assert_array_equal(ops.convert_color(gray[None], "GRAY", "BGR", np)[0], np.repeat(gray, 3, axis=2))
    assert color_format(6) == "BGR2GRAY" and color_format("color_bgr2rgb") == "BGR2RGB"
    assert flip_direction(0) == "vertical" and flip_direction(-1) == "both"


# ---------------------------------------------------------------- filters


@pytest.mark.parametrize(("kernel_size", "sigma"), [(3, 0.0), (5, 1.2), (7, 2.0)])
def test_gaussian_blur_against_direct_convolution(kernel_size, sigma):
    image = bgr(23, 31, seed=6)
    ours = ops.gaussian_blur(image[None], kernel_size, sigma, np)[0]
    ref = blur_reference(image, kernel_size, sigma)
    diff = np.abs(ours.astype(int) - ref)
    assert diff.max() <= 1
    assert (diff > 0).mean() < 0.01
    kernel = ops.gaussian_kernel(kernel_size, sigma)
    assert kernel.sum() == pytest.approx(1.0)
    assert ops.kernel_size_for_sigma(1.0) == 7


def test_gaussian_blur_close_to_pillow_inside():
    from PIL import ImageFilter

    image = bgr(40, 40, seed=7)
    ours = ops.gaussian_blur(image[None], 9, 1.5, np)[0].astype(int)
    pillow = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(1.5))).astype(int)
    assert np.abs(ours - pillow)[6:-6, 6:-6].mean() < 1.5  # Pillow approximates with box blurs


def test_threshold_exact():
    stack = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1)
    v = stack.astype(int)
    cases = {
        "binary": np.where(v > 127, 200, 0),
        "binary_inv": np.where(v > 127, 0, 200),
        "trunc": np.where(v > 127, 127, v),
        "tozero": np.where(v > 127, v, 0),
        "tozero_inv": np.where(v > 127, 0, v),
    }
    for kind, expected in cases.items():
        np.testing.assert_array_equal(ops.threshold(stack, 127.5, 200, kind, np), expected)
    assert (ops.threshold(stack, -3, 255, "binary", np) == 255).all()
    assert (ops.threshold(stack, 255, 255, "binary", np) == 0).all()


def test_normalize_values_and_layouts():
    image = bgr(3, 4, seed=8)
    mean, std = [0.5, 0.4, 0.3], [0.2, 0.25, 0.5]
    chw = ops.normalize(image[None], mean, std, 1 / 255, True, "CHW", np)
    hwc = ops.normalize(image[None], mean, std, 1 / 255, True, "HWC", np)
    rgb = image[:, :, ::-1].astype(np.float32) / np.float32(255)
    expected = (rgb - np.array(mean, np.float32)) / np.array(std, np.float32)
    assert chw.dtype == np.float32 and chw.shape == (1, 36)
    np.testing.assert_allclose(chw[0], expected.transpose(2, 0, 1).ravel(), rtol=1e-6)
    np.testing.assert_allclose(hwc[0], expected.ravel(), rtol=1e-6)
    c, y, x = 2, 1, 3  # documented CHW index: c * H * W + y * W + x
    assert chw[0, c * 12 + y * 4 + x] == pytest.approx((image[y, x, 0] / 255 - 0.3) / 0.5, rel=1e-6)


# ---------------------------------------------------------------- stages


def test_stage_validation():
    stages = check_stages([{"action": "resize", "height": 4, "width": 5}, {"action": "flip", "direction": 1}])
    assert stages[1] == {"action": "flip", "direction": "horizontal"}
    with pytest.raises(ValueError, match="must be the last stage"):
        check_stages([{"action": "normalize"}, {"action": "flip"}])
    with pytest.raises(ValueError, match="action"):
        check_stages([{"action": "rotate"}])
    with pytest.raises(ValueError, match="odd"):
        check_stages([{"action": "gaussianBlur", "kernelSize": 4}])
    with pytest.raises(ValueError, match="either size or height"):
        check_stages([{"action": "resize", "size": 3, "height": 4}])
    with pytest.raises(ValueError, match="positive|>= 1"):
        check_stages([{"action": "crop", "x": 0, "y": 0, "height": 0, "width": 3}])
    with pytest.raises(ValueError, match="list"):
        check_stages("resize")


def test_apply_stages_chain_and_invalid():
    image = bgr(30, 40, seed=9)
    stages = check_stages(
        [{"action": "resize", "size": 20}, {"action": "centerCrop", "height": 16, "width": 16},
         {"action": "colorFormat", "format": "BGR2GRAY"}]
    )
    out = apply_stages(image[None], stages, NUMPY)
    resized = pillow_two_pass(image, 20, 27)
    crop = resized[2:18, 5:21]
    expected = ops.luma(crop[:, :, ::-1], np)
    np.testing.assert_array_equal(out[0], expected)
    outside = check_stages([{"action": "crop", "x": 100, "y": 0, "height": 5, "width": 5}])
    assert apply_stages(image[None], outside, NUMPY) is None
    gray_norm = check_stages([{"action": "normalize", "mean": [0.1, 0.2, 0.3], "std": 1.0}])
    assert apply_stages(image[None, :, :, :1], gray_norm, NUMPY) is None


# ---------------------------------------------------------------- Arrow


def _image_column(images: list[np.ndarray | None], origins: list[str]) -> pa.StructArray:
    return batch_of(images, [None if im is not None else "invalid" for im in images]).to_struct(pa.array(origins))


def read_images(column: pa.Array) -> ImageBatch:
    return ImageBatch.from_struct(column)


def run_step(column: pa.Array, step, device: str = "cpu") -> pa.Array:
    """Run one step over an image column through the task runtime; the step's output column."""
    batch = pa.RecordBatch.from_arrays([column], names=["image"])
    spec = StageSpec("test", device, "image", "struct", (step,), ("image", "out"), error_col=None, rows_per_batch=64)
    return pa.Table.from_batches(list(run_partition(iter([batch]), spec))).column("out").combine_chunks()


def stage_runner(stages: list[dict]):
    return lambda column: run_step(column, Transform(tuple(check_stages(stages)), "out"))


def test_arrow_round_trip_sliced_and_null():
    images = [bgr(5, 6, seed=1), None, bgr(3, 4, seed=2)[:, :, :1].copy(), bgr(5, 6, seed=3)]
    column = _image_column(images, ["a", "b", "c", "d"])
    with_null = pa.concat_arrays([column, pa.nulls(1, column.type)])
    part = with_null.slice(2, 3)  # a slice: offsets of the children start past zero
    batch = read_images(part)
    assert list(batch.valid) == [True, True, False]
    assert list(batch.present) == [True, True, False]
    assert batch.errors == [None, None, "no image (null value)"]
    np.testing.assert_array_equal(batch.pixels(0), images[2])
    np.testing.assert_array_equal(batch.pixels(1), images[3])
    assert batch.groups() == {(3, 4, 1): [0], (5, 6, 3): [1]}
    assert column.type == ARROW_IMAGE_TYPE
    rebuilt = read_images(column)
    assert rebuilt.valid.tolist() == [True, False, True, True]
    assert rebuilt.errors[1] == "invalid image (it was not decoded)"
    assert column.field("height").to_pylist() == [5, -1, 3, 5]
    assert column.field("mode").to_pylist() == [16, -1, 0, 16]
    again = rebuilt.to_struct(column.field("origin"))
    assert again.equals(column)
    lists = list_column([np.array([1.0, 2.0]), None], pa.float64())
    assert lists.to_pylist() == [[1.0, 2.0], None]


def test_arrow_large_binary_and_wrong_length():
    image = bgr(4, 4, seed=1)
    column = pa.StructArray.from_arrays(
        [pa.array(["a", "b"]), pa.array([4, 4], pa.int32()), pa.array([4, 4], pa.int32()),
         pa.array([3, 3], pa.int32()), pa.array([16, 16], pa.int32()),
         pa.array([image.tobytes(), image.tobytes()[:-1]], pa.large_binary())],
        names=["origin", "height", "width", "nChannels", "mode", "data"],
    )
    batch = read_images(column)
    assert batch.valid.tolist() == [True, False]
    assert batch.errors[1] == "inconsistent image struct: height=4, width=4, nChannels=3 do not match its data"
    np.testing.assert_array_equal(batch.pixels(0), image)
    out = stage_runner([{"action": "flip"}])(column)  # Spark's large var types kept
    assert out.type.field("data").type == pa.large_binary()
    np.testing.assert_array_equal(read_images(out).pixels(0), image[:, ::-1])
    assert out.field("height").to_pylist() == [4, -1]


def test_stage_runner_keeps_invalid_and_null_rows():
    images = [bgr(10, 12, seed=1), None, bgr(8, 8, seed=2)]
    column = pa.concat_arrays([_image_column(images, ["a", "bad", "c"]), pa.nulls(1, _image_column([], []).type)])
    out = stage_runner([{"action": "resize", "height": 4, "width": 6}])(column)
    rows = out.to_pylist()
    assert [r and (r["origin"], r["height"], r["width"]) for r in rows] == [
        ("a", 4, 6), ("bad", -1, -1), ("c", 4, 6), None
    ]
    assert rows[1]["data"] == b"" and rows[1]["mode"] == -1
    tensor = stage_runner([{"action": "normalize", "layout": "HWC"}])(column)
    assert [None if v is None else len(v) for v in tensor.to_pylist()] == [360, None, 192, None]


# ---------------------------------------------------------------- features and devices


def test_histogram_features_same_on_both_code_paths():
    rgb = np.stack([rgb_array(32, 32, seed=s) for s in range(3)])
    cpu = histogram_features(rgb, 8, 16, NUMPY)
    arrays = histogram_features(rgb, 8, 16, NUMPY_ARRAYS)
    assert cpu.shape == (3, histogram_size(8, 16)) == (3, 250)
    np.testing.assert_array_equal(cpu, arrays)
    assert cpu.min() >= 0 and cpu.max() <= 1
    colour = cpu[:, 192:240].reshape(3, 3, 16)
    np.testing.assert_allclose(colour.sum(axis=2), 1.0)
    texture = cpu[:, 240:248]
    np.testing.assert_allclose(texture.sum(axis=1), 1.0)


def test_feature_step_function_receives_rgb_floats_in_slices_of_the_batch_size():
    from gpuimages.models import ModelSpec

    seen = []

    def fn(images: np.ndarray) -> np.ndarray:
        seen.append(images)
        return images.mean(axis=(1, 2))

    images = [bgr(10, 10, seed=1), None, *[bgr(10, 10, seed=k) for k in range(2, 7)]]
    column = _image_column(images, list("abcdefg"))
    step = Featurize("function", (10, 10), "out", model=ModelSpec("function", function=fn), batch_size=2)
    out = run_step(column, step).to_pylist()
    assert max(len(x) for x in seen) == 2 and sum(len(x) for x in seen) == 6  # at most batch_size per call
    assert seen[0].dtype == np.float32 and seen[0].shape == (1, 10, 10, 3)
    np.testing.assert_allclose(seen[0][0], images[0][:, :, ::-1] / 255.0, rtol=1e-6)
    assert out[1] is None and len(out[0]) == 3
    bad = Featurize("function", (10, 10), "out", model=ModelSpec("function", function=lambda x: x[:, 0, 0, 0]))
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        run_step(column, bad)


def test_gpu_without_cupy_or_gpu_computes_with_numpy(caplog):
    with caplog.at_level(logging.WARNING, logger="gpuimages.transforms.arrays"):
        assert arrays_for(TaskDevice("gpu", None)) is NUMPY
    assert "computing with numpy" in caplog.text
    assert arrays_for(TaskDevice("auto", None)) is NUMPY
    assert arrays_for(TaskDevice("cpu", 0)) is NUMPY


def test_a_cupy_that_imports_but_cannot_compute_falls_back_to_numpy(monkeypatch, caplog):
    """cupy for another CUDA major than the driver's imports fine and fails on first use: numpy, said once."""
    import sys
    import types

    from gpuimages.task import device as dev
    from gpuimages.transforms import arrays

    class Device:
        def __init__(self, ordinal):
            pass

        def __enter__(self):
            raise RuntimeError("cudaErrorInsufficientDriver: CUDA driver version is insufficient for CUDA runtime")

        def __exit__(self, *exc):
            return False

    fake = types.ModuleType("cupy")
    fake.cuda = types.SimpleNamespace(Device=Device)
    monkeypatch.setitem(sys.modules, "cupy", fake)
    monkeypatch.setitem(dev._imports, "cupy", True)
    monkeypatch.setattr(arrays, "_computes", {})
    with caplog.at_level(logging.WARNING, logger="gpuimages.transforms.arrays"):
        assert arrays_for(TaskDevice("auto", 1)) is NUMPY
        assert arrays_for(TaskDevice("gpu", 1)) is NUMPY
    assert caplog.text.count("cupy cannot compute on GPU 1 (RuntimeError: cudaErrorInsufficientDriver") == 1

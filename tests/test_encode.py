"""encode_images and the encoders: Pillow and nvImageCodec (its CPU backend here), round trips through decode_images."""

from __future__ import annotations

import io

import numpy as np
import pytest
from images import encode, rgb_array, write_files
from PIL import Image

from gpuimages.encoders import EncodeOptions, create_encoder, make_encode_options, nvimgcodec_installed
from gpuimages.encoders.pillow import PillowEncoder
from gpuimages.schema import image_struct_type
from gpuimages.task.device import TaskDevice


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def bgr(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.ascontiguousarray(rgb_array(height, width, seed)[:, :, ::-1])


def photo(height: int = 300, width: int = 400, seed: int = 0) -> np.ndarray:
    """An RGB crop of a real photograph (scikit-image's), or a skip when it is not installed."""
    pytest.importorskip("skimage")
    from benchmarks.data import photo_rgb

    return photo_rgb(np.random.default_rng(seed), height, width)


def open_rgb(blob: bytes) -> Image.Image:
    return Image.open(io.BytesIO(blob))


# ---------------------------------------------------------------- encoders (no Spark)


def test_pillow_jpeg_is_bgr_aware_and_drops_alpha():
    image = bgr()
    bgra = np.concatenate([image, np.full(image.shape[:2] + (1,), 77, np.uint8)], axis=2)
    out = PillowEncoder(make_encode_options(format="jpeg", quality=95)).encode([image, bgra])
    assert out.errors == [None, None]
    for blob in out.data:
        im = open_rgb(blob)
        assert im.format == "JPEG" and im.mode == "RGB" and im.size == (64, 48)
        assert psnr(np.asarray(im), image[:, :, ::-1]) > 30


def test_pillow_png_is_exact_for_grey_bgr_and_bgra():
    grey = rgb_array(20, 30)[:, :, :1].copy()
    image = bgr(20, 30)
    bgra = np.concatenate([image, np.arange(600, dtype=np.uint8).reshape(20, 30, 1)], axis=2)
    out = PillowEncoder(make_encode_options(format="png")).encode([grey, image, bgra])
    modes = [open_rgb(b).mode for b in out.data]
    assert modes == ["L", "RGB", "RGBA"]
    assert np.array_equal(np.asarray(open_rgb(out.data[0])), grey[:, :, 0])
    assert np.array_equal(np.asarray(open_rgb(out.data[1])), image[:, :, ::-1])
    back = np.asarray(open_rgb(out.data[2]))
    assert np.array_equal(back[:, :, [2, 1, 0, 3]], bgra)


def test_pillow_jpeg_options_subsampling_and_grey():
    image = bgr(64, 64)
    from PIL import JpegImagePlugin

    for name, code in (("4:4:4", 0), ("4:2:0", 2)):
        blob = PillowEncoder(make_encode_options(subsampling=name)).encode([image]).data[0]
        assert JpegImagePlugin.get_sampling(open_rgb(blob)) == code
    grey = PillowEncoder(make_encode_options()).encode([image[:, :, :1].copy()]).data[0]
    assert open_rgb(grey).mode == "L"
    low = PillowEncoder(make_encode_options(quality=10)).encode([image]).data[0]
    high = PillowEncoder(make_encode_options(quality=95)).encode([image]).data[0]
    assert len(low) < len(high)


def test_bad_arrays_are_reasons_not_exceptions():
    out = PillowEncoder(EncodeOptions()).encode(
        [None, np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 2), np.uint8), np.zeros((4, 4, 3), np.float32), bgr()]
    )
    assert out.data[:4] == [None] * 4 and out.data[4] is not None
    assert "no image to encode" in out.errors[0]
    assert "empty image" in out.errors[1]
    assert "expected (h, w, 1|3|4) uint8" in out.errors[2] and "float32" in out.errors[3]
    assert out.errors[4] is None


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"format": "webp"}, "format: expected one of jpeg, png, got 'webp'"),
        ({"quality": 0}, "quality: expected an integer in 1..100, got 0"),
        ({"quality": 90.0}, "quality: expected an integer in 1..100, got 90.0"),
        ({"subsampling": "4:1:1"}, "subsampling: expected one of 4:4:4, 4:2:2, 4:2:0"),
        ({"compress_level": 10}, "compress_level: expected an integer in 0..9, got 10"),
        ({"encoder": "turbo"}, "encoder: expected one of pillow, nvimgcodec or None"),
        ({"device": "tpu"}, "device: expected one of auto, cpu, gpu"),
        ({"batch_size": 0}, "batch_size: expected a positive integer"),
    ],
)
def test_option_errors(kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        make_encode_options(**kwargs)


def test_jpg_is_an_alias_and_png_never_uses_nvimgcodec():
    assert make_encode_options(format="JPG").format == "jpeg"
    assert create_encoder(make_encode_options(format="png"), TaskDevice("cpu"), encoder="nvimgcodec").name == "pillow"


needs_nvimgcodec = pytest.mark.skipif(not nvimgcodec_installed(), reason="nvidia-nvimgcodec-cu12 is not installed")


@needs_nvimgcodec
def test_nvimgcodec_cpu_backend_matches_pillow_within_jpeg_loss():
    enc = create_encoder(make_encode_options(quality=90), TaskDevice("gpu", None, 1), encoder="nvimgcodec")
    assert enc.name == "nvimgcodec-cpu"
    image = np.ascontiguousarray(photo(120, 160)[:, :, ::-1])
    grey = image[:, :, :1].copy()
    bgra = np.concatenate([image, np.full(image.shape[:2] + (1,), 9, np.uint8)], axis=2)
    out = enc.encode([image, grey, bgra, None])
    assert out.errors[:3] == [None, None, None] and "no image to encode" in out.errors[3]
    assert enc.fallbacks == 0  # the first three were nvImageCodec's own
    rgb = np.asarray(open_rgb(out.data[0]))
    assert rgb.shape == (120, 160, 3) and psnr(rgb, image[:, :, ::-1]) >= 30
    assert open_rgb(out.data[1]).mode == "L"
    assert psnr(np.asarray(open_rgb(out.data[1])), grey[:, :, 0]) >= 30
    assert np.asarray(open_rgb(out.data[2])).shape == (120, 160, 3)  # alpha dropped
    pillow = np.asarray(open_rgb(PillowEncoder(make_encode_options(quality=90)).encode([image]).data[0]))
    assert np.abs(rgb.astype(int) - pillow.astype(int)).mean() < 2


def test_task_routing_follows_the_device():
    from gpuimages.encoders import encoder_for

    cpu, no_gpu, gpu = TaskDevice("cpu"), TaskDevice("auto", None), TaskDevice("gpu", 3)
    assert encoder_for(make_encode_options(device="cpu"), cpu) == "pillow"
    assert encoder_for(make_encode_options(device="gpu", format="png"), gpu) == "pillow"
    assert encoder_for(make_encode_options(device="cpu", encoder="nvimgcodec"), cpu) == "nvimgcodec"
    assert encoder_for(make_encode_options(device="auto"), no_gpu) == "pillow"
    if nvimgcodec_installed():
        assert encoder_for(make_encode_options(device="auto"), TaskDevice("auto", 3)) == "nvimgcodec"
    assert encoder_for(make_encode_options(device="gpu"), gpu) == "nvimgcodec"
    assert encoder_for(make_encode_options(device="gpu", encoder="pillow"), gpu) == "pillow"


def test_gpu_encoder_that_cannot_start_falls_back_to_pillow(monkeypatch):
    import gpuimages.encoders as encoders
    from gpuimages.task.cache import worker_cache
    from gpuimages.task.steps.encode import task_encoder

    def broken(options, device=None, encoder=None):
        if encoder == "nvimgcodec":
            raise RuntimeError("CUDA Runtime failure")
        return PillowEncoder(options)

    monkeypatch.setattr(encoders, "create_encoder", broken)
    worker_cache().clear()
    options = make_encode_options(device="auto")
    assert task_encoder(options, TaskDevice("auto", 0)).name == "pillow"  # "auto": Pillow for this task...
    assert not any(k[1] == "nvimgcodec" for k in worker_cache().keys())  # ...and nvImageCodec again for the next
    with pytest.raises(RuntimeError, match="device='gpu': nvImageCodec could not start on gpu 0, 1 thread: "
                                           "RuntimeError: CUDA Runtime failure"):
        task_encoder(make_encode_options(device="gpu"), TaskDevice("gpu", 0))
    worker_cache().clear()


# ---------------------------------------------------------------- encode_images on Spark


@pytest.fixture(scope="module")
def photo_dir(tmp_path_factory):
    """Real-looking photographs (ImageNet-sized JPEG crops), a grey PNG, an RGBA PNG and an undecodable file."""
    folder = tmp_path_factory.mktemp("encode")
    files = {}
    for i, (h, w) in enumerate([(375, 500), (500, 375), (333, 480)]):
        files[f"photo{i}.jpg"] = encode(photo(h, w, seed=10 + i), "JPEG", quality=92)
    files["grey.png"] = encode(rgb_array(60, 80, seed=5)[:, :, 0], "PNG")
    rgba = np.concatenate([rgb_array(40, 50, seed=6), np.arange(2000, dtype=np.uint8).reshape(40, 50, 1)], axis=2)
    files["alpha.png"] = encode(rgba, "PNG")
    files["broken.jpg"] = b"\xff\xd8\xff this is not a JPEG"
    write_files(folder, files)
    return folder


def _by_name(rows, key="origin"):
    return {r[key].rsplit("/", 1)[-1]: r for r in rows}


def test_read_encode_decode_round_trip_jpeg(spark, photo_dir):
    import gpuimages

    images = gpuimages.read_images(spark, str(photo_dir), resize=256, device="cpu")
    encoded = gpuimages.encode_images(images, "image", format="jpeg", quality=90, device="cpu")
    assert encoded.columns == ["origin", "height", "width", "encoded", "error"]
    back = gpuimages.decode_images(encoded, "encoded", origin_col="origin", device="cpu", output_col="decoded",
                                   error_col="decode_error")
    originals = _by_name([r.image.asDict() | {"error": r.error} for r in images.collect()])
    rows = _by_name(back.collect())
    assert set(rows) == set(originals)
    for name, row in rows.items():
        original = originals[name]
        if name == "broken.jpg":
            assert row.height is None and row.decoded.height == -1  # null bytes: nothing to decode
            assert "not a recognised image format" in row.error  # read_images' reason is kept
            continue
        assert row.error is None and row.decode_error is None
        assert (row.height, row.width) == (original["height"], original["width"])
        assert (row.decoded.height, row.decoded.width) == (original["height"], original["width"])
        expected_channels = 3 if original["nChannels"] == 4 else original["nChannels"]  # JPEG drops alpha
        assert row.decoded.nChannels == expected_channels
        a = np.frombuffer(row.decoded.data, np.uint8).reshape(row.decoded.height, row.decoded.width, -1)
        b = np.frombuffer(original["data"], np.uint8).reshape(original["height"], original["width"], -1)
        assert psnr(a, b[:, :, :expected_channels]) >= 30, name
    assert min(rows["photo0.jpg"].height, rows["photo0.jpg"].width) == 256


def test_png_round_trip_is_bit_exact_with_modes(spark, photo_dir):
    import gpuimages

    images = gpuimages.read_images(spark, str(photo_dir), device="cpu", drop_invalid=True)
    encoded = gpuimages.encode_images(images, format="png", keep_input=True)
    back = gpuimages.decode_images(encoded, "encoded", origin_col="origin", output_col="decoded",
                                   error_col="decode_error", device="cpu").collect()
    assert len(back) == 5
    channels = set()
    for row in back:
        assert row.error is None and row.decode_error is None
        assert row.decoded.nChannels == row.image.nChannels and row.decoded.mode == row.image.mode
        assert row.decoded.data == row.image.data
        channels.add(row.image.nChannels)
    assert channels == {1, 3, 4}


def test_null_and_invalid_structs_give_reasons_and_keep_columns(spark):
    import gpuimages

    good = bgr(8, 10)
    rows = [
        (1, {"origin": "a", "height": 8, "width": 10, "nChannels": 3, "mode": 16, "data": good.tobytes()}),
        (2, None),
        (3, {"origin": "c", "height": -1, "width": -1, "nChannels": -1, "mode": -1, "data": b""}),
        (4, {"origin": "d", "height": 8, "width": 10, "nChannels": 3, "mode": 16, "data": b"short"}),
    ]
    from pyspark.sql.types import IntegerType, StructField, StructType

    schema = StructType([StructField("id", IntegerType()), StructField("img", image_struct_type())])
    df = spark.createDataFrame(rows, schema)
    out = {r.id: r for r in gpuimages.encode_images(df, "img", device="cpu", output_col="jpg").collect()}
    assert out[1].jpg[:3] == b"\xff\xd8\xff" and (out[1].height, out[1].width, out[1].origin) == (8, 10, "a")
    assert out[1].error is None
    assert out[2].jpg is None and out[2].error == "no image (null value)"
    assert out[3].jpg is None and "invalid image" in out[3].error
    assert out[4].jpg is None and "do not match its data" in out[4].error


@needs_nvimgcodec
def test_encode_images_with_nvimgcodec_cpu_backend_on_spark(spark, photo_dir):
    import gpuimages

    images = gpuimages.read_images(spark, str(photo_dir), resize=128, device="cpu", drop_invalid=True)
    rows = gpuimages.encode_images(images, encoder="nvimgcodec", device="cpu", quality=85).collect()
    assert len(rows) == 5 and all(r.error is None for r in rows)
    for r in rows:
        assert open_rgb(r.encoded).size == (r.width, r.height)


def test_driver_side_errors(spark):
    import gpuimages

    df = spark.createDataFrame([(b"x",)], "content binary")
    with pytest.raises(ValueError, match="input_col 'content': expected an image struct"):
        gpuimages.encode_images(df, "content")
    with pytest.raises(ValueError, match="input_col: expected a column of the DataFrame"):
        gpuimages.encode_images(df, "image")
    with pytest.raises(ValueError, match="format: expected one of jpeg, png"):
        gpuimages.encode_images(df, "content", format="gif")


def test_gpu_encoding_without_nvimgcodec_names_the_extra(monkeypatch):
    import gpuimages.encoders as encoders

    monkeypatch.setattr(encoders, "nvimgcodec_installed", lambda: False)
    with pytest.raises(ImportError, match=r'pip install "gpuimages\[gpu\]"'):
        encoders.resolve_encode_device("gpu")
    with pytest.raises(ImportError, match="nvidia-nvimgcodec-cu12"):
        encoders.resolve_encode_device("cpu", "nvimgcodec")
    assert encoders.resolve_encode_device("auto") == "cpu"
    assert encoders.resolve_encode_device("cpu") == "cpu"

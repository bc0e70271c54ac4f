"""The GPU transcode hand-off: DALI's images go to the encoder without a host round trip.

Without a GPU the same code path runs on DALI's CPU operators and nvImageCodec's CPU backend (host
arrays instead of device images), so the step wiring is exercised here; on a GPU the images are DALI
``TensorGPU`` samples (``benchmarks/gpu_check.py`` checks that part).
"""

from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from images import encode, rgb_array
from PIL import Image

from gpuimages.encoders import make_encode_options
from gpuimages.options import make_decode_options
from gpuimages.task.device import TaskDevice
from gpuimages.task.runner import start_work
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps import Decode, Encode
from gpuimages.task.steps.decode import decode_engine

pytest.importorskip("nvidia.dali")
pytest.importorskip("nvidia.nvimgcodec")
pytestmark = pytest.mark.dali


def test_device_images_reach_the_encoder_with_sizes_and_reasons():
    device = TaskDevice("gpu", None, 1)
    options = make_decode_options(device="gpu", resize=(12, 16))
    rgba = np.concatenate([rgb_array(20, 30, seed=2), np.full((20, 30, 1), 7, np.uint8)], axis=2)
    blobs = [encode(rgb_array(24, 32, seed=1), "JPEG", quality=95), b"not an image", encode(rgba, "PNG"), None]
    batch = pa.RecordBatch.from_arrays([pa.array(blobs, pa.binary())], names=["content"])
    decode = Decode(options, to_device=True)
    encode_step = Encode(make_encode_options(device="gpu", encoder="nvimgcodec"), "encoded")
    decode._engine = decode_engine(options, device, "dali", device_output=True)
    decode._device_output = True  # what open() decides on a task with a GPU
    encode_step.open(device)
    spec = StageSpec("transcode", "gpu", "content", "bytes", (decode, encode_step), ("encoded", "error"))
    work = start_work(batch, spec)
    decode.run(work)
    assert work.images is None and work.device_images is not None
    encode_step.run(work)
    assert work.device_images is None  # released once encoded
    assert work.columns["height"].to_pylist() == [12, None, 12, None]
    assert work.columns["width"].to_pylist() == [16, None, 16, None]
    assert work.reasons[0] is None and work.reasons[2] is None
    assert work.reasons[1] == "not a recognised image format"
    assert work.reasons[3] == "no image bytes (null value)"
    for i in (0, 2):
        with Image.open(io.BytesIO(work.columns["encoded"][i].as_py())) as im:
            assert (im.format, im.mode, im.size) == ("JPEG", "RGB", (16, 12))


@pytest.mark.parametrize(("codec_imports", "expected"), [(True, True), (False, False)])
def test_images_stay_on_the_device_only_for_nvimgcodec(monkeypatch, codec_imports, expected):
    """Without nvImageCodec the JPEGs are Pillow's, which would copy device images to the host one at a time:
    the engine then makes host batches (its batched page-locked copy) instead."""
    from gpuimages.task import device as dev
    from gpuimages.task.steps import decode as decode_module

    asked = []

    class Engine:
        name = "dali-gpu"

    def fake_engine(options, device, name=None, device_output=False):
        asked.append(device_output)
        return Engine()

    monkeypatch.setattr(decode_module, "decode_engine", fake_engine)
    monkeypatch.setitem(dev._imports, "nvidia.dali", True)
    monkeypatch.setitem(dev._imports, "nvidia.nvimgcodec", codec_imports)
    step = Decode(make_decode_options(device="auto"), to_device=True)
    step.open(TaskDevice("auto", 0, 1))
    assert asked == [expected] and step._device_output is expected


def test_transcode_with_the_pillow_encoder_decodes_to_host_memory(spark, monkeypatch):
    import gpuimages
    from gpuimages import transcode

    captured = []
    monkeypatch.setattr(transcode, "run_stage", lambda df, spec, *a, **kw: captured.append(spec) or df)
    df = spark.createDataFrame([(encode(rgb_array(8, 8, seed=1), "JPEG"), "a.jpg")], "content binary, path string")
    gpuimages.transcode_images(df, format="jpeg", encoder="pillow", device="auto")
    gpuimages.transcode_images(df, format="jpeg", device="auto")
    gpuimages.transcode_images(df, format="png", device="auto")
    assert [spec.steps[0].to_device for spec in captured] == [False, True, False]

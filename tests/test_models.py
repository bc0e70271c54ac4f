"""Model backends: input formats, the ONNX backend and its session cache, the batch function, the test CNN,
the DALI tensor decoder (on DALI's CPU operators) and the bisect-on-failure loop it shares with the engine."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from images import encode, rgb_array

import gpuimages.models as models_module
from gpuimages.models import ModelSpec, create_model
from gpuimages.models.base import InputFormat, to_rgb
from gpuimages.models.function import FunctionModel
from gpuimages.models.onnx import clear_sessions, providers_for, require_onnxruntime
from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD, save_small_cnn, small_cnn
from gpuimages.models.reference import cosine, reference_features

HAS_DALI = importlib.util.find_spec("nvidia.dali") is not None


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> str:
    return save_small_cnn(tmp_path_factory.mktemp("models") / "cnn.onnx")


def _spec(path: str) -> ModelSpec:
    return ModelSpec("onnx", path, IMAGENET_MEAN, IMAGENET_STD)


def test_input_format_normalises_per_channel():
    rgb = np.zeros((2, 3, 4, 3), dtype=np.uint8)
    rgb[..., 0], rgb[..., 1], rgb[..., 2] = 255, 0, 128
    rgb[1] = 51
    fmt = InputFormat("NCHW", IMAGENET_MEAN, IMAGENET_STD)
    x = fmt.prepare(rgb)
    assert x.dtype == np.float32 and x.shape == (2, 3, 3, 4) and x.flags.c_contiguous
    expected = (rgb.astype(np.float64) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    np.testing.assert_allclose(x, expected.transpose(0, 3, 1, 2), rtol=1e-5, atol=1e-5)
    assert x[0, 0, 0, 0] == pytest.approx((1 - 0.485) / 0.229, rel=1e-5)
    nhwc = InputFormat("NHWC").prepare(rgb)
    assert nhwc.shape == (2, 3, 4, 3)
    np.testing.assert_allclose(nhwc, rgb / 255.0, rtol=1e-6)
    assert fmt.pixel_mean() == pytest.approx([123.675, 116.28, 103.53])
    with pytest.raises(ValueError, match="layout: expected"):
        InputFormat("CHW")


def test_to_rgb_from_spark_layouts():
    bgr = rgb_array(4, 5, seed=1)
    np.testing.assert_array_equal(to_rgb(bgr), bgr[:, :, ::-1])
    bgra = np.concatenate([bgr, np.full((4, 5, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb(bgra), bgr[:, :, ::-1])
    gray = bgr[:, :, :1]
    assert to_rgb(gray).shape == (4, 5, 3) and (to_rgb(gray) == gray).all()


def test_small_cnn_is_seeded_and_runs(cnn):
    assert small_cnn(seed=0) == small_cnn(seed=0) != small_cnn(seed=1)
    model = create_model(_spec(cnn))
    assert model.name == "onnx" and model.input_format.layout == "NCHW"
    x = model.input_format.prepare(np.stack([rgb_array(224, 224, seed=s) for s in range(3)]))
    out = model.run(x)
    assert out.shape == (3, 8) and out.dtype == np.float64
    assert np.abs(out[0] - out[1]).max() > 1e-3  # different images, different vectors
    np.testing.assert_allclose(model.run(x[1:2])[0], out[1], rtol=1e-5, atol=1e-6)  # batch-independent


def test_onnx_session_is_built_once_per_worker(cnn, monkeypatch):
    clear_sessions()
    models_module._CACHE.clear()
    import gpuimages.models.onnx as onnx_module

    built = []
    original = onnx_module._import_ort

    def counting():
        ort = original()

        class Counting:
            SessionOptions = ort.SessionOptions
            get_available_providers = staticmethod(ort.get_available_providers)

            @staticmethod
            def InferenceSession(*args, **kwargs):  # noqa: N802 - onnxruntime's name
                built.append(kwargs["sess_options"].intra_op_num_threads)
                return ort.InferenceSession(*args, **kwargs)

        return Counting

    monkeypatch.setattr(onnx_module, "_import_ort", counting)
    a = create_model(_spec(cnn))
    b = create_model(_spec(cnn))
    c = create_model(ModelSpec("onnx", cnn, IMAGENET_MEAN, IMAGENET_STD, threads=2))
    assert a is b and c is not a
    assert built == [1, 2]
    assert a.session.get_providers() == ["CPUExecutionProvider"]


def test_providers_prefer_cuda_only_where_installed():
    assert providers_for(0, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        ("CUDAExecutionProvider", {"device_id": 0}), "CPUExecutionProvider"
    ]
    assert providers_for(None, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert providers_for(1, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_missing_onnxruntime_names_the_extra(monkeypatch):
    import gpuimages.models.onnx as onnx_module

    monkeypatch.setattr(onnx_module, "onnxruntime_installed", lambda: False)
    with pytest.raises(ImportError, match=r'pip install "gpuimages\[onnx\]"'):
        require_onnxruntime()


def test_function_model_and_factory_errors():
    model = FunctionModel(lambda x: x.mean(axis=(1, 2)))
    batch = np.random.default_rng(0).random((2, 3, 3, 3)).astype(np.float32)
    np.testing.assert_allclose(model.run(batch), batch.mean(axis=(1, 2)), rtol=1e-6)
    with pytest.raises(ValueError, match=r"\[N, D\]"):
        FunctionModel(lambda x: x[:, 0, 0, 0]).run(batch)
    with pytest.raises(TypeError, match="callable"):
        FunctionModel(3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="model: expected one of onnx, function"):
        create_model(ModelSpec("torch"))


def test_reference_matches_batched_model(cnn):
    blobs = [encode(rgb_array(60, 80, seed=s), "JPEG", quality=90) for s in range(3)]
    ref = reference_features(blobs, cnn, (224, 224), IMAGENET_MEAN, IMAGENET_STD)
    assert ref.shape == (3, 8)
    np.testing.assert_allclose(cosine(ref, ref), 1.0)
    assert cosine(ref[:1], -ref[:1])[0] == pytest.approx(-1.0)


def test_run_bisecting_isolates_failures_and_halves_on_oom():
    from gpuimages.engines.dali import _Job, run_bisecting

    class Sizing:
        chunk_size = 4

    jobs = [_Job(i, np.zeros(1, np.uint8), (1, 1, 3)) for i in range(10)]
    calls = []

    def run(chunk):
        calls.append(len(chunk))
        if any(j.index in (2, 7) for j in chunk):
            raise RuntimeError("Critical error in pipeline: bad file")
        return [j.index for j in chunk]

    retry: dict[int, str] = {}
    done = [i for _, result in run_bisecting(jobs, run, Sizing, retry) for i in result]
    assert sorted(done) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert sorted(retry) == [2, 7] and retry[2].startswith("RuntimeError: Critical error")
    sizing = Sizing()
    oom = iter([True])

    def run_oom(chunk):
        if len(chunk) == 4 and next(oom, False):
            raise RuntimeError("CUDA_ERROR_OUT_OF_MEMORY")
        return chunk

    assert sum(len(c) for c, _ in run_bisecting(jobs[:4], run_oom, sizing, {})) == 4
    assert sizing.chunk_size == 2


@pytest.mark.dali
@pytest.mark.skipif(not HAS_DALI, reason="needs nvidia-dali")
def test_tensor_decoder_on_dali_cpu_matches_the_reference(cnn):
    from gpuimages.engines.dali_tensors import TensorDecoder
    from gpuimages.options import make_decode_options

    good = [encode(rgb_array(90 + 7 * s, 120, seed=s), "JPEG", quality=92) for s in range(9)]
    good.append(encode(rgb_array(50, 40, seed=20), "PNG"))
    gray = encode(rgb_array(64, 64, seed=21)[:, :, 0], "JPEG", quality=90)
    rgba = encode(np.concatenate([rgb_array(30, 30, seed=22), np.full((30, 30, 1), 200, np.uint8)], 2), "PNG")
    blobs = [*good[:3], b"not an image", *good[3:6], good[6][:300], gray, None, *good[6:], rgba]
    model = create_model(_spec(cnn))
    decoder = TensorDecoder(make_decode_options(resize=(224, 224), batch_size=4, device="gpu"), model.input_format)
    errors: dict[int, str] = {}
    vectors: dict[int, np.ndarray] = {}
    batches = 0
    for batch in decoder.decode(blobs, errors):
        batches += 1
        assert not batch.on_device
        out = model.run(batch.host_view())
        vectors.update(zip(batch.rows, out, strict=True))
    assert batches >= 4  # three DALI device batches and Pillow's files
    assert sorted(errors) == [3, 7, 9]
    assert errors[3] == "not a recognised image format" and errors[9] == "no image bytes (null value)"
    assert "truncated" in errors[7] or "Truncated" in errors[7]
    assert decoder.last_routes[7] == "pillow: truncated"  # routed from its header, as the DALI engine routes it
    assert decoder.last_routes[len(blobs) - 1] == "pillow: rgba resize"
    assert sorted(vectors) == sorted(set(range(len(blobs))) - {3, 7, 9})
    rows = sorted(vectors)
    ref = reference_features([blobs[i] for i in rows], cnn, (224, 224), IMAGENET_MEAN, IMAGENET_STD)
    sims = cosine(np.stack([vectors[i] for i in rows]), ref)
    assert np.median(sims) >= 0.999 and sims.min() >= 0.99


@pytest.mark.dali
@pytest.mark.skipif(not HAS_DALI, reason="needs nvidia-dali")
def test_tensor_decoder_stops_cleanly_when_the_consumer_leaves(cnn):
    from gpuimages.engines.dali_tensors import TensorDecoder
    from gpuimages.options import make_decode_options

    blobs = [encode(rgb_array(40, 40, seed=s), "JPEG", quality=90) for s in range(12)]
    fmt = InputFormat("NCHW", IMAGENET_MEAN, IMAGENET_STD)
    decoder = TensorDecoder(make_decode_options(resize=(32, 32), batch_size=2, device="gpu"), fmt)
    stream = decoder.decode(blobs, {})
    first = next(stream)
    assert first.host_view().shape == (2, 3, 32, 32)
    stream.close()  # must not hang with the producer waiting on a pipeline
    assert all(slot.free.acquire(timeout=5) for slot in decoder.slots)
    for slot in decoder.slots:
        slot.free.release()
    again = sum(len(b.rows) for b in decoder.decode(blobs, {}))
    assert again == 12

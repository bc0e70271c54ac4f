"""Model backends: input formats, the ONNX backend (sessions in the worker cache, CUDA provider options, the
provider-inactive warning, device batches through IO binding, with fakes where a GPU is needed), the batch
function, the test CNN and the DALI tensor decoder (on DALI's CPU operators)."""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest
from images import encode, rgb_array
from optional import has_module

from benchmarks.reference import cosine, reference_features
from gpuimages.models import ModelSpec, create_model
from gpuimages.models import onnx as onnx_module
from gpuimages.models.base import InputFormat, to_rgb
from gpuimages.models.function import FunctionModel
from gpuimages.models.onnx import (
    cuda_provider_options,
    device_buffer,
    parse_mem_limit,
    providers_for,
    require_onnxruntime,
)
from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD, save_small_cnn, small_cnn
from gpuimages.task.cache import worker_cache
from gpuimages.task.device import TaskDevice

HAS_DALI = has_module("nvidia.dali")
CPU = TaskDevice("cpu", None, 1)
#: A GPU task on a machine without one: DALI's CPU operators.
DALI_CPU = TaskDevice("gpu", None, 1)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> str:
    return save_small_cnn(tmp_path_factory.mktemp("models") / "cnn.onnx")


def _spec(path: str, **kw) -> ModelSpec:
    return ModelSpec("onnx", path, IMAGENET_MEAN, IMAGENET_STD, **kw)


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


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("channels", [1, 3, 4])
def test_prepare_spark_is_prepare_of_rgb_bit_for_bit(layout, channels):
    pixels = np.random.default_rng(channels).integers(0, 256, (3, 5, 7, channels), dtype=np.uint8)
    fmt = InputFormat(layout, IMAGENET_MEAN, IMAGENET_STD)
    rgb = np.stack([to_rgb(p) for p in pixels])
    x = fmt.prepare_spark(pixels)
    assert x.dtype == np.float32 and x.flags.c_contiguous
    np.testing.assert_array_equal(x, fmt.prepare(rgb))
    with pytest.raises(ValueError, match="expected 1, 3 or 4 channels"):
        fmt.prepare_spark(np.zeros((1, 2, 2, 2), np.uint8))


def test_to_rgb_from_spark_layouts():
    bgr = rgb_array(4, 5, seed=1)
    np.testing.assert_array_equal(to_rgb(bgr), bgr[:, :, ::-1])
    bgra = np.concatenate([bgr, np.full((4, 5, 1), 7, np.uint8)], axis=2)
    np.testing.assert_array_equal(to_rgb(bgra), bgr[:, :, ::-1])
    gray = bgr[:, :, :1]
    assert to_rgb(gray).shape == (4, 5, 3) and (to_rgb(gray) == gray).all()


def test_small_cnn_is_seeded_and_runs(cnn):
    assert small_cnn(seed=0) == small_cnn(seed=0) != small_cnn(seed=1)
    model = create_model(_spec(cnn), CPU)
    assert model.name == "onnx" and model.input_format.layout == "NCHW"
    x = model.input_format.prepare(np.stack([rgb_array(224, 224, seed=s) for s in range(3)]))
    out = model.run(x)
    assert out.shape == (3, 8) and out.dtype == np.float64
    assert np.abs(out[0] - out[1]).max() > 1e-3  # different images, different vectors
    np.testing.assert_allclose(model.run(x[1:2])[0], out[1], rtol=1e-5, atol=1e-6)  # batch-independent


class FakeSessionOptions:
    intra_op_num_threads = 0
    inter_op_num_threads = 0


class FakeSession:
    def __init__(self, path, sess_options=None, providers=None, active=None):
        self.path, self.options, self.requested = path, sess_options, providers
        self.active = active if active is not None else [p if isinstance(p, str) else p[0] for p in providers]
        self.bound = {}

    def get_providers(self):
        return list(self.active)

    def get_inputs(self):
        return [types.SimpleNamespace(name="input")]

    def get_outputs(self):
        return [types.SimpleNamespace(name="logits")]

    def io_binding(self):
        session = self

        class Binding:
            def bind_input(self, name, **kw):
                session.bound["input"] = (name, kw)

            def bind_output(self, name, device):
                session.bound["output"] = (name, device)

            def copy_outputs_to_cpu(self):
                return [np.arange(2 * 4, dtype=np.float32).reshape(2, 4)]

        return Binding()

    def run_with_iobinding(self, binding):
        self.bound["ran"] = True


def fake_ort(available, active=None, preload=True):
    """An onnxruntime stand-in: which providers exist, which a session ends up on, preload_dlls calls."""
    module = types.SimpleNamespace(__version__="1.22.0", SessionOptions=FakeSessionOptions, calls=[], sessions=[])
    module.get_available_providers = lambda: list(available)

    def session(path, sess_options=None, providers=None):
        module.calls.append("session")
        made = FakeSession(path, sess_options, providers, active)
        module.sessions.append(made)
        return made

    module.InferenceSession = session
    if preload:
        module.preload_dlls = lambda: module.calls.append("preload")
    return module


@pytest.fixture
def fresh(monkeypatch):
    """An empty worker cache, no preload done and no warning given yet in this process."""
    worker_cache().clear()
    monkeypatch.setattr(onnx_module, "_preloaded", False)
    monkeypatch.setattr(onnx_module, "_warned", set())
    monkeypatch.setattr(onnx_module, "device_total_memory", lambda gpu_id: 80 << 30)
    monkeypatch.delenv(onnx_module.GPU_MEM_LIMIT_ENV, raising=False)
    yield
    worker_cache().clear()


def test_onnx_session_is_built_once_per_worker_in_the_worker_cache(cnn, monkeypatch, fresh):
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
    a = create_model(_spec(cnn), CPU)
    b = create_model(_spec(cnn), CPU)
    c = create_model(_spec(cnn, threads=2), CPU)
    d = create_model(_spec(cnn), TaskDevice("cpu", None, 3))  # threads from the task device
    assert a.session is b.session and c.session is not a.session
    assert built == [1, 2, 3]
    assert a.session.get_providers() == ["CPUExecutionProvider"]
    keys = [k for k in worker_cache().keys() if k[0] == "onnx-session"]
    assert len(keys) == 3
    session = a.session
    worker_cache().discard(next(k for k in keys if k[5] == 1))  # evicted: closed; the model builds it again
    assert a.session is not session and built == [1, 2, 3, 1]
    assert d.run(d.input_format.prepare(rgb_array(224, 224, seed=1)[None])).shape == (1, 8)


def test_cuda_provider_options_and_providers():
    options = cuda_provider_options(1, 8 << 30)
    assert options == {"device_id": "1", "arena_extend_strategy": "kSameAsRequested",
                       "cudnn_conv_algo_search": "HEURISTIC", "gpu_mem_limit": str(8 << 30)}
    assert "gpu_mem_limit" not in cuda_provider_options(0, None)
    assert providers_for(0, ["CUDAExecutionProvider", "CPUExecutionProvider"], options) == [
        ("CUDAExecutionProvider", options), "CPUExecutionProvider"
    ]
    assert providers_for(None, ["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["CPUExecutionProvider"]
    assert providers_for(1, ["CPUExecutionProvider"]) == ["CPUExecutionProvider"]


def test_gpu_memory_limit_parsing(monkeypatch):
    total = 80 << 30
    assert parse_mem_limit("8589934592", total) == 8 << 30
    assert parse_mem_limit("8GiB", total) == 8 << 30
    assert parse_mem_limit("512 MB", total) == 512 * 10**6
    assert parse_mem_limit("25%", total) == 20 << 30
    assert parse_mem_limit("none", total) is None and parse_mem_limit("0", total) is None
    for bad in ("lots", "8 parsecs", "150%"):
        with pytest.raises(ValueError):
            parse_mem_limit(bad, total)
    with pytest.raises(ValueError, match="unknown"):
        parse_mem_limit("25%", None)
    monkeypatch.setattr(onnx_module, "device_total_memory", lambda gpu_id: total)
    assert onnx_module.gpu_mem_limit(0, {}) == total // 8  # default: half of a quarter of the GPU
    assert onnx_module.gpu_mem_limit(0, {}, share=0.5) == total // 4  # half of the task's part
    assert onnx_module.gpu_mem_limit(0, {onnx_module.GPU_MEM_LIMIT_ENV: "2GiB"}) == 2 << 30
    assert onnx_module.gpu_mem_limit(0, {onnx_module.GPU_MEM_LIMIT_ENV: "junk"}) == total // 8
    monkeypatch.setattr(onnx_module, "device_total_memory", lambda gpu_id: None)
    assert onnx_module.gpu_mem_limit(0, {}) == onnx_module.FALLBACK_GPU_MEM_LIMIT


def test_gpu_session_preloads_cuda_libraries_and_sets_the_provider_options(cnn, monkeypatch, fresh):
    ort = fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnx_module, "_import_ort", lambda: ort)
    model = create_model(_spec(cnn), TaskDevice("gpu", 1, 4))
    assert ort.calls == ["preload", "session"]  # the CUDA and cuDNN wheels are loaded before the session
    (session,) = ort.sessions
    cuda, cpu = session.requested
    assert cpu == "CPUExecutionProvider"
    assert cuda == ("CUDAExecutionProvider", {"device_id": "1", "arena_extend_strategy": "kSameAsRequested",
                                              "cudnn_conv_algo_search": "HEURISTIC", "gpu_mem_limit": str(10 << 30)})
    assert session.options.intra_op_num_threads == 4
    assert model.on_cuda
    assert create_model(_spec(cnn), TaskDevice("gpu", 0, 4)).on_cuda  # another GPU: another session, no second preload
    assert ort.calls == ["preload", "session", "session"]
    create_model(_spec(cnn), CPU)  # CPU sessions never preload
    assert ort.calls.count("preload") == 1


def test_cuda_provider_inactive_is_said_once_with_the_fix(cnn, monkeypatch, fresh, caplog):
    ort = fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"], active=["CPUExecutionProvider"])
    monkeypatch.setattr(onnx_module, "_import_ort", lambda: ort)
    with caplog.at_level(logging.WARNING, logger="gpuimages.models.onnx"):
        model = create_model(_spec(cnn), TaskDevice("gpu", 0, 1))
        create_model(_spec(cnn, threads=2), TaskDevice("gpu", 0, 1))
    assert not model.on_cuda
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "CUDA device 0" in warnings[0] and "the CUDA provider did not start" in warnings[0]
    assert 'pip install "gpuimages[onnx-gpu]"' in warnings[0] and "pip uninstall -y onnxruntime" in warnings[0]


def test_cpu_only_onnxruntime_on_a_gpu_task_names_the_missing_provider(cnn, monkeypatch, fresh, caplog):
    ort = fake_ort(["CPUExecutionProvider"], preload=False)
    monkeypatch.setattr(onnx_module, "_import_ort", lambda: ort)
    with caplog.at_level(logging.WARNING, logger="gpuimages.models.onnx"):
        model = create_model(_spec(cnn), TaskDevice("auto", 0, 1))
    assert ort.calls == ["session"]
    assert "has no CUDA provider (available: CPUExecutionProvider)" in caplog.text
    assert not model.on_cuda
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="gpuimages.models.onnx"):
        create_model(_spec(cnn), CPU)  # no GPU asked: nothing to say
    assert caplog.text == ""


class FakeDaliTensor:
    """A DALI TensorGPU stand-in: pointer, DLPack device (CUDA, ordinal), shape (a method), name ending in GPU."""

    def __init__(self, device, shape, pointer=0xABC000):
        self._device, self._shape, self._pointer = device, shape, pointer

    def data_ptr(self):
        return self._pointer

    def __dlpack_device__(self):
        return 2, self._device  # (kDLCUDA, ordinal)

    def shape(self):
        return list(self._shape)


FakeDaliTensor.__name__ = "TensorGPU"


def test_device_batch_is_bound_on_its_own_device(cnn, monkeypatch, fresh):
    ort = fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnx_module, "_import_ort", lambda: ort)
    model = create_model(_spec(cnn), TaskDevice("gpu", 1, 1))
    out = model.run_device(FakeDaliTensor(1, (2, 3, 224, 224)), 2)
    session = ort.sessions[0]
    name, kw = session.bound["input"]
    assert name == "input" and kw == {"device_type": "cuda", "device_id": 1, "element_type": np.float32,
                                      "shape": (2, 3, 224, 224), "buffer_ptr": 0xABC000}
    assert session.bound["output"] == ("logits", "cpu") and session.bound["ran"]
    assert out.shape == (2, 4) and out.dtype == np.float64
    with pytest.raises(ValueError, match="CUDA device 0, the session on 1"):
        model.run_device(FakeDaliTensor(0, (2, 3, 224, 224)), 2)


def test_dlpack_producers_are_synchronised_on_their_own_device(monkeypatch):
    """cupy.from_dlpack restores the previous device: the stream wait must happen inside the tensor's device."""
    log = []

    class Device:
        current = 0

        def __init__(self, ordinal):
            self.ordinal = ordinal

        def __enter__(self):
            self.previous, Device.current = Device.current, self.ordinal

        def __exit__(self, *exc):
            Device.current = self.previous

    class Array:
        dtype = np.float32
        flags = types.SimpleNamespace(c_contiguous=True)
        shape = (4, 3, 8, 8)
        data = types.SimpleNamespace(ptr=0x1234)

    def from_dlpack(tensor):
        log.append(("from_dlpack", Device.current))
        return Array()

    stream = types.SimpleNamespace(synchronize=lambda: log.append(("synchronize", Device.current)))
    cuda = types.SimpleNamespace(Device=Device, get_current_stream=lambda: stream)
    monkeypatch.setitem(sys.modules, "cupy", types.SimpleNamespace(cuda=cuda, from_dlpack=from_dlpack,
                                                                   float32=np.float32))
    producer = types.SimpleNamespace(__dlpack_device__=lambda: (2, 3))
    pointer, device, shape, owner = device_buffer(producer)
    assert (pointer, device, shape) == (0x1234, 3, (4, 3, 8, 8)) and isinstance(owner, Array)
    assert log == [("from_dlpack", 3), ("synchronize", 3)]
    assert Device.current == 0


def test_missing_onnxruntime_names_the_extra(monkeypatch):
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
        create_model(ModelSpec("torch"), CPU)
    with pytest.raises(ValueError, match="max_batch"):
        FunctionModel(lambda x: x, max_batch=0)


def test_function_model_gets_at_most_max_batch_images_per_call():
    calls = []

    def fn(x):
        calls.append(x.shape[0])
        return x.reshape(x.shape[0], -1)[:, :2]

    batch = np.random.default_rng(1).random((256, 2, 2, 3)).astype(np.float32)
    model = create_model(ModelSpec("function", function=fn, max_batch=100), CPU)
    out = model.run(batch)
    assert calls == [100, 100, 56]
    np.testing.assert_allclose(out, batch.reshape(256, -1)[:, :2], rtol=1e-6)
    calls.clear()
    create_model(ModelSpec("function", function=fn), CPU).run(batch)
    assert calls == [256]


def test_reference_matches_batched_model(cnn):
    blobs = [encode(rgb_array(60, 80, seed=s), "JPEG", quality=90) for s in range(3)]
    ref = reference_features(blobs, cnn, (224, 224), IMAGENET_MEAN, IMAGENET_STD)
    assert ref.shape == (3, 8)
    np.testing.assert_allclose(cosine(ref, ref), 1.0)
    assert cosine(ref[:1], -ref[:1])[0] == pytest.approx(-1.0)


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
    model = create_model(_spec(cnn), CPU)
    decoder = TensorDecoder(make_decode_options(resize=(224, 224), batch_size=4, device="gpu"), model.input_format,
                            DALI_CPU)
    errors: dict[int, str] = {}
    vectors: dict[int, np.ndarray] = {}
    batches = 0
    for batch in decoder.decode(blobs, errors):
        batches += 1
        assert not batch.on_device
        out = model.run_device(batch.tensor, len(batch.rows)) if batch.tensor is not None else model.run(batch.array)
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
    decoder = TensorDecoder(make_decode_options(resize=(32, 32), batch_size=2, device="gpu"), fmt, DALI_CPU)
    stream = decoder.decode(blobs, {})
    first = next(stream)
    assert first.host_view().shape == (2, 3, 32, 32)
    kept = first.host_view().copy()
    stream.close()  # the batch still in flight is collected and dropped; the pipeline is free again
    again = [b for b in decoder.decode(blobs, {})]
    assert sum(len(b.rows) for b in again) == 12
    assert np.array_equal(again[0].host_view(), kept)  # aligned: the first batch again, not a stale one


@pytest.mark.dali
@pytest.mark.skipif(not HAS_DALI, reason="needs nvidia-dali")
def test_tensor_decoder_batches_stay_valid_after_the_pipeline_runs_again(cnn):
    """One pipeline: an exec_dynamic output is not overwritten by later runs (DALI keeps it while referenced)."""
    from gpuimages.engines.dali_tensors import TensorDecoder
    from gpuimages.options import make_decode_options

    worker_cache().clear()
    blobs = [encode(rgb_array(40 + s, 40, seed=s), "JPEG", quality=90) for s in range(8)]
    fmt = InputFormat("NCHW", IMAGENET_MEAN, IMAGENET_STD)
    decoder = TensorDecoder(make_decode_options(resize=(16, 16), batch_size=2, device="gpu"), fmt, DALI_CPU)
    batches = list(decoder.decode(blobs, {}))  # every batch kept while the pipeline ran the next ones
    assert [b.rows for b in batches] == [[0, 1], [2, 3], [4, 5], [6, 7]]
    for batch in batches:
        alone = next(iter(decoder.decode([blobs[i] for i in batch.rows], {})))
        assert np.array_equal(batch.host_view(), alone.host_view())
    assert len([k for k in worker_cache().keys() if type(k).__name__ == "TensorKey"]) == 1  # one pipeline


@pytest.mark.dali
@pytest.mark.skipif(not HAS_DALI, reason="needs nvidia-dali")
def test_featurize_on_bytes_falls_back_when_the_tensor_decoder_cannot_start(monkeypatch, fresh, caplog):
    """Under device="auto" a DALI tensor decoder that cannot start (a transient out-of-memory error, a broken
    install) must not fail the task: the step decodes with the engine Decode falls back to, as decode_images
    does, and the next task tries DALI again. Under device="gpu" the task fails with the cause."""
    import pyarrow as pa

    from gpuimages.engines import dali_tensors
    from gpuimages.options import make_decode_options
    from gpuimages.task.steps import Featurize
    from gpuimages.task.steps.base import Work

    attempts = []

    def broken(*args, **kwargs):
        attempts.append(1)
        raise RuntimeError("CUDA error: out of memory")

    monkeypatch.setattr(dali_tensors, "TensorDecoder", broken)
    fn = ModelSpec("function", function=lambda images: images.mean(axis=(1, 2)))
    step = Featurize("function", (8, 8), "out", model=fn, batch_size=4,
                     decode=make_decode_options(resize=(8, 8), device="auto"))
    auto = TaskDevice("auto", None, 1)
    monkeypatch.setattr(TaskDevice, "uses", lambda self, module: self.mode != "cpu")  # DALI's CPU operators
    with caplog.at_level(logging.WARNING, logger="gpuimages.task.steps.base"):
        step.open(auto)
    assert step._tensors is None and step._decoder is not None
    assert "the DALI tensor decoder could not start" in caplog.text
    blobs = [encode(rgb_array(20, 30, seed=s), "JPEG", quality=90) for s in range(3)] + [b"junk"]
    work = Work(pa.RecordBatch.from_pydict({"content": blobs}), pa.nulls(4, pa.string()))
    work.blobs = blobs
    step.run(work)
    out = work.columns["out"].to_pylist()
    assert [v is None for v in out] == [False, False, False, True] and len(out[0]) == 3
    assert work.reasons[3] == "not a recognised image format"
    assert not any(k[0] == "tensors" for k in worker_cache().keys() if isinstance(k, tuple))  # nothing cached
    step.close()
    step.open(auto)  # the next task tries DALI again
    assert len(attempts) == 2
    step.close()
    with pytest.raises(RuntimeError, match="device='gpu': the DALI tensor decoder could not start on cpu, 1 thread: "
                                           "RuntimeError: CUDA error: out of memory"):
        step.open(DALI_CPU)


def test_gpu_extras_stay_on_one_cuda_major():
    """The gpu and onnx-gpu extras go into one process: CUDA 12 builds only. onnxruntime-gpu on PyPI is a CUDA 13
    build from 1.27 (its [cuda,cudnn] extras bring nvidia-cuda-runtime 13 and nvidia-cudnn-cu13), so it is capped."""
    import re
    from pathlib import Path

    from packaging.requirements import Requirement
    from packaging.version import Version

    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11

    extras = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"][
        "optional-dependencies"]
    reqs = [Requirement(r) for r in extras["gpu"] + extras["onnx-gpu"]]
    ort = next(r for r in reqs if r.name == "onnxruntime-gpu")
    assert Version("1.26.0") in ort.specifier and Version("1.27.0") not in ort.specifier
    assert Version("1.21.0") in ort.specifier and Version("1.20.2") not in ort.specifier  # preload_dlls()
    for r in reqs:
        if r.name.startswith(("nvidia-", "cupy-")):
            assert re.search(r"(cu12|cuda12x|cuda120)$", r.name), r.name


def test_the_arena_bound_follows_the_task_share_of_the_gpu(cnn, monkeypatch, fresh):
    """Four workers with a quarter of an 80 GiB GPU each bound their arenas to 10 GiB (40 GiB together, half the
    GPU); a task holding half of a GPU of which gpuimages may use 60% gets 0.5 x 0.6 x 80 GiB / 2 = 12 GiB."""
    from gpuimages.task.device import GPU_MEMORY_FRACTION_ENV

    ort = fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"])
    monkeypatch.setattr(onnx_module, "_import_ort", lambda: ort)
    monkeypatch.delenv(GPU_MEMORY_FRACTION_ENV, raising=False)
    create_model(_spec(cnn), TaskDevice("gpu", 0, 1, gpu_share=0.25))
    monkeypatch.setenv(GPU_MEMORY_FRACTION_ENV, "0.6")
    create_model(_spec(cnn), TaskDevice("gpu", 0, 1, gpu_share=0.5))
    limits = [int(session.requested[0][1]["gpu_mem_limit"]) for session in ort.sessions]
    assert limits == [10 << 30, int(0.5 * 0.6 * (80 << 30) / 2)]


class OomSession(FakeSession):
    """A CUDA session that runs out of memory on more than ``fits`` images at a time."""

    fits = 2

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.sizes = []

    def run(self, outputs, feeds):
        batch = feeds["input"]
        return [self._run(batch.shape[0], batch[:, 0, 0, 0])]

    def _run(self, n, marks):
        self.sizes.append(n)
        if n > self.fits:
            raise RuntimeError("[ONNXRuntimeError] : 6 : RUNTIME_EXCEPTION : BFCArena::AllocateRawInternal "
                               "Available memory of 0 is smaller than requested bytes of 12845056")
        return np.repeat(np.asarray(marks, np.float32)[:, None], 4, axis=1)

    def io_binding(self):
        session = self

        class Binding:
            def bind_input(self, name, **kw):
                self.kw = kw

            def bind_output(self, name, device):
                pass

            def copy_outputs_to_cpu(self):
                n = self.kw["shape"][0]
                first = (self.kw["buffer_ptr"] - 0x10000) // (4 * 3 * 224 * 224)  # the rows this part points at
                return [session._run(n, np.arange(first, first + n))]

        return Binding()

    def run_with_iobinding(self, binding):
        pass


def test_a_batch_that_runs_out_of_gpu_memory_is_run_in_halves(cnn, monkeypatch, fresh, caplog):
    ort = fake_ort(["CUDAExecutionProvider", "CPUExecutionProvider"])
    sessions = []

    def session(path, sess_options=None, providers=None):
        sessions.append(OomSession(path, sess_options, providers))
        return sessions[-1]

    ort.InferenceSession = session
    monkeypatch.setattr(onnx_module, "_import_ort", lambda: ort)
    model = create_model(_spec(cnn), TaskDevice("gpu", 0, 1))
    batch = np.zeros((7, 3, 224, 224), np.float32)
    batch[:, 0, 0, 0] = np.arange(7)
    out = model.run(batch)
    assert out[:, 0].tolist() == list(range(7))  # every image, in order
    assert sessions[0].sizes == [7, 3, 1, 2, 4, 2, 2]  # halves of what failed, each half tried whole first
    assert "ran out of GPU memory on 7 images" in caplog.text
    sessions[0].sizes.clear()
    out = model.run_pointer(0x10000, (5, 3, 224, 224), 0)  # a device batch: halves point into the same buffer
    assert out[:, 0].tolist() == list(range(5)) and sessions[0].sizes == [5, 2, 3, 1, 2]
    model.run(batch[:2])
    assert sessions[0].sizes[-1] == 2  # the next call starts at its full size again
    OomSession.fits = 0
    try:
        with pytest.raises(RuntimeError, match="smaller than requested bytes"):  # one image that does not fit
            model.run(batch[:1])
    finally:
        OomSession.fits = 2
    other = FakeSession("x", None, ["CPUExecutionProvider"])
    other.run = lambda outputs, feeds: (_ for _ in ()).throw(ValueError("bad input shape"))
    monkeypatch.setattr(type(model), "session", property(lambda self: other))
    with pytest.raises(ValueError, match="bad input shape"):  # not memory: raised at once, not split
        model.run(batch)

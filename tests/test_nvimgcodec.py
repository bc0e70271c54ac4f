"""The nvImageCodec encoder: BGR(A)/grey handed over as they are (no RGB copy), host and device images, the
per-file Pillow fallback, the worker cache, the version floor, and DALI's device output encoded in one step
(the transcode hand-off) on the CPU-only backend and DALI's CPU operators."""

from __future__ import annotations

import io

import numpy as np
import pytest
from images import encode, rgb_array
from optional import has_module
from PIL import Image

from gpuimages.encoders import create_encoder, make_encode_options, nvimgcodec_installed
from gpuimages.task.cache import worker_cache
from gpuimages.task.device import TaskDevice

pytestmark = pytest.mark.skipif(not nvimgcodec_installed(), reason="nvidia-nvimgcodec-cu12 is not installed")

#: A GPU task on a machine without a GPU: nvImageCodec's CPU-only backend.
CPU = TaskDevice("gpu", None, 1)


def bgr(height: int = 48, width: int = 64, seed: int = 0) -> np.ndarray:
    return np.ascontiguousarray(rgb_array(height, width, seed)[:, :, ::-1])


def decoded_rgb(blob: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))


def encoder(**options):
    from gpuimages.encoders.nvimgcodec import NvImageCodecEncoder

    return NvImageCodecEncoder(make_encode_options(**options), CPU)


class FakeDeviceImage:
    """A GPU array stand-in: only ``__cuda_array_interface__`` (and ``get()`` to copy it to the host)."""

    def __init__(self, array: np.ndarray) -> None:
        self.array = array
        self.copies = 0
        self.__cuda_array_interface__ = {"shape": array.shape, "typestr": "|u1", "data": (0xD000, False),
                                         "version": 2, "strides": None}

    def get(self) -> np.ndarray:
        self.copies += 1
        return self.array


def test_bgr_grey_and_bgra_are_encoded_by_nvimgcodec_with_the_right_colours():
    enc = encoder(quality=95)
    assert enc.name == "nvimgcodec-cpu"
    image = np.zeros((40, 60, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 50, 200  # BGR of a red-orange
    grey = np.full((40, 60, 1), 99, np.uint8)
    bgra = np.concatenate([image, np.full((40, 60, 1), 7, np.uint8)], axis=2)
    out = enc.encode([image, grey, bgra])
    assert out.errors == [None, None, None] and enc.fallbacks == 0
    assert np.abs(decoded_rgb(out.data[0])[20, 30].astype(int) - [200, 50, 10]).max() <= 3  # not swapped
    assert Image.open(io.BytesIO(out.data[1])).mode == "L"
    assert np.abs(decoded_rgb(out.data[2])[20, 30].astype(int) - [200, 50, 10]).max() <= 3  # alpha dropped


def test_host_arrays_of_any_kind_are_encoded_by_nvimgcodec():
    """A host array that is not numpy (a DALI TensorCPU exposes __array_interface__), BGRA included."""

    class HostArray:
        def __init__(self, array):
            self.keep = array
            self.__array_interface__ = array.__array_interface__

    enc = encoder(quality=95)
    image = np.empty((48, 64, 3), np.uint8)
    image[..., 0], image[..., 1], image[..., 2] = 10, 50, 200  # BGR: distinct channels
    bgra = np.concatenate([image, np.full((48, 64, 1), 3, np.uint8)], axis=2)
    out = enc.encode([HostArray(image), HostArray(bgra)])
    assert out.errors == [None, None] and enc.fallbacks == 0
    for blob in out.data:
        assert np.abs(decoded_rgb(blob).reshape(-1, 3).mean(axis=0) - [200, 50, 10]).max() < 3


def test_images_are_wrapped_as_bgr_without_an_rgb_copy(monkeypatch):
    enc = encoder()
    wrapped = []
    real = enc._as_image

    def as_image(source, **kw):
        wrapped.append((source, kw["sample_format"]))
        return real(source, **kw)

    monkeypatch.setattr(enc, "_as_image", as_image)
    image, grey = bgr(), bgr()[:, :, :1].copy()
    assert enc.encode([image, grey]).errors == [None, None]
    (first, fmt_bgr), (second, fmt_y) = wrapped
    from nvidia import nvimgcodec

    assert first is image and fmt_bgr == nvimgcodec.SampleFormat.I_BGR  # the caller's array itself
    assert second is grey and fmt_y == nvimgcodec.SampleFormat.I_Y


def test_device_images_go_to_nvimgcodec_as_they_are(monkeypatch):
    """A device image is wrapped in place (nvImageCodec reads __cuda_array_interface__), never copied to the host."""
    enc = encoder()
    seen = []

    class Codec:
        def encode(self, images, codec, params=None):
            seen.extend(images)
            return [b"\xff\xd8jpeg" for _ in images]

    monkeypatch.setattr(enc, "_codec", lambda: Codec())
    monkeypatch.setattr(enc, "_as_image", lambda source, **kw: ("image", source, kw["sample_format"]))
    device = FakeDeviceImage(bgr())
    device_grey = FakeDeviceImage(bgr()[:, :, :1].copy())
    out = enc.encode([device, device_grey])
    assert out.data == [b"\xff\xd8jpeg", b"\xff\xd8jpeg"] and enc.fallbacks == 0
    assert [s[1] for s in seen] == [device, device_grey]
    assert device.copies == device_grey.copies == 0


def test_device_bgra_and_failures_go_to_pillow_through_a_host_copy(monkeypatch):
    enc = encoder()

    class Codec:
        def encode(self, images, codec, params=None):
            return [None for _ in images]  # nvImageCodec could not encode any of them

    monkeypatch.setattr(enc, "_codec", lambda: Codec())
    bgra = FakeDeviceImage(np.concatenate([bgr(), np.full((48, 64, 1), 5, np.uint8)], axis=2))
    plain = FakeDeviceImage(bgr(seed=2))
    out = enc.encode([bgra, plain, FakeDeviceImage(np.zeros((0, 4, 3), np.uint8)), None])
    assert out.errors[:2] == [None, None] and enc.fallbacks == 2
    assert bgra.copies == 1 and plain.copies == 1
    assert decoded_rgb(out.data[1]).shape == (48, 64, 3)
    assert "empty image" in out.errors[2] and "no image to encode" in out.errors[3]


def test_nvimgcodec_falls_back_to_pillow_per_file(monkeypatch):
    enc = encoder()
    real = enc._codec()

    class FirstFails:
        def encode(self, images, codec, params=None):
            return [None, *real.encode(images[1:], codec, params=params)]

    monkeypatch.setattr(enc, "_codec", lambda: FirstFails())
    images = [bgr(seed=1), bgr(seed=2)]
    out = enc.encode(images)
    assert enc.fallbacks == 1 and out.errors == [None, None]
    assert all(Image.open(io.BytesIO(b)).size == (64, 48) for b in out.data)

    class Broken:
        def encode(self, images, codec, params=None):
            raise RuntimeError("device lost")

    monkeypatch.setattr(enc, "_codec", lambda: Broken())  # a batch that raises goes to Pillow as a whole
    out = enc.encode(images)
    assert enc.fallbacks == 3 and all(b is not None for b in out.data)


def test_native_encoder_lives_in_the_worker_cache():
    worker_cache().clear()
    a = encoder(quality=80)
    b = encoder(quality=95, subsampling="4:4:4")  # other options: same native encoder (params are per call)
    keys = [k for k in worker_cache().keys() if k[0] == "nvimgcodec-encoder"]
    assert keys == [("nvimgcodec-encoder", None, 1)]
    native = a._codec()
    assert b._codec() is native
    worker_cache().discard(keys[0])  # evicted: closed, rebuilt on the next batch
    assert a.encode([bgr()]).errors == [None] and a._codec() is not native


def test_threads_come_from_the_task_device(monkeypatch):
    from gpuimages.encoders import nvimgcodec as module

    made = []

    class Codec:
        def __init__(self, gpu_id, threads):
            made.append((gpu_id, threads))
            self.encoder = object()

        def close(self):
            pass

    monkeypatch.setattr(module, "NvCodec", Codec)
    worker_cache().clear()
    module.NvImageCodecEncoder(make_encode_options(), TaskDevice("gpu", None, 3))
    assert made == [(None, 3)]  # never 0 ("every core")
    worker_cache().clear()


def test_old_nvimgcodec_fails_loudly_with_the_version_needed(monkeypatch):
    from nvidia import nvimgcodec

    from gpuimages.engines.versions import LibraryVersionError

    monkeypatch.setattr(nvimgcodec, "__version__", "0.8.0")
    with pytest.raises(LibraryVersionError, match=r"nvImageCodec .* >= 0.9, found 0.8.0"):
        encoder()


def test_create_encoder_follows_the_task_device():
    options = make_encode_options()
    assert create_encoder(options, CPU).name == "nvimgcodec-cpu"
    assert create_encoder(options, TaskDevice("cpu")).name == "pillow"
    assert create_encoder(options, TaskDevice("auto", None, 1)).name == "pillow"  # auto without a GPU
    assert create_encoder(make_encode_options(format="png"), CPU).name == "pillow"
    assert create_encoder(make_encode_options(encoder="nvimgcodec"), TaskDevice("cpu")).name == "nvimgcodec-cpu"


@pytest.mark.dali
@pytest.mark.skipif(not has_module("nvidia.dali"), reason="needs nvidia-dali")
def test_dali_device_output_is_encoded_in_one_step():
    """The transcode hand-off: DaliEngine.decode_device -> NvImageCodecEncoder.encode (CPU operators here)."""
    from gpuimages.engines.dali import DaliEngine
    from gpuimages.engines.pillow import PillowEngine
    from gpuimages.options import DecodeOptions

    rgba = encode(np.dstack([rgb_array(30, 40, seed=4), np.full((30, 40), 200, np.uint8)]), "PNG", mode="RGBA")
    cmyk = Image.fromarray(rgb_array(20, 20, seed=5)).convert("CMYK")
    buf = io.BytesIO()
    cmyk.save(buf, "JPEG", quality=95)
    blobs = [encode(rgb_array(32, 48, seed=1), "JPEG", quality=95), rgba, buf.getvalue(), b"nope",
             encode(rgb_array(24, 24, seed=2)[:, :, 0].copy(), "PNG")]
    options = DecodeOptions(resize=(24, 32))
    engine = DaliEngine(options, TaskDevice("gpu", None, 1))
    images = engine.decode_device(blobs)
    assert images.routes[2].startswith("pillow: jpeg with 4 components") and images.errors[3]
    out = encoder(quality=95).encode(images.images)
    assert out.errors[3].startswith("no image")
    ref = PillowEngine(options).decode(blobs)
    for i in (0, 1, 2, 4):
        assert out.errors[i] is None, i
        got = np.asarray(Image.open(io.BytesIO(out.data[i])))
        want = ref.pixels(i)
        assert got.shape[:2] == want.shape[:2]
        if want.shape[2] == 1:
            assert got.ndim == 2 and np.abs(got.astype(int) - want[:, :, 0]).mean() < 4
        else:
            assert np.abs(got.astype(int) - want[:, :, 2::-1]).mean() < 4, i  # BGR(A) in, right colours out


class FakeNvImageCodec:
    """Just enough of ``nvidia.nvimgcodec`` to see which backends and CodeStreams the encoder is given."""

    NVIMGCODEC_DEVICE_CPU_ONLY = -99

    class BackendKind:
        CPU_ONLY, GPU_ONLY, HYBRID_CPU_GPU, HW_GPU_ONLY = "CPU_ONLY", "GPU_ONLY", "HYBRID_CPU_GPU", "HW_GPU_ONLY"

    class SampleFormat:
        I_BGR, I_Y = "I_BGR", "I_Y"

    class QualityType:
        QUALITY = "QUALITY"

    class ChromaSubsampling:
        CSS_444, CSS_422, CSS_420, CSS_GRAY = "CSS_444", "CSS_422", "CSS_420", "CSS_GRAY"

    JpegEncodeParams = EncodeParams = staticmethod(lambda **kw: kw)

    def __init__(self, encoders_present: set[str]) -> None:
        self.present = encoders_present  # the backend kinds that have a JPEG encoder on this machine
        self.made: list[dict] = []
        self.streams: list[list] = []
        fake = self

        class Backend:
            def __init__(self, kind):
                self.kind = kind

        class CodeStream:
            def __init__(self, pin_memory=True):
                self.pin_memory, self.data = pin_memory, b""

            def __bytes__(self):
                return self.data

        class Encoder:
            def __init__(self, device_id, max_num_cpu_threads, backends=None):
                self.kinds = [b.kind for b in backends or []]
                fake.made.append({"device_id": device_id, "backends": self.kinds})

            def encode(self, images, codec, code_stream_s=None, params=None):
                fake.streams.append(list(code_stream_s))
                if not self.kinds or not fake.present & set(self.kinds):  # nvImageCodec: None per image
                    return [None] * len(images)
                for stream in code_stream_s:
                    stream.data = b"\xff\xd8" + ",".join(sorted(fake.present & set(self.kinds))).encode()
                return code_stream_s

        self.Backend, self.CodeStream, self.Encoder = Backend, CodeStream, Encoder

    @staticmethod
    def as_image(array, sample_format=None):
        return array


@pytest.fixture
def fake_nvimgcodec(monkeypatch):
    from gpuimages.encoders import nvimgcodec as module

    def install(present: set[str]) -> FakeNvImageCodec:
        fake = FakeNvImageCodec(present)
        monkeypatch.setattr(module, "import_nvimgcodec", lambda: fake)
        worker_cache().clear()
        return fake

    yield install
    worker_cache().clear()


def test_a_gpu_task_allows_only_gpu_backends(fake_nvimgcodec):
    """nvImageCodec's default (no backends) allows its CPU-only OpenCV encoder, which takes over where nvJPEG's
    encoder is missing; on a GPU only the GPU backends are passed."""
    from gpuimages.encoders.nvimgcodec import GPU_BACKENDS, NvCodec

    fake = fake_nvimgcodec({"CPU_ONLY", "HYBRID_CPU_GPU"})
    codec = NvCodec(0, 2)
    assert fake.made == [{"device_id": 0, "backends": ["HYBRID_CPU_GPU", "GPU_ONLY", "HW_GPU_ONLY"]}]
    assert codec.backends == GPU_BACKENDS
    assert codec.encode([bgr()], "jpeg") == [b"\xff\xd8HYBRID_CPU_GPU"]  # the CPU encoder was never allowed
    assert all(s.pin_memory for s in fake.streams[-1])
    NvCodec(None, 1)
    assert fake.made[-1] == {"device_id": -99, "backends": ["CPU_ONLY"]}
    assert not fake.streams[-1][0].pin_memory  # no page-locked memory without a GPU


def test_no_gpu_jpeg_encoder_is_an_error_under_gpu_and_pillow_under_auto(fake_nvimgcodec, caplog):
    from gpuimages.encoders.nvimgcodec import NoGpuEncoder, NvCodec
    from gpuimages.task.steps.encode import task_encoder

    fake_nvimgcodec({"CPU_ONLY"})  # nvJPEG's encoder missing: only OpenCV's CPU encoder exists
    with pytest.raises(NoGpuEncoder, match=r"no JPEG encoder on CUDA device 0 among the backends HYBRID_CPU_GPU, "
                                           r"GPU_ONLY, HW_GPU_ONLY .*nvjpeg"):
        NvCodec(0, 1)
    with pytest.raises(RuntimeError, match="device='gpu': nvImageCodec could not start on gpu 0.*no JPEG encoder"):
        task_encoder(make_encode_options(device="gpu"), TaskDevice("gpu", 0))
    assert task_encoder(make_encode_options(device="auto"), TaskDevice("auto", 0)).name == "pillow"
    assert "nvImageCodec could not start on gpu 0" in caplog.text


def test_code_streams_are_kept_per_worker(fake_nvimgcodec):
    from gpuimages.encoders.nvimgcodec import NvImageCodecEncoder

    fake = fake_nvimgcodec({"GPU_ONLY"})
    enc = NvImageCodecEncoder(make_encode_options(), TaskDevice("gpu", 0, 1))
    assert enc.name == "nvimgcodec-gpu" and enc.backends == ("HYBRID_CPU_GPU", "GPU_ONLY", "HW_GPU_ONLY")
    first = enc.encode([bgr(seed=1), bgr(seed=2), bgr(seed=3)])
    second = enc.encode([bgr(seed=4), bgr(seed=5)])
    assert first.data == [b"\xff\xd8GPU_ONLY"] * 3 and second.data == [b"\xff\xd8GPU_ONLY"] * 2
    probe, a, b = fake.streams
    assert [id(s) for s in b] == [id(s) for s in a[:2]] and a[0] is probe[0]  # the same streams, call after call
    assert len(fake.made) == 1


def test_code_streams_are_reused_by_the_real_cpu_backend():
    enc = encoder(quality=90)
    codec = enc._codec()
    first = enc.encode([bgr(48, 64, 1), bgr(32, 40, 2)])
    streams = list(codec._streams)
    second = enc.encode([bgr(24, 16, 3)])
    assert codec._streams == streams and len(streams) == 2
    sizes = [Image.open(io.BytesIO(b)).size for b in first.data + second.data]
    assert sizes == [(64, 48), (40, 32), (16, 24)]  # each image's own bytes, though the buffers are reused

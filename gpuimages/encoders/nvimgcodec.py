"""The GPU JPEG encoder: NVIDIA nvImageCodec (nvJPEG on a GPU), with a per-file Pillow fallback.

DALI has no encoder operator; nvImageCodec's ``Encoder.encode(images, "jpeg", params=...)`` encodes a
whole batch and returns ``None`` for an image it could not encode instead of failing the batch; those
images (and any batch that raises) are encoded by Pillow with the same options.

Images are handed over as they are, in Spark's channel order (checked against nvImageCodec 0.8/0.9's
sources):

* ``nvimgcodec.as_image(array, sample_format=I_BGR)`` wraps interleaved BGR without a copy (``I_Y`` for
  grey); nvJPEG's CUDA encoder takes ``I_BGR`` directly (``NVJPEG_INPUT_BGRI``), so there is no RGB copy.
* The array may be in host memory (``__array_interface__``: numpy) or in GPU memory
  (``__cuda_array_interface__``: a DALI ``TensorGPU`` from
  :meth:`gpuimages.engines.dali.DaliEngine.decode_device`, a cupy array). nvImageCodec's generic encoder
  copies host images to the device for a GPU backend and device images to the host for the CPU-only
  backend (``ImageGenericEncoder::copyToTempBuffers``), so a device image goes to nvJPEG without a host
  round trip, and the same call works on the CPU-only backend in CI.
* JPEG has no alpha: a BGRA host image is cut to BGR (a host copy, since nvImageCodec only accepts
  padding between rows); a BGRA device image is copied to the host and encoded by Pillow. Decode with
  ``decode_device(..., drop_alpha=True)`` to have DALI drop alpha on the device.

On a GPU only nvImageCodec's GPU backends are allowed (``HYBRID_CPU_GPU``, ``GPU_ONLY``, ``HW_GPU_ONLY``;
its default allows every backend, and with nvJPEG's encoder missing it would pick OpenCV's CPU encoder and
copy device images to the host without a word); a probe encode says when none of them is there, which fails
a ``device="gpu"`` task. Without a GPU (``device.gpu_id`` None) nvImageCodec runs its CPU-only backend
(``NVIMGCODEC_DEVICE_CPU_ONLY``), which is what CI exercises. Encoded bytes land in CodeStreams kept per
worker (``code_stream_s=``), not in a new page-locked stream per image per call. The native encoder is built once per
worker, GPU and thread count, in the worker cache (:func:`gpuimages.task.cache.worker_cache`), and fetched
for every batch so eviction frees it. nvImageCodec >= 0.9 is required (``QualityType``, the
``NVIMGCODEC_DEVICE_CPU_ONLY`` constant); it is imported when the encoder is created, on executors only.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from gpuimages.encoders.base import EncodedBatch, EncodeOptions, Encoder, check_image
from gpuimages.encoders.pillow import PillowEncoder
from gpuimages.engines.versions import require_version
from gpuimages.task.cache import worker_cache
from gpuimages.task.device import TaskDevice

log = logging.getLogger(__name__)

NVIMGCODEC_HINT = 'pip install "gpuimages[gpu]"'
#: nvImageCodec 0.9: the Python module exports NVIMGCODEC_DEVICE_CPU_ONLY (0.8 had it in the C header only).
NVIMGCODEC_FLOOR = "0.9"

_SUBSAMPLING = {"4:4:4": "CSS_444", "4:2:2": "CSS_422", "4:2:0": "CSS_420"}


def import_nvimgcodec() -> Any:
    """``nvidia.nvimgcodec``, or an ImportError naming the extra (also when it is older than 0.9)."""
    try:
        from nvidia import nvimgcodec
    except ImportError as exc:
        raise ImportError(f"the nvimgcodec encoder needs nvidia-nvimgcodec-cu12: {NVIMGCODEC_HINT}") from exc
    require_version("nvImageCodec (nvidia-nvimgcodec-cu12)", getattr(nvimgcodec, "__version__", None),
                    NVIMGCODEC_FLOOR, f'pip install -U "nvidia-nvimgcodec-cu12[nvjpeg]>={NVIMGCODEC_FLOOR}"')
    return nvimgcodec


#: nvImageCodec backends that run on the GPU; a GPU task allows only these (:class:`NvCodec`).
GPU_BACKENDS = ("HYBRID_CPU_GPU", "GPU_ONLY", "HW_GPU_ONLY")


class NoGpuEncoder(RuntimeError):
    """nvImageCodec has no GPU JPEG encoder here (nvJPEG's encoder missing or not starting)."""


class NvCodec:
    """The worker's native nvImageCodec encoder for one device and thread count, with its output CodeStreams.

    On a GPU only the GPU backends (:data:`GPU_BACKENDS`) are allowed: with every backend allowed (nvImageCodec's
    default, ``backends`` empty) and nvJPEG's encoder missing, nvImageCodec picks OpenCV's CPU-only JPEG encoder
    and copies device images to the host, silently. A one-pixel probe encode at construction tells whether a GPU
    encoder is there; :class:`NoGpuEncoder` says so when it is not. Without a GPU only ``CPU_ONLY`` is allowed.

    ``encode`` writes into CodeStreams kept here (``code_stream_s=``): without them nvImageCodec makes a new
    CodeStream, in page-locked memory on a GPU, per image per call. A stream's buffer grows to the largest image
    it held; the bytes are copied out (``bytes(stream)``) before the next call reuses it. :meth:`close` lets
    everything go.
    """

    def __init__(self, gpu_id: int | None, threads: int) -> None:
        nvimgcodec = import_nvimgcodec()
        self.gpu_id = gpu_id
        device = nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY if gpu_id is None else int(gpu_id)
        kinds = ("CPU_ONLY",) if gpu_id is None else GPU_BACKENDS
        #: The backend kinds this encoder may use (every one of them a GPU one on a GPU).
        self.backends: tuple[str, ...] = kinds
        backends = [nvimgcodec.Backend(getattr(nvimgcodec.BackendKind, kind)) for kind in kinds]
        # max_num_cpu_threads=0 would mean "every core"; a task has device.threads of them.
        self.encoder: Any = nvimgcodec.Encoder(
            device_id=device, max_num_cpu_threads=max(1, int(threads)), backends=backends
        )
        self._new_stream = lambda: nvimgcodec.CodeStream(pin_memory=gpu_id is not None)
        self._streams: list[Any] = []
        self._lock = threading.Lock()
        self._probe(nvimgcodec)

    def _probe(self, nvimgcodec: Any) -> None:
        image = np.zeros((8, 8, 3), np.uint8)
        try:
            out = self.encode([nvimgcodec.as_image(image, sample_format=nvimgcodec.SampleFormat.I_BGR)], "jpeg")
        except Exception as exc:  # noqa: BLE001 - reported with the backends allowed
            out, why = [None], f"{type(exc).__name__}: {exc}"
        else:
            why = "it returned no image"
        if out[0] is None:
            where = "the CPU" if self.gpu_id is None else f"CUDA device {self.gpu_id}"
            raise NoGpuEncoder(
                f"nvImageCodec has no JPEG encoder on {where} among the backends {', '.join(self.backends)} "
                f"(a probe encode failed: {why}); on a GPU that means nvJPEG's encoder is missing: "
                f'pip install "nvidia-nvimgcodec-cu12[nvjpeg]>={NVIMGCODEC_FLOOR}"'
            )

    def encode(self, images: list[Any], codec: str, params: Any = None) -> list[Any]:
        """``Encoder.encode`` into this worker's CodeStreams; each result is a stream to copy out, or None."""
        with self._lock:
            while len(self._streams) < len(images):
                self._streams.append(self._new_stream())
            streams = self._streams[: len(images)]
            kwargs = {} if params is None else {"params": params}
            out = self.encoder.encode(images, codec, code_stream_s=streams, **kwargs)
            return [None if s is None else bytes(s) for s in out]

    def close(self) -> None:
        """Drop the native encoder and its streams (freed with their last references), after any encode under
        way (the lock ``encode`` holds)."""
        with self._lock:
            self.encoder = None
            self._streams = []


def _interface(image: Any) -> dict[str, Any] | None:
    for name in ("__cuda_array_interface__", "__array_interface__"):
        iface = getattr(image, name, None)
        if isinstance(iface, dict):
            return iface
    return None


def describe(image: Any) -> tuple[tuple[int, ...], str, bool] | None:
    """``(shape, numpy dtype string, in GPU memory)`` of an image of any kind, or None if it is not an array."""
    if image is None:
        return None
    if isinstance(image, np.ndarray):
        return tuple(image.shape), image.dtype.str, False
    iface = _interface(image)
    if iface is None:
        return None
    on_device = hasattr(image, "__cuda_array_interface__")
    return tuple(int(d) for d in iface["shape"]), np.dtype(iface["typestr"]).str, on_device


def why_not(image: Any) -> str | None:
    """Why ``image`` (host or device) cannot be encoded as JPEG, or None when it can."""
    if image is None or isinstance(image, np.ndarray):
        return check_image(image, "jpeg")
    info = describe(image)
    if info is None:
        return f"cannot encode a {type(image).__name__}: expected an array (numpy, or on a GPU)"
    shape, dtype, _ = info
    # the same checks as a host array, on a zero-stride stand-in of the same shape and type (no memory)
    stand_in = np.lib.stride_tricks.as_strided(np.zeros(1, np.dtype(dtype)), shape=shape, strides=(0,) * len(shape))
    return check_image(stand_in, "jpeg")


def to_host(image: Any) -> np.ndarray:
    """Any image as a numpy array (a copy for a device image)."""
    if isinstance(image, np.ndarray):
        return image
    if hasattr(image, "__cuda_array_interface__"):
        from gpuimages.engines.dali.engine import host_copy

        return host_copy(image)
    return np.asarray(image)


class NvImageCodecEncoder(Encoder):
    """JPEG encoding with nvImageCodec on ``device.gpu_id`` (its CPU-only backend when None).

    :meth:`encode` takes host numpy arrays and device arrays alike, grey/BGR/BGRA in Spark's order (see
    the module docstring). ``device.threads`` bounds nvImageCodec's CPU threads.
    """

    def __init__(self, options: EncodeOptions, device: TaskDevice) -> None:
        super().__init__(options)
        if options.format != "jpeg":
            raise ValueError(f"nvimgcodec encoder: expected format 'jpeg', got {options.format!r} (PNG uses Pillow)")
        nvimgcodec = import_nvimgcodec()
        self.device = device
        self.gpu_id = device.gpu_id
        self.threads = max(1, int(device.threads))
        self.name = "nvimgcodec-cpu" if device.gpu_id is None else "nvimgcodec-gpu"
        self._key = ("nvimgcodec-encoder", self.gpu_id, self.threads)
        jpeg = nvimgcodec.JpegEncodeParams(progressive=False, optimized_huffman=options.optimize)
        quality = {"quality_type": nvimgcodec.QualityType.QUALITY, "quality_value": float(options.quality)}
        css = getattr(nvimgcodec.ChromaSubsampling, _SUBSAMPLING[options.subsampling])
        self._colour = nvimgcodec.EncodeParams(chroma_subsampling=css, jpeg_encode_params=jpeg, **quality)
        self._grey = nvimgcodec.EncodeParams(
            chroma_subsampling=nvimgcodec.ChromaSubsampling.CSS_GRAY, jpeg_encode_params=jpeg, **quality
        )
        self._bgr = nvimgcodec.SampleFormat.I_BGR
        self._y = nvimgcodec.SampleFormat.I_Y
        self._as_image = nvimgcodec.as_image
        self._fallback = PillowEncoder(options)
        self.fallbacks = 0  # images handed to Pillow so far (tests and logs)
        self._codec()  # fail early on a broken installation or device

    def _codec(self) -> Any:
        """The worker's :class:`NvCodec` (from the worker cache; rebuilt when it was evicted)."""
        cache = worker_cache()
        for _ in range(3):
            codec = cache.get(self._key, lambda: NvCodec(self.gpu_id, self.threads))
            if codec.encoder is not None:
                return codec
            cache.discard(self._key)
        raise RuntimeError("the nvImageCodec encoder kept being dropped from the worker cache while in use")

    @property
    def backends(self) -> tuple[str, ...]:
        """The nvImageCodec backend kinds this encoder allows (only GPU ones on a GPU)."""
        return tuple(getattr(self._codec(), "backends", ()))

    def _wrap(self, image: Any, grey: bool) -> Any:
        """An nvImageCodec image over ``image`` (no copy, except cutting alpha off a host BGRA array)."""
        if not hasattr(image, "__cuda_array_interface__"):  # host memory: numpy, or a host DALI tensor
            image = np.asarray(image)
            if image.shape[2] == 4:
                image = image[:, :, :3]
            image = np.ascontiguousarray(image)
        return self._as_image(image, sample_format=self._y if grey else self._bgr)

    def _encode_group(self, images: list[Any], params: Any, grey: bool) -> list[bytes | None]:
        try:
            wrapped = [self._wrap(image, grey) for image in images]
            blobs = self._codec().encode(wrapped, "jpeg", params=params)
        except Exception as exc:  # noqa: BLE001 - the batch goes to Pillow instead
            log.warning("gpuimages: nvImageCodec failed a batch of %d (%s); encoding it with Pillow", len(images), exc)
            return [None] * len(images)
        return [None if s is None else bytes(s) for s in blobs]

    def encode(self, images: Sequence[Any]) -> EncodedBatch:
        """Encode a batch of host or device images; a failed image gets ``None`` and a reason, never an exception."""
        n = len(images)
        data: list[bytes | None] = [None] * n
        errors: list[str | None] = [None] * n
        colour: list[int] = []
        grey: list[int] = []
        late: list[int] = []  # BGRA in GPU memory: no device-side alpha cut here, Pillow encodes it
        for i, image in enumerate(images):
            reason = why_not(image)
            if reason is not None:
                errors[i] = reason
                continue
            shape, _, on_device = describe(image)  # type: ignore[misc]
            if shape[2] == 1:
                grey.append(i)
            elif shape[2] == 4 and on_device:
                late.append(i)
            else:
                colour.append(i)
        for rows, params, is_grey in ((colour, self._colour, False), (grey, self._grey, True)):
            if rows:
                blobs = self._encode_group([images[i] for i in rows], params, is_grey)
                for i, blob in zip(rows, blobs, strict=True):
                    data[i] = blob
        missing = [i for i in colour + grey if data[i] is None] + late
        if missing:
            self.fallbacks += len(missing)
            log.info("gpuimages: %d image(s) not encoded by nvImageCodec; encoding them with Pillow", len(missing))
            redo = self._fallback.encode([to_host(images[i]) for i in missing])
            for i, blob, reason in zip(missing, redo.data, redo.errors, strict=True):
                data[i], errors[i] = blob, reason
        return EncodedBatch(data, errors)

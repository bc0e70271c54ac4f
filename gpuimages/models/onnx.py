"""ONNX Runtime as a model backend: one ``InferenceSession`` per Python worker, model file and device.

Sessions live in the worker cache (:func:`gpuimages.task.cache.worker_cache`), keyed by the file's
identity (path, modification time, size), the GPU, the thread count and the provider options; the
model fetches its session for every call, so evicting it frees the session and its CUDA arena.

* **Providers.** On a task with a GPU (``device.gpu_id``, a CUDA ordinal), the CUDA execution provider
  on that device, then CPU. The CUDA provider comes with ``onnxruntime-gpu`` (``gpuimages[onnx-gpu]``,
  which also brings the CUDA 12 and cuDNN 9 wheels it loads); before the first CUDA session
  :func:`preload_cuda_libraries` calls ``onnxruntime.preload_dlls()`` (onnxruntime-gpu >= 1.21), which
  loads those libraries from the ``nvidia-*`` wheels. When a GPU is requested and the session does not
  run on the CUDA provider, a warning says so once, with the fix: every batch then goes through host
  memory to the CPU provider.
* **CUDA provider options** (names and values as ONNX Runtime's ``cuda_execution_provider_info.cc``
  parses them): ``device_id``; ``gpu_mem_limit`` (the arena's bound, :func:`gpu_mem_limit`:
  ``$GPUIMAGES_ORT_GPU_MEM_LIMIT``, default half of the task's share of the GPU's memory, since several
  Python workers share a GPU and DALI and nvImageCodec share the task's part);
  ``arena_extend_strategy=kSameAsRequested`` (grow by what is asked, not to the next power of two);
  ``cudnn_conv_algo_search=HEURISTIC`` (the default, EXHAUSTIVE, benchmarks every convolution again for
  every new input shape, and batch sizes vary at slice ends and after a split).
* **Threads.** ``intra_op_num_threads`` is the task's threads (``device.threads``, or the spec's).
* **Device batches.** :meth:`OnnxModel.run_device` binds DALI's device batch as the model input with
  IO binding: no pixel copy; only the outputs are copied to the host. DALI's outputs are complete when
  its ``outputs()`` returns without a stream ("synchronized with the host"), so no stream wait is
  needed; other producers go through DLPack with cupy, synchronised on the tensor's own device.
* **Out of memory.** A device batch (128 images by default) goes to one run; a run that fails for want of
  GPU memory is retried in halves (down to one image), host and device batches alike.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import logging
import os
import re
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from gpuimages.models.base import InputFormat, Model, as_features, host_array, in_device_memory
from gpuimages.task.cache import worker_cache
from gpuimages.task.device import TaskDevice

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "gpuimages[onnx]"'
#: The fix for a GPU task whose sessions run on the CPU provider (the two wheels share the module name).
GPU_INSTALL_HINT = 'pip uninstall -y onnxruntime onnxruntime-gpu && pip install "gpuimages[onnx-gpu]"'
CUDA_PROVIDER = "CUDAExecutionProvider"
CPU_PROVIDER = "CPUExecutionProvider"

#: Environment variable: the CUDA arena's bound per session, in bytes ("8589934592"), with a unit
#: ("8GiB", "512MB") or as a share of the GPU's memory ("25%"); "0" or "none" for no bound.
GPU_MEM_LIMIT_ENV = "GPUIMAGES_ORT_GPU_MEM_LIMIT"
#: Default bound: this part of the task's share of the GPU's memory (the rest is for DALI's pools and
#: nvImageCodec in the same task; :meth:`gpuimages.task.device.TaskDevice.memory_share`)...
MODEL_PART_OF_TASK = 0.5
#: ...or this many bytes when the GPU's memory cannot be read.
FALLBACK_GPU_MEM_LIMIT = 4 << 30
#: ONNX Runtime's out-of-memory messages: its arena's ("Failed to allocate memory for requested buffer",
#: "Available memory of ... is smaller than requested bytes"), CUDA's, cuBLAS's and cuDNN's.
_OOM = re.compile(
    r"out of memory|Failed to allocate memory|is smaller than requested bytes|cudaErrorMemoryAllocation"
    r"|CUDA_ERROR_OUT_OF_MEMORY|bad_alloc|CUBLAS_STATUS_ALLOC_FAILED|CUDNN_STATUS_ALLOC_FAILED",
    re.IGNORECASE,
)
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "tib": 1 << 40}

_state_lock = threading.Lock()
_preloaded = False
_warned: set[str] = set()


def onnxruntime_installed() -> bool:
    """True when onnxruntime can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):
        return False


def require_onnxruntime() -> None:
    """Raise an ImportError naming the extra when onnxruntime is missing (driver-side check)."""
    if not onnxruntime_installed():
        raise ImportError(f"backbone 'onnx' needs onnxruntime, which is not installed: {INSTALL_HINT}")


def _import_ort() -> Any:
    try:
        import onnxruntime
    except ImportError as exc:
        raise ImportError(f"backbone 'onnx' needs onnxruntime: {INSTALL_HINT}") from exc
    return onnxruntime


# --------------------------------------------------------------------------- memory bound


@functools.lru_cache(maxsize=16)
def device_total_memory(gpu_id: int) -> int | None:
    """Bytes of memory of CUDA device ``gpu_id`` (an ordinal in this process), from the driver; None if unknown."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    try:
        if lib.cuInit(0) != 0:
            return None
        dev = ctypes.c_int(0)
        if lib.cuDeviceGet(ctypes.byref(dev), int(gpu_id)) != 0:
            return None
        total = ctypes.c_size_t(0)
        if lib.cuDeviceTotalMem_v2(ctypes.byref(total), dev) != 0:
            return None
        return int(total.value)
    except (AttributeError, OSError):
        return None


def parse_mem_limit(text: str, total: int | None) -> int | None:
    """Bytes from ``"8589934592"``, ``"8GiB"``, ``"512 MB"`` or ``"25%"`` (of ``total``); None for no bound.

    Raises ``ValueError`` for anything else, or for a share when ``total`` is unknown.
    """
    value = text.strip().lower()
    if value in ("0", "none", "unlimited"):
        return None
    if value.endswith("%"):
        share = float(value[:-1]) / 100.0
        if not 0 < share <= 1:
            raise ValueError(f"{GPU_MEM_LIMIT_ENV}: expected a share in (0%, 100%], got {text!r}")
        if total is None:
            raise ValueError(f"{GPU_MEM_LIMIT_ENV}={text!r}: the GPU's memory is unknown, give bytes instead")
        return int(total * share)
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    if match is None or match.group(2) not in _UNITS:
        raise ValueError(f"{GPU_MEM_LIMIT_ENV}: expected bytes, a size such as '8GiB', or a share such as '25%', "
                         f"got {text!r}")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def gpu_mem_limit(gpu_id: int, env: Mapping[str, str] | None = None, share: float | None = None) -> int | None:
    """The CUDA arena bound for sessions on ``gpu_id`` (see :data:`GPU_MEM_LIMIT_ENV`); None: no bound.

    Default: :data:`MODEL_PART_OF_TASK` of the task's part of the GPU's memory, ``share`` (from
    :meth:`~gpuimages.task.device.TaskDevice.memory_share`; None: a quarter, four workers per GPU). Four
    workers sharing a GPU then bound their arenas to half of it together, leaving the rest to DALI and
    nvImageCodec.
    """
    env = os.environ if env is None else env
    text = env.get(GPU_MEM_LIMIT_ENV)
    total = device_total_memory(gpu_id)
    if text:
        try:
            return parse_mem_limit(text, total)
        except ValueError as exc:
            log.warning("%s; using the default", exc)
    share = 0.25 if share is None else float(share)
    return int(total * share * MODEL_PART_OF_TASK) if total else FALLBACK_GPU_MEM_LIMIT


def is_oom(exc: BaseException) -> bool:
    """True for an ONNX Runtime error that says the device ran out of memory."""
    return bool(_OOM.search(str(exc)))


def halving(run: Any, start: int, count: int, what: str) -> list[np.ndarray]:
    """``run(start, n)`` over rows ``[start, start + count)``; a part that runs out of device memory is halved
    and retried until a single row still does not fit (that error is raised). No state is kept: the next
    call starts again at its full size, so a moment of pressure does not shrink the batches for good."""
    try:
        return [run(start, count)]
    except Exception as exc:  # noqa: BLE001 - only out-of-memory errors are retried
        if count <= 1 or not is_oom(exc):
            raise
        half = count // 2
        log.warning("gpuimages: %s ran out of GPU memory on %d images; running %d and %d", what, count, half,
                    count - half)
        return halving(run, start, half, what) + halving(run, start + half, count - half, what)


# --------------------------------------------------------------------------- providers


def cuda_provider_options(gpu_id: int, mem_limit: int | None) -> dict[str, str]:
    """The CUDA execution provider's options for a session on ``gpu_id`` (see the module docstring)."""
    options = {
        "device_id": str(int(gpu_id)),
        "arena_extend_strategy": "kSameAsRequested",
        "cudnn_conv_algo_search": "HEURISTIC",
    }
    if mem_limit is not None:
        options["gpu_mem_limit"] = str(int(mem_limit))
    return options


def providers_for(gpu_id: int | None, available: list[str], cuda_options: Mapping[str, str] | None = None) -> list[Any]:
    """Execution providers for a session: CUDA on ``gpu_id`` first when available, then CPU."""
    if gpu_id is not None and CUDA_PROVIDER in available:
        options = dict(cuda_options) if cuda_options is not None else cuda_provider_options(gpu_id, None)
        return [(CUDA_PROVIDER, options), CPU_PROVIDER]
    return [CPU_PROVIDER]


def preload_cuda_libraries(ort: Any) -> None:
    """``onnxruntime.preload_dlls()`` once per process (onnxruntime-gpu >= 1.21), before the first CUDA session.

    It loads the CUDA 12 and cuDNN 9 libraries from the ``nvidia-*`` wheels, which the dynamic loader
    does not find by itself; older releases lack it and need them on ``LD_LIBRARY_PATH``.
    """
    global _preloaded
    with _state_lock:
        if _preloaded:
            return
        _preloaded = True
    preload = getattr(ort, "preload_dlls", None)
    if preload is None:
        log.info("onnxruntime %s has no preload_dlls(); CUDA and cuDNN must be on the library path",
                 getattr(ort, "__version__", "?"))
        return
    try:
        preload()
    except Exception as exc:  # noqa: BLE001 - session creation reports what is really missing
        log.warning("onnxruntime.preload_dlls() failed: %s", exc)


def warn_once(key: str, message: str) -> bool:
    """Log ``message`` as a warning the first time ``key`` is seen in this process; True if it was logged."""
    with _state_lock:
        if key in _warned:
            return False
        _warned.add(key)
    log.warning(message)
    return True


def _cuda_inactive(path: str, gpu_id: int, available: list[str], active: list[str]) -> None:
    if CUDA_PROVIDER not in available:
        why = f"this onnxruntime has no CUDA provider (available: {', '.join(available)})"
    else:
        why = f"the CUDA provider did not start (session providers: {', '.join(active)}; see onnxruntime's error above)"
    warn_once(
        "cuda-inactive",
        f"gpuimages: a GPU was requested (CUDA device {gpu_id}) but the ONNX model {path} runs on ONNX Runtime's "
        f"CPU provider: {why}. Every device batch is copied to host memory and run on the CPU. Fix: "
        f"{GPU_INSTALL_HINT} (onnxruntime-gpu >= 1.21, < 1.27 with the CUDA 12 and cuDNN 9 wheels; keep only one of "
        "onnxruntime / onnxruntime-gpu installed).",
    )


# --------------------------------------------------------------------------- sessions


class OrtSession:
    """A cached ``InferenceSession`` and what it was built for; :meth:`close` lets it go."""

    def __init__(self, session: Any, gpu_id: int | None) -> None:
        self.session: Any = session
        self.gpu_id = gpu_id
        self.providers: list[str] = list(session.get_providers())
        self.on_cuda = CUDA_PROVIDER in self.providers
        self.input_name: str = session.get_inputs()[0].name
        self.output_name: str = session.get_outputs()[0].name

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees it, and its arena, with the last reference)."""
        self.session = None


def session_key(path: str, gpu_id: int | None, threads: int, cuda_options: Mapping[str, str] | None) -> tuple:
    """The worker-cache key of a session: file identity, GPU, threads and provider options."""
    stat = os.stat(path)
    options = tuple(sorted(cuda_options.items())) if cuda_options else ()
    return ("onnx-session", os.path.abspath(path), stat.st_mtime_ns, stat.st_size, gpu_id, int(threads), options)


def _build_session(path: str, gpu_id: int | None, threads: int, cuda_options: Mapping[str, str] | None) -> OrtSession:
    ort = _import_ort()
    options = ort.SessionOptions()
    options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    available = list(ort.get_available_providers())
    if gpu_id is not None and CUDA_PROVIDER in available:
        preload_cuda_libraries(ort)
    providers = providers_for(gpu_id, available, cuda_options)
    holder = OrtSession(ort.InferenceSession(path, sess_options=options, providers=providers), gpu_id)
    log.info("gpuimages: ONNX session for %s on %s (%d threads)", path, holder.providers, threads)
    if gpu_id is not None and not holder.on_cuda:
        _cuda_inactive(path, gpu_id, available, holder.providers)
    return holder


def get_session(path: str, device: TaskDevice, threads: int | None = None) -> tuple[OrtSession, Any]:
    """The worker's session holder for ``path`` on ``device`` and its live ``InferenceSession``.

    Built on first use and rebuilt when the file changes or the cache dropped it; hold on to the returned
    session (not the holder's attribute) for the length of a run.
    """
    gpu_id = device.gpu_id
    threads = int(threads or device.threads)
    cuda_options = (
        cuda_provider_options(gpu_id, gpu_mem_limit(gpu_id, share=device.memory_share()))
        if gpu_id is not None else None
    )
    key = session_key(path, gpu_id, threads, cuda_options)
    cache = worker_cache()
    for _ in range(3):
        holder = cache.get(key, lambda: _build_session(path, gpu_id, threads, cuda_options))
        session = holder.session
        if session is not None:
            return holder, session
        cache.discard(key)  # closed while still listed: build it again
    raise RuntimeError(f"the ONNX session for {path} kept being dropped from the worker cache while in use")


# --------------------------------------------------------------------------- the model


def device_buffer(tensor: Any) -> tuple[int, int, tuple[int, ...], Any]:
    """``(pointer, CUDA ordinal, shape, owner)`` of a float32 batch in GPU memory, ready to read.

    A DALI ``TensorGPU`` from a pipeline's ``outputs()`` is complete already (host-synchronous outputs):
    its own pointer and device are used. Anything else goes through DLPack with cupy, inside
    ``cupy.cuda.Device(<the tensor's device>)``: ``cupy.from_dlpack`` hands the producer the current
    stream *of that device* to wait on, then restores the previous device, so the synchronisation must
    happen on that device too. ``owner`` must be kept alive until the model has run.
    """
    if callable(getattr(tensor, "data_ptr", None)) and callable(getattr(tensor, "shape", None)) \
            and callable(getattr(tensor, "__dlpack_device__", None)):  # DALI's TensorGPU (its shape is a method)
        _, device = tensor.__dlpack_device__()  # DLPack's (device type, ordinal): part of DALI >= 1.44's tensors
        return int(tensor.data_ptr()), int(device), tuple(int(d) for d in tensor.shape()), tensor
    import cupy

    _, device = tensor.__dlpack_device__()
    with cupy.cuda.Device(int(device)):
        array = cupy.from_dlpack(tensor)
        if array.dtype != np.float32 or not array.flags.c_contiguous:
            array = cupy.ascontiguousarray(array, dtype=cupy.float32)
        cupy.cuda.get_current_stream().synchronize()
    return int(array.data.ptr), int(device), tuple(int(d) for d in array.shape), array


class OnnxModel(Model):
    """An ONNX model: input NCHW float32 RGB ``(x / 255 - mean) / std``, its first output flattened per image."""

    name = "onnx"

    def __init__(
        self,
        path: str,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        device: TaskDevice,
        threads: int | None = None,
    ) -> None:
        self.path = path
        self.input_format = InputFormat("NCHW", tuple(mean), tuple(std))  # type: ignore[arg-type]
        self.device = device
        self.gpu_id = device.gpu_id
        self.threads = threads
        holder, _ = self._session()  # fail early: a missing file or a broken model
        self.input_name = holder.input_name
        self.output_name = holder.output_name

    def _session(self) -> tuple[OrtSession, Any]:
        return get_session(self.path, self.device, self.threads)

    @property
    def session(self) -> Any:
        """The worker's ``InferenceSession`` for this model (from the worker cache)."""
        return self._session()[1]

    @property
    def on_cuda(self) -> bool:
        """True when the session runs on the CUDA provider."""
        return self._session()[0].on_cuda

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Features of a host batch; a batch that runs out of GPU memory is run in halves (:func:`halving`)."""
        session = self.session
        batch = np.ascontiguousarray(batch, np.float32)

        def part(start: int, n: int) -> np.ndarray:
            (out,) = session.run([self.output_name], {self.input_name: batch[start : start + n]})
            return as_features(out, n, f"ONNX model {self.path}")

        return np.concatenate(halving(part, 0, batch.shape[0], f"ONNX model {self.path}"), axis=0)

    def run_device(self, tensor: Any, n: int) -> np.ndarray:
        """Run on a DALI tensor: host tensors in place; device tensors through IO binding (no pixel copy).

        On a session that is not on the CUDA provider (see the warning logged when it was built), a
        device tensor is copied to host memory first.
        """
        if not in_device_memory(tensor) and not hasattr(tensor, "__cuda_array_interface__"):
            return self.run(host_array(tensor))
        holder, session = self._session()
        if not holder.on_cuda:
            return self.run(host_array(tensor) if in_device_memory(tensor) else np.asarray(tensor))
        pointer, device, shape, owner = device_buffer(tensor)
        if holder.gpu_id is not None and device != holder.gpu_id:
            raise ValueError(f"ONNX model {self.path}: the batch is on CUDA device {device}, the session on "
                             f"{holder.gpu_id}")
        return self.run_pointer(pointer, shape, device, owner, session)

    def run_pointer(
        self, pointer: int, shape: tuple[int, ...], device: int, owner: Any = None, session: Any = None
    ) -> np.ndarray:
        """Run on a complete float32 batch in GPU memory at ``pointer`` on CUDA device ``device``.

        ``owner`` keeps the memory alive until the run has finished (ONNX Runtime synchronises its
        stream at the end of a run, and the outputs are copied to the host).
        """
        session = session if session is not None else self.session
        shape = tuple(int(d) for d in shape)
        row_bytes = 4 * int(np.prod(shape[1:], dtype=np.int64))  # float32, C-contiguous rows

        def part(start: int, n: int) -> np.ndarray:
            binding = session.io_binding()
            binding.bind_input(
                self.input_name, device_type="cuda", device_id=int(device), element_type=np.float32,
                shape=(n, *shape[1:]), buffer_ptr=int(pointer) + start * row_bytes,
            )
            binding.bind_output(self.output_name, "cpu")
            session.run_with_iobinding(binding)
            (out,) = binding.copy_outputs_to_cpu()
            return as_features(out, n, f"ONNX model {self.path}")

        try:
            return np.concatenate(halving(part, 0, shape[0], f"ONNX model {self.path}"), axis=0)
        finally:
            del owner

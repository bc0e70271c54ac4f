"""ONNX Runtime as a model backend: one ``InferenceSession`` per Python worker and model.

The session uses the CPU execution provider, and CUDA where the executor has a GPU and
onnxruntime's CUDA provider is installed (``onnxruntime-gpu``). On CPU it runs
``intra_op_num_threads`` threads (default 1: Spark already runs one task per core). On a GPU,
:meth:`OnnxModel.run_device` binds DALI's device batch as the model input through DLPack and IO
binding, so pixels never travel to host memory; only the outputs are copied back.
"""

from __future__ import annotations

import functools
import importlib.util
import logging
import os
import threading
from typing import Any

import numpy as np

from gpuimages.models.base import InputFormat, Model, as_features, host_array, in_device_memory

log = logging.getLogger(__name__)

INSTALL_HINT = 'pip install "gpuimages[onnx]"'

_SESSIONS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


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


def providers_for(gpu_id: int | None, available: list[str]) -> list[Any]:
    """Execution providers for a session: CUDA on ``gpu_id`` first when available, then CPU."""
    if gpu_id is not None and "CUDAExecutionProvider" in available:
        return [("CUDAExecutionProvider", {"device_id": int(gpu_id)}), "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def session_for(path: str, threads: int, gpu_id: int | None) -> Any:
    """The cached ``InferenceSession`` of ``path`` for this worker (rebuilt when the file changes)."""
    ort = _import_ort()
    stat = os.stat(path)
    key = (os.path.abspath(path), stat.st_mtime_ns, stat.st_size, int(threads), gpu_id)
    with _LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            options = ort.SessionOptions()
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
            providers = providers_for(gpu_id, ort.get_available_providers())
            session = ort.InferenceSession(path, sess_options=options, providers=providers)
            log.info("gpuimages: ONNX session for %s on %s (%d threads)", path, session.get_providers(), threads)
            _SESSIONS[key] = session
        return session


def clear_sessions() -> None:
    """Drop the cached sessions (tests)."""
    with _LOCK:
        _SESSIONS.clear()


@functools.lru_cache(maxsize=1)
def _warn_host_copy(reason: str) -> None:
    log.warning("gpuimages: the ONNX model reads DALI's batch through host memory: %s", reason)


class OnnxModel(Model):
    """An ONNX model: input NCHW float32 RGB ``(x / 255 - mean) / std``, its first output flattened per image."""

    name = "onnx"

    def __init__(
        self,
        path: str,
        mean: tuple[float, float, float],
        std: tuple[float, float, float],
        threads: int = 1,
        gpu_id: int | None = None,
    ) -> None:
        self.path = path
        self.input_format = InputFormat("NCHW", tuple(mean), tuple(std))  # type: ignore[arg-type]
        self.gpu_id = gpu_id
        self.session = session_for(path, threads, gpu_id)
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name

    @property
    def on_cuda(self) -> bool:
        """True when the session runs on the CUDA provider."""
        return "CUDAExecutionProvider" in self.session.get_providers()

    def run(self, batch: np.ndarray) -> np.ndarray:
        (out,) = self.session.run([self.output_name], {self.input_name: np.ascontiguousarray(batch, np.float32)})
        return as_features(out, batch.shape[0], f"ONNX model {self.path}")

    def run_device(self, tensor: Any, n: int) -> np.ndarray:
        """Run on a DALI tensor: host tensors in place; device tensors through IO binding (no pixel copy)."""
        if not in_device_memory(tensor):  # a host tensor: a numpy view of DALI's buffer
            return self.run(host_array(tensor))
        if not self.on_cuda:
            _warn_host_copy("onnxruntime has no CUDA provider here (install onnxruntime-gpu)")
            return self.run(host_array(tensor))
        try:
            import cupy
        except ImportError:
            _warn_host_copy("cupy is not installed (pip install \"gpuimages[gpu]\")")
            return self.run(host_array(tensor))
        array = cupy.from_dlpack(tensor)  # waits for DALI's stream; no copy
        cupy.cuda.get_current_stream().synchronize()
        return self.run_pointer(int(array.data.ptr), tuple(int(d) for d in array.shape), array)

    def run_pointer(self, pointer: int, shape: tuple[int, ...], owner: Any = None) -> np.ndarray:
        """Run on a float32 batch already in GPU memory at ``pointer`` (``owner`` keeps it alive)."""
        binding = self.session.io_binding()
        binding.bind_input(
            self.input_name, device_type="cuda", device_id=int(self.gpu_id or 0), element_type=np.float32,
            shape=shape, buffer_ptr=pointer,
        )
        binding.bind_output(self.output_name, "cpu")
        self.session.run_with_iobinding(binding)
        (out,) = binding.copy_outputs_to_cpu()
        del owner
        return as_features(out, shape[0], f"ONNX model {self.path}")

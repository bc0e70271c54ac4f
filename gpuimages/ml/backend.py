"""Where the ML stages compute on an executor: numpy (+ Pillow) on CPU, or cupy on a GPU.

The choice is made inside the executor function, never on the driver, and cupy is imported
there only when asked for. Both backends give the same pixels: the GPU path runs the same
array code as the numpy path (see :mod:`gpuimages.ml.ops`), and the CPU path's Pillow resize
is checked against that array code in the tests.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from gpuimages.options import check_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Backend:
    """An array module plus how to move arrays to and from it.

    ``use_pillow``: resize with Pillow per image (fastest on CPU) instead of the batched
    fixed-point matrix resize (what runs on the GPU).
    """

    name: str
    xp: ModuleType
    use_pillow: bool = False

    def asarray(self, array: np.ndarray) -> Any:
        """Move a host array to this backend."""
        return array if self.xp is np else self.xp.asarray(array)

    def to_numpy(self, array: Any) -> np.ndarray:
        """Bring an array of this backend back to the host."""
        return array if isinstance(array, np.ndarray) else self.xp.asnumpy(array)


#: The CPU backend: numpy, Pillow for resizing.
NUMPY = Backend("numpy", np, use_pillow=True)
#: The GPU code path run by numpy (for tests and comparisons).
NUMPY_ARRAYS = Backend("numpy-arrays", np, use_pillow=False)


@functools.cache
def _cupy() -> ModuleType | None:
    """cupy if it imports and sees a GPU, else None (checked once per Python worker)."""
    try:
        import cupy  # noqa: PLC0415 - imported lazily on executors only

        if cupy.cuda.runtime.getDeviceCount() < 1:
            return None
        return cupy
    except Exception as exc:  # noqa: BLE001 - any import or driver failure means "no GPU here"
        log.debug("gpuimages.ml: cupy unavailable (%s)", exc)
        return None


def _task_gpu() -> int | None:
    """The GPU address Spark assigned to the running task, if any."""
    try:
        from pyspark import TaskContext

        ctx = TaskContext.get()
        if ctx is None:
            return None
        gpus = ctx.resources().get("gpu")
        return int(gpus.addresses[0]) if gpus is not None and gpus.addresses else None
    except Exception:  # noqa: BLE001 - no task context (tests) or odd addresses
        return None


def resolve_backend(device: str) -> Backend:
    """Pick the backend for ``device`` ("auto", "cpu", "gpu") on this executor.

    "gpu" and "auto" use cupy when it imports and a GPU is visible; otherwise numpy/Pillow
    ("gpu" logs a warning once per worker).
    """
    device = check_device(device)
    if device == "cpu":
        return NUMPY
    cupy = _cupy()
    if cupy is None:
        if device == "gpu":
            _warn_no_gpu()
        return NUMPY
    gpu = _task_gpu()
    if gpu is not None:
        cupy.cuda.Device(gpu).use()
    return Backend("cupy", cupy, use_pillow=False)


@functools.lru_cache(maxsize=1)
def _warn_no_gpu() -> None:
    log.warning("gpuimages.ml: device='gpu' but cupy or a GPU is not available here; using numpy/Pillow")

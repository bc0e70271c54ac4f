"""Which array module the image operations run on: numpy (+ Pillow) on CPU, cupy on a task's GPU.

Chosen inside the task from its :class:`~gpuimages.task.device.TaskDevice`, never on the driver;
cupy is imported only when a task computes on a GPU. Both give the same pixels: the GPU runs the
same array code as the numpy path (see :mod:`gpuimages.transforms.ops`), and the CPU path's Pillow
resize is checked against that array code in the tests.
"""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import numpy as np

from gpuimages.task.device import TaskDevice, library_imports

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Arrays:
    """An array module, the GPU it computes on, and how arrays move to and from it.

    ``use_pillow``: resize with Pillow per image (fastest on CPU) instead of the batched
    fixed-point matrix resize (what runs on the GPU).
    """

    name: str
    xp: ModuleType
    use_pillow: bool = False
    gpu_id: int | None = None

    def on_device(self) -> AbstractContextManager[Any]:
        """A context in which this module's arrays live on its GPU (cupy's current device)."""
        if self.gpu_id is None or self.xp is np:
            return nullcontext()
        return self.xp.cuda.Device(self.gpu_id)

    def asarray(self, array: np.ndarray) -> Any:
        """Move a host array to this module."""
        return array if self.xp is np else self.xp.asarray(array)

    def to_numpy(self, array: Any) -> np.ndarray:
        """Bring an array of this module back to the host."""
        return array if isinstance(array, np.ndarray) else self.xp.asnumpy(array)


#: The CPU module: numpy, Pillow for resizing.
NUMPY = Arrays("numpy", np, use_pillow=True)
#: The GPU code path run by numpy (tests and comparisons).
NUMPY_ARRAYS = Arrays("numpy-arrays", np, use_pillow=False)


def arrays_for(device: TaskDevice) -> Arrays:
    """cupy on the task's GPU where cupy imports and computes there; numpy/Pillow otherwise.

    Under ``device="gpu"`` a task without a GPU or without cupy computes with numpy (same
    results), with a warning once per worker. A cupy that imports but cannot compute on the GPU (a
    wheel for another CUDA major than the driver's, no NVRTC to compile its kernels) is found by
    :func:`cupy_computes` once per worker and GPU, and the task computes with numpy, with a warning.
    """
    if device.mode == "cpu" or device.gpu_id is None or not library_imports("cupy"):
        if device.mode == "gpu":
            _warn_once(device)
        return NUMPY
    if not cupy_computes(device.gpu_id):
        return NUMPY
    import cupy

    return Arrays("cupy", cupy, use_pillow=False, gpu_id=device.gpu_id)


_warned: set[str] = set()
_computes: dict[int, bool] = {}


def cupy_computes(gpu_id: int) -> bool:
    """Whether cupy runs an elementwise kernel on CUDA device ``gpu_id`` (tried once per worker and GPU)."""
    known = _computes.get(gpu_id)
    if known is not None:
        return known
    try:
        import cupy

        with cupy.cuda.Device(int(gpu_id)):
            ok = int(cupy.asnumpy(cupy.arange(3, dtype=cupy.uint8) + 1).sum()) == 6
    except Exception as exc:  # noqa: BLE001 - any failure means "not on this GPU"
        log.warning("gpuimages: cupy cannot compute on GPU %s (%s: %s); computing with numpy", gpu_id,
                    type(exc).__name__, str(exc).strip().splitlines()[0] if str(exc).strip() else "")
        ok = False
    _computes[gpu_id] = ok
    return ok


def _warn_once(device: TaskDevice) -> None:
    key = device.describe()
    if key not in _warned:
        _warned.add(key)
        log.warning("gpuimages: device='gpu' but this task has no GPU with cupy (%s); computing with numpy", key)

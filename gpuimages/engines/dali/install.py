"""Which DALI this machine needs and importing it: the build for the CUDA driver, the version floor, the hint.

Imports no DALI until :func:`import_dali` runs (on executors, when an engine or pipeline is created).
"""

from __future__ import annotations

import ctypes
from typing import Any

from gpuimages.engines.versions import require_version

#: DALI 1.44: ``exec_dynamic`` is no longer experimental and supports GPU -> CPU transfers.
DALI_FLOOR = "1.44"
INSTALL_HINT = 'pip install "gpuimages[gpu]"'


def cuda_driver_version() -> int | None:
    """The CUDA version the driver supports (``13000`` for 13.0), from ``cuDriverGetVersion``; None without one.

    Needs no CUDA context (``cuDriverGetVersion`` works before ``cuInit``), so it is safe in any process.
    """
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        version = ctypes.c_int(0)
        if lib.cuDriverGetVersion(ctypes.byref(version)) != 0:
            return None
        return int(version.value)
    except (OSError, AttributeError):
        return None


def dali_package(driver: int | None = None) -> str:
    """DALI's package for this machine: ``nvidia-dali-cuda130`` on a CUDA 13 driver, else ``nvidia-dali-cuda120``
    (a CUDA 12 driver runs only the CUDA 12 build; without a driver the CUDA 12 build is the one named)."""
    driver = cuda_driver_version() if driver is None else driver
    return "nvidia-dali-cuda130" if driver is not None and driver >= 13000 else "nvidia-dali-cuda120"


def import_dali() -> tuple[Any, Any, Any]:
    """``(fn, types, Pipeline)``; an ImportError naming the extra when DALI is missing or older than 1.44.

    The package named is the build for this machine's CUDA driver (:func:`dali_package`).
    """
    try:
        import nvidia.dali as dali
        from nvidia.dali import fn, types
        from nvidia.dali.pipeline import Pipeline
    except ImportError as exc:
        package = dali_package()
        hint = INSTALL_HINT if package == "nvidia-dali-cuda120" else f'pip install "{package}>={DALI_FLOOR}"'
        raise ImportError(f"the DALI engine needs NVIDIA DALI (package {package}): {hint}") from exc
    package = dali_package()
    require_version(f"NVIDIA DALI ({package})", getattr(dali, "__version__", None), DALI_FLOOR,
                    f'pip install -U "{package}>={DALI_FLOOR}"')
    return fn, types, Pipeline

"""Decode engines: one interface (:mod:`.base`), a CPU engine (Pillow) and a GPU engine (DALI).

Engines are created on executors only, by :func:`create_engine`; importing this package imports
neither DALI nor cupy (each engine module is imported when it is first created).
"""

from __future__ import annotations

from gpuimages.engines.base import Engine
from gpuimages.options import DecodeOptions
from gpuimages.task.device import TaskDevice

__all__ = ["Engine", "ENGINES", "create_engine", "engine_for"]

#: Engine names :func:`create_engine` accepts.
ENGINES = ("pillow", "dali")
#: The module whose presence (and the task's device) makes DALI the engine.
DALI_MODULE = "nvidia.dali"


def engine_for(device: TaskDevice) -> str:
    """The engine a task on ``device`` decodes with: "dali" where the device uses DALI (the stage's device is
    "gpu", or "auto" with a GPU and DALI importable), else "pillow". The one place the engine is chosen."""
    return "dali" if device.uses(DALI_MODULE) else "pillow"


def create_engine(options: DecodeOptions, device: TaskDevice, engine: str | None = None, *,
                  device_output: bool = False) -> Engine:
    """Create the decode engine for a task on ``device``.

    ``engine`` forces "pillow" or "dali"; by default :func:`engine_for` chooses. The DALI engine decodes on
    ``device.gpu_id`` (DALI's CPU operators when it is None) with ``device.threads`` threads;
    ``device_output`` leaves its images in GPU memory (``decode_device``). A missing or too old DALI raises
    an ImportError naming the extra. DALI is imported here, never at package import.
    """
    name = engine or engine_for(device)
    if name == "pillow":
        from gpuimages.engines.pillow import PillowEngine

        return PillowEngine(options)
    if name == "dali":
        from gpuimages.engines.dali import DaliEngine

        return DaliEngine(options, device, device_output=device_output)
    raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {name!r}")

"""Decode engines: one interface (:mod:`.base`), a CPU engine (Pillow) and a GPU engine (DALI).

Engines are created on executors only, by :func:`create_engine`; importing this package imports
neither DALI nor cupy (each engine module is imported when it is first created).
"""

from __future__ import annotations

from gpuimages.engines.base import Engine
from gpuimages.options import DecodeOptions
from gpuimages.task.device import TaskDevice

__all__ = ["Engine", "ENGINES", "create_engine"]

#: Engine names :func:`create_engine` accepts.
ENGINES = ("pillow", "dali")


def create_engine(options: DecodeOptions, device: TaskDevice, engine: str | None = None) -> Engine:
    """Create the decode engine for a task on ``device``.

    ``engine`` forces "pillow" or "dali"; by default DALI when ``device.uses("nvidia.dali")`` (the
    stage's device is "gpu", or "auto" with a GPU and DALI importable), else Pillow. The DALI engine
    decodes on ``device.gpu_id`` (DALI's CPU operators when it is None) with ``device.threads`` threads.
    A missing or too old DALI raises an ImportError naming the extra. DALI is imported here, never at
    package import.
    """
    name = engine or ("dali" if device.uses("nvidia.dali") else "pillow")
    if name == "pillow":
        from gpuimages.engines.pillow import PillowEngine

        return PillowEngine(options)
    if name == "dali":
        from gpuimages.engines.dali import DaliEngine

        return DaliEngine(options, device)
    raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {name!r}")

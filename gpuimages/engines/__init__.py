"""Decode engines: one interface (:mod:`.base`), a CPU engine (Pillow) and a GPU engine (DALI).

Engines are created on executors only, by :func:`create_engine`; importing this package imports
neither DALI nor cupy (each engine module is imported when it is first created).
"""

from __future__ import annotations

from gpuimages.engines.base import DecodedBatch, Engine
from gpuimages.options import DecodeOptions
from gpuimages.task.device import TaskDevice

__all__ = ["DecodedBatch", "Engine", "ENGINES", "create_engine"]

#: Engine names :func:`create_engine` accepts.
ENGINES = ("pillow", "dali")


def create_engine(options: DecodeOptions, device: TaskDevice | None = None, engine: str | None = None) -> Engine:
    """Create the engine for ``options.device`` on this executor.

    ``engine`` forces "pillow" or "dali". ``device`` is the task's (its ``gpu_id`` None: DALI's CPU
    operators). DALI is imported here, never at package import.
    """
    device = device or TaskDevice(options.device)
    name = engine or ("pillow" if options.device == "cpu" else "dali")
    if name == "pillow":
        from gpuimages.engines.pillow import PillowEngine

        return PillowEngine(options)
    if name == "dali":
        from gpuimages.engines.dali import DaliEngine

        return DaliEngine(options, gpu_id=device.gpu_id, num_threads=device.threads)
    raise ValueError(f"engine: expected one of {', '.join(ENGINES)}, got {name!r}")

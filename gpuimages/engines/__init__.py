"""Decode engines: one interface (:mod:`.base`), a CPU engine (Pillow) and a GPU engine (DALI).

Engines are created on executors only; importing this package imports neither DALI nor cupy.
"""

from gpuimages.engines.base import DecodedBatch, Engine, create_engine

__all__ = ["DecodedBatch", "Engine", "create_engine"]

"""Which optional packages this environment has, for skip guards that run at collection time."""

from __future__ import annotations

import importlib.util


def has_module(name: str) -> bool:
    """True when ``name`` can be imported, checked without importing it.

    ``importlib.util.find_spec("nvidia.dali")`` imports the parent package first and raises
    ModuleNotFoundError when there is no ``nvidia`` package at all (an install without the ``dali``
    extra); this answers False there instead, so a skip guard cannot stop collection.
    """
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False

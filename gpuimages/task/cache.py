"""One bounded cache per Python worker for everything a task builds once and reuses.

Engines, encoders, DALI pipelines, ONNX Runtime sessions and models are costly to build and many
hold device memory (a DALI mixed decoder preallocates per-thread device and pinned buffers; an ONNX
Runtime CUDA session keeps its arena). Spark reuses Python workers across tasks, so they are built
once per worker and key, in one least-recently-used cache behind a lock (as pyspark's
``ModelCache``): at most :data:`CAPACITY_ENV` (default :data:`DEFAULT_CAPACITY`) objects, the
least recently used one closed (``close()``) when a new one would exceed the bound. Keys name only
what changes the object (a pipeline's batch size and GPU, not the options it does not read).

At the end of each task :func:`release_unused` hands memory no live object uses back to the
device (DALI's ``ReleaseUnusedMemory``, cupy's pool), so idle workers sharing a GPU do not hold
their peaks.
"""

from __future__ import annotations

import logging
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TypeVar

from gpuimages.task.device import env_int

log = logging.getLogger(__name__)

T = TypeVar("T")

#: Environment variable: objects one Python worker keeps built.
CAPACITY_ENV = "GPUIMAGES_WORKER_CACHE_SIZE"
DEFAULT_CAPACITY = 16


def _close(value: Any) -> None:
    close = getattr(value, "close", None)
    if callable(close):
        try:
            close()
        except Exception as exc:  # noqa: BLE001 - closing must never fail a task
            log.warning("gpuimages: closing a cached %s failed: %s", type(value).__name__, exc)


class WorkerCache:
    """A bounded LRU map of built objects; ``close()`` is called on each object it drops."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: expected a positive integer, got {capacity!r}")
        self.capacity = capacity
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._lock = threading.RLock()  # re-entrant: a factory may build its parts through the cache
        self.built = 0
        self.closed = 0

    def get(self, key: Hashable, factory: Callable[[], T]) -> T:
        """The object for ``key``, built with ``factory()`` on first use."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            value = factory()
            self._items[key] = value
            self.built += 1
            while len(self._items) > self.capacity:
                old_key, old = self._items.popitem(last=False)
                log.info("gpuimages: worker cache full (%d); closing %s", self.capacity, type(old).__name__)
                self.closed += 1
                _close(old)
            return value

    def discard(self, key: Hashable) -> None:
        """Drop and close the object for ``key``, if there is one."""
        with self._lock:
            value = self._items.pop(key, None)
        if value is not None:
            self.closed += 1
            _close(value)

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop and close every object whose key matches ``predicate``; how many were dropped."""
        with self._lock:
            keys = [k for k in self._items if predicate(k)]
            values = [self._items.pop(k) for k in keys]
        for value in values:
            self.closed += 1
            _close(value)
        return len(values)

    def clear(self) -> None:
        """Drop and close everything."""
        self.discard_where(lambda _key: True)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._items

    def keys(self) -> list[Hashable]:
        """The keys, least recently used first."""
        with self._lock:
            return list(self._items)


_CACHE: WorkerCache | None = None
_CACHE_LOCK = threading.Lock()


def worker_cache() -> WorkerCache:
    """This Python worker's cache."""
    global _CACHE
    with _CACHE_LOCK:
        if _CACHE is None:
            _CACHE = WorkerCache(env_int(CAPACITY_ENV, DEFAULT_CAPACITY, 1))
        return _CACHE


def release_unused(gpu_id: int | None = None) -> None:
    """Give device and pinned memory that no live object uses back (DALI, cupy); end of every task.

    ``gpu_id``: the CUDA ordinal the task computed on. cupy keeps one pool per device and
    ``MemoryPool.free_all_blocks()`` frees the pool of the *current* device only, which is not the
    task's GPU once a step's ``with cupy.cuda.Device(gpu_id)`` has ended; so the task's device is made
    current for it. DALI's ``ReleaseUnusedMemory`` covers every device and its pinned pool (safe while
    pipelines run). Only libraries this worker already imported are asked; nothing is imported here.
    """
    backend = sys.modules.get("nvidia.dali.backend")
    if backend is not None and hasattr(backend, "ReleaseUnusedMemory"):
        try:
            backend.ReleaseUnusedMemory()
        except Exception as exc:  # noqa: BLE001 - a hint to the allocator, never fatal
            log.debug("DALI ReleaseUnusedMemory failed: %s", exc)
    cupy = sys.modules.get("cupy")
    if cupy is not None:
        try:
            if gpu_id is not None:
                with cupy.cuda.Device(int(gpu_id)):
                    cupy.get_default_memory_pool().free_all_blocks()
            cupy.get_default_pinned_memory_pool().free_all_blocks()
        except Exception as exc:  # noqa: BLE001
            log.debug("cupy pool release failed: %s", exc)

"""One bounded cache per Python worker for everything a task builds once and reuses.

Engines, encoders, DALI pipelines, ONNX Runtime sessions and models are costly to build and many
hold device memory (a DALI mixed decoder preallocates per-thread device and pinned buffers; an ONNX
Runtime CUDA session keeps its arena). Spark reuses Python workers across tasks, so they are built
once per worker and key, in one least-recently-used cache behind a lock (as pyspark's
``ModelCache``): at most :data:`CAPACITY_ENV` (default :data:`DEFAULT_CAPACITY`) objects, the
least recently used one closed (``close()``) when a new one would exceed the bound. Keys name only
what changes the object (a pipeline's batch size and GPU, not the options it does not read).

:func:`release_unused` hands memory no live object uses back to the device (DALI's
``ReleaseUnusedMemory``, which frees *all* of DALI's device pools and its pinned host pool, and cupy's
pools). Not after every task: the pipelines stay cached, and the next task would allocate all of it again.
Instead it runs when the cache drops objects (eviction, a discarded pipeline) and when the worker has been
idle for :data:`IDLE_RELEASE_ENV` seconds (default :data:`DEFAULT_IDLE_RELEASE_S`) after a task
(:func:`task_started`, :func:`task_finished`), so idle workers sharing a GPU do not hold their peaks.
"""

from __future__ import annotations

import logging
import os
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
#: Environment variable: seconds a worker waits without a task before giving unused memory back (0: at the
#: end of every task).
IDLE_RELEASE_ENV = "GPUIMAGES_IDLE_RELEASE_SECONDS"
DEFAULT_IDLE_RELEASE_S = 30


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
            evicted = 0
            while len(self._items) > self.capacity:
                old_key, old = self._items.popitem(last=False)
                log.info("gpuimages: worker cache full (%d); closing %s", self.capacity, type(old).__name__)
                self.closed += 1
                _close(old)
                evicted += 1
        if evicted:
            self.released()
        return value

    def discard(self, key: Hashable) -> None:
        """Drop and close the object for ``key``, if there is one."""
        with self._lock:
            value = self._items.pop(key, None)
        if value is not None:
            self.closed += 1
            _close(value)
            self.released()

    def discard_where(self, predicate: Callable[[Hashable], bool]) -> int:
        """Drop and close every object whose key matches ``predicate``; how many were dropped."""
        with self._lock:
            keys = [k for k in self._items if predicate(k)]
            values = [self._items.pop(k) for k in keys]
        for value in values:
            self.closed += 1
            _close(value)
        if values:
            self.released()
        return len(values)

    def released(self) -> None:
        """After objects were dropped: give the memory they held back (:func:`release_unused`, on the GPU this
        worker's last task computed on, whose cupy pool only frees inside that device)."""
        release_unused(_idle.last_gpu)

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
    """Give device and pinned memory that no live object uses back (DALI, cupy): on eviction and when idle.

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


class _IdleRelease:
    """Runs :func:`release_unused` once the worker has had no task for a while (a daemon timer per task end)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.generation = 0  # bumped by every task start and end: a timer of an older generation does nothing
        self.timer: threading.Timer | None = None
        self.releases = 0
        self.last_gpu: int | None = None  # the CUDA ordinal of the worker's last task (None: none or CPU)

    def started(self) -> None:
        with self.lock:
            self.generation += 1
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None

    def finished(self, gpu_id: int | None, delay: float) -> None:
        with self.lock:
            self.generation += 1
            self.last_gpu = gpu_id
            if self.timer is not None:
                self.timer.cancel()
                self.timer = None
            if delay > 0:
                self.timer = threading.Timer(delay, self._fire, (self.generation, gpu_id))
                self.timer.daemon = True
                self.timer.start()
                return
        self._release(gpu_id)

    def _fire(self, generation: int, gpu_id: int | None) -> None:
        with self.lock:
            if generation != self.generation:  # a task started (or ended) since: not idle
                return
            self.timer = None
        self._release(gpu_id)

    def _release(self, gpu_id: int | None) -> None:
        release_unused(gpu_id)
        with self.lock:
            self.releases += 1


_idle = _IdleRelease()


def idle_release_seconds() -> float:
    """:data:`IDLE_RELEASE_ENV`, else :data:`DEFAULT_IDLE_RELEASE_S` (0: release at the end of every task)."""
    value = os.environ.get(IDLE_RELEASE_ENV)
    if value:
        try:
            return max(0.0, float(value))
        except ValueError:
            log.warning("%s=%r is not a number; using %s", IDLE_RELEASE_ENV, value, DEFAULT_IDLE_RELEASE_S)
    return float(DEFAULT_IDLE_RELEASE_S)


def task_started() -> None:
    """A task begins in this worker: the worker is not idle (a pending idle release is cancelled)."""
    _idle.started()


def task_finished(gpu_id: int | None) -> None:
    """A task ended: give unused memory back once no other task has started for :func:`idle_release_seconds`."""
    _idle.finished(gpu_id, idle_release_seconds())

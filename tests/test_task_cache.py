"""The worker cache: bounded, least recently used first, objects closed when dropped."""

from __future__ import annotations

import contextlib
import sys
import threading
import time

import pytest

from gpuimages.task.cache import WorkerCache


class Thing:
    def __init__(self, name):
        self.name = name
        self.closed = False

    def close(self):
        self.closed = True


def test_builds_once_per_key():
    cache = WorkerCache(4)
    calls = []
    a = cache.get("a", lambda: calls.append("a") or Thing("a"))
    b = cache.get("a", lambda: calls.append("again") or Thing("a2"))
    assert a is b and calls == ["a"] and cache.built == 1


def test_evicts_the_least_recently_used_and_closes_it():
    cache = WorkerCache(2)
    a = cache.get("a", lambda: Thing("a"))
    b = cache.get("b", lambda: Thing("b"))
    cache.get("a", lambda: Thing("unused"))  # a is now the most recent
    c = cache.get("c", lambda: Thing("c"))
    assert b.closed and not a.closed and not c.closed
    assert cache.keys() == ["a", "c"] and len(cache) == 2 and cache.closed == 1


def test_discard_and_clear_close_what_they_drop():
    cache = WorkerCache(3)
    things = [cache.get(k, lambda k=k: Thing(k)) for k in ("x1", "x2", "y")]
    assert cache.discard_where(lambda key: key.startswith("x")) == 2
    assert [t.closed for t in things] == [True, True, False]
    cache.clear()
    assert things[2].closed and len(cache) == 0


def test_a_failing_close_does_not_fail_the_caller(caplog):
    class Bad:
        def close(self):
            raise RuntimeError("boom")

    cache = WorkerCache(1)
    cache.get("bad", Bad)
    cache.get("next", lambda: Thing("n"))
    assert "closing a cached Bad failed: boom" in caplog.text


def test_factory_may_build_parts_through_the_same_cache():
    cache = WorkerCache(4)
    outer = cache.get("outer", lambda: (cache.get("inner", lambda: Thing("inner")), "outer"))
    assert outer[0].name == "inner" and "inner" in cache


def _race(cache: WorkerCache, threads: int = 8) -> list[int]:
    """``threads`` threads released together on one key, the factory slow enough to overlap them."""
    built: list[int] = []
    barrier = threading.Barrier(threads)

    def factory():
        built.append(1)
        time.sleep(0.05)
        return Thing("t")

    def get():
        barrier.wait()
        cache.get("k", factory)

    workers = [threading.Thread(target=get) for _ in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    return built


def test_concurrent_gets_build_one_object():
    assert len(_race(WorkerCache(2))) == 1


def test_the_race_builds_twice_without_the_lock():
    # the scenario above is one the lock decides: without it, the threads overlap and each builds
    cache = WorkerCache(2)
    cache._lock = contextlib.nullcontext()
    assert len(_race(cache)) > 1


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="capacity: expected a positive integer, got 0"):
        WorkerCache(0)


class _FakeCupy:
    """cupy's pools as far as release_unused uses them: one pool per device, freed on the current device."""

    def __init__(self):
        self.current = 0
        self.freed: list[object] = []
        fake = self

        class Device:
            def __init__(self, ordinal):
                self.ordinal, self.previous = ordinal, None

            def __enter__(self):
                self.previous, fake.current = fake.current, self.ordinal
                return self

            def __exit__(self, *exc):
                fake.current = self.previous

        class Pool:
            def free_all_blocks(self):
                fake.freed.append(fake.current)

        class PinnedPool:
            def free_all_blocks(self):
                fake.freed.append("pinned")

        self.cuda = type("cuda", (), {"Device": Device})
        self.get_default_memory_pool = Pool
        self.get_default_pinned_memory_pool = PinnedPool


def test_release_unused_frees_cupy_blocks_on_the_task_gpu_not_the_current_device(monkeypatch):
    import sys

    from gpuimages.task.cache import release_unused

    cupy = _FakeCupy()
    calls = []
    dali = type("backend", (), {"ReleaseUnusedMemory": staticmethod(lambda: calls.append("dali"))})
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    monkeypatch.setitem(sys.modules, "nvidia.dali.backend", dali)
    release_unused(2)
    assert cupy.freed == [2, "pinned"] and cupy.current == 0 and calls == ["dali"]
    cupy.freed.clear()
    release_unused(None)  # a task without a GPU allocated no device blocks
    assert cupy.freed == ["pinned"]


@pytest.fixture
def dali_backend(monkeypatch):
    """A stand-in for ``nvidia.dali.backend`` that counts ``ReleaseUnusedMemory`` calls."""
    import types

    backend = types.SimpleNamespace(calls=0)

    def release():
        backend.calls += 1

    backend.ReleaseUnusedMemory = release
    monkeypatch.setitem(sys.modules, "nvidia.dali.backend", backend)
    monkeypatch.delitem(sys.modules, "cupy", raising=False)
    return backend


def test_eviction_gives_the_memory_back_but_a_cache_hit_does_not(dali_backend):
    cache = WorkerCache(capacity=1)
    cache.get("a", lambda: Thing("a"))
    cache.get("a", lambda: Thing("a"))
    assert dali_backend.calls == 0
    cache.get("b", lambda: Thing("b"))  # "a" evicted: its pools can go back
    assert dali_backend.calls == 1
    cache.discard("b")
    assert dali_backend.calls == 2
    cache.discard("b")  # nothing dropped: nothing to release
    cache.clear()
    assert dali_backend.calls == 2


def test_memory_goes_back_when_the_worker_idles_not_between_tasks(dali_backend, monkeypatch):
    """DALI's ReleaseUnusedMemory frees every pool while the pipelines stay cached: after every task the next
    one would allocate it all again. It runs once the worker has had no task for the idle delay."""
    import time

    from gpuimages.task import cache as module

    module._idle.started()  # an idle release pending from earlier in-process tasks must not count here
    monkeypatch.setattr(module, "_idle", module._IdleRelease())
    monkeypatch.setenv(module.IDLE_RELEASE_ENV, "0.3")
    module.task_started()
    module.task_finished(None)
    module.task_started()  # the next task comes before the delay: nothing is released
    time.sleep(0.5)
    assert dali_backend.calls == 0
    module.task_finished(None)
    deadline = time.monotonic() + 5
    while dali_backend.calls == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert dali_backend.calls == 1 and module._idle.releases == 1
    monkeypatch.setenv(module.IDLE_RELEASE_ENV, "0")  # 0: at the end of every task, as before
    module.task_started()
    module.task_finished(None)
    assert dali_backend.calls == 2


def test_a_task_runs_without_releasing_memory_at_its_end(dali_backend, monkeypatch):
    import pyarrow as pa

    from gpuimages.task import cache as module
    from gpuimages.task.runner import run_partition
    from gpuimages.task.spec import StageSpec
    from gpuimages.task.steps.base import Step

    class Count(Step):
        name = "count"

        def run(self, work):
            work.columns["n"] = pa.array([len(work)] * len(work), pa.int64())

    module._idle.started()  # an idle release pending from earlier in-process tasks must not count here
    monkeypatch.setattr(module, "_idle", module._IdleRelease())
    monkeypatch.setenv(module.IDLE_RELEASE_ENV, "60")
    spec = StageSpec("count", "cpu", "x", "values", (Count(),), ("n",), error_col=None)
    out = list(run_partition(iter([pa.RecordBatch.from_pydict({"x": [1, 2, 3]})]), spec))
    assert out[0].column("n").to_pylist() == [3, 3, 3]
    assert dali_backend.calls == 0 and module._idle.timer is not None  # released later, if the worker idles
    module.task_started()
    assert module._idle.timer is None

"""The partition loop of the task runtime: chunks, pass-through columns, reasons, expansion, held rows."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pytest

from gpuimages.task.runner import cut, run_partition
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps.base import Step, Work


@dataclass
class Lengths(Step):
    """Each value's length in ``n``; empty values get a reason."""

    name = "lengths"

    def run(self, work: Work) -> None:
        work.note([None if b else "empty" for b in work.blobs])
        lengths = [len(b or b"") for b in work.blobs]
        work.columns["n"] = pa.array(lengths, pa.int64())
        work.row_bytes = np.array(lengths, dtype=np.int64)


@dataclass
class Halves(Step):
    """Splits every value into its two halves: one part per input row, two rows each."""

    name = "halves"

    def run(self, work: Work):
        for i in range(len(work)):
            blob = work.blobs[i] or b""
            rows = work.chunk.take(pa.array([i, i]))
            part = Work(rows, pa.array([f"{work.origins[i]}#a", f"{work.origins[i]}#b"]))
            part.blobs = [blob[: len(blob) // 2], blob[len(blob) // 2 :]]
            yield part


@dataclass
class Count(Step):
    """Holds every row back and reports how many it saw at the end."""

    name = "count"
    seen: int = 0

    def run(self, work: Work) -> None:
        self.seen += len(work)
        work.emit = False

    def finish(self):
        yield pa.RecordBatch.from_pydict({"rows": [self.seen]})


def _batch(values, ids=None) -> pa.RecordBatch:
    ids = list(range(len(values))) if ids is None else ids
    return pa.RecordBatch.from_arrays(
        [pa.array(ids, pa.int64()), pa.array(values, pa.binary()), pa.array([f"o{i}" for i in ids])],
        names=["id", "content", "path"],
    )


def _run(spec: StageSpec, *batches) -> pa.Table:
    return pa.Table.from_batches(list(run_partition(iter(batches), spec)))


def _spec(steps, columns=("id", "n", "error"), **kw) -> StageSpec:
    return StageSpec("test", "cpu", "content", "bytes", tuple(steps), columns, origin_col="path", **kw)


def test_one_row_out_per_row_in_with_pass_through_columns_and_reasons():
    out = _run(_spec([Lengths()]), _batch([b"abc", b"", None, b"z"]))
    assert out.column("id").to_pylist() == [0, 1, 2, 3]
    assert out.column("n").to_pylist() == [3, 0, 0, 1]
    assert out.column("error").to_pylist() == [None, "empty", "empty", None]


def test_drop_invalid_and_earlier_reasons():
    batch = _batch([b"abc", b"", b"zz"]).append_column("why", pa.array(["earlier", None, None]))
    out = _run(_spec([Lengths()], prior_error_col="why"), batch)
    assert out.column("error").to_pylist() == ["earlier", "empty", None]
    kept = _run(_spec([Lengths()], drop_invalid=True, prior_error_col="why"), batch)
    assert kept.column("id").to_pylist() == [2]


def test_output_batches_bounded_by_rows_and_bytes():
    values = [b"x" * 10] * 7
    batches = list(run_partition(iter([_batch(values)]), _spec([Lengths()], rows_per_batch=3)))
    assert [b.num_rows for b in batches] == [3, 3, 1]
    batches = list(run_partition(iter([_batch(values)]), _spec([Lengths()], rows_per_batch=16, max_batch_bytes=25)))
    assert [b.num_rows for b in batches] == [2, 2, 2, 1]


def test_cut_keeps_a_row_over_the_budget_alone():
    batch = pa.RecordBatch.from_pydict({"a": [1, 2, 3, 4]})
    sizes = np.array([5, 100, 5, 5])
    assert [b.num_rows for b in cut(batch, sizes, 10, 20)] == [1, 1, 2]


def test_a_step_that_splits_rows_feeds_its_parts_to_the_next_steps():
    spec = _spec([Halves(), Lengths()], columns=("id", "path", "n", "error"))
    out = _run(spec, _batch([b"abcd", b"xyz"]))
    assert out.column("id").to_pylist() == [0, 0, 1, 1]
    assert out.column("n").to_pylist() == [2, 2, 1, 2]


def test_a_step_may_hold_rows_back_and_report_at_the_end():
    out = _run(_spec([Lengths(), Count()], rows_per_batch=2), _batch([b"a"] * 5), _batch([b"b"] * 2))
    assert out.to_pylist() == [{"rows": 7}]


def test_spec_is_checked():
    with pytest.raises(ValueError, match="input_kind: expected one of bytes, paths, struct, values, got 'text'"):
        StageSpec("x", "cpu", "c", "text", (Lengths(),), ("n",))
    with pytest.raises(ValueError, match="steps: expected at least one step"):
        StageSpec("x", "cpu", "c", "bytes", (), ("n",))


def test_a_gpu_library_that_cannot_start_falls_back_to_its_cpu_path(caplog):
    from gpuimages.task.cache import worker_cache
    from gpuimages.task.device import TaskDevice
    from gpuimages.task.steps.base import gpu_or_cpu

    calls = []

    def broken():
        calls.append("gpu")
        raise RuntimeError("CUDA error: out of memory")

    def missing():
        raise ImportError("no module named nvidia.dali")

    device = TaskDevice("auto", 0)
    key = ("test-gpu-or-cpu", 1)
    assert gpu_or_cpu(True, key, broken, lambda: "cpu", "the DALI engine", device) == "cpu"
    assert "the DALI engine could not start on gpu 0, 1 thread (CUDA error: out of memory)" in caplog.text
    assert key not in worker_cache()  # the fallback is not cached under the GPU key...
    assert gpu_or_cpu(True, key, lambda: "gpu", lambda: "cpu", "the DALI engine", device) == "gpu"  # ...so it retries
    assert worker_cache().get(key, broken) == "gpu" and calls == ["gpu"]
    worker_cache().discard(key)
    with pytest.raises(RuntimeError, match=r"device='gpu': the DALI engine could not start on gpu 0, 1 thread: "
                                           r"RuntimeError: CUDA error: out of memory"):
        gpu_or_cpu(True, key, broken, lambda: "cpu", "the DALI engine", TaskDevice("gpu", 0))
    with pytest.raises(RuntimeError):
        gpu_or_cpu(False, key, broken, lambda: "cpu", "Pillow", device)  # a CPU failure is not hidden
    with pytest.raises(ImportError):
        gpu_or_cpu(True, key, missing, lambda: "cpu", "the DALI engine", device)
    assert gpu_or_cpu(True, key, missing, lambda: "cpu", "nvImageCodec", device, missing_is_fatal=False) == "cpu"
    assert key not in worker_cache()

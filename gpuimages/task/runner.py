"""The one partition loop: what ``mapInArrow`` runs for every stage.

For each incoming Arrow batch the runner cuts bounded chunks (at most the first step's rows, and
at most ``max_batch_bytes`` of what the step will hold, predicted per row), passes each chunk
through the stage's steps, assembles the output columns (pass-through columns, the steps' columns,
the reason column), drops invalid rows where asked, and cuts what goes back to the JVM into Arrow
batches of at most ``rows_per_batch`` rows and ``max_batch_bytes`` bytes. At the end of the task the
steps are closed, unused device memory is released and, where ``$GPUIMAGES_TASK_LOG`` names a
folder, one JSON line records what ran where.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import pyarrow as pa

from gpuimages.task.cache import task_finished, task_started
from gpuimages.task.device import TaskDevice, resolve_task_device, task_gpu_addresses
from gpuimages.task.images import ImageBatch
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps.base import Step, Work
from gpuimages.uris import to_origin

log = logging.getLogger(__name__)

#: Set on executors (``spark.executorEnv.GPUIMAGES_TASK_LOG``) to a folder: each task appends one JSON
#: line (stage, partition, engine, device, Spark's GPU addresses, rows) to a file there.
TASK_LOG_ENV = "GPUIMAGES_TASK_LOG"


def input_chunks(batch: pa.RecordBatch, spec: StageSpec, rows: int) -> Iterator[pa.RecordBatch]:
    """Zero-copy slices of ``batch`` with at most ``rows`` rows and ``spec.max_batch_bytes`` of what the
    first step predicts it will hold for them (a row over the budget is a slice of its own)."""
    first = spec.steps[0]
    column = batch.column(spec.input_col)
    budget = spec.max_batch_bytes
    start, total = 0, 0
    for i in range(batch.num_rows):
        size = first.predicted_bytes(column[i])
        if i > start and (i - start >= rows or total + size > budget):
            yield batch.slice(start, i - start)
            start, total = i, 0
        total += size
    if start < batch.num_rows:
        yield batch.slice(start, batch.num_rows - start)


def _origins(chunk: pa.RecordBatch, spec: StageSpec) -> pa.Array:
    if spec.input_kind == "struct":
        origin = chunk.column(spec.input_col).field("origin")
        return origin.cast(pa.string()) if pa.types.is_null(origin.type) else origin
    if spec.origin_col is None:
        return pa.nulls(chunk.num_rows, pa.string())
    origins = chunk.column(spec.origin_col)
    if spec.origin_is_path:
        origins = pa.array([None if o is None else to_origin(o) for o in origins.to_pylist()], type=pa.string())
    return origins


def start_work(chunk: pa.RecordBatch, spec: StageSpec) -> Work:
    """The work of one chunk: encoded bytes (none yet for paths) or a view of the image structs, the origins,
    earlier reasons."""
    work = Work(chunk, _origins(chunk, spec))
    column = chunk.column(spec.input_col)
    if spec.input_kind == "paths":
        work.blobs = [None] * len(work)  # the first step reads the files the origins name
    elif spec.input_kind != "struct":
        work.blobs = column.to_pylist()
    else:
        work.images = ImageBatch.from_struct(column)
        work.pixel_type = column.type.field("data").type
        work.note(work.images.errors)
    if spec.prior_error_col is not None:
        earlier = chunk.column(spec.prior_error_col).to_pylist()
        work.reasons = [e if e is not None else r for e, r in zip(earlier, work.reasons, strict=True)]
    return work


def output_batches(work: Work, spec: StageSpec) -> Iterator[pa.RecordBatch]:
    """The output columns of a processed chunk, cut by rows and bytes, invalid rows dropped where asked."""
    produced = dict(work.columns)
    if spec.error_col is not None:
        produced[spec.error_col] = pa.array(work.reasons, type=pa.string())
    arrays = [produced[name] if name in produced else work.chunk.column(name) for name in spec.columns]
    out = pa.RecordBatch.from_arrays(arrays, names=list(spec.columns))
    sizes = work.row_bytes if work.row_bytes is not None else np.zeros(out.num_rows, dtype=np.int64)
    if spec.drop_invalid:
        keep = np.array([r is None for r in work.reasons], dtype=bool)
        if not keep.all():
            out = out.filter(pa.array(keep))
            sizes = sizes[keep]
    yield from cut(out, sizes, spec.rows_per_batch, spec.max_batch_bytes)


def cut(batch: pa.RecordBatch, sizes: np.ndarray, rows: int, max_bytes: int) -> Iterator[pa.RecordBatch]:
    """Slices of ``batch`` with at most ``rows`` rows and ``max_bytes`` of ``sizes`` (a larger row goes alone)."""
    from gpuimages.task.images import ARROW_BINARY_LIMIT

    limit = min(max_bytes, ARROW_BINARY_LIMIT)
    n = batch.num_rows
    if n == 0:
        yield batch
        return
    start = 0
    while start < n:
        end, total = start + 1, int(sizes[start])
        while end < n and end - start < rows and total + int(sizes[end]) <= limit:
            total += int(sizes[end])
            end += 1
        yield batch.slice(start, end - start) if (start, end) != (0, n) else batch
        start = end


def process(work: Work, steps: Sequence[Step], spec: StageSpec) -> Iterator[pa.RecordBatch]:
    """Run ``steps`` over ``work`` and yield its output batches; a step that splits the work into parts
    (an archive into its members) has each part run through the steps after it."""
    for k, step in enumerate(steps):
        parts = step.run(work)
        if parts is not None:
            for part in parts:
                yield from process(part, steps[k + 1 :], spec)
            return
    if work.emit:
        yield from output_batches(work, spec)


def _open(steps: Sequence[Step], device: TaskDevice) -> None:
    for step in steps:
        step.open(device)


def run_partition(
    batches: Iterator[pa.RecordBatch], spec: StageSpec, gpu_share: float | None = None
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body of every stage: bounded chunks through ``spec.steps``. A chunk's rows come back one
    output row per row, unless a step expands them (an archive's members), holds them back for its own
    ``finish`` (one report row per shard) or ``drop_invalid`` drops them. ``gpu_share``: the share of a GPU
    each task of the stage holds (its resource profile's task GPU amount), which sizes the task's memory
    bounds."""
    task_started()
    device = resolve_task_device(spec.device, gpu_share=gpu_share)
    steps = spec.steps
    rows = 0
    engines: list[str] = []
    main_engine: str | None = None
    try:
        _open(steps, device)
        engines = [s.engine() or s.name for s in steps]
        main_engine = next((e for e in (s.engine() for s in steps) if e is not None), engines[0])
        chunk_rows = max(1, steps[0].chunk_rows(spec.rows_per_batch))
        log.info("gpuimages: %s task on %s (%s)", spec.name, device.describe(), ", ".join(engines))
        for batch in batches:
            rows += batch.num_rows
            for chunk in input_chunks(batch, spec, chunk_rows):
                yield from process(start_work(chunk, spec), steps, spec)
        for step in steps:
            yield from step.finish()
    finally:
        for step in steps:
            step.close()
        task_finished(device.gpu_id)  # memory goes back when the worker idles, not between two tasks
    record_task(spec, engines, device, rows, main_engine)


def record_task(spec: StageSpec, engines: Sequence[str], device: TaskDevice, rows: int,
                engine: str | None = None) -> None:
    """Append what this task ran and where to the task log, when one is configured: ``engine`` is the first
    step's with an engine (the decoder, not the step that reads the files), ``engines`` every step's."""
    folder = os.environ.get(TASK_LOG_ENV)
    if not folder:
        return
    from pyspark import TaskContext

    ctx = TaskContext.get()
    record = {
        "stage": spec.name,
        "spark_stage": ctx.stageId() if ctx else None,
        "partition": ctx.partitionId() if ctx else None,
        "engine": engine or (engines[0] if engines else spec.steps[0].name),
        "engines": list(engines),
        "gpu_id": device.gpu_id,
        "threads": device.threads,
        "gpu_addresses": task_gpu_addresses(ctx),
        "rows": rows,
        "pid": os.getpid(),
    }
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"tasks-{os.getpid()}.jsonl"), "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")

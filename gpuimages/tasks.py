"""What runs inside each Spark task: pick the engine once per process, decode bounded batches,
and return Arrow batches in Spark's image layout. Nothing here runs on the driver.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gpuimages.engines import DecodedBatch, Engine, create_engine
from gpuimages.engines.formats import sniff
from gpuimages.listing import to_origin
from gpuimages.options import DecodeOptions
from gpuimages.schema import image_array
from gpuimages.task.device import TaskDevice, task_threads

log = logging.getLogger(__name__)

#: Set on executors (``spark.executorEnv.GPUIMAGES_TASK_LOG``) to a folder: each decode task appends
#: one JSON line (stage, partition, engine, GPU id, Spark's GPU addresses, rows) to a file there.
TASK_LOG_ENV = "GPUIMAGES_TASK_LOG"

#: Arrow's 32-bit binary offsets: keep every returned batch's pixel bytes under this.
MAX_BATCH_BYTES = (1 << 31) - (1 << 24)
#: Bytes of each file read to predict its decoded size (headers; the whole file if its size is not found).
HEADER_BYTES = 1 << 16
#: Channels assumed when a header does not say (formats other than JPEG/PNG): the largest case.
UNKNOWN_CHANNELS = 4

_ENGINES: dict[tuple, Engine] = {}


@dataclass(frozen=True)
class DecodeLayout:
    """Which columns go in and out of the decode stage."""

    input_col: str
    origin_col: str | None
    output_col: str
    error_col: str
    passthrough: tuple[str, ...]
    drop_invalid: bool = False
    origin_is_hadoop_path: bool = False  # read_images: turn binaryFile paths into image-source origins


def _gpu_for_task(options: DecodeOptions) -> tuple[str, int | None]:
    """Engine name and GPU id for this task, following ``options.device``."""
    from gpuimages import gpu

    use, gpu_id = gpu.library_gpu(options.device, "nvidia.dali", "DALI")
    return ("dali", gpu_id) if use else ("pillow", None)


def engine_for_task(options: DecodeOptions) -> Engine:
    """The engine for this task, created once per Python worker and configuration."""
    name, gpu_id = _gpu_for_task(options)
    key = (name, gpu_id, options)
    engine = _ENGINES.get(key)
    if engine is None:
        try:
            engine = create_engine(options, TaskDevice(options.device, gpu_id, task_threads(None)), engine=name)
        except ImportError:
            raise
        except Exception as exc:  # noqa: BLE001 - a GPU that cannot start must not fail the job
            if name != "dali":
                raise
            log.warning("gpuimages: the DALI engine could not start on gpu=%s (%s); decoding with Pillow", gpu_id, exc)
            engine = create_engine(options, TaskDevice("cpu"), engine="pillow")
        log.info("gpuimages: decoding with %s (gpu=%s)", engine.name, gpu_id)
        _ENGINES[key] = engine
    return engine


def _byte_slices(batch: DecodedBatch, limit: int = MAX_BATCH_BYTES) -> Iterator[tuple[int, int]]:
    """Row ranges whose pixel bytes each stay under ``limit`` (a larger image goes alone)."""
    limit = min(limit, MAX_BATCH_BYTES)
    start, n = 0, len(batch)
    while start < n:
        end = start + 1
        while end < n and batch.offsets[end + 1] - batch.offsets[start] <= limit:
            end += 1
        yield start, end
        start = end


def _header_size(header: bytes) -> tuple[int, int, int] | None:
    """``(height, width, channels)`` from the first bytes of a file, or None if they do not say."""
    info = sniff(header)
    if info.width > 0 and info.height > 0:
        return info.height, info.width, info.spark_channels() or UNKNOWN_CHANNELS
    if info.format != "other":
        return None
    import io

    from PIL import Image

    try:  # other formats: Pillow reads the size from the header without decoding
        with Image.open(io.BytesIO(header)) as im:
            return im.height, im.width, UNKNOWN_CHANNELS
    except Exception:  # noqa: BLE001 - unknown or broken: predicted as nothing, decoded (or refused) alone
        return None


def predicted_bytes(blob: pa.Scalar, options: DecodeOptions) -> int:
    """Decoded pixel bytes of one encoded image after resize/crop, predicted from its header.

    Reads the header through a zero-copy view of the Arrow value; only a file whose size is not
    in its first :data:`HEADER_BYTES` is copied whole. Unknown or broken files predict 0 (they
    decode to an invalid row, or are small formats Pillow cannot size from a header).
    """
    if not blob.is_valid:
        return 0
    view = memoryview(blob.as_buffer())
    size = _header_size(bytes(view[:HEADER_BYTES]))
    if size is None and len(view) > HEADER_BYTES:
        size = _header_size(bytes(view))
    if size is None:
        return 0
    height, width, channels = size
    out_h, out_w = options.output_size(height, width)
    return out_h * out_w * channels


def chunk_origins(chunk: pa.RecordBatch, layout: DecodeLayout) -> list[str | None]:
    """The ``origin`` of each row of ``chunk`` (image-source URIs for ``binaryFile`` paths)."""
    if layout.origin_col is None:
        return [None] * chunk.num_rows
    origins = chunk.column(layout.origin_col).to_pylist()
    if layout.origin_is_hadoop_path:
        origins = [None if o is None else to_origin(o) for o in origins]
    return origins


def decode_record_batch(chunk: pa.RecordBatch, engine: Engine, layout: DecodeLayout) -> Iterator[pa.RecordBatch]:
    """Decode one bounded Arrow batch and yield it with the image struct and reason columns."""
    blobs = chunk.column(layout.input_col).to_pylist()
    origins = chunk_origins(chunk, layout)
    decoded = engine.decode(blobs)
    del blobs  # the encoded copies are not needed once decoded
    names = [*layout.passthrough, layout.output_col, layout.error_col]
    for start, end in _byte_slices(decoded, engine.options.max_batch_bytes):
        part = decoded.slice(start, end) if (start, end) != (0, len(decoded)) else decoded
        columns = [chunk.column(name).slice(start, end - start) for name in layout.passthrough]
        columns.append(image_array(origins[start:end], part))
        columns.append(pa.array(part.errors, type=pa.string()))
        out = pa.RecordBatch.from_arrays(columns, names=names)
        if layout.drop_invalid:
            out = out.filter(pa.array(np.asarray(part.channels) > 0))
        yield out


def record_task(engine: Engine, rows: int) -> None:
    """Append this task's engine and GPU assignment to the task log, when one is configured."""
    folder = os.environ.get(TASK_LOG_ENV)
    if not folder:
        return
    from pyspark import TaskContext

    from gpuimages import gpu

    ctx = TaskContext.get()
    record = {
        "stage": ctx.stageId() if ctx else None,
        "partition": ctx.partitionId() if ctx else None,
        "engine": engine.name,
        "gpu_addresses": gpu.task_gpu_addresses(ctx),
        "rows": rows,
        "pid": os.getpid(),
    }
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, f"tasks-{os.getpid()}.jsonl"), "a", encoding="utf-8") as out:
        out.write(json.dumps(record) + "\n")


def decode_slices(batch: pa.RecordBatch, input_col: str, options: DecodeOptions) -> Iterator[pa.RecordBatch]:
    """Split an incoming Arrow batch into the slices one engine call decodes.

    A slice holds at most ``options.batch_size`` rows and at most ``options.max_batch_bytes`` of
    decoded pixels, predicted from each file's header after resize/crop (:func:`predicted_bytes`);
    an image larger than the budget is a slice of its own. Every consumer of decoded pixels in a
    task (image structs, features, re-encoded bytes) decodes through these slices, so they share
    one bound on what a task holds at once. Slices are zero-copy views of ``batch``.
    """
    n = batch.num_rows
    count, budget = options.batch_size, options.max_batch_bytes
    column = batch.column(input_col)
    start, total = 0, 0
    for i in range(n):
        size = predicted_bytes(column[i], options)
        if i > start and (i - start >= count or total + size > budget):
            yield batch.slice(start, i - start)
            start, total = i, 0
        total += size
    if start < n:
        yield batch.slice(start, n - start)


def decode_partition(
    batches: Iterator[pa.RecordBatch], options: DecodeOptions, layout: DecodeLayout
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: split incoming batches with :func:`decode_slices` and decode them."""
    engine = engine_for_task(options)
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for chunk in decode_slices(batch, layout.input_col, options):
            yield from decode_record_batch(chunk, engine, layout)
    record_task(engine, rows)

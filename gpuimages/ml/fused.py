"""Encoded bytes to feature vectors in one task: decode, resize, normalise and run the model in place.

What runs inside each Spark task of :class:`~gpuimages.ml.ImageFeaturizer` on a binary column. The
engine is the one ``decode_images`` uses for the same options (:func:`gpuimages.tasks.engine_for_task`,
resizing while decoding: JPEG draft mode on Pillow, DALI resize on a GPU), so routing and per-file
fallbacks are the same; only the vectors and a reason column go back to the JVM, never pixels.

* Pillow engine: bounded slices (:func:`gpuimages.tasks.decode_slices`, ``batchSize`` rows) are
  decoded to ``imageSize``, normalised on the host and run through the model.
* DALI engine: :class:`gpuimages.engines.dali_tensors.TensorDecoder` decodes ``deviceBatchSize``
  images at a time into the model's input on the device (DALI's CPU operators without a GPU) and the
  model reads it there; the next device batch decodes while the model runs.

Nothing here runs on the driver.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from gpuimages.engines import Engine
from gpuimages.ml.arrow import list_column
from gpuimages.models import Model, ModelSpec, create_model
from gpuimages.models.base import to_rgb
from gpuimages.options import DecodeOptions
from gpuimages.task.device import TaskDevice
from gpuimages.tasks import decode_slices, engine_for_task, record_task

log = logging.getLogger(__name__)

#: Device batches per slice on the DALI path: decoding of the next one overlaps the model.
DEVICE_BATCHES_PER_SLICE = 4

_DECODERS: dict[tuple, Any] = {}
_LOCK = threading.Lock()


@dataclass(frozen=True)
class FeatureLayout:
    """Columns in and out of the featurising stage."""

    input_col: str
    output_col: str
    error_col: str
    passthrough: tuple[str, ...]


@dataclass(frozen=True)
class FeatureTask:
    """Everything a task needs: decode options (``resize=(h, w)``), the model and the batch sizes.

    ``options.batch_size`` is the DALI device batch; ``batch_size`` the rows per model call on the
    host and per Arrow batch returned.
    """

    options: DecodeOptions
    model: ModelSpec
    layout: FeatureLayout
    batch_size: int


def _tensor_decoder(engine: Engine, task: FeatureTask, model: Model) -> Any:
    """The worker's :class:`TensorDecoder` for a DALI engine (built once per configuration)."""
    from gpuimages.engines.dali_tensors import TensorDecoder

    device = engine.device  # type: ignore[attr-defined]
    key = (task.options, model.input_format, device)
    with _LOCK:
        decoder = _DECODERS.get(key)
        if decoder is None:
            decoder = TensorDecoder(task.options, model.input_format, device)
            _DECODERS[key] = decoder
    return decoder


def _run_host(model: Model, batch: np.ndarray, size: int) -> np.ndarray:
    """Run ``model`` on a host batch in slices of ``size`` images."""
    parts = [model.run(batch[i : i + size]) for i in range(0, batch.shape[0], size)]
    return np.concatenate(parts, axis=0)


def features_from_decoded(decoded: Any, model: Model, size: int) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Features of an engine's :class:`~gpuimages.engines.DecodedBatch` (resized to the model's size)."""
    n = len(decoded)
    vectors: list[np.ndarray | None] = [None] * n
    errors = list(decoded.errors)
    rows = [i for i in range(n) if decoded.channels[i] > 0]
    if rows:
        rgb = np.stack([to_rgb(decoded.pixels(i)) for i in rows])
        values = _run_host(model, model.input_format.prepare(rgb), size)
        for j, i in enumerate(rows):
            vectors[i] = values[j]
    return vectors, errors


def features_from_tensors(
    decoder: Any, blobs: list[bytes | None], model: Model, size: int
) -> tuple[list[np.ndarray | None], list[str | None]]:
    """Features of ``blobs`` through the DALI tensor decoder (device batches read in place by the model)."""
    vectors: list[np.ndarray | None] = [None] * len(blobs)
    failed: dict[int, str] = {}
    for batch in decoder.decode(blobs, failed):
        if batch.on_device:
            values = model.run_device(batch.tensor, len(batch.rows))
        else:
            values = _run_host(model, batch.host_view(), size)
        for j, i in enumerate(batch.rows):
            vectors[i] = values[j]
    errors: list[str | None] = [failed.get(i) for i in range(len(blobs))]
    return vectors, errors


def _record_batch(chunk: pa.RecordBatch, layout: FeatureLayout, vectors: list, errors: list) -> pa.RecordBatch:
    columns = [chunk.column(name) for name in layout.passthrough]
    columns.append(list_column(vectors, pa.float64()))
    columns.append(pa.array(errors, type=pa.string()))
    return pa.RecordBatch.from_arrays(columns, names=[*layout.passthrough, layout.output_col, layout.error_col])


def featurize_partition(batches: Iterator[pa.RecordBatch], task: FeatureTask) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body: encoded bytes in, ``passthrough + [vector, reason]`` out, one row per row."""
    engine = engine_for_task(task.options)
    on_dali = engine.name.startswith("dali")
    model = create_model(task.model, engine.device if on_dali else TaskDevice("cpu"))  # type: ignore[attr-defined]
    decoder = _tensor_decoder(engine, task, model) if on_dali else None
    rows_per_slice = task.options.batch_size * DEVICE_BATCHES_PER_SLICE if on_dali else task.batch_size
    slicing = dataclasses.replace(task.options, batch_size=rows_per_slice)
    layout = task.layout
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for chunk in decode_slices(batch, layout.input_col, slicing):
            blobs = chunk.column(layout.input_col).to_pylist()
            if decoder is not None:
                vectors, errors = features_from_tensors(decoder, blobs, model, task.batch_size)
            else:
                vectors, errors = features_from_decoded(engine.decode(blobs), model, task.batch_size)
            yield _record_batch(chunk, layout, vectors, errors)
    record_task(engine, rows)

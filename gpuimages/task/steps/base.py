"""What a step is: a small capability run on each bounded chunk of a partition.

A step is a picklable description made on the driver (options, model spec, write plan). Inside the
task the runner :meth:`~Step.open`\\ s it on the task's device, calls :meth:`~Step.run` on each chunk's
:class:`Work` in turn, and :meth:`~Step.close`\\ s it at the end. Steps read what earlier steps left in
the work (encoded bytes, an :class:`~gpuimages.task.images.ImageBatch`), leave their own results
(images, bytes, output columns) and record why a row has no result; they never raise for bad input.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np
import pyarrow as pa

from gpuimages.task.device import TaskDevice
from gpuimages.task.images import ImageBatch

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass
class Work:
    """One chunk on its way through the steps.

    ``chunk``: the input rows (the source of pass-through columns). ``origins``: each row's image
    origin (an Arrow string column). ``pixel_type``: the Arrow type of pixel data written back
    (``binary``, or ``large_binary`` as the input struct had it). ``blobs``: encoded bytes (bytes
    input, or what an encoding step made). ``images``: decoded
    pixels. ``reasons``: why a row has no result (the first reason recorded wins). ``columns``: output
    columns made by the steps. ``row_bytes``: the size of each row's largest output, which bounds the
    returned Arrow batches. ``emit``: False when a step keeps the rows for later (its :meth:`Step.finish`
    returns what goes back instead).
    """

    chunk: pa.RecordBatch
    origins: pa.Array
    blobs: list[bytes | None] | None = None
    images: ImageBatch | None = None
    reasons: list[str | None] = field(default_factory=list)
    columns: dict[str, pa.Array] = field(default_factory=dict)
    row_bytes: np.ndarray | None = None
    pixel_type: pa.DataType = field(default_factory=pa.binary)
    device_images: Any = None
    emit: bool = True

    def __post_init__(self) -> None:
        if not self.reasons:
            self.reasons = [None] * self.chunk.num_rows

    def __len__(self) -> int:
        return self.chunk.num_rows

    def note(self, reasons: Sequence[str | None]) -> None:
        """Record ``reasons[i]`` for rows that have none yet."""
        self.reasons = [r if r is not None else new for r, new in zip(self.reasons, reasons, strict=True)]

    def slice(self, start: int, end: int) -> Work:
        """Rows ``start:end`` of work no step has decoded yet (its chunk, origins, bytes and reasons)."""
        if self.images is not None or self.columns or self.device_images is not None:
            raise ValueError("Work.slice: expected work with bytes only, got decoded images or output columns")
        if (start, end) == (0, len(self)):
            return self
        part = Work(self.chunk.slice(start, end - start), self.origins.slice(start, end - start),
                    pixel_type=self.pixel_type)
        part.blobs = None if self.blobs is None else self.blobs[start:end]
        part.reasons = self.reasons[start:end]
        return part


def binary_scalar(blob: bytes) -> pa.Scalar:
    """A binary Arrow scalar viewing ``blob`` (no copy), for a step's ``predicted_bytes``."""
    offsets = pa.py_buffer(np.array([0, len(blob)], dtype=np.int32).tobytes())
    return pa.Array.from_buffers(pa.binary(), 1, [None, offsets, pa.py_buffer(blob)])[0]


def gpu_or_cpu(uses_gpu: bool, key: Hashable, build: Callable[[], T], cpu: Callable[[], T], label: str,
               device: TaskDevice, missing_is_fatal: bool = True) -> T:
    """The worker's object for ``key``: ``build()`` once, kept in the worker cache.

    Where ``build()`` makes a GPU library's object (``uses_gpu``) and it cannot start (a transient
    out-of-memory error while workers share the GPU, a broken installation), ``cpu()`` serves this task,
    with a warning, and is *not* cached under ``key``: the next task tries the GPU again, so one failure
    does not demote the worker for its life. Under ``device="gpu"`` the task fails instead, with the
    cause. A missing library (ImportError) is raised when ``missing_is_fatal`` (the user asked for it),
    else CPU too. Errors of a CPU build are raised as they are.
    """
    from gpuimages.task.cache import worker_cache

    try:
        return worker_cache().get(key, build)
    except ImportError:
        if missing_is_fatal or not uses_gpu:
            raise
        return cpu()
    except Exception as exc:  # noqa: BLE001 - see above
        if not uses_gpu:
            raise
        if device.mode == "gpu":
            raise RuntimeError(f"device='gpu': {label} could not start on {device.describe()}: "
                               f"{type(exc).__name__}: {exc}") from exc
        log.warning("gpuimages: %s could not start on %s (%s); this task uses its CPU path, the next one tries "
                    "again", label, device.describe(), exc)
        return cpu()


class Step:
    """One capability of the runtime. Subclasses are dataclasses made on the driver and pickled into the stage's
    :class:`~gpuimages.task.spec.StageSpec`; what a task builds in :meth:`open` lives in private fields
    (``init=False``) or the worker cache, never in the driver's copy."""

    #: Short name for logs and the task log.
    name = "step"

    def open(self, device: TaskDevice) -> None:
        """Build (or fetch from the worker cache) what the step needs on ``device``."""

    def chunk_rows(self, rows_per_batch: int) -> int:
        """Rows per chunk this step wants when it is the first step (a device batch, say)."""
        return rows_per_batch

    def predicted_bytes(self, value: pa.Scalar) -> int:
        """Bytes the step will hold for one input value (bounds chunks by bytes); 0 when unknown."""
        return 0

    def run(self, work: Work) -> Iterator[Work] | None:
        """Process one chunk in place; or return the chunks it becomes (an archive's members, say), each of
        which the following steps then process in turn."""
        raise NotImplementedError

    def finish(self) -> Iterator[pa.RecordBatch]:
        """End of the partition: output batches the step held back (e.g. one report row per shard)."""
        return iter(())

    def close(self) -> None:
        """End of the task: drop per-task state (cached objects stay in the worker cache)."""

    def engine(self) -> str | None:
        """The engine, encoder or model doing the work, for logs and the task log."""
        return None

"""DALI straight into a model's input: decode, resize and normalise into one float batch on the device.

``fn.decoders.image`` (``device="mixed"`` on a GPU, ``"cpu"`` without one) -> ``fn.resize`` to the
model's size (linear, antialiased) -> ``fn.crop_mirror_normalize`` (float32, ``CHW`` or ``HWC``,
``(x - 255 mean) / (255 std)``), so a batch of ``deviceBatchSize`` images comes out as one dense
``[N, 3, H, W]`` tensor in GPU memory that the model reads through DLPack; pixels never go to host
memory. Files are routed exactly as the DALI engine routes them (:func:`gpuimages.engines.dali.route`),
a failing DALI batch is split in halves by the engine's own loop
(:func:`gpuimages.engines.dali.run_bisecting`), and every file DALI does not take or cannot decode is
decoded by Pillow (:func:`gpuimages.engines.pillow.decode_one`, same resize), normalised on the host
and handed to the model as a host batch; a file neither can decode gets Pillow's reason.

Two pipelines per configuration take turns, and a producer thread decodes batch k+1 while the model
runs on batch k (a DALI output is valid only until its pipeline runs again, so each batch is
released before its pipeline is reused). Without a GPU the same code runs on DALI's CPU operators.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpuimages.engines.dali import (
    PipelineConfig,
    _import_dali,
    _Job,
    _make_job,
    decoder_args,
    default_num_threads,
    route,
    run_bisecting,
)
from gpuimages.engines.pillow import DecodeError, decode_one
from gpuimages.models.base import InputFormat, in_device_memory, to_rgb
from gpuimages.options import DecodeOptions

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TensorConfig:
    """What a tensor pipeline depends on (the key of the pipeline cache, with the slot number)."""

    pipeline: PipelineConfig
    input_format: InputFormat


@dataclass
class _Slot:
    """One built pipeline; ``free`` is held while a consumer still reads its last output."""

    pipeline: Any
    free: threading.Semaphore = field(default_factory=lambda: threading.Semaphore(1))


_SLOTS: dict[tuple[TensorConfig, int], _Slot] = {}
_CACHE_LOCK = threading.Lock()


def _build(config: TensorConfig) -> Any:
    fn, types, Pipeline = _import_dali()
    options = config.pipeline.options
    height, width = options.resize  # type: ignore[misc]
    pipe = Pipeline(
        batch_size=options.batch_size,
        num_threads=config.pipeline.num_threads,
        device_id=config.pipeline.gpu_id,
        exec_dynamic=True,  # survives a failed batch and accepts smaller ones
        prefetch_queue_depth=1,
    )
    with pipe:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        images = fn.decoders.image(encoded, **decoder_args(config.pipeline, types.RGB))
        images = fn.resize(
            images, resize_x=float(width), resize_y=float(height), interp_type=types.INTERP_LINEAR, antialias=True,
            subpixel_scale=False,
        )
        layout = "CHW" if config.input_format.layout == "NCHW" else "HWC"
        images = fn.crop_mirror_normalize(
            images, dtype=types.FLOAT, output_layout=layout, mean=config.input_format.pixel_mean(),
            std=config.input_format.pixel_std(),
        )
        pipe.set_outputs(images)
    pipe.build()
    return pipe


def _slot(config: TensorConfig, number: int) -> _Slot:
    with _CACHE_LOCK:
        slot = _SLOTS.get((config, number))
        if slot is None:
            log.debug("building DALI tensor pipeline %d for %s", number, config)
            slot = _Slot(_build(config))
            _SLOTS[(config, number)] = slot
        return slot


def clear_pipelines() -> None:
    """Drop every cached tensor pipeline."""
    with _CACHE_LOCK:
        _SLOTS.clear()


@dataclass
class TensorBatch:
    """Model input for ``rows`` (positions in the decoded batch).

    ``tensor``: a DALI tensor (device memory on a GPU, host memory on DALI's CPU operators), valid
    until :meth:`release`; or ``array``: a host numpy batch (Pillow's files).
    """

    rows: list[int]
    tensor: Any = None
    array: np.ndarray | None = None
    _release: Callable[[], None] | None = None

    @property
    def on_device(self) -> bool:
        """True when the pixels are in GPU memory."""
        return self.tensor is not None and in_device_memory(self.tensor)

    def host_view(self) -> np.ndarray:
        """The batch as numpy: the array, or a view of a host DALI tensor (device tensors: use the model)."""
        if self.array is not None:
            return self.array
        if self.on_device:
            raise ValueError("host_view: the batch is in GPU memory")
        return np.asarray(self.tensor)

    def release(self) -> None:
        """Let the pipeline that produced this batch run again (idempotent)."""
        release, self._release = self._release, None
        if release is not None:
            release()


class _Stopped(BaseException):
    """The consumer went away; stop producing (not an Exception, so the bisect loop lets it through)."""


class TensorDecoder:
    """Encoded bytes to model-ready float batches with DALI, Pillow for the files DALI does not take.

    ``options.resize`` must be ``(height, width)``; ``options.batch_size`` is the DALI device batch.
    ``gpu_id``: the CUDA device (None: DALI's CPU operators).
    """

    def __init__(
        self,
        options: DecodeOptions,
        input_format: InputFormat,
        gpu_id: int | None = None,
        *,
        num_threads: int | None = None,
        fancy_upsampling: bool = True,
    ) -> None:
        if not isinstance(options.resize, tuple) or options.center_crop is not None:
            raise ValueError(f"TensorDecoder: expected options with resize=(height, width) and no crop, got {options}")
        self.options = options
        self.input_format = input_format
        self.gpu_id = gpu_id
        self.name = "dali-tensors-gpu" if gpu_id is not None else "dali-tensors-cpu"
        pipeline = PipelineConfig(options, gpu_id, num_threads or default_num_threads(), fancy_upsampling)
        self.config = TensorConfig(pipeline, input_format)
        self.chunk_size = options.batch_size
        self.slots = [_slot(self.config, 0), _slot(self.config, 1)]
        #: How each file of the last batch went: "dali", "pillow: <why>", "pillow after dali: <error>".
        self.last_routes: list[str] = []

    def _run(self, slot: _Slot, jobs: Sequence[_Job]) -> Any:
        (out,) = slot.pipeline.run(encoded=[j.data for j in jobs])
        height, width = self.options.resize  # type: ignore[misc]
        expected = (3, height, width) if self.input_format.layout == "NCHW" else (height, width, 3)
        shapes = {tuple(int(d) for d in s) for s in out.shape()}
        if shapes != {expected}:
            raise RuntimeError(f"DALI gave shapes {sorted(shapes)}, expected {expected}")
        return out.as_tensor()

    def decode(self, blobs: Sequence[bytes | None], errors: dict[int, str]) -> Iterator[TensorBatch]:
        """Yield the model input batches of ``blobs``; files no engine decodes get a reason in ``errors``.

        Each batch is valid until the next one is requested (or the generator is closed): DALI then
        reuses its memory. DALI's batches come first, then one host batch of Pillow's files.
        """
        routes: list[str] = ["dali"] * len(blobs)
        jobs: list[_Job] = []
        pillow: list[int] = []
        for i, blob in enumerate(blobs):
            decoded = route(blob, self.options)
            if isinstance(decoded, str):
                routes[i] = f"pillow: {decoded}"
                pillow.append(i)
            else:
                jobs.append(_make_job(i, blob, decoded, self.options))  # type: ignore[arg-type]
        self.last_routes = routes
        retry: dict[int, str] = {}
        out: queue.Queue = queue.Queue(maxsize=1)
        stop = threading.Event()

        def produce() -> None:
            turn = [0]

            def run(chunk: Sequence[_Job]) -> tuple[_Slot, Any]:
                slot = self.slots[turn[0]]
                slot.free.acquire()  # the consumer is done with this pipeline's previous output
                if stop.is_set():
                    slot.free.release()
                    raise _Stopped
                try:
                    return slot, self._run(slot, chunk)
                except BaseException:
                    slot.free.release()
                    raise

            try:
                for chunk, (slot, tensor) in run_bisecting(jobs, run, self, retry):
                    out.put(TensorBatch([j.index for j in chunk], tensor=tensor, _release=slot.free.release))
                    turn[0] ^= 1
                for i, why in retry.items():
                    routes[i] = f"pillow after dali: {why}"
                host = self._pillow(blobs, sorted([*pillow, *retry]), errors)
                if host is not None:
                    out.put(host)
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, raised there
                out.put(exc)
                return
            out.put(None)

        thread = threading.Thread(target=produce, name="gpuimages-dali-tensors", daemon=True)
        thread.start()
        current: TensorBatch | None = None
        try:
            while True:
                item = out.get()
                if current is not None:
                    current.release()
                    current = None
                if item is None:
                    break
                if isinstance(item, _Stopped):
                    break
                if isinstance(item, BaseException):
                    raise item
                current = item
                yield item
        finally:
            if current is not None:
                current.release()
            stop.set()
            while thread.is_alive() or not out.empty():
                try:
                    item = out.get(timeout=0.05)
                except queue.Empty:
                    continue
                if isinstance(item, TensorBatch):
                    item.release()
            thread.join()

    def _pillow(self, blobs: Sequence[bytes | None], rows: list[int], errors: dict[int, str]) -> TensorBatch | None:
        """Decode ``rows`` with Pillow (same resize), normalised on the host; failures go to ``errors``."""
        done: list[int] = []
        images = []
        for i in rows:
            try:
                pixels = decode_one(blobs[i], self.options)
            except DecodeError as exc:
                errors[i] = str(exc)
                continue
            done.append(i)
            images.append(to_rgb(pixels))
        if not done:
            return None
        return TensorBatch(done, array=self.input_format.prepare(np.stack(images)))

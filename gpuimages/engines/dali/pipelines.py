"""DALI pipelines: built once per Python worker and key, held by the worker cache, run a few batches ahead.

Every pipeline gpuimages builds goes through :func:`gpuimages.task.cache.worker_cache`, keyed only by
what builds it (:class:`ImageKey`, :class:`TensorKey`: channel count, max batch size, whether resize and
crop inputs exist, the decoder's settings, the GPU and the thread count), never by options the graph
does not read (``max_pixels``, ``strict``, the resize target, which is fed per sample). A
:class:`PipelineHolder` owns the DALI ``Pipeline``; the cache calls :meth:`PipelineHolder.close` when it
drops the holder, which lets the pipeline go (DALI frees it with the last reference). Engines fetch the
holder from the cache for every run (:func:`open_pipeline`) instead of keeping it, so eviction really
frees the pipeline.

Execution (checked against DALI's ``pipeline.py`` and measured on its CPU operators):

* ``exec_dynamic=True`` (DALI >= 1.44, where it stopped being experimental and allows GPU -> CPU
  transfers): accepts any batch up to ``max_batch_size``, survives a failed iteration, and its outputs
  are reference counted: ``release_outputs`` does not invalidate them, so a result stays valid after the
  pipeline runs again.
* ``prefetch_queue_depth=1`` with inputs fed by ``feed_input`` and runs started by ``schedule_run``
  (asynchronous, ``exec_async`` defaults to True): :func:`run_windowed` keeps up to
  :data:`WINDOW` iterations in flight, so DALI decodes batch k+1 (CPU threads and GPU stream) while
  Python consumes batch k. A deeper queue would make the first ``schedule_run`` start ``depth``
  iterations at once and fail for want of fed input ("Attempted to peek the data batch that doesn't
  exist") when a decode has fewer batches than that.
* Outputs are taken in order with ``outputs()``; an iteration that failed raises there, and the next
  iteration's outputs still come next, so a failed batch is split and resubmitted without rebuilding.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from gpuimages.engines.dali.install import import_dali
from gpuimages.engines.dali.routing import Job
from gpuimages.options import DecodeOptions
from gpuimages.task.cache import worker_cache
from gpuimages.task.device import TaskDevice, env_int

log = logging.getLogger(__name__)

R = TypeVar("R")

#: Environment variable overriding the DALI CPU threads of a pipeline (default: the task's threads).
THREADS_ENV = "GPUIMAGES_DALI_THREADS"
#: DALI iterations in flight per pipeline while Python consumes the oldest one.
WINDOW = 2
#: Successful runs after an out-of-memory error before the batch doubles again (up to its full size, when the
#: window is restored too): memory pressure from workers sharing the GPU passes.
RECOVER_AFTER = 8

#: How decoded pixels leave a GPU pipeline: "pinned" (an in-graph ``.cpu()``: the executor copies into
#: DALI's page-locked host memory), "as_cpu" (``TensorListGPU.as_cpu()`` after the run, which allocates
#: pageable memory: ``set_pinned(false)`` in DALI's ``backend_impl.cc``), or "device" (stays in GPU memory).
OUTPUTS = ("pinned", "as_cpu", "device")

#: Out-of-memory messages: CUDA's, DALI's (``CUDABadAlloc``: "Can't allocate ... bytes on device"), and nvJPEG's
#: through nvImageCodec ("nvjpeg error #5 (allocator failure)").
_OOM = re.compile(
    r"out of memory|cudaErrorMemoryAllocation|CUDA_ERROR_OUT_OF_MEMORY|bad_alloc|can't allocate|allocation failed"
    r"|allocator failure|ALLOCATOR_FAILURE",
    re.IGNORECASE,
)

_builds = 0
_builds_lock = threading.Lock()


def dali_threads(device: TaskDevice) -> int:
    """DALI CPU threads for a pipeline: ``$GPUIMAGES_DALI_THREADS``, else the task's threads."""
    return env_int(THREADS_ENV, max(1, int(device.threads)), 1)


# ---------------------------------------------------------------------------------------------
# Keys: what builds a pipeline
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DecoderSettings:
    """What ``fn.decoders.image`` depends on, and the device and threads of its pipeline."""

    gpu_id: int | None
    threads: int
    apply_exif: bool = False
    hw_decoder_load: float = 0.65
    fancy_upsampling: bool = True

    @classmethod
    def of(cls, options: DecodeOptions, device: TaskDevice, fancy_upsampling: bool = True) -> DecoderSettings:
        """The settings for ``options`` on ``device`` (the GPU is ``device.gpu_id``, a CUDA ordinal)."""
        gpu = device.gpu_id
        return cls(
            gpu_id=None if gpu is None else int(gpu),
            threads=dali_threads(device),
            apply_exif=bool(options.apply_exif),
            # the hardware decoder share and chroma upsampling only exist on the GPU ("mixed") decoder
            hw_decoder_load=float(options.hw_decoder_load) if gpu is not None else 0.0,
            fancy_upsampling=bool(fancy_upsampling) if gpu is not None else True,
        )


@dataclass(frozen=True)
class ImageKey:
    """An image pipeline: encoded bytes -> decoded, resized, cropped pixels in Spark's channel order."""

    decoder: DecoderSettings
    channels: int
    max_batch: int
    resize: bool
    crop: bool
    output: str = "pinned"
    drop_alpha: bool = False

    def __post_init__(self) -> None:
        if self.output not in OUTPUTS:
            raise ValueError(f"output: expected one of {', '.join(OUTPUTS)}, got {self.output!r}")
        if self.decoder.gpu_id is None and self.output != "pinned":
            object.__setattr__(self, "output", "pinned")  # CPU operators: one host graph whatever was asked
        if self.channels != 4 and self.drop_alpha:
            object.__setattr__(self, "drop_alpha", False)  # only 4-channel graphs have an alpha plane to drop

    @property
    def device_output(self) -> bool:
        """True when the pipeline's outputs are in GPU memory."""
        return self.decoder.gpu_id is not None and self.output != "pinned"

    @property
    def out_channels(self) -> int:
        """Channels of the pipeline's output."""
        return 3 if self.channels == 4 and self.drop_alpha else self.channels


@dataclass(frozen=True)
class TensorKey:
    """A tensor pipeline: encoded bytes -> one float batch, resized and normalised for a model."""

    decoder: DecoderSettings
    max_batch: int
    height: int
    width: int
    layout: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


def decoder_args(settings: DecoderSettings, output_type: Any) -> dict[str, Any]:
    """Arguments of ``fn.decoders.image``: "mixed" on a GPU, "cpu" without one."""
    args: dict[str, Any] = {"output_type": output_type, "adjust_orientation": settings.apply_exif}
    if settings.gpu_id is not None:
        args.update(
            device="mixed",
            hw_decoder_load=settings.hw_decoder_load,
            jpeg_fancy_upsampling=settings.fancy_upsampling,  # chroma upsampling as libjpeg-turbo (Pillow) does it
            affine=False,  # executors share cores between Python workers: do not pin threads
        )
    else:
        args["device"] = "cpu"
    return args


def _new_pipeline(settings: DecoderSettings, max_batch: int) -> Any:
    _, _, Pipeline = import_dali()
    return Pipeline(
        batch_size=max_batch,
        num_threads=settings.threads,
        device_id=settings.gpu_id,
        exec_dynamic=True,
        exec_async=True,
        exec_pipelined=True,
        prefetch_queue_depth=1,
    )


def build_image_pipeline(key: ImageKey) -> Any:
    """The DALI pipeline of ``key`` (built, not yet run)."""
    fn, types, _ = import_dali()
    # RGB, not BGR: DALI decodes BGR as RGB plus a per-image conversion, slower than one batched swap.
    output_type = {1: types.GRAY, 3: types.RGB, 4: types.ANY_DATA}[key.channels]
    pipe = _new_pipeline(key.decoder, key.max_batch)
    with pipe:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        images = fn.decoders.image(encoded, **decoder_args(key.decoder, output_type))
        if key.resize:
            size = fn.external_source(name="size", dtype=types.FLOAT, ndim=1)
            images = fn.resize(
                images, size=size, interp_type=types.INTERP_LINEAR, antialias=True, subpixel_scale=False
            )
        if key.crop:
            anchor = fn.external_source(name="anchor", dtype=types.INT32, ndim=1)
            shape = fn.external_source(name="shape", dtype=types.INT32, ndim=1)
            images = fn.slice(images, anchor, shape, axes=[0, 1], normalized_anchor=False, normalized_shape=False)
        # Spark's byte order, on the device and after resize/crop (fewer pixels to move).
        if key.channels == 3:
            images = fn.color_space_conversion(images, image_type=types.RGB, output_type=types.BGR)
        elif key.channels == 4:
            planes = [images[:, :, 2:3], images[:, :, 1:2], images[:, :, 0:1]]
            if not key.drop_alpha:
                planes.append(images[:, :, 3:4])
            images = fn.cat(*planes, axis=2)
        if key.decoder.gpu_id is not None and key.output == "pinned":
            images = images.cpu()
        pipe.set_outputs(images)
    pipe.build()
    return pipe


def build_tensor_pipeline(key: TensorKey) -> Any:
    """The DALI pipeline of ``key``: decode RGB -> resize -> ``crop_mirror_normalize`` to float32."""
    fn, types, _ = import_dali()
    pipe = _new_pipeline(key.decoder, key.max_batch)
    with pipe:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        images = fn.decoders.image(encoded, **decoder_args(key.decoder, types.RGB))
        images = fn.resize(
            images, resize_x=float(key.width), resize_y=float(key.height), interp_type=types.INTERP_LINEAR,
            antialias=True, subpixel_scale=False,
        )
        images = fn.crop_mirror_normalize(
            images, dtype=types.FLOAT, output_layout="CHW" if key.layout == "NCHW" else "HWC",
            mean=list(key.mean), std=list(key.std),
        )
        pipe.set_outputs(images)
    pipe.build()
    return pipe


# ---------------------------------------------------------------------------------------------
# Holders: the cache's view of a pipeline
# ---------------------------------------------------------------------------------------------


class PipelineClosed(RuntimeError):
    """The holder was closed (evicted) before it could be used; fetch it from the cache again."""


class PipelineHolder:
    """Owns one DALI pipeline for the worker cache; one run at a time.

    :meth:`close` (called by the cache on eviction) drops the pipeline at once when it is idle, or
    when its current run ends. Outputs already taken stay valid (they are reference counted).
    """

    def __init__(self, key: Any, pipeline: Any) -> None:
        self.key = key
        self.pipeline: Any = pipeline
        self._state = threading.Lock()
        self._run_lock = threading.Lock()
        self._owner: int | None = None
        self._closed = False

    @property
    def closed(self) -> bool:
        """True once the cache dropped this holder."""
        return self._closed

    def close(self) -> None:
        """Let the pipeline go (now, or when the run in progress ends)."""
        with self._state:
            self._closed = True
            if self._owner is None:
                self.pipeline = None

    @contextlib.contextmanager
    def running(self) -> Iterator[PipelineRun]:
        """Exclusive use of the pipeline for a sequence of submits and collects.

        Raises :class:`PipelineClosed` when the holder was closed, and ``RuntimeError`` when this
        thread already runs it (an unfinished decode generator on the same pipeline).
        """
        me = threading.get_ident()
        if self._owner == me:
            raise RuntimeError("this DALI pipeline is already running an unfinished decode in this thread")
        self._run_lock.acquire()
        try:
            with self._state:
                if self._closed or self.pipeline is None:
                    raise PipelineClosed(str(self.key))
                self._owner = me
            run = PipelineRun(self.pipeline)
            try:
                yield run
            finally:
                run.drain()
                with self._state:
                    self._owner = None
                    if self._closed:
                        self.pipeline = None
        finally:
            self._run_lock.release()


class PipelineRun:
    """Submit fed iterations and collect their outputs in order (see the module docstring)."""

    def __init__(self, pipeline: Any) -> None:
        self.pipeline = pipeline
        self.pending = 0
        #: True when a submit failed after feeding some inputs: the inputs' queues may be misaligned,
        #: so :func:`open_pipeline` drops the pipeline when the run ends.
        self.broken = False

    def submit(self, feed: dict[str, list[Any]]) -> None:
        """Feed one batch to the named inputs and start its iteration (returns at once)."""
        if self.broken:  # the inputs' queues no longer line up: nothing more goes through this pipeline
            raise RuntimeError("the DALI pipeline's inputs are misaligned after a failed feed")
        fed = False
        try:
            for name, data in feed.items():
                self.pipeline.feed_input(name, data)
                fed = True
            self.pipeline.schedule_run()
        except BaseException:
            self.broken = self.broken or fed
            raise
        self.pending += 1

    def collect(self) -> Any:
        """The (only) output of the oldest iteration in flight; raises that iteration's error."""
        if self.pending <= 0:
            raise RuntimeError("collect() without a submitted iteration")
        self.pending -= 1
        (out,) = self.pipeline.outputs()
        return out

    def drain(self) -> None:
        """Take and drop the outputs of every iteration still in flight (keeps the next run aligned)."""
        while self.pending > 0:
            try:
                self.collect()
            except Exception as exc:  # noqa: BLE001 - results nobody wants
                log.debug("dropping a DALI iteration nobody collected: %s", first_line(exc))


def _count_build() -> None:
    global _builds
    with _builds_lock:
        _builds += 1


def _factory(key: Any, build: Callable[[Any], Any]) -> Callable[[], PipelineHolder]:
    def make() -> PipelineHolder:
        log.debug("building DALI pipeline %s", key)
        holder = PipelineHolder(key, build(key))
        _count_build()
        return holder

    return make


def get_pipeline(key: ImageKey | TensorKey) -> PipelineHolder:
    """The worker's holder for ``key``, built on first use (through the worker cache)."""
    build = build_tensor_pipeline if isinstance(key, TensorKey) else build_image_pipeline
    return worker_cache().get(key, _factory(key, build))


@contextlib.contextmanager
def open_pipeline(key: ImageKey | TensorKey) -> Iterator[PipelineRun]:
    """Run the worker's pipeline for ``key`` (rebuilt if the cache dropped it meanwhile)."""
    for _ in range(3):
        holder = get_pipeline(key)
        stack = contextlib.ExitStack()
        try:
            run = stack.enter_context(holder.running())
        except PipelineClosed:
            continue
        try:
            with stack:
                yield run
        finally:
            if run.broken:
                log.warning("a DALI pipeline was left with unmatched inputs; dropping it (rebuilt on next use)")
                discard_pipelines([key])
        return
    raise RuntimeError(f"the DALI pipeline {key} kept being dropped from the worker cache while in use")


def discard_pipelines(keys: Sequence[Any]) -> None:
    """Drop (and close) the worker's pipelines for ``keys``; they are rebuilt on next use."""
    cache = worker_cache()
    for key in keys:
        cache.discard(key)


def pipeline_stats() -> dict[str, int]:
    """``{"cached": DALI pipelines the worker cache holds, "built": pipelines built since import}``."""
    cached = sum(isinstance(k, (ImageKey, TensorKey)) for k in worker_cache().keys())
    with _builds_lock:
        return {"cached": cached, "built": _builds}


# ---------------------------------------------------------------------------------------------
# Running jobs: windowed, split on failure, smaller after an out-of-memory error
# ---------------------------------------------------------------------------------------------


def is_oom(exc: BaseException) -> bool:
    """True for an error that says the device (or DALI's host pool) ran out of memory."""
    return bool(_OOM.search(str(exc)))


def first_line(exc: BaseException) -> str:
    """``Type: first line of the message``."""
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def run_windowed(
    jobs: Sequence[Job],
    submit: Callable[[Sequence[Job]], Any],
    collect: Callable[[Sequence[Job], Any], R],
    sizing: Any,
    retry: dict[int, str],
    idle: Callable[[], None] | None = None,
) -> Iterator[tuple[Sequence[Job], R]]:
    """Run ``jobs`` in chunks of ``sizing.chunk_size``, up to ``sizing.window`` in flight; yield ``(chunk, result)``.

    ``submit(chunk)`` starts a chunk (returns a ticket), ``collect(chunk, ticket)`` waits for its result;
    either may raise for the chunk. One undecodable file fails a whole DALI batch, so a failed chunk is
    split in halves until the failing files stand alone; their reasons are left in ``retry`` (by job
    index). A GPU out-of-memory error lowers ``sizing.chunk_size`` and sets ``sizing.window`` to 1; after
    :data:`RECOVER_AFTER` good runs they grow back towards ``sizing.full_chunk_size`` (:func:`settle`).
    ``idle()`` runs once, after the first chunks are submitted and before the
    first result is awaited (host work that overlaps DALI's), or at the end when nothing was submitted.
    Results come in completion order, which is submission order. Chunks still in flight when the
    consumer stops are collected and dropped.
    """
    size = max(1, int(sizing.chunk_size))
    queue: deque[Sequence[Job]] = deque(jobs[i : i + size] for i in range(0, len(jobs), size))
    inflight: deque[tuple[Sequence[Job], Any]] = deque()

    def failed(chunk: Sequence[Job], exc: BaseException) -> None:
        if len(chunk) == 1:
            retry[chunk[0].index] = first_line(exc)
            return
        if is_oom(exc):
            sizing.chunk_size = max(1, (len(chunk) + 1) // 2)
            sizing.window = 1
            sizing.calm = 0
            log.warning("DALI ran out of memory on %d images; batches now %d", len(chunk), sizing.chunk_size)
            step = sizing.chunk_size
            parts = [chunk[i : i + step] for i in range(0, len(chunk), step)]
        else:
            log.debug("DALI batch of %d failed (%s); splitting it", len(chunk), first_line(exc))
            half = len(chunk) // 2
            parts = [chunk[:half], chunk[half:]]
        queue.extendleft(reversed(parts))

    try:
        while queue or inflight:
            while queue and len(inflight) < max(1, int(getattr(sizing, "window", 1))):
                chunk = queue.popleft()
                try:
                    inflight.append((chunk, submit(chunk)))
                except Exception as exc:  # noqa: BLE001 - DALI reports every failure as an exception
                    failed(chunk, exc)
            if idle is not None:
                idle, pending_idle = None, idle
                pending_idle()
            if not inflight:
                continue
            chunk, ticket = inflight.popleft()
            try:
                result = collect(chunk, ticket)
            except Exception as exc:  # noqa: BLE001
                failed(chunk, exc)
                continue
            settle(sizing)
            yield chunk, result
        if idle is not None:
            idle()
    finally:
        while inflight:
            chunk, ticket = inflight.popleft()
            try:
                collect(chunk, ticket)
            except Exception as exc:  # noqa: BLE001 - nobody wants these results any more
                log.debug("dropped a DALI batch of %d still in flight: %s", len(chunk), first_line(exc))


def settle(sizing: Any) -> None:
    """One more good run: after :data:`RECOVER_AFTER` of them since the last out-of-memory error, double
    ``sizing.chunk_size`` (at most ``sizing.full_chunk_size``); back at full size, the window is restored."""
    full = getattr(sizing, "full_chunk_size", None)
    if full is None or sizing.chunk_size >= full:
        return
    sizing.calm = getattr(sizing, "calm", 0) + 1
    if sizing.calm < RECOVER_AFTER:
        return
    sizing.calm = 0
    sizing.chunk_size = min(int(full), 2 * int(sizing.chunk_size))
    if sizing.chunk_size >= full:
        sizing.window = WINDOW
    log.info("DALI: %d good runs since running out of memory; batches now %d", RECOVER_AFTER, sizing.chunk_size)


def job_feed(jobs: Sequence[Job], resize: bool, crop: bool) -> dict[str, list[Any]]:
    """The named inputs of an image pipeline for ``jobs``."""
    import numpy as np

    feed: dict[str, list[Any]] = {"encoded": [j.data for j in jobs]}
    if resize:
        feed["size"] = [np.asarray(j.size, dtype=np.float32) for j in jobs]
    if crop:
        feed["anchor"] = [np.asarray(j.anchor, dtype=np.int32) for j in jobs]
        feed["shape"] = [np.asarray(j.shape[:2], dtype=np.int32) for j in jobs]
    return feed

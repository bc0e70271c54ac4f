"""The GPU engine: NVIDIA DALI (nvJPEG / nvImageCodec), one pipeline per process and configuration.

Encoded bytes are fed with ``fn.external_source``; ``fn.decoders.image`` decodes them
(``device="mixed"`` on a GPU, ``"cpu"`` without one), ``fn.resize`` and ``fn.slice`` apply the
same geometry as the Pillow engine, and the pixels come back to host memory already in Spark's
byte order (RGB -> BGR and RGBA -> BGRA on the device, after resizing).

DALI can only produce some files exactly the way Spark's image source does. Each file is
routed from its header (:func:`gpuimages.engines.formats.sniff`):

* JPEG with 1 or 3 components (8-bit), PNG 8-bit grey / RGB / palette without ``tRNS``, and
  8-bit RGBA PNG (when not resizing): DALI, grouped by output channel count (1, 3, 4), one
  pipeline per group.
* Everything else goes to the Pillow path (:func:`gpuimages.engines.pillow.decode_one`):
  missing or empty bytes, other formats, PNG with a bit depth other than 8, grey+alpha PNG,
  any PNG with ``tRNS``, CMYK/YCCK JPEG, headers over ``max_pixels``, RGBA PNG that must be
  resized (Pillow resizes RGBA with premultiplied alpha), truncated files (the data ends before
  the image does: Pillow decodes them as far as Java does, or refuses them under ``strict``),
  PNG headers with methods Java refuses, palette PNGs with fewer colours than their bit depth
  can index (Java repeats the last colour for indices past the end), and, with ``apply_exif``,
  files whose orientation DALI might read differently (PNG with EXIF, XMP-only orientation).

One undecodable file fails a whole DALI batch, so a failed batch is split in halves until the
failing files stand alone; those go to Pillow, and only a file neither can decode becomes an
invalid row with a reason. A GPU out-of-memory error shrinks the batch for the rest of the
engine's life. Output order is input order; DALI output whose shape is not the one expected
from the header is discarded and decoded by Pillow instead. If DALI keeps failing on files
Pillow decodes, its pipelines are rebuilt, and after a few rebuilds the engine decodes with
Pillow only (with a warning).

Pipelines are cached per process (module level) and keyed by :class:`PipelineConfig` and the
channel count, so Spark tasks running in the same Python worker reuse them.
"""

from __future__ import annotations

import io
import logging
import os
import re
import threading
import warnings
from collections import Counter, deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from gpuimages.engines.base import BatchBuilder, DecodedBatch, Engine
from gpuimages.engines.color import srgb_transform
from gpuimages.engines.formats import PNG_GRAY, PNG_PALETTE, PNG_RGB, PNG_RGBA, HeaderInfo, sniff
from gpuimages.engines.pillow import SWAPS_AXES, DecodeError, decode_one, exif_orientation
from gpuimages.options import DecodeOptions, resize_pixels_reason

log = logging.getLogger(__name__)

R = TypeVar("R")

INSTALL_HINT = "pip install gpuimages[gpu]"

#: Environment variable overriding the number of DALI CPU threads per pipeline.
THREADS_ENV = "GPUIMAGES_DALI_THREADS"
_MAX_DEFAULT_THREADS = 16
#: Batches in a row where DALI decoded nothing although Pillow decoded some of their files,
#: before the pipelines are rebuilt (at most ``_MAX_REBUILDS`` times, then DALI is switched off).
_STRIKE_LIMIT = 3
_MAX_REBUILDS = 2

_OOM = re.compile(
    r"out of memory|cudaErrorMemoryAllocation|CUDA_ERROR_OUT_OF_MEMORY|bad_alloc|can't allocate|allocation failed",
    re.IGNORECASE,
)
_DALI_PNG_TYPES = {PNG_GRAY: 1, PNG_RGB: 3, PNG_PALETTE: 3, PNG_RGBA: 4}


def _import_dali() -> tuple[Any, Any, Any]:
    """Import DALI lazily; a clear ImportError if it is not installed."""
    try:
        from nvidia.dali import fn, types
        from nvidia.dali.pipeline import Pipeline
    except ImportError as exc:
        raise ImportError(
            f"the DALI engine needs NVIDIA DALI (package nvidia-dali-cuda120): {INSTALL_HINT}"
        ) from exc
    return fn, types, Pipeline


def default_num_threads() -> int:
    """DALI CPU threads per pipeline: ``$GPUIMAGES_DALI_THREADS``, else the usable cores (at most 16)."""
    value = os.environ.get(THREADS_ENV)
    if value:
        try:
            return max(1, int(value))
        except ValueError:
            log.warning("%s=%r is not an integer; ignoring it", THREADS_ENV, value)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, _MAX_DEFAULT_THREADS))


# ---------------------------------------------------------------------------------------------
# Routing: which files DALI decodes, and the shape it must produce
# ---------------------------------------------------------------------------------------------


@dataclass
class _Job:
    """One file for DALI: where it goes in the batch and what DALI must return for it."""

    index: int
    data: np.ndarray  # encoded bytes, uint8
    shape: tuple[int, int, int]  # expected output (h, w, c)
    size: tuple[int, int] | None = None  # resize target (h, w)
    anchor: tuple[int, int] | None = None  # crop origin (top, left) in the resized image


def _exif_orientation(blob: bytes, info: HeaderInfo) -> int | None:
    """The EXIF orientation Pillow would apply, or None if DALI might not agree on it."""
    if info.format == "png":
        # Pillow reads EXIF from eXIf chunks and "Raw profile type exif" text; leave those to it.
        return None if b"eXIf" in blob or b"Raw profile type exif" in blob else 1
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(blob)) as im:
                value = exif_orientation(im, broken=None)
    except Exception:  # noqa: BLE001 - unreadable metadata: let the Pillow path decide
        return None
    if value is None:
        return None
    if value == 1:
        return 1
    # Pillow also takes the orientation from XMP; nvImageCodec only reads the EXIF block.
    if 2 <= value <= 8 and b"Exif\x00\x00" in blob[:0x20000]:
        return value
    return None


def route(blob: bytes | None, options: DecodeOptions) -> tuple[int, int, int] | str:
    """Decide how one file is decoded.

    Returns ``(height, width, channels)`` of the decoded image (before resize/crop) when DALI
    can produce it exactly under Spark's channel rules, else a short reason for the Pillow path.
    """
    if not blob:
        return "missing or empty"
    info = sniff(blob)
    if info.truncated:
        return "truncated"
    if info.png_header_error is not None:
        return "png header methods"
    if info.format == "jpeg":
        if info.components not in (1, 3):
            return "jpeg with 4 components (CMYK/YCCK)" if info.components == 4 else "jpeg header"
        if info.bit_depth != 8:
            return "jpeg not 8-bit"
        channels = 1 if info.components == 1 else 3
        if channels == 3 and srgb_transform(info.icc_profile) is not None:
            return "jpeg with a non-sRGB ICC profile"
    elif info.format == "png":
        if info.bit_depth != 8:
            return "png not 8-bit"
        if info.has_trns:
            return "png with tRNS"
        if info.color_type not in _DALI_PNG_TYPES:
            return "png grey+alpha" if info.color_type == 4 else "png header"
        if info.color_type == PNG_PALETTE and info.palette_entries < 1 << info.bit_depth:
            return "png palette shorter than its index range"  # Java repeats the last colour; DALI gives black
        channels = _DALI_PNG_TYPES[info.color_type]
    else:
        return "not jpeg/png"
    if info.width <= 0 or info.height <= 0:
        return "header without size"
    if info.pixels > options.max_pixels or resize_pixels_reason(options, info.height, info.width):
        return "over max_pixels"
    if channels == 4 and options.resize is not None:
        return "rgba resize"
    height, width = info.height, info.width
    if options.apply_exif:
        orientation = _exif_orientation(blob, info)
        if orientation is None:
            return "exif orientation"
        if orientation in SWAPS_AXES:
            height, width = width, height
    return height, width, channels


def _make_job(index: int, blob: bytes, decoded: tuple[int, int, int], options: DecodeOptions) -> _Job:
    height, width, channels = decoded
    job = _Job(index, np.frombuffer(blob, dtype=np.uint8), (height, width, channels))
    th, tw = options.target_size(height, width)
    if options.resize is not None:
        job.size = (th, tw)
    oh, ow = options.output_size(height, width)
    if options.center_crop is not None:
        job.anchor = ((th - oh) // 2, (tw - ow) // 2)
    job.shape = (oh, ow, channels)
    return job


# ---------------------------------------------------------------------------------------------
# Pipelines: built once per process and configuration
# ---------------------------------------------------------------------------------------------


#: Ways to bring GPU pixels to host memory: after the run ("as_cpu": ``TensorListGPU.as_cpu()``,
#: pageable memory) or as the pipeline's last step ("pipeline": ``DataNode.cpu()``).
HOST_COPIES = ("as_cpu", "pipeline")


@dataclass(frozen=True)
class PipelineConfig:
    """Everything a pipeline depends on; with the channel count, the key of the pipeline cache."""

    options: DecodeOptions
    gpu_id: int | None
    num_threads: int
    fancy_upsampling: bool = True
    host_copy: str = "as_cpu"


@dataclass
class _Pipe:
    """A built DALI pipeline and what it expects as input."""

    pipeline: Any
    device_output: bool  # outputs are TensorListGPU (copy them to host after the run)
    resize: bool
    crop: bool
    lock: threading.Lock = field(default_factory=threading.Lock)


_PIPELINES: dict[tuple[PipelineConfig, int], _Pipe] = {}
_CACHE_LOCK = threading.Lock()
_BUILDS = 0


def decoder_args(config: PipelineConfig, output_type: Any) -> dict[str, Any]:
    """Arguments of ``fn.decoders.image`` for ``config`` (mixed on a GPU, cpu without one)."""
    args: dict[str, Any] = {"output_type": output_type, "adjust_orientation": config.options.apply_exif}
    if config.gpu_id is not None:
        args.update(
            device="mixed",
            hw_decoder_load=float(config.options.hw_decoder_load),
            jpeg_fancy_upsampling=config.fancy_upsampling,  # chroma upsampling as libjpeg-turbo (Pillow) does it
            affine=False,  # executors share cores between Python workers: do not pin threads
        )
    else:
        args["device"] = "cpu"
    return args


def _build(config: PipelineConfig, channels: int) -> _Pipe:
    fn, types, Pipeline = _import_dali()
    options = config.options
    gpu = config.gpu_id is not None
    # RGB, not BGR: DALI decodes BGR as RGB plus a per-image conversion, slower than one batched swap.
    output_type = {1: types.GRAY, 3: types.RGB, 4: types.ANY_DATA}[channels]
    pipe = Pipeline(
        batch_size=options.batch_size,
        num_threads=config.num_threads,
        device_id=config.gpu_id,
        exec_dynamic=True,  # survives a failed batch, accepts smaller batches, allows GPU -> CPU
        prefetch_queue_depth=1,
    )
    with pipe:
        encoded = fn.external_source(name="encoded", dtype=types.UINT8, ndim=1)
        images = fn.decoders.image(encoded, **decoder_args(config, output_type))
        if options.resize is not None:
            size = fn.external_source(name="size", dtype=types.FLOAT, ndim=1)
            images = fn.resize(
                images, size=size, interp_type=types.INTERP_LINEAR, antialias=True, subpixel_scale=False
            )
        if options.center_crop is not None:
            anchor = fn.external_source(name="anchor", dtype=types.INT32, ndim=1)
            shape = fn.external_source(name="shape", dtype=types.INT32, ndim=1)
            images = fn.slice(images, anchor, shape, axes=[0, 1], normalized_anchor=False, normalized_shape=False)
        # Spark's byte order, on the device and after resize/crop (fewer pixels to move).
        if channels == 3:
            images = fn.color_space_conversion(images, image_type=types.RGB, output_type=types.BGR)
        elif channels == 4:
            images = fn.cat(images[:, :, 2:3], images[:, :, 1:2], images[:, :, 0:1], images[:, :, 3:4], axis=2)
        device_output = gpu
        if gpu and config.host_copy == "pipeline":
            images = images.cpu()
            device_output = False
        pipe.set_outputs(images)
    pipe.build()
    return _Pipe(pipe, device_output, options.resize is not None, options.center_crop is not None)


def _get_pipeline(config: PipelineConfig, channels: int) -> _Pipe:
    global _BUILDS
    with _CACHE_LOCK:
        pipe = _PIPELINES.get((config, channels))
        if pipe is None:
            log.debug("building DALI pipeline for %d channels: %s", channels, config)
            pipe = _build(config, channels)
            _PIPELINES[(config, channels)] = pipe
            _BUILDS += 1
        return pipe


def _evict_pipelines(config: PipelineConfig) -> None:
    with _CACHE_LOCK:
        for channels in (1, 3, 4):
            _PIPELINES.pop((config, channels), None)


def pipeline_stats() -> dict[str, int]:
    """``{"cached": pipelines held by this process, "built": pipelines built since import}``."""
    with _CACHE_LOCK:
        return {"cached": len(_PIPELINES), "built": _BUILDS}


def clear_pipelines() -> None:
    """Drop every cached pipeline (they are rebuilt on next use)."""
    with _CACHE_LOCK:
        _PIPELINES.clear()


# ---------------------------------------------------------------------------------------------
# Host copies
# ---------------------------------------------------------------------------------------------


def _host_buffer(tensor_list: Any, total: int) -> np.ndarray:
    """All samples of a host TensorList in one contiguous uint8 array (a view when possible)."""
    try:
        return np.asarray(tensor_list.as_reshaped_tensor([total])).reshape(-1)
    except (RuntimeError, ValueError, TypeError):
        import ctypes

        buf = np.empty(total, dtype=np.uint8)
        tensor_list.copy_to_external(ctypes.c_void_p(buf.ctypes.data))
        return buf


@dataclass
class _Chunk:
    """Pixels of one successful DALI run: a host buffer and each sample's place in it."""

    buffer: np.ndarray
    starts: list[int]
    shapes: list[tuple[int, int, int]]


def _is_oom(exc: BaseException) -> bool:
    return bool(_OOM.search(str(exc)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def run_bisecting(
    jobs: Sequence[_Job], run: Callable[[Sequence[_Job]], R], sizing: Any, retry: dict[int, str]
) -> Iterator[tuple[Sequence[_Job], R]]:
    """Run ``jobs`` in chunks of ``sizing.chunk_size``, yielding each successful ``(chunk, run(chunk))``.

    One undecodable file fails a whole DALI batch, so a failed chunk is split in halves until the
    failing files stand alone; their reasons are left in ``retry`` (by job index). A GPU
    out-of-memory error lowers ``sizing.chunk_size`` for the rest of its owner's life.
    """
    size = sizing.chunk_size
    queue = deque(jobs[i : i + size] for i in range(0, len(jobs), size))
    while queue:
        chunk = queue.popleft()
        try:
            result = run(chunk)
        except Exception as exc:  # noqa: BLE001 - DALI reports every failure as an exception
            if len(chunk) == 1:
                retry[chunk[0].index] = _first_line(exc)
                continue
            if _is_oom(exc):
                sizing.chunk_size = max(1, (len(chunk) + 1) // 2)
                log.warning("DALI ran out of GPU memory on %d images; batches now %d", len(chunk), sizing.chunk_size)
                parts = [chunk[i : i + sizing.chunk_size] for i in range(0, len(chunk), sizing.chunk_size)]
            else:
                log.debug("DALI batch of %d failed (%s); splitting it", len(chunk), _first_line(exc))
                half = len(chunk) // 2
                parts = [chunk[:half], chunk[half:]]
            queue.extendleft(reversed(parts))
            continue
        yield chunk, result


class DaliEngine(Engine):
    """GPU (nvJPEG) or CPU DALI engine with a per-file Pillow fallback; see the module docstring.

    ``gpu_id``: the CUDA device to decode on (DALI "mixed" operators), or None for DALI's CPU
    operators. ``num_threads``: DALI CPU threads (default :func:`default_num_threads`).
    ``fancy_upsampling``: on the GPU, upsample JPEG chroma as libjpeg-turbo does (closer to
    Pillow and Spark's reader); False uses nvJPEG's default. ``host_copy``: how GPU pixels reach
    host memory, one of :data:`HOST_COPIES`.
    """

    def __init__(
        self,
        options: DecodeOptions,
        gpu_id: int | None = None,
        *,
        num_threads: int | None = None,
        fancy_upsampling: bool = True,
        host_copy: str = "as_cpu",
    ) -> None:
        super().__init__(options)
        _import_dali()
        self.gpu_id = gpu_id
        self.name = "dali-gpu" if gpu_id is not None else "dali-cpu"
        if host_copy not in HOST_COPIES:
            raise ValueError(f"host_copy: expected one of {', '.join(HOST_COPIES)}, got {host_copy!r}")
        self.config = PipelineConfig(options, gpu_id, num_threads or default_num_threads(), fancy_upsampling, host_copy)
        self.chunk_size = options.batch_size
        #: How each image of the last batch was decoded: "dali", "pillow: <why>",
        #: "pillow after dali: <error>" (the batch's errors say which of those failed).
        self.last_routes: list[str] = []
        self.counts: Counter[str] = Counter()
        #: True once DALI kept failing after rebuilds: every file then goes to Pillow.
        self.disabled = False
        self._strikes = 0
        self._rebuilds = 0
        self._runs_ok = 0
        self._pipeline(3)  # fail early on a broken installation or device

    def _pipeline(self, channels: int) -> _Pipe:
        return _get_pipeline(self.config, channels)

    # -- one DALI run ----------------------------------------------------------------------------

    def _run(self, pipe: _Pipe, jobs: Sequence[_Job]) -> _Chunk:
        feed: dict[str, list[np.ndarray]] = {"encoded": [j.data for j in jobs]}
        if pipe.resize:
            feed["size"] = [np.asarray(j.size, dtype=np.float32) for j in jobs]
        if pipe.crop:
            feed["anchor"] = [np.asarray(j.anchor, dtype=np.int32) for j in jobs]
            feed["shape"] = [np.asarray(j.shape[:2], dtype=np.int32) for j in jobs]
        with pipe.lock:
            (out,) = pipe.pipeline.run(**feed)
            host = out.as_cpu() if pipe.device_output else out
        shapes = [tuple(int(d) for d in s) for s in host.shape()]
        sizes = [int(np.prod(s)) for s in shapes]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64).tolist()
        return _Chunk(_host_buffer(host, starts[-1]), starts, shapes)  # type: ignore[arg-type]

    def _decode_group(self, channels: int, jobs: list[_Job], results: list[Any], retry: dict[int, str]) -> None:
        """Decode ``jobs`` with the ``channels`` pipeline; failures are left in ``retry``."""
        pipe = self._pipeline(channels)
        for chunk, result in run_bisecting(jobs, lambda part: self._run(pipe, part), self, retry):
            self._runs_ok += 1
            for k, job in enumerate(chunk):
                if result.shapes[k] != job.shape:
                    retry[job.index] = f"DALI gave shape {result.shapes[k]}, expected {job.shape}"
                    continue
                results[job.index] = (result, k)

    # -- the batch -------------------------------------------------------------------------------

    def decode(self, blobs: Sequence[bytes | None]) -> DecodedBatch:
        n = len(blobs)
        routes: list[str] = ["dali"] * n
        results: list[Any] = [None] * n
        groups: dict[int, list[_Job]] = {}
        pillow: list[int] = []
        for i, blob in enumerate(blobs):
            decoded = "dali switched off after repeated failures" if self.disabled else route(blob, self.options)
            if isinstance(decoded, str):
                routes[i] = f"pillow: {decoded}"
                pillow.append(i)
            else:
                groups.setdefault(decoded[2], []).append(_make_job(i, blob, decoded, self.options))  # type: ignore[arg-type]

        retry: dict[int, str] = {}
        self._runs_ok = 0
        for channels in sorted(groups):
            self._decode_group(channels, groups[channels], results, retry)
        for i, why in retry.items():
            routes[i] = f"pillow after dali: {why}"
        self.last_routes = routes

        fast = self._zero_copy(results, n) if not pillow and not retry else None
        if fast is not None:
            self._count(routes, [None] * n)
            return fast

        out = BatchBuilder(n)
        for i, res in enumerate(results):
            if res is not None:
                chunk, k = res
                start, end = chunk.starts[k], chunk.starts[k + 1]
                out.set_image(i, chunk.buffer[start:end].reshape(chunk.shapes[k]))
        pillow_rescued = 0
        for i in sorted([*pillow, *retry]):
            try:
                out.set_image(i, decode_one(blobs[i], self.options), owned=True)
                pillow_rescued += i in retry
            except DecodeError as exc:
                out.set_error(i, str(exc))
        self._check_health(pillow_rescued)
        batch = out.build()
        self._count(routes, batch.errors)
        return batch

    @staticmethod
    def _zero_copy(results: list[Any], n: int) -> DecodedBatch | None:
        """The batch straight from DALI's host buffer when one run produced every image in order."""
        if n == 0 or any(r is None for r in results):
            return None
        chunk = results[0][0]
        if any(r[0] is not chunk or r[1] != i for i, r in enumerate(results)) or len(chunk.shapes) != n:
            return None
        shapes = np.asarray(chunk.shapes, dtype=np.int32).reshape(n, 3)
        offsets = np.asarray(chunk.starts, dtype=np.int64)
        height, width, channels = (shapes[:, j].copy() for j in range(3))
        return DecodedBatch(height, width, channels, offsets, chunk.buffer, [None] * n)

    def _check_health(self, pillow_rescued: int) -> None:
        """Rebuild the pipelines, then switch DALI off, if it keeps failing on files Pillow decodes."""
        if self._runs_ok:
            self._strikes = 0
            return
        if not pillow_rescued:
            return
        self._strikes += 1
        if self._strikes < _STRIKE_LIMIT:
            return
        self._strikes = 0
        if self._rebuilds < _MAX_REBUILDS:
            log.warning("%s: DALI failed on %d batches in a row that Pillow could decode; rebuilding its pipelines",
                        self.name, _STRIKE_LIMIT)
            _evict_pipelines(self.config)
            self._rebuilds += 1
        else:
            log.warning("%s: DALI still fails after %d rebuilds; decoding the rest with Pillow", self.name,
                        self._rebuilds)
            self.disabled = True

    def _count(self, routes: list[str], errors: list[str | None]) -> None:
        kinds = Counter(r.split(":")[0] for r in routes)
        invalid = sum(e is not None for e in errors)
        self.counts.update(kinds)
        self.counts["invalid"] += invalid
        if kinds.get("pillow") or kinds.get("pillow after dali") or invalid:
            log.debug(
                "%s: %d images, %d by DALI, %d routed to Pillow, %d on Pillow after DALI failed, %d invalid",
                self.name, len(routes), kinds.get("dali", 0), kinds.get("pillow", 0),
                kinds.get("pillow after dali", 0), invalid,
            )

"""The GPU engine: NVIDIA DALI (nvJPEG / nvImageCodec) decoding into Spark's image layout.

Encoded bytes are fed to ``fn.external_source``; ``fn.decoders.image`` decodes them (``device="mixed"``
on the task's GPU, ``"cpu"`` without one), ``fn.resize`` and ``fn.slice`` apply the same geometry as
the Pillow engine, and the pixels come out in Spark's byte order (RGB -> BGR and RGBA -> BGRA on the
device, after resizing). Files are routed from their headers (:mod:`.routing`); the others, and every
file DALI fails on, are decoded by Pillow (:func:`gpuimages.engines.pillow.decode_one`) while DALI
works on the rest.

One undecodable file fails a whole DALI batch, so a failed batch is split in halves until the failing
files stand alone; those go to Pillow, and only a file neither can decode becomes an invalid row with
a reason. A GPU out-of-memory error halves the batch; it grows back after a run of good batches. Output order
is input order; DALI output whose shape is not the one expected from the header is discarded and
decoded by Pillow instead. If DALI keeps failing on files Pillow decodes, its pipelines are rebuilt,
and after a few rebuilds the engine decodes with Pillow only (with a warning).

Two ways out:

* :meth:`DaliEngine.decode`: a :class:`~gpuimages.task.images.ImageBatch` in host memory. On a GPU
  the copy to the host is the pipeline's last step (DALI's page-locked memory), so the transfer is a
  DMA overlapped with the next batch's decoding.
* :meth:`DaliEngine.decode_device`: :class:`DeviceImages`, one array per image in GPU memory, for a
  consumer on the same device (nvImageCodec's JPEG encoder in the transcode path); see its docstring
  for the lifetime rule.

The engine owns no pipeline: it fetches them from the worker cache (:mod:`.pipelines`) for each batch,
so eviction frees them. ``options.batch_size`` is the pipelines' maximum batch; :meth:`DaliEngine.decode`
accepts any number of files and runs them in chunks of at most that many.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gpuimages.engines.base import Engine
from gpuimages.engines.dali.install import import_dali
from gpuimages.engines.dali.pipelines import (
    WINDOW,
    DecoderSettings,
    ImageKey,
    PipelineRun,
    discard_pipelines,
    get_pipeline,
    job_feed,
    open_pipeline,
    run_windowed,
)
from gpuimages.engines.dali.routing import Job, route_all
from gpuimages.engines.pillow import DecodeError, decode_one
from gpuimages.options import DecodeOptions
from gpuimages.task.device import TaskDevice
from gpuimages.task.images import ImageBatch, ImageBatchBuilder

log = logging.getLogger(__name__)

#: Ways :meth:`DaliEngine.decode` brings GPU pixels to host memory (see :data:`.pipelines.OUTPUTS`).
HOST_COPIES = ("pinned", "as_cpu")
#: Batches in a row where DALI decoded nothing although Pillow decoded some of their files,
#: before the pipelines are rebuilt (at most ``_MAX_REBUILDS`` times, then DALI is switched off).
_STRIKE_LIMIT = 3
_MAX_REBUILDS = 2


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
    """Pixels of one successful DALI run: a host buffer and each sample's place in it, or per-sample arrays."""

    shapes: list[tuple[int, int, int]]
    buffer: np.ndarray | None = None
    starts: list[int] = field(default_factory=list)
    samples: list[Any] | None = None

    def sample(self, k: int) -> Any:
        """Sample ``k``: a device array, or an ``(h, w, c)`` view of the host buffer."""
        if self.samples is not None:
            return self.samples[k]
        assert self.buffer is not None
        return self.buffer[self.starts[k] : self.starts[k + 1]].reshape(self.shapes[k])


@dataclass
class DeviceImages:
    """Decoded images of one batch, for a consumer on the same device (the GPU transcode).

    ``images[i]`` is image ``i`` in Spark's channel order (grey ``(h, w, 1)``, BGR ``(h, w, 3)``, BGRA
    ``(h, w, 4)`` unless decoded with ``drop_alpha``), uint8, C-contiguous, or None with a reason in
    ``errors[i]``. Images DALI decoded on a GPU are DALI ``TensorGPU`` samples: they expose
    ``__cuda_array_interface__`` (version 2, no stream: the data is complete when
    :meth:`DaliEngine.decode_device` returns) and ``__dlpack__``/``__dlpack_device__``, and ``shape()``
    is a method. Every other image (Pillow's files, and everything on DALI's CPU operators) is a host
    numpy array. :meth:`is_device` tells them apart.

    Lifetime: each device image holds a reference to its DALI output buffer, which is not reused by
    later runs of the pipeline (``exec_dynamic``); the memory returns to DALI's pool when the last image
    of that DALI batch is dropped. Drop the batch (or call :meth:`release`) once it is encoded, before
    the task ends, so the worker can give the memory back when it idles (``release_unused()``).
    """

    images: list[Any]
    errors: list[str | None]
    routes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @staticmethod
    def is_device(image: Any) -> bool:
        """True for an image in GPU memory."""
        return image is not None and hasattr(image, "__cuda_array_interface__")

    def shape(self, i: int) -> tuple[int, int, int] | None:
        """``(height, width, channels)`` of image ``i`` (None for a failed image)."""
        image = self.images[i]
        if image is None:
            return None
        shape = image.shape() if callable(getattr(image, "shape", None)) else image.shape
        return tuple(int(d) for d in shape)  # type: ignore[return-value]

    def host(self, i: int) -> np.ndarray | None:
        """Image ``i`` in host memory (a copy for a device image)."""
        image = self.images[i]
        if image is None or isinstance(image, np.ndarray):
            return image
        return host_copy(image)

    def release(self) -> None:
        """Drop every image (device memory goes back to DALI's pool once nothing else holds it)."""
        self.images = [None] * len(self.images)


def host_copy(image: Any) -> np.ndarray:
    """A device image (DALI ``TensorGPU``, or any array with ``get()``/``__array__``) copied to a numpy array."""
    if hasattr(image, "as_cpu"):
        return np.array(image.as_cpu())
    if hasattr(image, "get"):
        return np.asarray(image.get())
    return np.asarray(image)


class DaliEngine(Engine):
    """DALI decoding on ``device.gpu_id`` (DALI's CPU operators without one) with a per-file Pillow fallback.

    ``device``: the task's :class:`~gpuimages.task.device.TaskDevice` (GPU: ``device.gpu_id``, a CUDA
    ordinal; DALI threads: ``device.threads``, or ``$GPUIMAGES_DALI_THREADS``). ``fancy_upsampling``: on
    the GPU, upsample JPEG chroma as libjpeg-turbo does (closer to Pillow and Spark's reader); False uses
    nvJPEG's default. ``host_copy``: how :meth:`decode` brings GPU pixels to host memory, one of
    :data:`HOST_COPIES` ("pinned", the default, or "as_cpu" for comparison). ``device_output``: the
    engine serves :meth:`decode_device` (the transcode path), so the pipeline built up front to fail
    early is the device-output one, not a host-copy pipeline that would sit unused in the cache.
    """

    def __init__(
        self,
        options: DecodeOptions,
        device: TaskDevice,
        *,
        fancy_upsampling: bool = True,
        host_copy: str = "pinned",
        device_output: bool = False,
    ) -> None:
        super().__init__(options)
        if host_copy not in HOST_COPIES:
            raise ValueError(f"host_copy: expected one of {', '.join(HOST_COPIES)}, got {host_copy!r}")
        import_dali()
        self.device = device
        self.gpu_id = device.gpu_id
        self.name = "dali-gpu" if device.gpu_id is not None else "dali-cpu"
        self.host_copy = host_copy
        self.settings = DecoderSettings.of(options, device, fancy_upsampling)
        #: DALI batch (halved on out-of-memory errors, grown back after good runs).
        self.chunk_size = options.batch_size
        self.full_chunk_size = options.batch_size
        #: DALI iterations in flight (1 after an out-of-memory error).
        self.window = WINDOW
        #: How each image of the last batch was decoded: "dali", "pillow: <why>",
        #: "pillow after dali: <error>" (the batch's errors say which of those failed).
        self.last_routes: list[str] = []
        self.counts: Counter[str] = Counter()
        #: True once DALI kept failing after rebuilds: every file then goes to Pillow.
        self.disabled = False
        self._strikes = 0
        self._rebuilds = 0
        self._runs_ok = 0
        self._keys: set[ImageKey] = set()
        # fail early on a broken installation or device, with the pipeline this engine will use first
        get_pipeline(self._key(3, "device") if device_output else self._key(3, self.host_copy))

    # -- pipelines -------------------------------------------------------------------------------

    def _key(self, channels: int, output: str, drop_alpha: bool = False) -> ImageKey:
        key = ImageKey(
            self.settings, channels, self.options.batch_size, resize=self.options.resize is not None,
            crop=self.options.center_crop is not None, output=output, drop_alpha=drop_alpha,
        )
        self._keys.add(key)
        return key

    # -- one DALI run (submit, then collect) ------------------------------------------------------

    def _submit(self, run: PipelineRun, key: ImageKey, jobs: Sequence[Job]) -> None:
        run.submit(job_feed(jobs, key.resize, key.crop))

    def _collect(self, run: PipelineRun, key: ImageKey, jobs: Sequence[Job]) -> _Chunk:
        out = run.collect()
        on_device = key.device_output
        if on_device and key.output == "as_cpu":
            out, on_device = out.as_cpu(), False
        shapes = [tuple(int(d) for d in s) for s in out.shape()]
        if on_device:  # "device": one DALI TensorGPU per image (each keeps the batch's memory alive)
            return _Chunk(shapes, samples=[out[k] for k in range(len(shapes))])  # type: ignore[arg-type]
        sizes = [int(np.prod(s)) for s in shapes]
        starts = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64).tolist()
        return _Chunk(shapes, buffer=_host_buffer(out, starts[-1]), starts=starts)  # type: ignore[arg-type]

    def _decode_group(
        self,
        key: ImageKey,
        jobs: list[Job],
        results: list[Any],
        retry: dict[int, str],
        idle: Callable[[], None] | None,
    ) -> None:
        """Decode ``jobs`` with ``key``'s pipeline into ``results[index] = (chunk, k)``; failures go to ``retry``."""
        with open_pipeline(key) as run:
            for chunk, result in run_windowed(
                jobs, lambda part: self._submit(run, key, part), lambda part, _: self._collect(run, key, part),
                self, retry, idle,
            ):
                self._runs_ok += 1
                for k, job in enumerate(chunk):
                    expected = (*job.shape[:2], key.out_channels)
                    if result.shapes[k] != expected:
                        retry[job.index] = f"DALI gave shape {result.shapes[k]}, expected {expected}"
                        continue
                    results[job.index] = (result, k)

    def _run_dali(
        self, blobs: Sequence[bytes | None], output: str, drop_alpha: bool, pillow_work: Callable[[list[int]], None]
    ) -> tuple[list[str], list[Any], dict[int, str], list[int]]:
        """Route ``blobs``, decode DALI's files (Pillow's meanwhile, through ``pillow_work``), collect the rest."""
        routes, groups, pillow = route_all(blobs, self.options, self.disabled)
        results: list[Any] = [None] * len(blobs)
        retry: dict[int, str] = {}
        self._runs_ok = 0
        done = [False]

        def idle() -> None:
            if not done[0]:
                done[0] = True
                pillow_work(pillow)

        for channels in sorted(groups):
            self._decode_group(self._key(channels, output, drop_alpha), groups[channels], results, retry, idle)
        idle()
        for i, why in retry.items():
            routes[i] = f"pillow after dali: {why}"
        self.last_routes = routes
        return routes, results, retry, pillow

    # -- the batch -------------------------------------------------------------------------------

    def decode(self, blobs: Sequence[bytes | None]) -> ImageBatch:
        """Decode any number of files into Spark's layout in host memory (see the module docstring)."""
        n = len(blobs)
        pillow_images: dict[int, np.ndarray | str] = {}
        routes, results, retry, pillow = self._run_dali(
            blobs, self.host_copy, False, lambda rows: self._pillow(blobs, rows, pillow_images)
        )
        fast = self._zero_copy(results, n) if not pillow and not retry else None
        if fast is not None:
            self._count(routes, [None] * n)
            return fast

        out = ImageBatchBuilder(n)
        for i, res in enumerate(results):
            if res is not None:
                chunk, k = res
                out.set_image(i, chunk.sample(k))
        self._pillow(blobs, sorted(retry), pillow_images)
        for i, image in pillow_images.items():
            if isinstance(image, str):
                out.set_error(i, image)
            else:
                out.set_image(i, image, owned=True)
        self._check_health(sum(not isinstance(pillow_images[i], str) for i in retry))
        batch = out.build()
        self._count(routes, batch.errors)
        return batch

    def decode_device(self, blobs: Sequence[bytes | None], *, drop_alpha: bool = True) -> DeviceImages:
        """Decode any number of files into per-image arrays for a consumer on the engine's device.

        DALI's images stay in GPU memory (DALI ``TensorGPU``; host arrays on DALI's CPU operators), the
        files that went to Pillow come as host numpy arrays, in the same channel order; see
        :class:`DeviceImages` for the types and the lifetime rule. ``drop_alpha``: 4-channel images come
        as BGR without their alpha plane (what JPEG stores), dropped on the device.
        """
        pillow_images: dict[int, np.ndarray | str] = {}
        routes, results, retry, _ = self._run_dali(
            blobs, "device", drop_alpha, lambda rows: self._pillow(blobs, rows, pillow_images)
        )
        images: list[Any] = [None] * len(blobs)
        errors: list[str | None] = [None] * len(blobs)
        for i, res in enumerate(results):
            if res is not None:
                chunk, k = res
                images[i] = chunk.sample(k)
        self._pillow(blobs, sorted(retry), pillow_images)
        for i, image in pillow_images.items():
            if isinstance(image, str):
                errors[i] = image
            else:
                images[i] = np.ascontiguousarray(image[:, :, :3]) if drop_alpha and image.shape[2] == 4 else image
        self._check_health(sum(not isinstance(pillow_images[i], str) for i in retry))
        self._count(routes, errors)
        return DeviceImages(images, errors, routes)

    def _pillow(self, blobs: Sequence[bytes | None], rows: list[int], into: dict[int, np.ndarray | str]) -> None:
        """Decode ``rows`` with Pillow into ``into[row]`` (pixels, or the reason it failed)."""
        for i in rows:
            try:
                into[i] = decode_one(blobs[i], self.options)
            except DecodeError as exc:
                into[i] = str(exc)

    @staticmethod
    def _zero_copy(results: list[Any], n: int) -> ImageBatch | None:
        """The batch straight from DALI's host buffer when one run produced every image in order."""
        if n == 0 or any(r is None for r in results):
            return None
        chunk = results[0][0]
        if chunk.buffer is None or len(chunk.shapes) != n:
            return None
        if any(r[0] is not chunk or r[1] != i for i, r in enumerate(results)):
            return None
        shapes = np.asarray(chunk.shapes, dtype=np.int32).reshape(n, 3)
        offsets = np.asarray(chunk.starts, dtype=np.int64)
        height, width, channels = (shapes[:, j].copy() for j in range(3))
        return ImageBatch(height, width, channels, offsets, chunk.buffer, [None] * n)

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
            discard_pipelines(sorted(self._keys, key=repr))
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

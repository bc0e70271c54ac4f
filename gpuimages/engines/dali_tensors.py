"""DALI straight into a model's input: decode, resize and normalise into one float batch on the device.

``fn.decoders.image`` (``device="mixed"`` on the task's GPU, ``"cpu"`` without one) -> ``fn.resize`` to
the model's size (linear, antialiased) -> ``fn.crop_mirror_normalize`` (float32, ``CHW`` or ``HWC``,
``(x - 255 mean) / (255 std)``), so a batch of up to ``options.batch_size`` images comes out as one dense
``[N, 3, H, W]`` tensor in GPU memory that the model reads in place; pixels never go to host memory.
Files are routed exactly as the DALI engine routes them (:func:`gpuimages.engines.dali.route`), a
failing DALI batch is split in halves (:func:`gpuimages.engines.dali.run_windowed`), and every file DALI
does not take or cannot decode is decoded by Pillow (:func:`gpuimages.engines.pillow.decode_one`, same
resize), normalised on the host and handed to the model as a host batch; a file neither can decode
gets Pillow's reason.

One pipeline per configuration (from the worker cache). Its outputs are reference counted
(``exec_dynamic``: DALI's ``release_outputs`` "does not invalidate" them), so a batch handed to the
model stays valid while the pipeline decodes the next one: :meth:`TensorDecoder.decode` keeps the next
batch in flight (``schedule_run`` returns at once) while the caller runs the model, with no second
pipeline and no thread. Without a GPU the same code runs on DALI's CPU operators.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gpuimages.engines.dali import DecoderSettings, Job, TensorKey, import_dali, route_all, run_windowed
from gpuimages.engines.dali.pipelines import WINDOW, PipelineRun, get_pipeline, open_pipeline
from gpuimages.engines.pillow import DecodeError, decode_one
from gpuimages.models.base import InputFormat, in_device_memory, to_rgb
from gpuimages.options import DecodeOptions
from gpuimages.task.device import TaskDevice

log = logging.getLogger(__name__)


@dataclass
class TensorBatch:
    """Model input for ``rows`` (positions in the decoded batch).

    ``tensor``: a DALI tensor (``TensorGPU`` on a GPU, ``TensorCPU`` on DALI's CPU operators), or
    ``array``: a host numpy batch (Pillow's files). A DALI tensor is complete (host-synchronous) when the
    batch is yielded and stays valid as long as it is referenced; :meth:`release` drops it early.
    """

    rows: list[int]
    tensor: Any = None
    array: np.ndarray | None = None

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
        """Drop the batch's pixels (DALI's memory returns to its pool once nothing else holds it)."""
        self.tensor = None
        self.array = None


class TensorDecoder:
    """Encoded bytes to model-ready float batches with DALI, Pillow for the files DALI does not take.

    ``options.resize`` must be ``(height, width)``; ``options.batch_size`` is the DALI batch (the most
    images per model call on the device path). ``device``: the task's device (GPU ``device.gpu_id``,
    DALI's CPU operators when it is None; ``device.threads`` DALI threads).
    """

    def __init__(
        self,
        options: DecodeOptions,
        input_format: InputFormat,
        device: TaskDevice,
        *,
        fancy_upsampling: bool = True,
    ) -> None:
        if not isinstance(options.resize, tuple) or options.center_crop is not None:
            raise ValueError(f"TensorDecoder: expected options with resize=(height, width) and no crop, got {options}")
        import_dali()
        self.options = options
        self.input_format = input_format
        self.device = device
        self.gpu_id = device.gpu_id
        self.name = "dali-tensors-gpu" if device.gpu_id is not None else "dali-tensors-cpu"
        height, width = options.resize
        self.key = TensorKey(
            DecoderSettings.of(options, device, fancy_upsampling), options.batch_size, int(height), int(width),
            input_format.layout, tuple(input_format.pixel_mean()), tuple(input_format.pixel_std()),
        )
        self.expected = (3, height, width) if input_format.layout == "NCHW" else (height, width, 3)
        #: DALI batch (halved on out-of-memory errors) and iterations in flight.
        self.chunk_size = options.batch_size
        self.full_chunk_size = options.batch_size
        self.window = WINDOW
        #: How each file of the last batch went: "dali", "pillow: <why>", "pillow after dali: <error>".
        self.last_routes: list[str] = []
        get_pipeline(self.key)  # fail early on a broken installation or device

    def _submit(self, run: PipelineRun, jobs: Sequence[Job]) -> None:
        run.submit({"encoded": [j.data for j in jobs]})

    def _collect(self, run: PipelineRun, jobs: Sequence[Job]) -> Any:
        out = run.collect()
        shapes = {tuple(int(d) for d in s) for s in out.shape()}
        if shapes != {self.expected}:
            raise RuntimeError(f"DALI gave shapes {sorted(shapes)}, expected {self.expected}")
        return out.as_tensor()

    def decode(self, blobs: Sequence[bytes | None], errors: dict[int, str]) -> Iterator[TensorBatch]:
        """Yield the model input batches of ``blobs``; files no engine decodes get a reason in ``errors``.

        DALI's batches come first (the next one decodes while the caller uses the current one), then one
        host batch of Pillow's files, decoded while DALI works. Closing the generator early is safe:
        batches still in flight are collected and dropped.
        """
        routes, groups, pillow = route_all(blobs, self.options)
        self.last_routes = routes
        jobs = [job for channels in sorted(groups) for job in groups[channels]]
        retry: dict[int, str] = {}
        host: list[TensorBatch | None] = []

        def pillow_work() -> None:
            host.append(self._pillow(blobs, pillow, errors))

        with open_pipeline(self.key) as run:
            for chunk, tensor in run_windowed(
                jobs, lambda part: self._submit(run, part), lambda part, _: self._collect(run, part), self, retry,
                pillow_work,
            ):
                yield TensorBatch([j.index for j in chunk], tensor=tensor)
        for i, why in retry.items():
            routes[i] = f"pillow after dali: {why}"
        rows = sorted(retry)
        rescued = self._pillow(blobs, rows, errors) if rows else None
        for batch in (*host, rescued):
            if batch is not None:
                yield batch

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

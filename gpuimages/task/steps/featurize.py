"""Featurising: images to vectors with the built-in histogram, an ONNX model or a user batch function.

Input is either pixels (image structs, or an earlier decode) or encoded bytes, which this step decodes
itself straight to the model's size:

* on a task whose device uses DALI, with a model: :class:`~gpuimages.engines.dali_tensors.TensorDecoder`
  decodes, resizes and normalises a device batch into the model's input on the GPU, and the model
  reads it in place (files DALI does not take are decoded by Pillow and come as a host batch); a tensor
  decoder that cannot start leaves the bytes to the next path, with a warning;
* otherwise the engine :class:`~gpuimages.task.steps.decode.Decode` uses decodes to ``image_size``
  (JPEG draft mode on Pillow) and the host path below runs.

Host path: images of one size are stacked, resized to ``image_size`` (Pillow's bilinear filter on
CPU, its array twin on a GPU), turned to RGB (grey replicated, alpha dropped) and fed to the model
at most ``batch_size`` images per call (as pyspark's ``predict_batch_udf`` re-slices batches).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from gpuimages.engines import engine_for
from gpuimages.options import DecodeOptions
from gpuimages.task.device import TaskDevice
from gpuimages.task.images import ImageBatch, list_column
from gpuimages.task.steps.base import Step, Work, gpu_or_cpu
from gpuimages.task.steps.decode import Decode

log = logging.getLogger(__name__)

BACKBONES = ("histogram", "onnx", "function")


def rgb_stack(stack: Any, xp: Any) -> Any:
    """``[N, H, W, 1|3|4]`` grey/BGR/BGRA uint8 as ``[N, H, W, 3]`` RGB (grey replicated, alpha dropped)."""
    channels = stack.shape[-1]
    if channels == 1:
        return xp.concatenate([stack, stack, stack], axis=-1)
    return xp.ascontiguousarray(stack[..., 2::-1])


def run_in_slices(model: Any, batch: np.ndarray, size: int) -> np.ndarray:
    """``model.run`` on at most ``size`` images at a time, results concatenated."""
    parts = [model.run(batch[i : i + size]) for i in range(0, batch.shape[0], size)]
    return np.concatenate(parts, axis=0)


@dataclass
class Featurize(Step):
    """Pixels or encoded bytes to ``list<double>`` vectors in ``output_col``; rows without an image get null.

    backbone:    "histogram" (``grid_size``, ``bins``), "onnx" or "function" (``model``).
    image_size:  ``(height, width)`` every image is resized to before the backbone sees it.
    batch_size:  images per model call.
    decode:      decode options for bytes input (``resize=image_size``; its ``device_batch_size`` is
                 the DALI device batch); None for pixel input.
    """

    backbone: str
    image_size: tuple[int, int]
    output_col: str
    model: Any = None
    grid_size: int = 8
    bins: int = 16
    batch_size: int = 64
    decode: DecodeOptions | None = None
    name = "featurize"
    _arrays: Any = field(default=None, init=False, repr=False, compare=False)
    _model: Any = field(default=None, init=False, repr=False, compare=False)
    _tensors: Any = field(default=None, init=False, repr=False, compare=False)
    _decoder: Decode | None = field(default=None, init=False, repr=False, compare=False)

    def open(self, device: TaskDevice) -> None:
        from gpuimages.transforms.arrays import NUMPY, arrays_for

        if self.backbone not in BACKBONES:
            raise ValueError(f"backbone: expected one of {', '.join(BACKBONES)}, got {self.backbone!r}")
        if self.backbone != "histogram":
            from gpuimages.models import create_model

            self._model = create_model(self.model, device)
        if self.decode is not None and self._model is not None and engine_for(device) == "dali":
            self._tensors = tensor_decoder(self.decode, self._model.input_format, device)
        if self.decode is not None and self._tensors is None:  # no DALI, or it could not start
            self._decoder = Decode(self.decode)
            self._decoder.open(device)
        self._arrays = arrays_for(device) if self.backbone == "histogram" else NUMPY

    def chunk_rows(self, rows_per_batch: int) -> int:
        if self._tensors is not None:
            return self.decode.device_batch_size
        return self.batch_size

    def predicted_bytes(self, value: pa.Scalar) -> int:
        return 0 if self._decoder is None else self._decoder.predicted_bytes(value)

    def run(self, work: Work) -> None:
        if self._tensors is not None:
            vectors = self._from_tensors(work)
        else:
            if work.images is None:
                self._decoder.run(work)
            vectors = self._from_images(work.images)
        work.columns[self.output_col] = list_column(vectors, pa.float64())
        work.row_bytes = np.array([0 if v is None else v.size * 8 for v in vectors], dtype=np.int64)

    def _from_images(self, images: ImageBatch) -> list[np.ndarray | None]:
        """The host path over an :class:`ImageBatch` of any sizes."""
        from gpuimages.transforms import ops

        vectors: list[np.ndarray | None] = [None] * len(images)
        arrays = self._arrays
        height, width = self.image_size
        with arrays.on_device():
            for rows in images.groups().values():
                stack = ops.resize(arrays.asarray(images.stack(rows)), height, width, arrays)
                values = self._features(stack)
                for j, i in enumerate(rows):
                    vectors[i] = values[j]
        return vectors

    def _features(self, stack: Any) -> np.ndarray:
        """Vectors of a ``[N, H, W, 1|3|4]`` stack in Spark's layout (grey, BGR, BGRA)."""
        if self.backbone == "histogram":
            from gpuimages.transforms.histogram import histogram_features

            rgb = rgb_stack(stack, self._arrays.xp)
            return self._arrays.to_numpy(histogram_features(rgb, self.grid_size, self.bins, self._arrays))
        model = self._model
        return run_in_slices(model, model.input_format.prepare_spark(self._arrays.to_numpy(stack)), self.batch_size)

    def _from_tensors(self, work: Work) -> list[np.ndarray | None]:
        """The DALI path: device batches read in place by the model; Pillow's files as a host batch."""
        vectors: list[np.ndarray | None] = [None] * len(work)
        failed: dict[int, str] = {}
        model = self._model
        for batch in self._tensors.decode(work.blobs, failed):
            if batch.on_device:
                values = model.run_device(batch.tensor, len(batch.rows))
            else:
                values = run_in_slices(model, batch.host_view(), self.batch_size)
            for j, i in enumerate(batch.rows):
                vectors[i] = values[j]
        work.note([failed.get(i) for i in range(len(work))])
        work.blobs = None
        return vectors

    def engine(self) -> str | None:
        decoding = self._tensors.name if self._tensors is not None else (
            self._decoder.engine() if self._decoder is not None else None
        )
        model = self.backbone if self._model is None else self._model.name
        return f"{decoding} + {model}" if decoding else model

    def close(self) -> None:
        if self._decoder is not None:
            self._decoder.close()
        self._model = self._tensors = self._decoder = None


def tensor_decoder(options: DecodeOptions, input_format: Any, device: TaskDevice) -> Any:
    """The worker's DALI tensor decoder for ``options`` and the model's input format, from the worker cache.

    None when DALI cannot start here (no usable GPU, a broken installation) under "auto": this task then
    decodes with the engine :class:`Decode` falls back to, with a warning, as ``decode_images`` does, and the
    next task tries DALI again; under ``device="gpu"`` the task fails with the cause. A missing or too old
    DALI raises its ImportError naming the extra.
    """
    from gpuimages.engines.dali_tensors import TensorDecoder

    options = dataclasses.replace(options, batch_size=options.device_batch_size)
    key = ("tensors", device.gpu_id, device.threads, options, input_format)
    return gpu_or_cpu(
        True, key, lambda: TensorDecoder(options, input_format, device), lambda: None, "the DALI tensor decoder",
        device,
    )

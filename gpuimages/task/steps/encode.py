"""Encoding: pixels (``work.images``) to JPEG or PNG bytes, with their origin, height and width.

The encoder is chosen as engines are: nvImageCodec for JPEG where the task's device uses it (or when
asked for by name), Pillow otherwise, built once per worker through the worker cache. A GPU encoder that
cannot start fails a ``device="gpu"`` task with the cause; under "auto" that task encodes with Pillow and
the next one tries nvImageCodec again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gpuimages.encoders.base import EncodeOptions
from gpuimages.task.cache import worker_cache
from gpuimages.task.device import TaskDevice
from gpuimages.task.steps.base import Step, Work, gpu_or_cpu

log = logging.getLogger(__name__)

#: Columns every encoding stage adds before the bytes and the reason.
META_COLUMNS = ("origin", "height", "width")


def task_encoder(options: EncodeOptions, device: TaskDevice):
    """The worker's encoder for ``options`` on ``device``, built once and kept in the worker cache."""
    from gpuimages.encoders import create_encoder, encoder_for

    name = encoder_for(options, device)
    key = ("encoder", name, device.gpu_id if name != "pillow" else None, device.threads, options)

    if name != "nvimgcodec":
        return worker_cache().get(key, lambda: create_encoder(options, device, name))
    asked = options.encoder == "nvimgcodec" or device.mode == "gpu"
    return gpu_or_cpu(
        True, key, lambda: create_encoder(options, device, name),
        lambda: worker_cache().get(("encoder", "pillow", None, device.threads, options),
                                   lambda: create_encoder(options, device, "pillow")),
        "nvImageCodec", device, missing_is_fatal=asked,
    )


@dataclass
class Encode(Step):
    """Pixels to encoded bytes in ``output_col`` (also left in ``work.blobs`` for a write step), with the
    ``origin``, ``height`` and ``width`` columns; a row without an image or that fails to encode gets null
    bytes, null sizes and its reason."""

    options: EncodeOptions
    output_col: str = "encoded"
    name = "encode"
    _encoder: object = field(default=None, init=False, repr=False, compare=False)

    def open(self, device: TaskDevice) -> None:
        self._encoder = task_encoder(self.options, device)

    def chunk_rows(self, rows_per_batch: int) -> int:
        return self.options.batch_size

    def run(self, work: Work) -> None:
        if work.device_images is not None:  # the GPU transcode: images still in GPU memory
            decoded = work.device_images
            shapes = [decoded.shape(i) for i in range(len(decoded))]
            on_device = self._encoder.name.startswith("nvimgcodec")
            encoded = self._encoder.encode(
                decoded.images if on_device else [decoded.host(i) for i in range(len(decoded))]
            )
            decoded.release()
            work.device_images = None
        else:
            images = work.images.images()
            shapes = [None if im is None else im.shape for im in images]
            encoded = self._encoder.encode(images)
        work.note(encoded.errors)
        data = encoded.data
        work.blobs = data
        work.columns["origin"] = work.origins
        heights = [None if b is None else int(sh[0]) for sh, b in zip(shapes, data, strict=True)]
        widths = [None if b is None else int(sh[1]) for sh, b in zip(shapes, data, strict=True)]
        work.columns["height"] = pa.array(heights, type=pa.int32())
        work.columns["width"] = pa.array(widths, type=pa.int32())
        work.columns[self.output_col] = pa.array(data, type=pa.binary())
        work.row_bytes = np.array([0 if b is None else len(b) for b in data], dtype=np.int64)
        work.images = None

    def engine(self) -> str | None:
        return None if self._encoder is None else self._encoder.name

    def close(self) -> None:
        self._encoder = None

"""Decoding: encoded bytes to pixels with the engine the task's device selects, and pixels to image structs.

:class:`Decode` picks the engine once per worker, device and options (DALI where the task computes on
a GPU, or under ``device="gpu"``; Pillow otherwise) through the worker cache. A GPU engine that cannot
start fails a ``device="gpu"`` task with the cause; under "auto" that task uses Pillow and the next one
tries the GPU again. On a GPU a chunk is a device batch (``device_batch_size``
rows); on CPU it is an Arrow batch. Chunks are bounded by the decoded bytes each file's header
predicts (:func:`predicted_bytes`). :class:`ReturnImages` turns the pixels into Spark's image struct.
"""

from __future__ import annotations

import dataclasses
import io
import logging
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gpuimages.encoders import NVIMGCODEC_MODULE
from gpuimages.engines import engine_for
from gpuimages.engines.formats import sniff
from gpuimages.options import DecodeOptions
from gpuimages.task.cache import worker_cache
from gpuimages.task.device import TaskDevice
from gpuimages.task.steps.base import Step, Work, gpu_or_cpu

log = logging.getLogger(__name__)

#: Bytes of each file read to predict its decoded size (headers; the whole file if its size is not found).
HEADER_BYTES = 1 << 16
#: Channels assumed when a header does not say (formats other than JPEG/PNG): the largest case.
UNKNOWN_CHANNELS = 4

def header_size(header: bytes) -> tuple[int, int, int] | None:
    """``(height, width, channels)`` from the first bytes of a file, or None if they do not say."""
    info = sniff(header)
    if info.width > 0 and info.height > 0:
        return info.height, info.width, info.spark_channels() or UNKNOWN_CHANNELS
    if info.format != "other":
        return None
    from PIL import Image

    try:  # other formats: Pillow reads the size from the header without decoding
        with Image.open(io.BytesIO(header)) as im:
            return im.height, im.width, UNKNOWN_CHANNELS
    except Exception:  # noqa: BLE001 - unknown or broken: predicted as nothing, decoded (or refused) alone
        return None


def predicted_bytes(value: pa.Scalar, options: DecodeOptions) -> int:
    """Decoded pixel bytes of one encoded image after resize/crop, predicted from its header.

    Reads the header through a zero-copy view of the Arrow value; only a file whose size is not in
    its first :data:`HEADER_BYTES` is copied whole. Unknown or broken files predict 0 (they decode
    to an invalid row, or are small formats Pillow cannot size from a header).
    """
    if not value.is_valid:
        return 0
    view = memoryview(value.as_buffer())
    size = header_size(bytes(view[:HEADER_BYTES]))
    if size is None and len(view) > HEADER_BYTES:
        size = header_size(bytes(view))
    if size is None:
        return 0
    height, width, channels = size
    out_h, out_w = options.output_size(height, width)
    return out_h * out_w * channels


def decode_engine(options: DecodeOptions, device: TaskDevice, name: str | None = None, device_output: bool = False):
    """The worker's engine for ``options`` on ``device``, built once and kept in the worker cache.

    The DALI engine's pipelines take ``options.device_batch_size`` images per run; ``device_output``
    builds it for :meth:`~gpuimages.engines.dali.DaliEngine.decode_device` (images left in GPU memory).
    A DALI engine that cannot start (no usable GPU, a broken installation) fails the task under
    ``device="gpu"`` with the cause; under "auto" this task decodes with Pillow, with a warning, and the next
    task tries DALI again (the fallback is never cached under DALI's key). A missing DALI under
    ``device="gpu"`` raises the ImportError naming the extra.
    """
    from gpuimages.engines import create_engine

    name = name or engine_for(device)
    if name == "dali":
        options = dataclasses.replace(options, batch_size=options.device_batch_size)
        key = ("engine", name, device.gpu_id, device.threads, device_output, options)
    else:
        key = ("engine", name, options)

    def build():
        return create_engine(options, device, name, device_output=device_output)

    if name != "dali":
        return worker_cache().get(key, build)
    return gpu_or_cpu(True, key, build, lambda: decode_engine(options, device, "pillow"), "the DALI engine", device)


@dataclass
class Decode(Step):
    """Encoded bytes (``work.blobs``) to pixels (``work.images``); undecodable files get their reason.

    ``to_device``: on a task with a GPU, the DALI engine and nvImageCodec, leave the images in GPU memory
    (``work.device_images``, alpha dropped) for an :class:`~gpuimages.task.steps.Encode` step that encodes
    JPEG there (the GPU transcode: no host round trip). Elsewhere it has no effect: without nvImageCodec the
    encoder is Pillow's, which would copy device images to the host one by one instead of in DALI's batched,
    page-locked copy.
    """

    options: DecodeOptions
    to_device: bool = False
    name = "decode"
    _engine: object = field(default=None, init=False, repr=False, compare=False)
    _device_output: bool = field(default=False, init=False, repr=False, compare=False)

    def open(self, device: TaskDevice) -> None:
        self._device_output = (
            self.to_device and device.on_gpu and engine_for(device) == "dali" and device.uses(NVIMGCODEC_MODULE)
        )
        self._engine = decode_engine(self.options, device, device_output=self._device_output)
        self._device_output = self._device_output and self._engine.name.startswith("dali")

    @property
    def on_gpu_engine(self) -> bool:
        """True when the engine is DALI (it decodes device batches)."""
        return self._engine is not None and self._engine.name.startswith("dali")

    def chunk_rows(self, rows_per_batch: int) -> int:
        return self.options.device_batch_size if self.on_gpu_engine else rows_per_batch

    def predicted_bytes(self, value: pa.Scalar) -> int:
        return predicted_bytes(value, self.options)

    def run(self, work: Work) -> None:
        if self._device_output:
            decoded = self._engine.decode_device(work.blobs, drop_alpha=True)
            work.blobs = None
            work.device_images = decoded
            work.note(decoded.errors)
            return
        images = self._engine.decode(work.blobs)
        work.blobs = None  # the encoded copies are not needed once decoded
        work.images = images
        work.note(images.errors)

    def engine(self) -> str | None:
        return None if self._engine is None else self._engine.name

    def close(self) -> None:
        self._engine = None


@dataclass
class ReturnImages(Step):
    """Pixels (``work.images``) to Spark's image struct in ``output_col``; a row without an image gets
    Spark's invalid row."""

    output_col: str
    name = "images"

    def run(self, work: Work) -> None:
        images = work.images
        work.columns[self.output_col] = images.to_struct(work.origins)
        work.row_bytes = np.diff(images.offsets)

"""What runs inside a Spark task for encoding: pick the encoder once per worker, encode bounded
batches of image structs (``encode_images``) or of decoded files (``transcode_images``), and return
only the compact bytes with their origin, height, width and reason. Nothing here runs on the driver.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gpuimages.encoders import EncodedBatch, EncodeOptions, Encoder, create_encoder
from gpuimages.options import DecodeOptions
from gpuimages.task.device import TaskDevice, task_threads
from gpuimages.tasks import DecodeLayout, chunk_origins, decode_slices, engine_for_task, record_task

log = logging.getLogger(__name__)

#: Columns every encoding stage adds before the bytes and the reason.
META_COLUMNS = ("origin", "height", "width")

_ENCODERS: dict[tuple, Encoder] = {}


@dataclass(frozen=True)
class EncodeLayout:
    """Which columns go in and out of an encoding stage.

    ``merge_error``: ``error_col`` is already a column of the input (e.g. ``read_images``' reason);
    its reason is kept where set and the encoder's reason fills the rest.
    """

    input_col: str
    output_col: str
    error_col: str
    passthrough: tuple[str, ...]
    merge_error: bool = False

    @property
    def names(self) -> list[str]:
        return [*self.passthrough, *META_COLUMNS, self.output_col, self.error_col]


def _encoder_choice(options: EncodeOptions) -> tuple[str, int | None]:
    """Encoder name and GPU id for this task, following ``options.device`` as decode engines do."""
    if options.format != "jpeg" or options.encoder == "pillow":
        return "pillow", None
    if options.device == "cpu":
        return ("nvimgcodec", None) if options.encoder == "nvimgcodec" else ("pillow", None)
    from gpuimages import gpu

    device = "gpu" if options.encoder == "nvimgcodec" else options.device
    use, gpu_id = gpu.library_gpu(device, "nvidia.nvimgcodec", "nvImageCodec")
    return ("nvimgcodec", gpu_id) if use else ("pillow", None)


def encoder_for_task(options: EncodeOptions) -> Encoder:
    """The encoder for this task, created once per Python worker and configuration.

    A GPU encoder that cannot start falls back to Pillow with a warning (the job goes on).
    """
    name, gpu_id = _encoder_choice(options)
    key = (name, gpu_id, options)
    encoder = _ENCODERS.get(key)
    if encoder is None:
        try:
            encoder = create_encoder(options, TaskDevice(options.device, gpu_id, task_threads(None)), encoder=name)
        except ImportError:
            if options.encoder == "nvimgcodec" or options.device == "gpu":
                raise
            encoder = create_encoder(options, TaskDevice("cpu"), encoder="pillow")
        except Exception as exc:  # noqa: BLE001 - a GPU that cannot start must not fail the job
            if name != "nvimgcodec":
                raise
            log.warning("gpuimages: nvImageCodec could not start on gpu=%s (%s); encoding with Pillow", gpu_id, exc)
            encoder = create_encoder(options, TaskDevice("cpu"), encoder="pillow")
        log.info("gpuimages: encoding %s with %s (gpu=%s)", options.format, encoder.name, gpu_id)
        _ENCODERS[key] = encoder
    return encoder


def _sizes(images: Sequence[np.ndarray | None], encoded: EncodedBatch) -> tuple[pa.Array, pa.Array]:
    heights = [None if b is None else int(im.shape[0]) for im, b in zip(images, encoded.data, strict=True)]
    widths = [None if b is None else int(im.shape[1]) for im, b in zip(images, encoded.data, strict=True)]
    return pa.array(heights, type=pa.int32()), pa.array(widths, type=pa.int32())


def encoded_batch(
    chunk: pa.RecordBatch,
    layout: EncodeLayout,
    origins: list[str | None],
    images: Sequence[np.ndarray | None],
    encoded: EncodedBatch,
    reasons: Sequence[str | None],
) -> pa.RecordBatch:
    """The output batch: pass-through columns, origin, height, width, bytes and reason.

    ``reasons[i]`` (why there was no image to encode) wins over the encoder's own reason; with
    ``layout.merge_error`` a reason already in the input's error column wins over both.
    """
    errors = [r if r is not None else e for r, e in zip(reasons, encoded.errors, strict=True)]
    if layout.merge_error:
        previous = chunk.column(layout.error_col).to_pylist()
        errors = [p if p is not None else e for p, e in zip(previous, errors, strict=True)]
    height, width = _sizes(images, encoded)
    columns = [chunk.column(name) for name in layout.passthrough]
    columns += [
        pa.array(origins, type=pa.string()),
        height,
        width,
        pa.array(encoded.data, type=pa.binary()),
        pa.array(errors, type=pa.string()),
    ]
    return pa.RecordBatch.from_arrays(columns, names=layout.names)


def struct_images(column: pa.Array) -> tuple[list[str | None], list[np.ndarray | None], list[str | None]]:
    """Origins, pixel views and "why not" reasons of an Arrow image-struct column (no pixel copy)."""
    from gpuimages.ml.arrow import read_images

    view = read_images(column)
    origins = view.origin.cast(pa.string()).to_pylist()
    images: list[np.ndarray | None] = []
    reasons: list[str | None] = []
    for i in range(len(view)):
        if view.valid[i]:
            images.append(view.pixels(i))
            reasons.append(None)
            continue
        images.append(None)
        if not view.present[i]:
            reasons.append("no image (null value)")
        elif view.channels[i] == -1:
            reasons.append("invalid image (it was not decoded)")
        else:
            reasons.append(
                f"inconsistent image struct: height={view.height[i]}, width={view.width[i]}, "
                f"nChannels={view.channels[i]} do not match its data"
            )
    return origins, images, reasons


def encode_partition(
    batches: Iterator[pa.RecordBatch], options: EncodeOptions, layout: EncodeLayout
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body of ``encode_images``: image structs in, encoded bytes out, in bounded slices."""
    encoder = encoder_for_task(options)
    for batch in batches:
        for start in range(0, batch.num_rows, options.batch_size):
            chunk = batch.slice(start, options.batch_size)
            origins, images, reasons = struct_images(chunk.column(layout.input_col))
            yield encoded_batch(chunk, layout, origins, images, encoder.encode(images), reasons)


def transcode_partition(
    batches: Iterator[pa.RecordBatch],
    decode_options: DecodeOptions,
    options: EncodeOptions,
    decode_layout: DecodeLayout,
    layout: EncodeLayout,
) -> Iterator[pa.RecordBatch]:
    """``mapInArrow`` body of ``transcode_images``: the decode path's engine and slices, then the encoder.

    Pixels stay in the task; only the encoded bytes (and their metadata) go back to the JVM.
    """
    engine = engine_for_task(decode_options)
    encoder = encoder_for_task(options)
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        for chunk in decode_slices(batch, layout.input_col, decode_options):
            decoded = engine.decode(chunk.column(layout.input_col).to_pylist())
            images = [decoded.pixels(i) if decoded.channels[i] > 0 else None for i in range(len(decoded))]
            encoded = encoder.encode(images)
            yield encoded_batch(chunk, layout, chunk_origins(chunk, decode_layout), images, encoded, decoded.errors)
    record_task(engine, rows)

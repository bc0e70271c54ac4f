"""``decode_images``: the one decode path shared by folders, tables and streams.

Driver side only: validate options, plan partitions, choose the resource profile, and run
a stage on the task runtime (:func:`gpuimages.stage.run_stage`). Only the DataFrame API is used, so
the same code runs on classic and Spark Connect sessions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpuimages import scheduling
from gpuimages.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE_BATCH_SIZE,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_PIXELS,
    DecodeOptions,
    check_bool,
    check_num_partitions,
    make_decode_options,
)
from gpuimages.schema import image_struct_type
from gpuimages.stage import run_stage, session_conf
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps import Decode, ReturnImages, Step

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

#: Makes the steps that bring the files to a decode (local files read, archives unpacked): called with the
#: decode step and the byte budget (see :meth:`gpuimages.sources.inputs.FileInputs.steps`).
StepsBefore = Callable[[Step, int], "tuple[Step, ...]"]


@dataclass(frozen=True)
class DecodeColumns:
    """Which columns go in and out of the decode stage (checked by :func:`check_columns`).

    ``prior_error_col``: a column of reasons known before decoding (``read_images``: files the scan
    returned no bytes for), which win over the decoder's.
    """

    input_col: str
    origin_col: str | None
    output_col: str
    error_col: str
    passthrough: tuple[str, ...]
    drop_invalid: bool = False
    prior_error_col: str | None = None


def check_columns(df: DataFrame, columns: DecodeColumns) -> None:
    """Driver-side checks: a binary input column, a string origin column, new output names."""
    from pyspark.sql.types import BinaryType, StringType

    fields = {f.name: f.dataType for f in df.schema.fields}
    if columns.input_col not in fields:
        raise ValueError(f"input_col: expected one of the columns {sorted(fields)}, got {columns.input_col!r}")
    if not isinstance(fields[columns.input_col], BinaryType):
        raise TypeError(
            f"input_col {columns.input_col!r}: expected a binary column, "
            f"got {fields[columns.input_col].simpleString()}"
        )
    if columns.origin_col is not None:
        if columns.origin_col not in fields:
            raise ValueError(
                f"origin_col: expected one of the columns {sorted(fields)} or None, got {columns.origin_col!r}"
            )
        if not isinstance(fields[columns.origin_col], StringType):
            raise TypeError(
                f"origin_col {columns.origin_col!r}: expected a string column, "
                f"got {fields[columns.origin_col].simpleString()}"
            )
    for name in (columns.output_col, columns.error_col):
        if name in columns.passthrough:
            raise ValueError(f"output columns: expected a name not already in the DataFrame, got {name!r}")
    if columns.output_col == columns.error_col:
        raise ValueError(f"error_col: expected a name other than output_col, got {columns.error_col!r}")


def decode_images(
    df: DataFrame,
    input_col: str = "content",
    *,
    origin_col: str | None = "path",
    output_col: str = "image",
    error_col: str = "error",
    device: str = "auto",
    resize: Any = None,
    center_crop: Any = None,
    drop_invalid: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    apply_exif: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    num_partitions: int | None = None,
    keep_input: bool = False,
    task_gpu_amount: float | None = None,
    hw_decoder_load: float = 0.65,
    strict: bool = False,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    device_batch_size: int = DEFAULT_DEVICE_BATCH_SIZE,
    archives: bool = False,
    webdataset: Any = False,
) -> DataFrame:
    """Decode encoded image bytes in ``df[input_col]`` into Spark's image schema.

    Returns ``df`` with ``output_col`` (the image struct: origin, height, width, nChannels, mode,
    data as BGR(A) bytes) and ``error_col`` (why an image is invalid; null when it decoded) added.
    Every other column is kept; ``input_col`` is dropped unless ``keep_input``. One row out per row
    in, unless ``drop_invalid``. Works on batch and streaming DataFrames and on Spark Connect.

    Args:
        df: a DataFrame with a binary column of encoded images (e.g. the ``binaryFile`` source).
        input_col: the binary column.
        origin_col: string column copied into ``image.origin`` (None: origin is null).
        device: "auto" (GPU engine where executors have GPUs and DALI, else Pillow), "cpu", "gpu".
        resize: ``(height, width)`` exact size, or an int for the shorter side (aspect kept).
        center_crop: ``(height, width)`` (or int) cut from the centre after resizing.
        drop_invalid: drop rows whose image could not be decoded.
        max_pixels: refuse images whose header claims more pixels (decompression bombs).
        apply_exif: rotate/flip by the EXIF orientation tag (off, as in Spark's image source).
        batch_size: images per Arrow batch returned to the JVM (and per CPU engine call).
        device_batch_size: images per GPU decode (a DALI device batch); also bounded by ``max_batch_bytes``.
        num_partitions: decode partitions; default: about one per executor core or GPU slot
            (the input is coalesced, never shuffled). An explicit value repartitions.
        task_gpu_amount: GPU share per decode task in the resource profile (default: conf).
        hw_decoder_load: share of JPEGs for the GPU's hardware decoder (DALI mixed mode).
        strict: a file whose data ends before the image does (a truncated JPEG or PNG) is an
            invalid row with the reason; by default it is decoded as far as its data goes, as
            Spark's image source does (files Spark refuses are invalid either way).
        max_batch_bytes: decoded pixel bytes per engine call and per Arrow batch returned, predicted
            from each file's header after resize/crop (default 128 MiB); an image larger than
            this is decoded alone. Bounds a worker's memory by bytes as ``batch_size`` does by count.
        archives: a value holding a tar (plain or gzip) or zip archive (by its signature) becomes one row
            per image member, the other columns repeated, ``image.origin`` ``<origin>#<member path>``
            (see docs/training-data.md). The stage then keeps ``df``'s partitions (a ``binaryFile`` read
            packs a few archives in each) instead of coalescing them to one per slot.
        webdataset: with ``archives``, the WebDataset siblings of each image member as columns, as in
            :func:`gpuimages.read_images`.
    """
    options = make_decode_options(
        resize=resize,
        center_crop=center_crop,
        max_pixels=max_pixels,
        apply_exif=apply_exif,
        batch_size=batch_size,
        device=device,
        hw_decoder_load=hw_decoder_load,
        strict=strict,
        max_batch_bytes=max_batch_bytes,
        device_batch_size=device_batch_size,
    )
    keep_input = check_bool("keep_input", keep_input)
    before = None
    if check_bool("archives", archives):  # archives: unpacked by signature before the decode
        from gpuimages.sources.archives import ArchivePlan, sibling_columns

        reading = ArchivePlan(False, sibling_columns(webdataset), 1.0, 0)
        reading.check_names((*df.columns, output_col, error_col))
        df = reading.with_columns(df)

        def before(bounds, budget):
            return (reading.step(input_col, bounds, budget, path_col=None, keep_input=keep_input),)
    elif webdataset:
        raise ValueError("webdataset: expected archives=True to read WebDataset siblings")
    passthrough = tuple(f for f in df.columns if keep_input or f != input_col)
    columns = DecodeColumns(
        input_col, origin_col, output_col, error_col, passthrough, drop_invalid=check_bool("drop_invalid", drop_invalid)
    )
    return decode_frame(
        df, options, columns, num_partitions=num_partitions, task_gpu_amount=task_gpu_amount, before=before,
        keep_partitions=before is not None,  # archives: a binaryFile read packs a few in each partition
    )


def decode_frame(
    df: DataFrame,
    options: DecodeOptions,
    columns: DecodeColumns,
    *,
    num_partitions: int | None = None,
    task_gpu_amount: float | None = None,
    total_bytes: int | None = None,
    num_files: int | None = None,
    conf: dict[str, str | None] | None = None,
    before: StepsBefore | None = None,
    keep_partitions: bool = False,
) -> DataFrame:
    """Plan and run the decode stage (shared by :func:`decode_images` and ``read_images``).

    ``conf`` is :func:`gpuimages.stage.session_conf` when the caller has read it already. ``before`` makes
    the steps run before the decode (local files read, archives unpacked into their members), given the
    decode step and the byte budget. ``keep_partitions``: ``df``'s partitions are planned already.
    """
    from pyspark.sql.types import StringType, StructField, StructType

    num_partitions = check_num_partitions(num_partitions)
    check_columns(df, columns)
    conf = conf if conf is not None else session_conf(df.sparkSession)
    device = scheduling.resolve_device(options.device, conf)  # the stage's: tasks read it from the spec

    fields = {f.name: f for f in df.schema.fields}
    schema = StructType(
        [fields[name] for name in columns.passthrough]
        + [StructField(columns.output_col, image_struct_type(), True),
           StructField(columns.error_col, StringType(), True)]
    )
    decode = Decode(options)
    spec = StageSpec(
        name="decode",
        device=device,
        input_col=columns.input_col,
        input_kind="bytes",
        steps=(*steps_before(before, decode, options.max_batch_bytes), decode, ReturnImages(columns.output_col)),
        columns=(*columns.passthrough, columns.output_col, columns.error_col),
        origin_col=columns.origin_col,
        error_col=columns.error_col,
        prior_error_col=columns.prior_error_col,
        drop_invalid=columns.drop_invalid,
        rows_per_batch=options.batch_size,
        max_batch_bytes=options.max_batch_bytes,
    )
    return run_stage(
        df, spec, schema, conf,
        num_partitions=num_partitions, task_gpu_amount=task_gpu_amount, total_bytes=total_bytes, num_files=num_files,
        coalesce=not keep_partitions,
    )


def steps_before(before: StepsBefore | None, decode: Step, budget: int) -> tuple[Step, ...]:
    """The steps ``before`` makes to run before ``decode`` (none without it)."""
    return () if before is None else tuple(before(decode, budget))

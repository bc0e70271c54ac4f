"""``transcode_images``: encoded files into resized, re-encoded JPEG or PNG bytes in one task.

The decode path plus an encoder: the task decodes with the same engine, chunks and options as
``decode_images`` (:class:`gpuimages.task.steps.Decode`), encodes each image
(:class:`gpuimages.task.steps.Encode`), and returns only the compact bytes with their
origin, height and width; pixels never reach the JVM. Driver side only here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpuimages import scheduling
from gpuimages.decode import DecodeColumns, check_columns, steps_before
from gpuimages.encode import EncodeColumns, encode_columns, encoded_schema
from gpuimages.encoders import (
    DEFAULT_PNG_LEVEL,
    DEFAULT_QUALITY,
    EncodeOptions,
    make_encode_options,
    nvimgcodec_installed,
    resolve_encode_device,
)
from gpuimages.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE_BATCH_SIZE,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_PIXELS,
    DecodeOptions,
    check_bool,
    check_num_partitions,
    check_sample_ratio,
    check_seed,
    make_decode_options,
)
from gpuimages.sources.columns import CONTENT_COL, ORIGIN_COL, REASON_COL
from gpuimages.sources.scan import normalize_paths
from gpuimages.stage import run_stage, session_conf
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps import Decode, Encode

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

    from gpuimages.sources.inputs import FileInputs
    from gpuimages.task.steps import Step

log = logging.getLogger(__name__)


def transcode_images(
    df: DataFrame,
    input_col: str = "content",
    *,
    origin_col: str | None = "path",
    resize: Any = None,
    center_crop: Any = None,
    format: str = "jpeg",  # noqa: A002 - the option's public name
    quality: int = DEFAULT_QUALITY,
    output_col: str = "encoded",
    error_col: str = "error",
    subsampling: str = "4:2:0",
    optimize: bool = False,
    compress_level: int = DEFAULT_PNG_LEVEL,
    device: str = "auto",
    encoder: str | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    apply_exif: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    strict: bool = False,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
    device_batch_size: int = DEFAULT_DEVICE_BATCH_SIZE,
    keep_input: bool = False,
    num_partitions: int | None = None,
    task_gpu_amount: float | None = None,
    hw_decoder_load: float = 0.65,
) -> DataFrame:
    """Decode the encoded images in ``df[input_col]``, resize/crop them, and encode them again.

    Returns ``df`` without ``input_col`` (unless ``keep_input``), with ``origin`` (from
    ``origin_col``), ``height`` and ``width`` (of the output image), ``output_col`` (the new JPEG or
    PNG bytes) and ``error_col`` added. A file that cannot be decoded (or encoded) gives null bytes,
    null sizes and the reason; it never fails the task. Resize and crop follow ``read_images``'
    rules exactly (same engines, same options), so output sizes equal ``read_images(resize=...)``'s.
    Grey stays grey; PNG keeps alpha, JPEG drops it. Works on batch and streaming DataFrames.

    Args:
        df: a DataFrame with a binary column of encoded images (e.g. the ``binaryFile`` source).
        input_col: the binary column.
        origin_col: string column copied into ``origin`` (None: origin is null).
        resize: ``(height, width)`` exact size, or an int for the shorter side (aspect kept).
        center_crop: ``(height, width)`` (or int) cut from the centre after resizing.
        format, quality, subsampling, optimize, compress_level, encoder: as in :func:`gpuimages.encode_images`.
        device: "auto", "cpu" or "gpu": DALI decodes and nvImageCodec encodes JPEG on a GPU; Pillow otherwise.
        max_pixels, apply_exif, batch_size, strict, max_batch_bytes, device_batch_size, hw_decoder_load: as in
            :func:`gpuimages.decode_images`.
        keep_input: keep the input bytes column.
        num_partitions: repartition to this many partitions (default: about one per core or GPU slot).
        task_gpu_amount: GPU share per task in the resource profile (device="gpu" on a cluster).
    """
    decode_options = make_decode_options(
        resize=resize, center_crop=center_crop, max_pixels=max_pixels, apply_exif=apply_exif,
        batch_size=batch_size, device=device, hw_decoder_load=hw_decoder_load, strict=strict,
        max_batch_bytes=max_batch_bytes, device_batch_size=device_batch_size,
    )
    options = make_encode_options(
        format=format, quality=quality, subsampling=subsampling, optimize=optimize,
        compress_level=compress_level, device=device, encoder=encoder, batch_size=batch_size,
    )
    num_partitions = check_num_partitions(num_partitions)
    columns = encode_columns(df, input_col, output_col, error_col, keep_input)
    check_columns(df, DecodeColumns(input_col, origin_col, output_col, error_col, columns.passthrough))
    return transcode_frame(
        df, decode_options, options, columns, origin_col=origin_col,
        num_partitions=num_partitions, task_gpu_amount=task_gpu_amount,
    )


def transcode_frame(
    df: DataFrame,
    decode_options: DecodeOptions,
    options: EncodeOptions,
    columns: EncodeColumns,
    *,
    origin_col: str | None,
    prior_error_col: str | None = None,
    num_partitions: int | None = None,
    task_gpu_amount: float | None = None,
    total_bytes: int | None = None,
    num_files: int | None = None,
    conf: dict[str, str | None] | None = None,
    before: Any = None,
    keep_partitions: bool = False,
    after: Step | None = None,
    after_schema: StructType | None = None,
) -> DataFrame:
    """Resolve the device and run the transcode stage (shared by :func:`transcode_images` and
    :func:`transcode_files`), as :func:`gpuimages.decode.decode_frame` runs the decode stage (``before`` and
    ``keep_partitions`` as there: local files read, archives into their members; ``prior_error_col`` as
    :class:`gpuimages.decode.DecodeColumns`' ). ``after``: a step run on the encoded bytes
    in the same task (shards written), whose own output (``after_schema``) the stage returns."""
    conf = conf if conf is not None else session_conf(df.sparkSession)
    resolved = scheduling.resolve_device(decode_options.device, conf)  # the stage's: tasks read it from the spec
    if options.encoder == "nvimgcodec" or (resolved == "gpu" and options.format == "jpeg"):
        if not nvimgcodec_installed():
            if options.encoder == "nvimgcodec":
                resolve_encode_device("gpu", "nvimgcodec")  # raises the ImportError naming the extra
            log.info("device='gpu': nvImageCodec is not installed; JPEG is encoded with Pillow")
            options = dataclasses.replace(options, encoder="pillow")
    decode = Decode(decode_options, to_device=options.format == "jpeg" and options.encoder != "pillow")
    unpacking = steps_before(before, decode, decode_options.max_batch_bytes)
    spec = StageSpec(
        name="transcode",
        device=resolved,
        input_col=columns.input_col,
        input_kind="bytes",
        steps=(*unpacking, decode, Encode(options, columns.output_col), *((after,) if after is not None else ())),
        columns=columns.names if after is None else tuple(after_schema.fieldNames()),
        origin_col=origin_col,
        error_col=columns.error_col,
        prior_error_col=prior_error_col or (columns.error_col if columns.merge_error else None),
        rows_per_batch=decode_options.batch_size,
        max_batch_bytes=decode_options.max_batch_bytes,
    )
    return run_stage(
        df, spec, encoded_schema(df, columns) if after is None else after_schema, conf, num_partitions=num_partitions,
        task_gpu_amount=task_gpu_amount, total_bytes=total_bytes, num_files=num_files,
        coalesce=not keep_partitions,
    )


def transcode_files(
    spark: SparkSession,
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    recursive: bool = False,
    label_from_folder: bool = False,
    path_glob_filter: str | None = None,
    sample_ratio: float = 1.0,
    seed: int = 0,
    archives: bool | str = True,
    webdataset: Any = False,
    **kwargs: Any,
) -> DataFrame:
    """List (and sample) files as ``read_images`` does and transcode them: one row per listed file.

    Columns ``origin`` (the image-source URI ``read_images`` gives), ``height``, ``width``,
    ``encoded``, ``error``, the WebDataset sibling columns asked for, the partition columns and, with
    ``label_from_folder``, ``label``. Archives are read as ``read_images`` reads them (``archives``,
    ``webdataset``): one row per image member. Files
    the binary read returned nothing for (empty, unreadable) get null bytes and ``read_images``' reason. ``kwargs`` are
    :func:`transcode_images`' options (resize, center_crop, format, quality, device, ...).
    :func:`gpuimages.write_webdataset` of the result (as it is) writes the shards in the transcode's own task.
    """
    from gpuimages.sources.archives import archive_plan
    from gpuimages.sources.inputs import file_inputs
    from gpuimages.sources.stores import store_settings

    check_bool("recursive", recursive)
    check_bool("label_from_folder", label_from_folder)
    unknown = set(kwargs) - _FILE_OPTIONS
    if unknown:
        raise TypeError(f"transcode_files: expected options among {sorted(_FILE_OPTIONS)}, got {sorted(unknown)}")
    encode_kw = {k: kwargs.pop(k) for k in _ENCODE_OPTIONS if k in kwargs}
    num_partitions = check_num_partitions(kwargs.pop("num_partitions", None))
    task_gpu_amount = kwargs.pop("task_gpu_amount", None)
    decode_options = make_decode_options(**kwargs)
    options = make_encode_options(**encode_kw, device=decode_options.device, batch_size=decode_options.batch_size)
    conf = session_conf(spark)
    paths = normalize_paths(path)
    sample_ratio, seed = check_sample_ratio(sample_ratio), check_seed(seed)
    reading = archive_plan(archives, webdataset, paths, sample_ratio, seed,
                           store_settings(spark))  # archives: None when off
    columns = ["origin", "height", "width", "encoded", "error"]
    inputs = file_inputs(
        spark, paths, recursive=recursive, path_glob_filter=path_glob_filter, sample_ratio=sample_ratio, seed=seed,
        keep_unread=True, label_from_folder=label_from_folder, conf=conf, output_columns=columns, archive_plan=reading,
    )
    stage_columns = encode_columns(inputs.frame, CONTENT_COL, "encoded", "error", keep_input=False)
    plan = FileTranscode(inputs, decode_options, options, stage_columns, num_partitions, task_gpu_amount, conf)
    out = inputs.finish(plan.frame(), columns, origin="origin")
    vars(out)[PLAN_ATTRIBUTE] = plan  # write_webdataset(out) writes the shards in this stage's own task
    return out


#: The attribute of ``transcode_files``' result that declares its plan (see :func:`planned_transcode`).
PLAN_ATTRIBUTE = "_gpuimages_file_transcode"


@dataclass(frozen=True)
class FileTranscode:
    """What ``transcode_files`` planned: its file inputs and options, declared on the DataFrame it returns.

    ``write_webdataset`` of that DataFrame, unchanged, runs its shard step in this stage's own task
    (:meth:`frame` with ``after``): the encoded bytes are written where they are made instead of crossing
    to the JVM and into a second Python stage (which measured as costly as the writing itself).
    """

    inputs: FileInputs
    decode_options: DecodeOptions
    encode_options: EncodeOptions
    columns: EncodeColumns
    num_partitions: int | None
    task_gpu_amount: float | None
    conf: dict[str, str | None]

    @property
    def result_columns(self) -> frozenset[str]:
        """The result's columns a step after the encoder sees in the same task (under their own names)."""
        archives = () if self.inputs.archive_plan is None else self.inputs.archive_plan.columns
        label = ("label",) if self.inputs.label_from_folder else ()
        return frozenset({"origin", "height", "width", *self.inputs.partition_columns, *archives, *label})

    def frame(self, after: Step | None = None, after_schema: StructType | None = None, *,
              num_partitions: int | None = None, task_gpu_amount: float | None = None) -> DataFrame:
        """The transcode stage over the inputs; with ``after``, that step's output (``after_schema``) instead."""
        return transcode_frame(
            self.inputs.frame, self.decode_options, self.encode_options, self.columns, origin_col=ORIGIN_COL,
            prior_error_col=REASON_COL,
            num_partitions=self.num_partitions if num_partitions is None else num_partitions,
            task_gpu_amount=self.task_gpu_amount if task_gpu_amount is None else task_gpu_amount,
            total_bytes=self.inputs.total_bytes, num_files=self.inputs.num_files, conf=self.conf,
            before=self.inputs.steps, keep_partitions=self.inputs.keeps_partitions, after=after,
            after_schema=after_schema,
        )


def planned_transcode(df: DataFrame) -> FileTranscode | None:
    """The plan ``df`` is ``transcode_files``' unchanged result of, else None (any other DataFrame)."""
    plan = vars(df).get(PLAN_ATTRIBUTE)
    return plan if isinstance(plan, FileTranscode) else None


_ENCODE_OPTIONS = {"format", "quality", "subsampling", "optimize", "compress_level", "encoder"}
_FILE_OPTIONS = _ENCODE_OPTIONS | {
    "resize", "center_crop", "max_pixels", "apply_exif", "batch_size", "device", "hw_decoder_load", "strict",
    "max_batch_bytes", "device_batch_size",
    "num_partitions", "task_gpu_amount",
}

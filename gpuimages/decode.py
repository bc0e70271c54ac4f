"""``decode_images``: the one decode path shared by folders, tables and streams.

Driver side only: validate options, plan partitions, choose the resource profile, and call
``mapInArrow`` with :func:`gpuimages.tasks.decode_partition`. Only the DataFrame API is used, so
the same code runs on classic and Spark Connect sessions.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING, Any

from gpuimages import planning, scheduling
from gpuimages.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_PIXELS,
    DecodeOptions,
    check_bool,
    check_num_partitions,
    make_decode_options,
)
from gpuimages.schema import image_struct_type
from gpuimages.tasks import DecodeLayout, decode_partition

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

_CONF_KEYS = (
    "spark.master",
    "spark.executor.instances",
    "spark.executor.cores",
    "spark.task.cpus",
    "spark.default.parallelism",
    "spark.executor.resource.gpu.amount",
    "spark.task.resource.gpu.amount",
    "spark.dynamicAllocation.enabled",
)


def session_conf(spark: SparkSession) -> dict[str, str | None]:
    """The Spark conf entries the planners read (works on Connect sessions)."""
    conf = {}
    for key in _CONF_KEYS:
        try:
            conf[key] = spark.conf.get(key, None)
        except Exception:  # noqa: BLE001 - some servers refuse reading static confs
            conf[key] = None
    return conf


def _check_columns(df: DataFrame, layout: DecodeLayout, keep_input: bool) -> None:
    from pyspark.sql.types import BinaryType, StringType

    fields = {f.name: f.dataType for f in df.schema.fields}
    if layout.input_col not in fields:
        raise ValueError(f"input_col: expected one of the columns {sorted(fields)}, got {layout.input_col!r}")
    if not isinstance(fields[layout.input_col], BinaryType):
        raise TypeError(
            f"input_col {layout.input_col!r}: expected a binary column, got {fields[layout.input_col].simpleString()}"
        )
    if layout.origin_col is not None:
        if layout.origin_col not in fields:
            raise ValueError(
                f"origin_col: expected one of the columns {sorted(fields)} or None, got {layout.origin_col!r}"
            )
        if not isinstance(fields[layout.origin_col], StringType):
            raise TypeError(
                f"origin_col {layout.origin_col!r}: expected a string column, "
                f"got {fields[layout.origin_col].simpleString()}"
            )
    for name in (layout.output_col, layout.error_col):
        if name in layout.passthrough:
            raise ValueError(f"output columns: expected a name not already in the DataFrame, got {name!r}")
    if layout.output_col == layout.error_col:
        raise ValueError(f"error_col: expected a name other than output_col, got {layout.error_col!r}")


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
        batch_size: images per engine call and per Arrow batch returned to the JVM.
        num_partitions: decode partitions; default: about one per executor core or GPU slot
            (the input is coalesced, never shuffled). An explicit value repartitions.
        task_gpu_amount: GPU share per decode task in the resource profile (default: conf).
        hw_decoder_load: share of JPEGs for the GPU's hardware decoder (DALI mixed mode).
    """
    options = make_decode_options(
        resize=resize,
        center_crop=center_crop,
        max_pixels=max_pixels,
        apply_exif=apply_exif,
        batch_size=batch_size,
        device=device,
        hw_decoder_load=hw_decoder_load,
    )
    keep_input = check_bool("keep_input", keep_input)
    passthrough = tuple(f for f in df.columns if keep_input or f != input_col)
    layout = DecodeLayout(
        input_col, origin_col, output_col, error_col, passthrough, drop_invalid=check_bool("drop_invalid", drop_invalid)
    )
    return decode_frame(df, options, layout, num_partitions=num_partitions, task_gpu_amount=task_gpu_amount)


def decode_frame(
    df: DataFrame,
    options: DecodeOptions,
    layout: DecodeLayout,
    *,
    num_partitions: int | None = None,
    task_gpu_amount: float | None = None,
    total_bytes: int | None = None,
    num_files: int | None = None,
    conf: dict[str, str | None] | None = None,
) -> DataFrame:
    """Plan and run the decode stage (shared by :func:`decode_images` and ``read_images``).

    ``conf`` is :func:`session_conf` when the caller has read it already.
    """
    import pyspark
    from pyspark.sql.types import StringType, StructField, StructType

    num_partitions = check_num_partitions(num_partitions)
    _check_columns(df, layout, keep_input=layout.input_col in layout.passthrough)
    conf = conf if conf is not None else session_conf(df.sparkSession)
    device = scheduling.resolve_device(options.device, conf)
    if device != options.device:
        options = DecodeOptions(**{**options.__dict__, "device": device})

    if num_partitions is not None:
        df = df.repartition(num_partitions)
    elif not df.isStreaming:
        slots = (planning.gpu_slots(conf) if device == "gpu" else None) or planning.cpu_slots(conf)
        n = planning.plan_partitions(slots, total_bytes=total_bytes, num_files=num_files)
        log.info("gpuimages: decode stage planned as %d partition(s) (%s slots)", n, slots)
        df = df.coalesce(n)

    fields = {f.name: f for f in df.schema.fields}
    out_schema = StructType(
        [fields[name] for name in layout.passthrough]
        + [StructField(layout.output_col, image_struct_type(), True), StructField(layout.error_col, StringType(), True)]
    )
    func = functools.partial(decode_partition, options=options, layout=layout)

    decision = scheduling.decide_profile(
        device, conf, pyspark_version=pyspark.__version__, task_gpu_amount=task_gpu_amount, connect=_is_connect(df)
    )
    if decision.use:
        log.info("gpuimages: decode stage runs with a GPU resource profile: %s", decision.reason)
        profile = scheduling.build_profile(decision)
        if decision.via_rdd:
            return map_in_arrow_on_rdd(df, func, out_schema, profile)
        return df.mapInArrow(func, out_schema, profile=profile)
    if device == "gpu":
        log.info("gpuimages: no resource profile for the decode stage: %s", decision.reason)
    return df.mapInArrow(func, out_schema)


def _is_connect(df: DataFrame) -> bool:
    return type(df).__module__.startswith("pyspark.sql.connect")


#: Rows per Arrow batch handed to the decode function on the RDD path.
RDD_ARROW_ROWS = 256


def map_in_arrow_on_rdd(df: DataFrame, func, schema, profile) -> DataFrame:
    """``mapInArrow`` for pyspark < 4 with a resource profile: the same Arrow function over the RDD's
    rows, the RDD run ``withResources(profile)``, and turned back into a DataFrame (classic sessions).
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_in = to_arrow_schema(df.schema)
    names = schema.fieldNames()
    struct_fields = {f.name: f.dataType.fieldNames() for f in schema.fields if hasattr(f.dataType, "fieldNames")}

    def batches(rows):
        import pyarrow as pa

        chunk = []
        for row in rows:
            chunk.append(row.asDict())
            if len(chunk) == RDD_ARROW_ROWS:
                yield pa.RecordBatch.from_pylist(chunk, schema=arrow_in)
                chunk = []
        if chunk:
            yield pa.RecordBatch.from_pylist(chunk, schema=arrow_in)

    def run(rows):
        for out in func(batches(rows)):
            for rec in out.to_pylist():
                yield tuple(
                    tuple(rec[n][k] for k in struct_fields[n]) if n in struct_fields and rec[n] is not None else rec[n]
                    for n in names
                )

    rdd = df.rdd.mapPartitions(run).withResources(profile)
    return df.sparkSession.createDataFrame(rdd, schema)

"""``encode_images``: image structs (Spark's image schema) into compact JPEG or PNG bytes.

Driver side only: validate options and columns, then run one planned stage
(:func:`gpuimages.stage.run_stage`) whose task encodes (:class:`gpuimages.task.steps.Encode`).
The helpers here also build the output columns and schema that :mod:`gpuimages.transcode` shares.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpuimages.encoders import (
    DEFAULT_ENCODE_BATCH,
    DEFAULT_PNG_LEVEL,
    DEFAULT_QUALITY,
    make_encode_options,
    resolve_encode_device,
)
from gpuimages.options import check_bool, check_num_partitions
from gpuimages.stage import run_stage, session_conf
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps import Encode
from gpuimages.task.steps.encode import META_COLUMNS

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType


@dataclass(frozen=True)
class EncodeColumns:
    """Which columns go in and out of an encoding stage.

    ``merge_error``: ``error_col`` is already a column of the input (e.g. ``read_images``' reason);
    its reason is kept where set and the stage's reason fills the rest.
    """

    input_col: str
    output_col: str
    error_col: str
    passthrough: tuple[str, ...]
    merge_error: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The output columns in order."""
        return (*self.passthrough, *META_COLUMNS, self.output_col, self.error_col)


def encode_columns(
    df: DataFrame, input_col: str, output_col: str, error_col: str, keep_input: bool
) -> EncodeColumns:
    """The columns of an encoding stage; raises ValueError for names that clash with the input's."""
    keep_input = check_bool("keep_input", keep_input)
    for name, value in (("output_col", output_col), ("error_col", error_col)):
        if not isinstance(value, str) or not value:
            raise ValueError(f"{name}: expected a column name, got {value!r}")
    if output_col == error_col:
        raise ValueError(f"error_col: expected a name other than output_col, got {error_col!r}")
    merge_error = error_col in df.columns and error_col != input_col
    passthrough = tuple(
        c for c in df.columns if (keep_input or c != input_col) and not (merge_error and c == error_col)
    )
    for name in (*META_COLUMNS, output_col):
        if name in passthrough:
            raise ValueError(
                f"output columns: expected {name!r} not to be a column of the DataFrame already "
                f"(columns {', '.join(META_COLUMNS)}, output_col and error_col are added); rename or drop it first"
            )
    if merge_error:
        from pyspark.sql.types import StringType

        if not isinstance(df.schema[error_col].dataType, StringType):
            raise TypeError(
                f"error_col {error_col!r}: expected a string column (its reasons are kept) or a new name, "
                f"got {df.schema[error_col].dataType.simpleString()}"
            )
    return EncodeColumns(input_col, output_col, error_col, passthrough, merge_error)


def encoded_schema(df: DataFrame, columns: EncodeColumns) -> StructType:
    """Pass-through fields, then origin, height, width, the encoded bytes and the reason."""
    from pyspark.sql.types import BinaryType, IntegerType, StringType, StructField, StructType

    fields = {f.name: f for f in df.schema.fields}
    return StructType(
        [fields[name] for name in columns.passthrough]
        + [
            StructField("origin", StringType(), True),
            StructField("height", IntegerType(), True),
            StructField("width", IntegerType(), True),
            StructField(columns.output_col, BinaryType(), True),
            StructField(columns.error_col, StringType(), True),
        ]
    )


def encode_images(
    df: DataFrame,
    input_col: str = "image",
    *,
    format: str = "jpeg",  # noqa: A002 - the option's public name
    quality: int = DEFAULT_QUALITY,
    output_col: str = "encoded",
    error_col: str = "error",
    subsampling: str = "4:2:0",
    optimize: bool = False,
    compress_level: int = DEFAULT_PNG_LEVEL,
    device: str = "auto",
    encoder: str | None = None,
    batch_size: int = DEFAULT_ENCODE_BATCH,
    keep_input: bool = False,
    num_partitions: int | None = None,
    task_gpu_amount: float | None = None,
) -> DataFrame:
    """Encode the image structs in ``df[input_col]`` (Spark's image schema) as JPEG or PNG bytes.

    Returns ``df`` without ``input_col`` (unless ``keep_input``) and with ``origin``, ``height``,
    ``width`` (of the encoded image), ``output_col`` (the encoded bytes) and ``error_col`` added.
    Grey (1 channel), BGR (3) and BGRA (4) images are encoded; **PNG keeps the alpha channel, JPEG
    drops it** (JPEG has none), and grey stays grey. A null or invalid image (Spark's invalid row,
    or a struct whose data does not match its sizes) gives null bytes and a reason, never a failed
    task. When ``error_col`` is already a column (``read_images``' reason), its reasons are kept
    and the encoder's fill the rows where it was null. Every other column and every row is kept.
    ``decode_images`` of the result gives back the same sizes and channels: PNG bit for bit, JPEG
    within JPEG's loss.

    Args:
        df: a DataFrame with an image-struct column (``read_images``, ``decode_images``, Spark's image source).
        input_col: the image-struct column.
        format: "jpeg" (or "jpg") or "png".
        quality: JPEG quality 1..100 (libjpeg's scale).
        subsampling: JPEG chroma subsampling: "4:2:0" (default), "4:2:2" or "4:4:4".
        optimize: JPEG optimised Huffman tables (about 4% smaller, several times slower on CPU).
        compress_level: PNG zlib level 0..9 (default 3: the fastest measured, within 8% of level 9's size).
        device: "auto" (nvImageCodec on executors with a GPU, else Pillow), "cpu" (Pillow) or "gpu".
        encoder: force "pillow" or "nvimgcodec" (nvImageCodec runs its CPU backend without a GPU).
        batch_size: images per encoder call and per Arrow batch returned to the JVM.
        keep_input: keep the image-struct column.
        num_partitions: repartition to this many partitions (default: about one per core or GPU slot).
        task_gpu_amount: GPU share per task in the resource profile (device="gpu" on a cluster).
    """
    from gpuimages.schema import image_column_check

    options = make_encode_options(
        format=format, quality=quality, subsampling=subsampling, optimize=optimize,
        compress_level=compress_level, device=device, encoder=encoder, batch_size=batch_size,
    )
    num_partitions = check_num_partitions(num_partitions)
    image_column_check(df.schema, input_col, "input_col")
    columns = encode_columns(df, input_col, output_col, error_col, keep_input)
    conf = session_conf(df.sparkSession)
    device = resolve_encode_device(options.device, options.encoder)
    options = dataclasses.replace(options, device=device)
    spec = StageSpec(
        name="encode",
        device=device,
        input_col=input_col,
        input_kind="struct",
        steps=(Encode(options, columns.output_col),),
        columns=columns.names,
        error_col=columns.error_col,
        prior_error_col=columns.error_col if columns.merge_error else None,
        rows_per_batch=options.batch_size,
    )
    return run_stage(
        df, spec, encoded_schema(df, columns), conf, num_partitions=num_partitions, task_gpu_amount=task_gpu_amount
    )


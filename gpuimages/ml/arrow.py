"""Arrow <-> image helpers shared by the ML stages, and the one ``mapInArrow`` driver for them.

On executors, :func:`read_images` views an Arrow image-struct column as numpy (no copy of the
pixel bytes) and :func:`image_struct` / :func:`list_column` build the output columns. On the
driver, :func:`map_column` runs a column function over every Arrow batch with
``DataFrame.mapInArrow`` (the DataFrame API only, so it works on Spark Connect too) and keeps
every other column and every row as it was.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

from gpuimages.schema import IMAGE_FIELDS, UNDEFINED_MODE, mode_for_channels

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType

log = logging.getLogger(__name__)

#: Rows per output Arrow batch: bounds executor memory whatever Spark's input batch size is.
DEFAULT_ROWS_PER_BATCH = 64

#: A column function: Arrow image column in, Arrow output column of the same length out.
ColumnFn = Callable[[pa.Array], pa.Array]


@dataclass
class ImageBatch:
    """A numpy view of an Arrow image-struct column.

    ``present[i]``: the struct is not null. ``valid[i]``: it holds a usable image (known channel
    count, positive sizes, ``len(data) == height * width * nChannels``).
    """

    origin: pa.Array
    present: np.ndarray
    valid: np.ndarray
    height: np.ndarray
    width: np.ndarray
    channels: np.ndarray
    starts: np.ndarray
    values: np.ndarray
    data_type: pa.DataType = pa.binary()

    def __len__(self) -> int:
        return len(self.present)

    def pixels(self, i: int) -> np.ndarray:
        """Image ``i`` as an ``(h, w, c)`` uint8 view (only for valid rows)."""
        h, w, c = int(self.height[i]), int(self.width[i]), int(self.channels[i])
        start = int(self.starts[i])
        return self.values[start : start + h * w * c].reshape(h, w, c)

    def groups(self) -> dict[tuple[int, int, int], list[int]]:
        """Valid row indices grouped by ``(height, width, channels)``, in row order."""
        out: dict[tuple[int, int, int], list[int]] = {}
        for i in np.flatnonzero(self.valid):
            key = (int(self.height[i]), int(self.width[i]), int(self.channels[i]))
            out.setdefault(key, []).append(int(i))
        return out

    def stack(self, rows: list[int]) -> np.ndarray:
        """Same-sized images ``rows`` as one ``[N, H, W, C]`` array."""
        return np.stack([self.pixels(i) for i in rows])


def _ints(array: pa.Array) -> np.ndarray:
    return np.asarray(array.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


def read_images(column: pa.Array | pa.ChunkedArray) -> ImageBatch:
    """View an Arrow image-struct column (Spark's image schema) as numpy, without copying pixels."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    if not isinstance(column, pa.StructArray):
        raise TypeError(f"expected an image struct column, got Arrow type {column.type}")
    n = len(column)
    present = ~np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    height = _ints(column.field("height"))
    width = _ints(column.field("width"))
    channels = _ints(column.field("nChannels"))
    data = column.field("data")
    if n == 0:
        empty = np.zeros(0, dtype=np.int64)
        origin = column.field("origin")
        return ImageBatch(origin, present, present.copy(), empty, empty, empty, empty, np.zeros(0, np.uint8), data.type)
    offset_type = np.int64 if pa.types.is_large_binary(data.type) else np.int32
    buffers = data.buffers()
    offsets = np.frombuffer(buffers[1], dtype=offset_type)[data.offset : data.offset + n + 1].astype(np.int64)
    values = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
    data_present = ~np.asarray(data.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    lengths = offsets[1:] - offsets[:-1]
    valid = (
        present
        & data_present
        & np.isin(channels, (1, 3, 4))
        & (height > 0)
        & (width > 0)
        & (lengths == height * width * channels)
    )
    return ImageBatch(column.field("origin"), present, valid, height, width, channels, offsets[:-1], values, data.type)


def _offsets(sizes: np.ndarray, large: bool = False) -> np.ndarray:
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if large:
        return offsets
    if offsets[-1] > np.iinfo(np.int32).max:
        raise ValueError(f"an output batch holds {offsets[-1]} bytes, over Arrow's 2 GiB binary limit")
    return offsets.astype(np.int32)


def image_struct(
    origin: pa.Array, present: np.ndarray, images: list[np.ndarray | None], data_type: pa.DataType | None = None
) -> pa.StructArray:
    """Build an image-struct column: ``images[i]`` an ``(h, w, c)`` uint8 array, or None for Spark's invalid row.

    Rows where ``present`` is False are null structs. ``origin`` keeps its Arrow type and
    ``data_type`` (default ``binary``; ``large_binary`` when Spark sends large types) is the
    type of the pixel column, so the output matches what Spark sent.
    """
    data_type = data_type or pa.binary()
    large = pa.types.is_large_binary(data_type)
    n = len(images)
    height = np.full(n, -1, dtype=np.int32)
    width = np.full(n, -1, dtype=np.int32)
    channels = np.full(n, -1, dtype=np.int32)
    mode = np.full(n, UNDEFINED_MODE, dtype=np.int32)
    sizes = np.zeros(n, dtype=np.int64)
    for i, image in enumerate(images):
        if image is not None:
            height[i], width[i], channels[i] = image.shape
            mode[i] = mode_for_channels(image.shape[2])
            sizes[i] = image.size
    offsets = _offsets(sizes, large)
    parts = [np.ascontiguousarray(image).reshape(-1) for image in images if image is not None]
    data = np.concatenate(parts) if parts else np.zeros(0, dtype=np.uint8)
    binary = pa.Array.from_buffers(data_type, n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])
    if pa.types.is_null(origin.type):
        origin = origin.cast(pa.string())
    children = [origin, pa.array(height), pa.array(width), pa.array(channels), pa.array(mode), binary]
    mask = pa.array(~np.asarray(present, dtype=bool), type=pa.bool_())
    return pa.StructArray.from_arrays(children, names=list(IMAGE_FIELDS), mask=mask)


def list_column(rows: list[np.ndarray | None], value_type: pa.DataType) -> pa.ListArray:
    """A ``list<value_type>`` column from 1-D arrays; None rows are null lists."""
    sizes = np.array([0 if r is None else r.size for r in rows], dtype=np.int64)
    offsets = _offsets(sizes)
    dtype = value_type.to_pandas_dtype()
    parts = [np.asarray(r, dtype=dtype).reshape(-1) for r in rows if r is not None]
    values = pa.array(np.concatenate(parts) if parts else np.zeros(0, dtype=dtype), type=value_type)
    mask = pa.array(np.array([r is None for r in rows], dtype=bool), type=pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets, type=pa.int32()), values, mask=mask)


# ---------------------------------------------------------------- driver side


def image_column_check(schema: StructType, column: str) -> None:
    """Raise a clear error unless ``column`` is a struct with Spark's image fields."""
    from pyspark.sql.types import StructType

    if column not in schema.fieldNames():
        names = ", ".join(schema.fieldNames())
        raise ValueError(f"inputCol: expected a column of the DataFrame ({names}), got {column!r}")
    data_type = schema[column].dataType
    names = set(data_type.fieldNames()) if isinstance(data_type, StructType) else set()
    if not set(IMAGE_FIELDS) <= names:
        raise ValueError(
            f"inputCol {column!r}: expected an image struct ({', '.join(IMAGE_FIELDS)}), got {data_type.simpleString()}"
        )


def output_schema(schema: StructType, column: str, data_type: DataType) -> StructType:
    """``schema`` with ``column`` replaced in place (same position) or appended."""
    from pyspark.sql.types import StructField, StructType

    fields = [StructField(f.name, data_type, True) if f.name == column else f for f in schema.fields]
    if column not in schema.fieldNames():
        fields.append(StructField(column, data_type, True))
    return StructType(fields)


def _mapper(
    fn: ColumnFn, input_col: str, output_col: str, rows_per_batch: int
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            for start in range(0, max(batch.num_rows, 1), rows_per_batch):
                part = batch.slice(start, rows_per_batch)
                result = fn(part.column(input_col))
                names = list(part.schema.names)
                arrays = list(part.columns)
                if output_col in names:
                    arrays[names.index(output_col)] = result
                else:
                    names.append(output_col)
                    arrays.append(result)
                yield pa.RecordBatch.from_arrays(arrays, names=names)

    return run


def map_column(
    df: DataFrame,
    input_col: str,
    output_col: str,
    data_type: DataType,
    fn: ColumnFn,
    rows_per_batch: int = DEFAULT_ROWS_PER_BATCH,
) -> DataFrame:
    """Add (or replace) ``output_col = fn(input_col)``, computed per Arrow batch on executors.

    ``fn`` must be picklable and return an Arrow array of ``data_type`` with one value per row.
    Rows, their order and all other columns are unchanged.
    """
    schema = output_schema(df.schema, output_col, data_type)
    return df.mapInArrow(_mapper(fn, input_col, output_col, rows_per_batch), schema)


def to_vector_column(df: DataFrame, column: str, metadata: dict | None = None) -> DataFrame:
    """Turn the ``array<double>`` column ``column`` into ``VectorUDT`` in place (null stays null).

    Uses ``pyspark.ml.functions.array_to_vector`` (Spark Connect compatible); ``metadata`` (e.g.
    ``{"ml_attr": {"num_attrs": n}}``) is attached to the column when given.
    """
    from pyspark.ml.functions import array_to_vector
    from pyspark.sql import functions as F

    array = F.col("`" + column.replace("`", "``") + "`")
    out = df.withColumn(column, F.when(array.isNotNull(), array_to_vector(array)))
    return out if metadata is None else out.withMetadata(column, metadata)


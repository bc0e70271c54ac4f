"""Spark's image schema: the struct, the OpenCV modes, the invalid row, and the driver-side column check.

The field order, names and types match ``spark.read.format("image")`` and
``pyspark.ml.image.ImageSchema``: ``origin, height, width, nChannels, mode, data``,
pixels stored row-major in BGR(A) order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql.types import StructType


#: OpenCV type codes used by Spark's image schema.
CV_8UC1 = 0
CV_8UC3 = 16
CV_8UC4 = 24
UNDEFINED_MODE = -1

IMAGE_FIELDS = ("origin", "height", "width", "nChannels", "mode", "data")

_MODE_FOR_CHANNELS = {1: CV_8UC1, 3: CV_8UC3, 4: CV_8UC4}

#: The struct type of one image, as Arrow sees it.
ARROW_IMAGE_TYPE = pa.struct(
    [
        pa.field("origin", pa.string()),
        pa.field("height", pa.int32()),
        pa.field("width", pa.int32()),
        pa.field("nChannels", pa.int32()),
        pa.field("mode", pa.int32()),
        pa.field("data", pa.binary()),
    ]
)


def mode_for_channels(channels: int) -> int:
    """Return the OpenCV mode for an 8-bit image with ``channels`` channels (-1 if invalid)."""
    return _MODE_FOR_CHANNELS.get(int(channels), UNDEFINED_MODE)


def image_struct_type() -> StructType:
    """Spark's image struct (same fields and types as ``spark.read.format("image")``)."""
    from pyspark.sql.types import BinaryType, IntegerType, StringType, StructField, StructType

    return StructType(
        [
            StructField("origin", StringType(), True),
            StructField("height", IntegerType(), True),
            StructField("width", IntegerType(), True),
            StructField("nChannels", IntegerType(), True),
            StructField("mode", IntegerType(), True),
            StructField("data", BinaryType(), True),
        ]
    )


def invalid_image(origin: str | None) -> dict:
    """The row Spark gives for an image it cannot decode, as a dict."""
    return {
        "origin": origin,
        "height": -1,
        "width": -1,
        "nChannels": -1,
        "mode": UNDEFINED_MODE,
        "data": b"",
    }


def image_column_check(schema: StructType, column: str, param: str = "inputCol") -> None:
    """Raise a clear error unless ``column`` is a struct with Spark's image fields (driver side)."""
    from pyspark.sql.types import StructType

    if column not in schema.fieldNames():
        names = ", ".join(schema.fieldNames())
        raise ValueError(f"{param}: expected a column of the DataFrame ({names}), got {column!r}")
    data_type = schema[column].dataType
    names = set(data_type.fieldNames()) if isinstance(data_type, StructType) else set()
    if not set(IMAGE_FIELDS) <= names:
        raise ValueError(
            f"{param} {column!r}: expected an image struct ({', '.join(IMAGE_FIELDS)}), got {data_type.simpleString()}"
        )


def to_ndarray(image) -> np.ndarray:
    """Return an image struct (Row or dict) as a ``(height, width, nChannels)`` uint8 array."""
    get = image.__getitem__
    return np.frombuffer(bytes(get("data")), dtype=np.uint8).reshape(
        get("height"), get("width"), get("nChannels")
    )

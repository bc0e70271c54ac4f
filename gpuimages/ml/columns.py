"""Driver-side column helpers of the ML stages: output schemas and vectors.

Only the DataFrame API, so the stages run on classic and Spark Connect sessions alike.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame
    from pyspark.sql.types import DataType, StructType


def replaced_schema(schema: StructType, column: str, data_type: DataType) -> StructType:
    """``schema`` with ``column`` replaced in place (same position) or appended."""
    from pyspark.sql.types import StructField, StructType

    fields = [StructField(f.name, data_type, True) if f.name == column else f for f in schema.fields]
    if column not in schema.fieldNames():
        fields.append(StructField(column, data_type, True))
    return StructType(fields)


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

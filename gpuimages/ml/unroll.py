"""``UnrollImage``: an image-schema column as a flat ``DenseVector`` of its pixels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from gpuimages.ml.arrow import image_column_check, map_column, to_vector_column
from gpuimages.ml.executor import unroll_column

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame


class UnrollImage(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """Turn each image into a ``pyspark.ml.linalg.DenseVector`` (``VectorUDT`` column).

    Element order: the stored bytes, row-major over (row y, column x, channel c) in the
    image's channel order (BGR(A) for Spark's image schema), i.e. element
    ``(y * width + x) * nChannels + c``, as doubles 0..255. Length ``height * width * nChannels``:
    resize/crop images to one size first (e.g. with :class:`ImageTransformer`) when the vectors
    feed a model. Invalid or null images give a null vector.

    Computed per Arrow batch on executors as ``array<double>``, then turned into vectors with
    ``pyspark.ml.functions.array_to_vector`` (works on Spark Connect).
    """

    @keyword_only
    def __init__(self, *, inputCol: str = "image", outputCol: str = "features") -> None:
        super().__init__()
        self._setDefault(inputCol="image", outputCol="features")
        self._set(**self._input_kwargs)

    @keyword_only
    def setParams(self, *, inputCol: str = "image", outputCol: str = "features") -> UnrollImage:
        """Set any of the params by keyword."""
        return self._set(**self._input_kwargs)

    def setInputCol(self, value: str) -> UnrollImage:
        """Set the image column to read."""
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> UnrollImage:
        """Set the vector column to write (replaced in place if it exists)."""
        return self._set(outputCol=value)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.sql.types import ArrayType, DoubleType

        input_col, output_col = self.getInputCol(), self.getOutputCol()
        image_column_check(dataset.schema, input_col)
        arrays = map_column(dataset, input_col, output_col, ArrayType(DoubleType(), True), unroll_column)
        return to_vector_column(arrays, output_col)

"""``UnrollImage``: an image-schema column as a flat ``DenseVector`` of its pixels."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from gpuimages.ml.columns import replaced_schema, to_vector_column

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame


class UnrollImage(Transformer, HasInputCol, HasOutputCol, DefaultParamsReadable, DefaultParamsWritable):
    """Turn each image into a ``pyspark.ml.linalg.DenseVector`` (``VectorUDT`` column).

    Element order: the stored bytes, row-major over (row y, column x, channel c) in the
    image's channel order (BGR(A) for Spark's image schema), i.e. element
    ``(y * width + x) * nChannels + c``, as doubles 0..255. Length ``height * width * nChannels``:
    resize/crop images to one size first (e.g. with :class:`ImageTransformer`) when the vectors
    feed a model. Invalid or null images give a null vector.

    Computed in Spark tasks as ``array<double>`` (:class:`gpuimages.task.steps.Unroll`, planned by
    :func:`gpuimages.stage.run_stage`), then turned into vectors with ``pyspark.ml.functions.array_to_vector``
    (works on Spark Connect).
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

        from gpuimages.schema import image_column_check
        from gpuimages.stage import run_stage, session_conf
        from gpuimages.task.spec import StageSpec
        from gpuimages.task.steps import Unroll

        input_col, output_col = self.getInputCol(), self.getOutputCol()
        image_column_check(dataset.schema, input_col)
        schema = replaced_schema(dataset.schema, output_col, ArrayType(DoubleType(), True))
        spec = StageSpec(
            name="unroll", device="cpu", input_col=input_col, input_kind="struct", steps=(Unroll(output_col),),
            columns=tuple(schema.fieldNames()), error_col=None, rows_per_batch=64,
        )
        return to_vector_column(run_stage(dataset, spec, schema, session_conf(dataset.sparkSession)), output_col)

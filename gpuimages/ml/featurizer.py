"""``ImageFeaturizer``: images to feature vectors with a pluggable backbone.

Built in: ``backbone="histogram"``, cheap hand-made features (see
:func:`gpuimages.ml.executor.histogram_features`). Or bring a model as a batch function::

    import numpy as np

    class Embed:                       # loads the model once per Python worker, not per batch
        model = None

        def __call__(self, images: np.ndarray) -> np.ndarray:
            import torch, torchvision
            if Embed.model is None:
                Embed.model = torchvision.models.resnet18(weights=None)   # or torch.load(...)
                Embed.model.fc = torch.nn.Identity()
                Embed.model.eval()
            mean = np.array([0.485, 0.456, 0.406], np.float32)
            std = np.array([0.229, 0.224, 0.225], np.float32)
            x = torch.from_numpy(((images - mean) / std).transpose(0, 3, 1, 2).copy())
            with torch.no_grad():
                return Embed.model(x).numpy()

    featurizer = ImageFeaturizer(fn=Embed(), imageSize=[224, 224])

The function receives ``np.ndarray[N, H, W, 3]`` float32, RGB, values in [0, 1], H x W =
``imageSize`` (every image resized with Pillow's bilinear filter; gray replicated, alpha
dropped), at most ``batchSize`` images per call; it returns ``[N, D]`` (numpy, or a torch
tensor). It runs on executors, so it must be picklable (cloudpickle: a function or class from
``__main__`` or a notebook travels by value; one from a module needs that module importable on
the executors) and load its weights itself; nothing is downloaded by gpuimages.

Output: a ``VectorUDT`` column; invalid or null images get a null vector.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLWritable

from gpuimages.ml.arrow import image_column_check, map_column, to_vector_column
from gpuimages.ml.executor import BatchFunction, FeatureRunner, histogram_size
from gpuimages.ml.params import HasDevice, HasImageSize

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

BACKBONES = ("histogram", "function")
_FUNCTION_DIR = "batchFunction"


def _to_backbone(value: Any) -> str:
    if value not in BACKBONES:
        raise ValueError(f"backbone: expected one of {', '.join(BACKBONES)}, got {value!r}")
    return value


def _to_positive(name: str) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        number = TypeConverters.toInt(value)
        if number <= 0:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        return number

    return convert


def _to_size(value: Any) -> list[int]:
    size = TypeConverters.toListInt([value, value] if isinstance(value, int) else value)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"imageSize: expected [height, width] of positive integers, got {value!r}")
    return size


class ImageFeaturizer(Transformer, HasInputCol, HasOutputCol, HasDevice, HasImageSize, MLReadable, MLWritable):
    """Featurise an image-schema column into a ``VectorUDT`` column, one Arrow batch at a time.

    ``backbone="histogram"`` (default): ``3 * gridSize**2 + 3 * histogramBins + 10`` features
    (250 by default). ``fn=...`` (or ``setBatchFunction``): a user batch function, see the
    module docstring; ``backbone`` becomes "function". ``save``/``load`` keep the function
    (cloudpickled next to the params).
    """

    backbone: Param[str] = Param(
        Params._dummy(), "backbone", 'feature extractor: "histogram" (built in) or "function" (setBatchFunction)',
        typeConverter=_to_backbone,
    )
    gridSize: Param[int] = Param(
        Params._dummy(), "gridSize", "histogram backbone: side of the shrunken image kept as features",
        typeConverter=_to_positive("gridSize"),
    )
    histogramBins: Param[int] = Param(
        Params._dummy(), "histogramBins", "histogram backbone: bins per colour channel",
        typeConverter=_to_positive("histogramBins"),
    )
    batchSize: Param[int] = Param(
        Params._dummy(), "batchSize", "images per Arrow batch, and per call of the batch function",
        typeConverter=_to_positive("batchSize"),
    )

    @keyword_only
    def __init__(
        self,
        *,
        inputCol: str = "image",
        outputCol: str = "features",
        backbone: str | None = None,
        imageSize: list[int] | int | None = None,
        gridSize: int = 8,
        histogramBins: int = 16,
        batchSize: int = 64,
        device: str = "auto",
        fn: BatchFunction | None = None,
    ) -> None:
        super().__init__()
        self._function: BatchFunction | None = None
        self._setDefault(
            inputCol="image", outputCol="features", backbone="histogram", imageSize=[64, 64], gridSize=8,
            histogramBins=16, batchSize=64, device="auto",
        )
        kwargs = dict(self._input_kwargs)
        function = kwargs.pop("fn", None)
        if kwargs.get("imageSize") is not None:
            kwargs["imageSize"] = _to_size(kwargs["imageSize"])
        else:
            kwargs.pop("imageSize", None)
        if kwargs.get("backbone") is None:
            kwargs.pop("backbone", None)
        self._set(**kwargs)
        if function is not None:
            self.setBatchFunction(function)

    def setInputCol(self, value: str) -> ImageFeaturizer:
        """Set the image column to read."""
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> ImageFeaturizer:
        """Set the vector column to write (replaced in place if it exists)."""
        return self._set(outputCol=value)

    def setImageSize(self, value: list[int] | int) -> ImageFeaturizer:
        """Set ``[height, width]`` (an int for a square) images are resized to."""
        return self._set(imageSize=_to_size(value))

    def getBackbone(self) -> str:
        """"histogram" or "function"."""
        return self.getOrDefault(self.backbone)

    def setBackbone(self, value: str) -> ImageFeaturizer:
        """Choose "histogram" or "function" (the latter needs :meth:`setBatchFunction`)."""
        return self._set(backbone=value)

    def getGridSize(self) -> int:
        """Histogram backbone: side of the shrunken image."""
        return self.getOrDefault(self.gridSize)

    def setGridSize(self, value: int) -> ImageFeaturizer:
        """Histogram backbone: set the side of the shrunken image."""
        return self._set(gridSize=value)

    def getHistogramBins(self) -> int:
        """Histogram backbone: bins per colour channel."""
        return self.getOrDefault(self.histogramBins)

    def setHistogramBins(self, value: int) -> ImageFeaturizer:
        """Histogram backbone: set the bins per colour channel."""
        return self._set(histogramBins=value)

    def getBatchSize(self) -> int:
        """Images per Arrow batch and per batch-function call."""
        return self.getOrDefault(self.batchSize)

    def setBatchSize(self, value: int) -> ImageFeaturizer:
        """Set the images per Arrow batch and per batch-function call."""
        return self._set(batchSize=value)

    def getBatchFunction(self) -> BatchFunction | None:
        """The user batch function, if any."""
        return self._function

    def setBatchFunction(self, fn: BatchFunction) -> ImageFeaturizer:
        """Use ``fn(images[N, H, W, 3] float32 RGB in [0, 1]) -> [N, D]`` as the backbone."""
        if not callable(fn):
            raise TypeError(f"batch function: expected a callable, got {type(fn).__name__}")
        self._function = fn
        return self._set(backbone="function")

    def numFeatures(self) -> int | None:
        """Length of the feature vectors when known without running (the histogram backbone)."""
        if self.getBackbone() == "histogram":
            return histogram_size(self.getGridSize(), self.getHistogramBins())
        return None

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.sql.types import ArrayType, DoubleType

        input_col, output_col = self.getInputCol(), self.getOutputCol()
        image_column_check(dataset.schema, input_col)
        if self.getBackbone() == "function" and self._function is None:
            raise ValueError("ImageFeaturizer: backbone 'function' needs a batch function (setBatchFunction or fn=)")
        height, width = self.getImageSize()
        runner = FeatureRunner(
            (height, width), self.getDevice(), self.getBackbone(), self.getGridSize(), self.getHistogramBins(),
            self._function if self.getBackbone() == "function" else None,
        )
        arrays = map_column(dataset, input_col, output_col, ArrayType(DoubleType(), True), runner, self.getBatchSize())
        size = self.numFeatures()
        metadata = {"ml_attr": {"num_attrs": size}} if size is not None else None
        return to_vector_column(arrays, output_col, metadata)

    def copy(self, extra: dict | None = None) -> ImageFeaturizer:
        """A copy with the same batch function."""
        that = super().copy(extra)
        that._function = self._function
        return that

    def write(self) -> FeaturizerWriter:
        """Writer saving the params and, if any, the cloudpickled batch function."""
        return FeaturizerWriter(self)

    @classmethod
    def read(cls) -> FeaturizerReader:
        """Reader for :meth:`write`'s output."""
        return FeaturizerReader(cls)


class FeaturizerWriter(DefaultParamsWriter):
    """Saves an :class:`ImageFeaturizer`: metadata as JSON, the batch function as a cloudpickle blob."""

    def saveImpl(self, path: str) -> None:
        """Write ``path/metadata`` and, with a batch function, ``path/batchFunction`` (Parquet)."""
        from pyspark import cloudpickle

        fn = self.instance.getBatchFunction()
        DefaultParamsWriter.saveMetadata(
            self.instance, path, self.sparkSession, extraMetadata={"hasBatchFunction": fn is not None}
        )
        if fn is not None:
            blob = bytearray(cloudpickle.dumps(fn))
            frame = self.sparkSession.createDataFrame([(blob,)], "payload binary")
            frame.coalesce(1).write.parquet(os.path.join(path, _FUNCTION_DIR))


class FeaturizerReader(DefaultParamsReader):
    """Loads what :class:`FeaturizerWriter` saved."""

    def load(self, path: str) -> ImageFeaturizer:
        """Rebuild the featurizer, batch function included."""
        import pickle

        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        instance = self.cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        if metadata.get("hasBatchFunction"):
            row = self.sparkSession.read.parquet(os.path.join(path, _FUNCTION_DIR)).first()
            instance._function = pickle.loads(bytes(row[0]))
        return instance

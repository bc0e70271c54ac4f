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

Or an ONNX model (``pip install "gpuimages[onnx]"``)::

    featurizer = ImageFeaturizer(inputCol="content", outputCol="features", backbone="onnx",
                                 modelPath="/models/resnet50.onnx", imageSize=[224, 224],
                                 mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])

The model's input is NCHW float32 RGB ``(x / 255 - mean) / std`` per channel; its first output,
flattened per image, is the vector. One ``onnxruntime.InferenceSession`` per Python worker and
model: CPU provider with ``spark.task.cpus`` threads, CUDA first where executors have a GPU and
``onnxruntime-gpu`` is installed. ``modelPath`` is *referenced*, not copied: it must be readable
where executors run (a local path present on every node, or a shared filesystem), and a saved
stage stores the path and the file's SHA-256 (loading warns when the file changed or is missing).

Input: an image-struct column (Spark's image schema, e.g. from ``read_images``) or a **binary
column of encoded bytes** (``binaryFile``'s ``content``, a table, a stream). With bytes, every
backbone decodes in the same task with the engine ``device`` selects, resizing while decoding
straight to ``imageSize`` (JPEG draft mode with Pillow, DALI resize on a GPU, where the normalised
batch goes to the model through DLPack without a host copy), so pixels never enter the JVM. The
other input columns are kept and the bytes column is dropped (``keepInput=True`` keeps it, at the
cost of sending the bytes back to the JVM), ``outputCol`` and ``errorCol`` are (re)written at the
end, one row out per row in; an image no engine can decode gets a null vector and the reason in
``errorCol``.

Output: a ``VectorUDT`` column; invalid or null images get a null vector.
"""

from __future__ import annotations

import functools
import hashlib
import logging
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
from gpuimages.models import ModelSpec
from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

BACKBONES = ("histogram", "function", "onnx")
_FUNCTION_DIR = "batchFunction"
#: Default DALI device batch (images decoded, resized and normalised on the GPU at once).
DEFAULT_DEVICE_BATCH = 256


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


def _to_triple(name: str) -> Callable[[Any], list[float]]:
    def convert(value: Any) -> list[float]:
        try:
            values = TypeConverters.toListFloat(value)
        except TypeError:
            values = []
        if len(values) != 3:
            raise ValueError(f"{name}: expected 3 numbers (R, G, B), got {value!r}")
        if name == "std" and min(values) <= 0:
            raise ValueError(f"std: expected 3 positive numbers (R, G, B), got {value!r}")
        return values

    return convert


def _to_model_path(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"modelPath: expected the path of an ONNX file, got {value!r}")
    return value


def local_model_path(value: str) -> str:
    """``modelPath`` as a local filesystem path (``file:`` URIs accepted); ValueError for other schemes."""
    if value.startswith("file://"):
        return value[len("file://") :]
    if value.startswith("file:"):
        return value[len("file:") :]
    head = value.split("/", 1)[0]
    if head.endswith(":") and len(head) > 2:
        raise ValueError(
            f"modelPath: expected a local or shared-filesystem path readable by executors (onnxruntime opens "
            f"files), got {value!r}"
        )
    return value


def file_sha256(path: str) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _to_size(value: Any) -> list[int]:
    size = TypeConverters.toListInt([value, value] if isinstance(value, int) else value)
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"imageSize: expected [height, width] of positive integers, got {value!r}")
    return size


class ImageFeaturizer(Transformer, HasInputCol, HasOutputCol, HasDevice, HasImageSize, MLReadable, MLWritable):
    """Featurise an image-schema or encoded-bytes column into a ``VectorUDT`` column, one Arrow batch at a time.

    ``backbone="histogram"`` (default, image structs only): ``3 * gridSize**2 + 3 * histogramBins + 10``
    features (250 by default). ``fn=...`` (or ``setBatchFunction``): a user batch function, see the
    module docstring; ``backbone`` becomes "function". ``backbone="onnx"`` with ``modelPath``, ``mean``,
    ``std``: an ONNX model. ``save``/``load`` keep the function (cloudpickled next to the params) and
    reference the ONNX file (its path and SHA-256).
    """

    backbone: Param[str] = Param(
        Params._dummy(), "backbone",
        'feature extractor: "histogram" (built in), "function" (setBatchFunction) or "onnx" (modelPath)',
        typeConverter=_to_backbone,
    )
    modelPath: Param[str] = Param(
        Params._dummy(), "modelPath", "onnx backbone: the .onnx file, readable where executors run (referenced)",
        typeConverter=_to_model_path,
    )
    mean: Param[list[float]] = Param(
        Params._dummy(), "mean", "onnx backbone: per-channel (R, G, B) mean in [0, 1] units: (x / 255 - mean) / std",
        typeConverter=_to_triple("mean"),
    )
    std: Param[list[float]] = Param(
        Params._dummy(), "std", "onnx backbone: per-channel (R, G, B) standard deviation in [0, 1] units",
        typeConverter=_to_triple("std"),
    )
    deviceBatchSize: Param[int] = Param(
        Params._dummy(), "deviceBatchSize",
        "bytes input on a GPU: images DALI decodes, resizes and normalises on the device at once",
        typeConverter=_to_positive("deviceBatchSize"),
    )
    keepInput: Param[bool] = Param(
        Params._dummy(), "keepInput",
        "bytes input: keep the encoded bytes column in the output (off, as in decode_images: the bytes would "
        "travel back to the JVM)",
        typeConverter=TypeConverters.toBoolean,
    )
    errorCol: Param[str] = Param(
        Params._dummy(), "errorCol", "bytes input: column with why an image could not be decoded (null when it was)",
        typeConverter=TypeConverters.toString,
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
        modelPath: str | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        deviceBatchSize: int = DEFAULT_DEVICE_BATCH,
        errorCol: str = "error",
        keepInput: bool = False,
    ) -> None:
        super().__init__()
        self._function: BatchFunction | None = None
        self._setDefault(
            inputCol="image", outputCol="features", backbone="histogram", imageSize=[64, 64], gridSize=8,
            histogramBins=16, batchSize=64, device="auto", mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
            deviceBatchSize=DEFAULT_DEVICE_BATCH, errorCol="error", keepInput=False,
        )
        kwargs = dict(self._input_kwargs)
        function = kwargs.pop("fn", None)
        if kwargs.get("imageSize") is not None:
            kwargs["imageSize"] = _to_size(kwargs["imageSize"])
        else:
            kwargs.pop("imageSize", None)
        for name in ("backbone", "modelPath", "mean", "std"):
            if kwargs.get(name) is None:
                kwargs.pop(name, None)
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
        """"histogram", "function" or "onnx"."""
        return self.getOrDefault(self.backbone)

    def setBackbone(self, value: str) -> ImageFeaturizer:
        """Choose "histogram", "function" (needs :meth:`setBatchFunction`) or "onnx" (needs :meth:`setModelPath`)."""
        return self._set(backbone=value)

    def getModelPath(self) -> str | None:
        """The ONNX file (onnx backbone), or None."""
        return self.getOrDefault(self.modelPath) if self.isDefined(self.modelPath) else None

    def setModelPath(self, value: str) -> ImageFeaturizer:
        """Set the ONNX file; the backbone becomes "onnx"."""
        self._set(modelPath=value)
        return self._set(backbone="onnx")

    def getMean(self) -> list[float]:
        """Per-channel (R, G, B) mean, [0, 1] units (onnx backbone)."""
        return self.getOrDefault(self.mean)

    def setMean(self, value: list[float]) -> ImageFeaturizer:
        """Set the per-channel mean (onnx backbone)."""
        return self._set(mean=value)

    def getStd(self) -> list[float]:
        """Per-channel (R, G, B) standard deviation, [0, 1] units (onnx backbone)."""
        return self.getOrDefault(self.std)

    def setStd(self, value: list[float]) -> ImageFeaturizer:
        """Set the per-channel standard deviation (onnx backbone)."""
        return self._set(std=value)

    def getDeviceBatchSize(self) -> int:
        """Images per DALI device batch (bytes input on a GPU)."""
        return self.getOrDefault(self.deviceBatchSize)

    def setDeviceBatchSize(self, value: int) -> ImageFeaturizer:
        """Set the images per DALI device batch (e.g. 128-512)."""
        return self._set(deviceBatchSize=value)

    def getKeepInput(self) -> bool:
        """Whether bytes input keeps its encoded bytes column."""
        return self.getOrDefault(self.keepInput)

    def setKeepInput(self, value: bool) -> ImageFeaturizer:
        """Keep (True) or drop (False, default) the encoded bytes column of bytes input."""
        return self._set(keepInput=value)

    def getErrorCol(self) -> str:
        """The reason column written for bytes input."""
        return self.getOrDefault(self.errorCol)

    def setErrorCol(self, value: str) -> ImageFeaturizer:
        """Set the reason column written for bytes input."""
        return self._set(errorCol=value)

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

    def _model_spec(self, threads: int = 1) -> ModelSpec | None:
        """Validate the backbone on the driver and describe its model for executors (None: histogram)."""
        backbone = self.getBackbone()
        if backbone == "function":
            if self._function is None:
                raise ValueError(
                    "ImageFeaturizer: backbone 'function' needs a batch function (setBatchFunction or fn=)"
                )
            return ModelSpec("function", function=self._function)
        if backbone == "onnx":
            from gpuimages.models.onnx import require_onnxruntime
            from gpuimages.models.onnx_inputs import check_featurizer_model

            path = self.getModelPath()
            if path is None:
                raise ValueError("modelPath: expected the path of an ONNX file for backbone 'onnx', got None")
            local = local_model_path(path)
            if not os.path.isfile(local):
                raise FileNotFoundError(f"modelPath: expected an existing ONNX file, got {path!r}")
            require_onnxruntime()
            check_featurizer_model(local, self.getImageSize(), self.getBatchSize(),
                                   None if self.getDevice() == "cpu" else self.getDeviceBatchSize(), shown=path)
            mean, std = self.getMean(), self.getStd()
            return ModelSpec("onnx", os.path.abspath(local), tuple(mean), tuple(std), threads=threads)  # type: ignore[arg-type]
        return None

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.sql.types import ArrayType, BinaryType, DoubleType

        input_col, output_col = self.getInputCol(), self.getOutputCol()
        if input_col in dataset.columns and isinstance(dataset.schema[input_col].dataType, BinaryType):
            return self._transform_bytes(dataset)
        image_column_check(dataset.schema, input_col)
        spec = self._model_spec(_task_cpus(dataset))
        height, width = self.getImageSize()
        runner = FeatureRunner(
            (height, width), self.getDevice(), self.getBackbone(), self.getGridSize(), self.getHistogramBins(),
            self._function if self.getBackbone() == "function" else None, model=spec,
        )
        arrays = map_column(dataset, input_col, output_col, ArrayType(DoubleType(), True), runner, self.getBatchSize())
        size = self.numFeatures()
        metadata = {"ml_attr": {"num_attrs": size}} if size is not None else None
        return to_vector_column(arrays, output_col, metadata)

    def _transform_bytes(self, dataset: DataFrame) -> DataFrame:
        """The fused path: decode, resize, normalise and run the model in one task (see :mod:`gpuimages.ml.fused`)."""
        from pyspark.sql.types import ArrayType, DoubleType, StringType, StructField, StructType

        from gpuimages import scheduling
        from gpuimages.ml.fused import FeatureLayout, FeatureTask, featurize_partition
        from gpuimages.options import make_decode_options
        from gpuimages.stage import run_stage, session_conf

        output_col, error_col = self.getOutputCol(), self.getErrorCol()
        if output_col == error_col:
            raise ValueError(f"errorCol: expected a name other than outputCol, got {error_col!r}")
        if self.getBackbone() == "histogram":
            raise ValueError(
                "backbone: expected 'onnx' or 'function' for a binary inputCol (encoded bytes), got 'histogram'; "
                "decode with read_images/decode_images first to use the histogram backbone"
            )
        conf = session_conf(dataset.sparkSession)
        spec = self._model_spec(_conf_int(conf.get("spark.task.cpus"), 1))
        height, width = self.getImageSize()
        options = make_decode_options(
            resize=(height, width), batch_size=self.getDeviceBatchSize(), device=self.getDevice()
        )
        device = scheduling.resolve_device(options.device, conf)
        if device != options.device:
            options = make_decode_options(resize=(height, width), batch_size=options.batch_size, device=device)
        dropped = {output_col, error_col} | (set() if self.getKeepInput() else {self.getInputCol()})
        passthrough = tuple(c for c in dataset.columns if c not in dropped)
        layout = FeatureLayout(self.getInputCol(), output_col, error_col, passthrough)
        task = FeatureTask(options, spec, layout, self.getBatchSize())  # type: ignore[arg-type]
        fields = {f.name: f for f in dataset.schema.fields}
        schema = StructType(
            [fields[name] for name in passthrough]
            + [StructField(output_col, ArrayType(DoubleType(), True), True), StructField(error_col, StringType(), True)]
        )
        out = run_stage(dataset, functools.partial(featurize_partition, task=task), schema, device, conf,
                        name="featurize")
        return to_vector_column(out, output_col)

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


def _conf_int(value: str | None, default: int) -> int:
    try:
        return max(1, int(value)) if value is not None else default
    except ValueError:
        return default


def _task_cpus(dataset: DataFrame) -> int:
    """``spark.task.cpus`` (ONNX Runtime threads per task), 1 when unset or unreadable."""
    try:
        return _conf_int(dataset.sparkSession.conf.get("spark.task.cpus", None), 1)
    except Exception:  # noqa: BLE001 - some servers refuse reading static confs
        return 1


class FeaturizerWriter(DefaultParamsWriter):
    """Saves an :class:`ImageFeaturizer`: metadata as JSON, the batch function as a cloudpickle blob."""

    def saveImpl(self, path: str) -> None:
        """Write ``path/metadata`` and, with a batch function, ``path/batchFunction`` (Parquet)."""
        from pyspark import cloudpickle

        fn = self.instance.getBatchFunction()
        extra: dict[str, Any] = {"hasBatchFunction": fn is not None}
        model_path = self.instance.getModelPath()
        if model_path is not None:
            try:
                extra["modelSha256"] = file_sha256(local_model_path(model_path))
            except (OSError, ValueError) as exc:
                log.warning("ImageFeaturizer.save: cannot read modelPath %r (%s); saving the path only",
                            model_path, exc)
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession, extraMetadata=extra)
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
        expected = metadata.get("modelSha256")
        if expected is not None:
            model_path = instance.getModelPath()
            try:
                found = file_sha256(local_model_path(model_path))  # type: ignore[arg-type]
            except (OSError, ValueError) as exc:
                log.warning("ImageFeaturizer.load: the model file %r is not readable here (%s)", model_path, exc)
            else:
                if found != expected:
                    log.warning("ImageFeaturizer.load: the model file %r changed since the stage was saved", model_path)
        if metadata.get("hasBatchFunction"):
            row = self.sparkSession.read.parquet(os.path.join(path, _FUNCTION_DIR)).first()
            instance._function = pickle.loads(bytes(row[0]))
        return instance

"""``ImageFeaturizer``: images to feature vectors with a pluggable backbone.

Built in: ``backbone="histogram"``, cheap hand-made features (see
:func:`gpuimages.transforms.histogram.histogram_features`). Or bring a model as a batch function::

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
batch stays on the GPU: ONNX Runtime is bound to the DALI tensor's device pointer), so pixels never enter the JVM. The
other input columns are kept and the bytes column is dropped (``keepInput=True`` keeps it, at the
cost of sending the bytes back to the JVM), ``outputCol`` and ``errorCol`` are (re)written at the
end, one row out per row in; an image no engine can decode gets a null vector and the reason in
``errorCol``.

Or a **string column of file paths** as ``binaryFile`` gives them (its ``path`` column, selected alone so
that Spark never reads the files: ``file:/data/a b.jpg``): each task reads its local files itself (checked
first as ``read_images`` checks them) and decodes them as above, so neither the bytes nor the pixels cross
the JVM.
The path column is kept; a path that is not a local file, or a file that cannot be read, gets a null
vector and the reason.

Output: a ``VectorUDT`` column; invalid or null images get a null vector.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import MLReadable, MLWritable

from gpuimages.ml.columns import replaced_schema, to_vector_column
from gpuimages.ml.params import HasDecodeParams, HasDevice, HasErrorCol, HasImageSize, to_image_size, to_positive
from gpuimages.ml.persistence import FeaturizerReader, FeaturizerWriter, local_model_path
from gpuimages.models import ModelSpec
from gpuimages.models.function import BatchFunction
from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD
from gpuimages.transforms.histogram import histogram_size

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

#: The reason of a row of a path input that names no local file.
NOT_LOCAL_REASON = (
    "not read: a path input is read only where it names a local file (file:); read other filesystems with "
    "binaryFile and featurize its content"
)

BACKBONES = ("histogram", "function", "onnx")
#: Default DALI device batch (images decoded, resized and normalised on the GPU at once).
DEFAULT_DEVICE_BATCH = 256


def _to_backbone(value: Any) -> str:
    if value not in BACKBONES:
        raise ValueError(f"backbone: expected one of {', '.join(BACKBONES)}, got {value!r}")
    return value


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


class ImageFeaturizer(
    Transformer, HasInputCol, HasOutputCol, HasDevice, HasImageSize, HasErrorCol, HasDecodeParams, MLReadable,
    MLWritable,
):
    """Featurise an image-schema or encoded-bytes column into a ``VectorUDT`` column, one Arrow batch at a time.

    ``backbone="histogram"`` (default; image structs or encoded bytes): ``3 * gridSize**2 + 3 * histogramBins + 10``
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
        typeConverter=to_positive("deviceBatchSize"),
    )
    keepInput: Param[bool] = Param(
        Params._dummy(), "keepInput",
        "bytes input: keep the encoded bytes column in the output (off, as in decode_images: the bytes would "
        "travel back to the JVM)",
        typeConverter=TypeConverters.toBoolean,
    )
    gridSize: Param[int] = Param(
        Params._dummy(), "gridSize", "histogram backbone: side of the shrunken image kept as features",
        typeConverter=to_positive("gridSize"),
    )
    histogramBins: Param[int] = Param(
        Params._dummy(), "histogramBins", "histogram backbone: bins per colour channel",
        typeConverter=to_positive("histogramBins"),
    )
    batchSize: Param[int] = Param(
        Params._dummy(), "batchSize", "images per Arrow batch returned, and at most per call of the model or function",
        typeConverter=to_positive("batchSize"),
    )

    @keyword_only
    def __init__(
        self,
        *,
        inputCol: str = "image",
        outputCol: str = "features",
        backbone: str | None = None,
        imageSize: list[int] | None = None,
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
        maxPixels: int | None = None,
        strict: bool = False,
        applyExif: bool = False,
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
            kwargs["imageSize"] = to_image_size(kwargs["imageSize"])
        else:
            kwargs.pop("imageSize", None)
        for name in ("backbone", "modelPath", "mean", "std", "maxPixels"):
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

    def setImageSize(self, value: list[int]) -> ImageFeaturizer:
        """Set ``[height, width]`` images are resized to (an int is refused: see :func:`to_image_size`)."""
        return self._set(imageSize=to_image_size(value))

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

    def _model_spec(self) -> ModelSpec | None:
        """Validate the backbone on the driver and describe its model for executors (None: histogram)."""
        backbone = self.getBackbone()
        if backbone == "function":
            if self._function is None:
                raise ValueError(
                    "ImageFeaturizer: backbone 'function' needs a batch function (setBatchFunction or fn=)"
                )
            return ModelSpec("function", function=self._function, max_batch=self.getBatchSize())
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
            return ModelSpec("onnx", os.path.abspath(local), tuple(mean), tuple(std))  # type: ignore[arg-type]
        return None

    def _transform(self, dataset: DataFrame) -> DataFrame:
        """Featurise image structs (columns kept, ``outputCol`` replaced or added) or encoded bytes (decoded
        in the same task; the bytes column dropped unless ``keepInput``, ``errorCol`` added)."""
        from pyspark.sql.types import ArrayType, BinaryType, DoubleType, StringType, StructField, StructType

        from gpuimages import scheduling
        from gpuimages.options import DEFAULT_MAX_BATCH_BYTES, make_decode_options
        from gpuimages.schema import image_column_check
        from gpuimages.stage import run_stage, session_conf
        from gpuimages.task.spec import StageSpec
        from gpuimages.task.steps import Featurize, ReadLocal
        from gpuimages.task.steps.read_local import max_length_of

        input_col, output_col = self.getInputCol(), self.getOutputCol()
        kind = dataset.schema[input_col].dataType if input_col in dataset.columns else None
        is_paths = isinstance(kind, StringType)
        is_bytes = isinstance(kind, BinaryType) or is_paths
        if not is_bytes:
            image_column_check(dataset.schema, input_col)
        backbone = self.getBackbone()
        model = self._model_spec()
        conf = session_conf(dataset.sparkSession)
        modules = (("nvidia.dali",) if is_bytes else ()) + (("cupy",) if backbone == "histogram" else ())
        device = scheduling.resolve_device(self.getDevice(), conf, modules)
        height, width = self.getImageSize()
        decode = None
        if is_bytes:
            decode = make_decode_options(
                resize=(height, width), device=device, device_batch_size=self.getDeviceBatchSize(),
                batch_size=self.getBatchSize(), **self.decode_kwargs(),
            )
        step = Featurize(
            backbone, (height, width), output_col, model=model, grid_size=self.getGridSize(),
            bins=self.getHistogramBins(), batch_size=self.getBatchSize(), decode=decode,
        )
        vectors = ArrayType(DoubleType(), True)
        if is_bytes:
            error_col = self.getErrorCol()
            if output_col == error_col:
                raise ValueError(f"errorCol: expected a name other than outputCol, got {error_col!r}")
            dropped = {output_col, error_col} | (set() if self.getKeepInput() or is_paths else {input_col})
            passthrough = tuple(c for c in dataset.columns if c not in dropped)
            fields = {f.name: f for f in dataset.schema.fields}
            schema = StructType(
                [fields[name] for name in passthrough]
                + [StructField(output_col, vectors, True), StructField(error_col, StringType(), True)]
            )
            columns = (*passthrough, output_col, error_col)
        else:
            error_col = None
            schema = replaced_schema(dataset.schema, output_col, vectors)
            columns = tuple(schema.fieldNames())
        steps: tuple = (step,)
        if is_paths:  # the files are read in the task, in parts bounded as the featurizer's chunks
            steps = (ReadLocal(bounds=step, max_batch_bytes=decode.max_batch_bytes, max_length=max_length_of(conf),
                               others_reason=NOT_LOCAL_REASON), step)
        spec = StageSpec(
            name="featurize", device=device, input_col=input_col,
            input_kind="paths" if is_paths else "bytes" if is_bytes else "struct", steps=steps, columns=columns,
            origin_col=input_col if is_paths else None, origin_is_path=is_paths, error_col=error_col,
            rows_per_batch=self.getBatchSize(),
            max_batch_bytes=decode.max_batch_bytes if decode else DEFAULT_MAX_BATCH_BYTES,
        )
        out = run_stage(dataset, spec, schema, conf)
        size = self.numFeatures()
        return to_vector_column(out, output_col, {"ml_attr": {"num_attrs": size}} if size is not None else None)

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

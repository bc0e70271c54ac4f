"""``ImageTransformer``: a chain of image operations as one ``pyspark.ml`` Transformer.

    >>> from gpuimages.ml import ImageTransformer
    >>> tr = (ImageTransformer()                 # images are resized and then cropped
    ...       .setOutputCol("transformed")
    ...       .resize(height=200, width=200)
    ...       .crop(0, 0, height=180, width=180))
    >>> small = tr.transform(images).select("transformed")

The stages run in order inside Spark tasks (:class:`gpuimages.task.steps.Transform`, planned by
:func:`gpuimages.stage.run_stage`): same-sized images are stacked and processed together with numpy,
or cupy on a task's GPU. The input is an image-struct column or a binary column of encoded files,
decoded in the same task (as SynapseML's ``ImageTransformer`` accepts binary input). Invalid or null
input images stay invalid or null; all other columns and every row pass through.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Transformer
from pyspark.ml.param import Param, Params
from pyspark.ml.param.shared import HasInputCol, HasOutputCol
from pyspark.ml.util import DefaultParamsReadable, DefaultParamsWritable

from gpuimages.ml.columns import replaced_schema
from gpuimages.ml.params import HasDecodeParams, HasDevice, HasErrorCol
from gpuimages.schema import image_struct_type
from gpuimages.transforms.stages import check_stages, color_format, flip_direction, outputs_tensor

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame


def _to_stages(value: Any) -> list[dict[str, Any]]:
    return check_stages(value)


class ImageTransformer(
    Transformer, HasInputCol, HasOutputCol, HasDevice, HasErrorCol, HasDecodeParams, DefaultParamsReadable,
    DefaultParamsWritable,
):
    """Apply image operations in order to an image-schema column (Spark's image struct, BGR(A)), or to a
    binary column of encoded files (``binaryFile``'s ``content``, a table), decoded in the same task.

    Build the chain fluently (``resize``, ``crop``, ``centerCrop``, ``colorFormat``, ``flip``,
    ``gaussianBlur``, ``threshold``, ``normalize``) or pass ``stages`` as a list of dicts (see
    :mod:`gpuimages.transforms.stages`). The output column is an image struct, except after
    ``normalize``: then it is ``array<float>`` (layout in :meth:`normalize`). Images that are
    invalid (Spark's -1 row) or null stay so; an operation that cannot apply to an image (a
    crop box outside it, per-channel values that do not match its channels) makes it invalid.

    With bytes input the files are decoded as ``decode_images`` decodes them (``maxPixels``, ``strict``,
    ``applyExif``), the origin comes from a ``path`` column where there is one (``binaryFile``'s), and
    ``errorCol`` says why a row has no image; every other column is kept.
    """

    stages: Param[list[dict[str, Any]]] = Param(
        Params._dummy(),
        "stages",
        "image operations applied in order: a JSON-serialisable list of dicts with an 'action' key",
        typeConverter=_to_stages,
    )

    @keyword_only
    def __init__(
        self,
        *,
        inputCol: str = "image",
        outputCol: str = "transformed",
        stages: list[dict[str, Any]] | None = None,
        device: str = "auto",
        errorCol: str = "error",
        maxPixels: int | None = None,
        strict: bool = False,
        applyExif: bool = False,
    ) -> None:
        super().__init__()
        self._setDefault(inputCol="image", outputCol="transformed", stages=[], device="auto")
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    @keyword_only
    def setParams(
        self,
        *,
        inputCol: str = "image",
        outputCol: str = "transformed",
        stages: list[dict[str, Any]] | None = None,
        device: str = "auto",
        errorCol: str = "error",
        maxPixels: int | None = None,
        strict: bool = False,
        applyExif: bool = False,
    ) -> ImageTransformer:
        """Set any of the params by keyword."""
        return self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def setInputCol(self, value: str) -> ImageTransformer:
        """Set the image column to read."""
        return self._set(inputCol=value)

    def setOutputCol(self, value: str) -> ImageTransformer:
        """Set the column to write (replaced in place if it exists)."""
        return self._set(outputCol=value)

    def getStages(self) -> list[dict[str, Any]]:
        """The stages, in order."""
        return [dict(s) for s in self.getOrDefault(self.stages)]

    def setStages(self, value: list[dict[str, Any]]) -> ImageTransformer:
        """Replace the stages."""
        return self._set(stages=value)

    # ------------------------------------------------------------ fluent stages

    def _add(self, stage: dict[str, Any]) -> ImageTransformer:
        return self._set(stages=self.getStages() + [stage])

    def resize(
        self, height: int | None = None, width: int | None = None, *, size: int | None = None
    ) -> ImageTransformer:
        """Resize to ``height`` x ``width``, or so the shorter side is ``size`` (aspect kept).

        Pillow's bilinear filter (antialiased when shrinking), horizontal pass first; see
        :mod:`gpuimages.transforms.ops`.
        """
        if size is not None:
            return self._add({"action": "resize", "size": size, "height": height, "width": width})
        return self._add({"action": "resize", "height": height, "width": width})

    def crop(self, x: int, y: int, height: int, width: int) -> ImageTransformer:
        """Cut the ``width`` x ``height`` box whose top-left corner is column ``x``, row ``y``.

        The part of the box inside the image is kept; a box entirely outside makes the image invalid.
        """
        return self._add({"action": "crop", "x": x, "y": y, "height": height, "width": width})

    def centerCrop(self, height: int, width: int) -> ImageTransformer:
        """Cut ``height`` x ``width`` from the centre (top/left offsets rounded down; clamped to the image)."""
        return self._add({"action": "centerCrop", "height": height, "width": width})

    def colorFormat(self, format: str | int) -> ImageTransformer:  # noqa: A002 - the original API's name
        """Convert colours: "BGR2RGB", "RGB2BGR", "BGR2GRAY", "GRAY2BGR", "BGRA2BGR", ... or an OpenCV code.

        The result stays an image struct (1, 3 or 4 channels, mode updated). Gray is ITU-R 601-2 luma,
        ``(19595 R + 38470 G + 7471 B + 32768) >> 16`` (Pillow's ``convert("L")``).
        """
        return self._add({"action": "colorFormat", "format": color_format(format)})

    def flip(self, direction: str | int = "horizontal") -> ImageTransformer:
        """Mirror "horizontal" (left-right), "vertical" (top-bottom) or "both"; OpenCV flipCodes 1, 0, -1 too."""
        return self._add({"action": "flip", "direction": flip_direction(direction)})

    def gaussianBlur(self, kernelSize: int | None = 5, sigma: float = 0.0) -> ImageTransformer:
        """Gaussian blur with an odd ``kernelSize`` and ``sigma`` (<= 0: OpenCV's rule from the kernel size).

        ``kernelSize=None`` derives the size from ``sigma`` (OpenCV's ``round(6 sigma + 1) | 1``).
        Borders are mirrored without repeating the edge pixel (OpenCV's default).
        """
        return self._add({"action": "gaussianBlur", "kernelSize": kernelSize, "sigma": sigma})

    def threshold(self, threshold: float, maxVal: float = 255.0, thresholdType: str = "binary") -> ImageTransformer:
        """OpenCV threshold: "binary" gives ``maxVal`` where ``pixel > threshold``, else 0.

        Other types: "binary_inv", "trunc", "tozero", "tozero_inv" (as OpenCV defines them).
        """
        return self._add({"action": "threshold", "threshold": threshold, "maxVal": maxVal, "type": thresholdType})

    def normalize(
        self,
        mean: float | Sequence[float] = (0.485, 0.456, 0.406),
        std: float | Sequence[float] = (0.229, 0.224, 0.225),
        scale: float = 1.0 / 255.0,
        toRGB: bool = True,
        layout: str = "CHW",
    ) -> ImageTransformer:
        """End the chain with a float tensor: ``(pixel * scale - mean[c]) / std[c]`` as ``array<float>``.

        Layout of each row's flat array: with ``layout="CHW"`` (default, what torch models take)
        element ``(c, y, x)`` is at ``c * H * W + y * W + x``; with "HWC" it is at
        ``(y * W + x) * C + c``. ``toRGB`` (default) reorders BGR(A) to RGB(A) first, and
        ``mean``/``std`` are given in that output order (the defaults are ImageNet's, for RGB).
        Height and width are not stored: resize/crop to a known size before normalising.
        Invalid images, and images whose channel count does not match ``mean``/``std``, give null.
        """
        mean_list = [float(v) for v in mean] if isinstance(mean, Sequence) else [float(mean)]
        std_list = [float(v) for v in std] if isinstance(std, Sequence) else [float(std)]
        return self._add(
            {"action": "normalize", "mean": mean_list, "std": std_list, "scale": scale, "toRGB": toRGB,
             "layout": layout}
        )

    # ------------------------------------------------------------ transform

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.sql.types import ArrayType, BinaryType, FloatType, StringType

        from gpuimages import scheduling
        from gpuimages.options import make_decode_options
        from gpuimages.schema import image_column_check
        from gpuimages.stage import run_stage, session_conf
        from gpuimages.task.spec import StageSpec
        from gpuimages.task.steps import Decode, Transform

        stages = tuple(self.getStages())
        input_col, output_col = self.getInputCol(), self.getOutputCol()
        is_bytes = input_col in dataset.columns and isinstance(dataset.schema[input_col].dataType, BinaryType)
        if not is_bytes:
            image_column_check(dataset.schema, input_col)
        conf = session_conf(dataset.sparkSession)
        device = scheduling.resolve_device(self.getDevice(), conf, (("nvidia.dali",) if is_bytes else ()) + ("cupy",))
        data_type = ArrayType(FloatType(), True) if outputs_tensor(stages) else image_struct_type()
        schema = replaced_schema(dataset.schema, output_col, data_type)
        transform = Transform(stages, output_col)
        if is_bytes:
            error_col = self.getErrorCol()
            if error_col in (output_col, input_col):
                raise ValueError(f"errorCol: expected a name other than inputCol and outputCol, got {error_col!r}")
            schema = replaced_schema(schema, error_col, StringType())
        columns = tuple(schema.fieldNames())
        if is_bytes:
            options = make_decode_options(device=device, **self.decode_kwargs())
            origin = "path" if "path" in dataset.columns and isinstance(
                dataset.schema["path"].dataType, StringType) else None
            spec = StageSpec(
                name="transform", device=device, input_col=input_col, input_kind="bytes",
                steps=(Decode(options), transform), columns=columns, origin_col=origin, origin_is_path=True,
                error_col=error_col, rows_per_batch=ROWS_PER_BATCH, max_batch_bytes=options.max_batch_bytes,
            )
        else:
            spec = StageSpec(
                name="transform", device=device, input_col=input_col, input_kind="struct", steps=(transform,),
                columns=columns, error_col=None, rows_per_batch=ROWS_PER_BATCH,
            )
        return run_stage(dataset, spec, schema, conf)


#: Rows per Arrow batch the stage returns.
ROWS_PER_BATCH = 64

"""Params shared by the image stages, named as pyspark.ml names them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters

from gpuimages.options import DEFAULT_MAX_PIXELS, check_device


def _to_device(value: Any) -> str:
    return check_device(value)


def to_positive(name: str) -> Callable[[Any], int]:
    """A type converter accepting positive integers, with an "expected …, got …" error naming ``name``."""

    def convert(value: Any) -> int:
        number = TypeConverters.toInt(value)
        if number <= 0:
            raise ValueError(f"{name}: expected a positive integer, got {value!r}")
        return number

    return convert


def to_image_size(value: Any) -> list[int]:
    """``[height, width]`` of positive integers. An int is refused: for ``resize`` it means the shorter
    side (the other side follows the aspect ratio), and a model's input needs both sides."""
    if isinstance(value, int) and not isinstance(value, bool):
        raise ValueError(
            f"imageSize: expected [height, width] of positive integers, got {value!r} (an int is the shorter side "
            f"for resize; a model's input needs both sides, e.g. [{value}, {value}])"
        )
    try:
        size = TypeConverters.toListInt(value)
    except TypeError:
        size = []
    if len(size) != 2 or min(size) <= 0:
        raise ValueError(f"imageSize: expected [height, width] of positive integers, got {value!r}")
    return size


class HasDevice(Params):
    """Mixin for the ``device`` param: where executors compute ("auto", "cpu" or "gpu")."""

    device: Param[str] = Param(
        Params._dummy(),
        "device",
        'where executors compute: "cpu" (numpy/Pillow), "gpu" (the GPU libraries of the gpu extra; an ImportError '
        'naming it when they are not installed) or "auto" (a task\'s GPU where it has one and the libraries import)',
        typeConverter=_to_device,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(device="auto")

    def getDevice(self) -> str:
        """Where executors compute."""
        return self.getOrDefault(self.device)

    def setDevice(self, value: str) -> Any:
        """Set where executors compute: "auto", "cpu" or "gpu"."""
        return self._set(device=value)


class HasImageSize(Params):
    """Mixin for ``imageSize``: ``[height, width]`` images are resized to before featurising."""

    imageSize: Param[list[int]] = Param(
        Params._dummy(),
        "imageSize",
        "[height, width] every image is resized to (Pillow bilinear) before the backbone sees it",
        typeConverter=to_image_size,
    )

    def getImageSize(self) -> list[int]:
        """``[height, width]`` images are resized to."""
        return self.getOrDefault(self.imageSize)


class HasErrorCol(Params):
    """Mixin for ``errorCol``: bytes input, why a file could not be decoded (null when it was)."""

    errorCol: Param[str] = Param(
        Params._dummy(), "errorCol", "bytes input: column with why an image could not be decoded (null when it was)",
        typeConverter=TypeConverters.toString,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(errorCol="error")

    def getErrorCol(self) -> str:
        """The reason column written for bytes input."""
        return self.getOrDefault(self.errorCol)

    def setErrorCol(self, value: str) -> Any:
        """Set the reason column written for bytes input."""
        return self._set(errorCol=value)


class HasDecodeParams(Params):
    """Mixin for the decode options of bytes input: ``maxPixels``, ``strict`` and ``applyExif``, as
    ``read_images``' ``max_pixels``, ``strict`` and ``apply_exif``."""

    maxPixels: Param[int] = Param(
        Params._dummy(), "maxPixels",
        "bytes input: refuse images whose header claims more pixels (decompression bombs)",
        typeConverter=to_positive("maxPixels"),
    )
    strict: Param[bool] = Param(
        Params._dummy(), "strict",
        "bytes input: a file whose data ends before the image does is an invalid row (default: decoded as far as "
        "it goes, as Spark's image source does)",
        typeConverter=TypeConverters.toBoolean,
    )
    applyExif: Param[bool] = Param(
        Params._dummy(), "applyExif", "bytes input: rotate/flip by the EXIF orientation tag (off, as Spark's source)",
        typeConverter=TypeConverters.toBoolean,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(maxPixels=DEFAULT_MAX_PIXELS, strict=False, applyExif=False)

    def getMaxPixels(self) -> int:
        """Images whose header claims more pixels are refused (bytes input)."""
        return self.getOrDefault(self.maxPixels)

    def setMaxPixels(self, value: int) -> Any:
        """Set the pixel limit of bytes input."""
        return self._set(maxPixels=value)

    def getStrict(self) -> bool:
        """Whether truncated files are invalid rows (bytes input)."""
        return self.getOrDefault(self.strict)

    def setStrict(self, value: bool) -> Any:
        """Make truncated files invalid rows (True) or decode them as far as they go (False)."""
        return self._set(strict=value)

    def getApplyExif(self) -> bool:
        """Whether the EXIF orientation is applied (bytes input)."""
        return self.getOrDefault(self.applyExif)

    def setApplyExif(self, value: bool) -> Any:
        """Apply (True) or ignore (False, as Spark's source) the EXIF orientation of bytes input."""
        return self._set(applyExif=value)

    def decode_kwargs(self) -> dict[str, Any]:
        """These params as :func:`gpuimages.options.make_decode_options` keywords."""
        return {"max_pixels": self.getMaxPixels(), "strict": self.getStrict(), "apply_exif": self.getApplyExif()}

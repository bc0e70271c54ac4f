"""Params shared by the image stages."""

from __future__ import annotations

from typing import Any

from pyspark.ml.param import Param, Params, TypeConverters

from gpuimages.options import check_device


def _to_device(value: Any) -> str:
    return check_device(value)


class HasDevice(Params):
    """Mixin for the ``device`` param: where executors compute ("auto", "cpu" or "gpu")."""

    device: Param[str] = Param(
        Params._dummy(),
        "device",
        'where executors compute: "cpu" (numpy/Pillow), "gpu" (cupy; numpy/Pillow where cupy or a GPU '
        'is missing, with the same results) or "auto" (cupy when it imports and sees a GPU)',
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
        typeConverter=TypeConverters.toListInt,
    )

    def getImageSize(self) -> list[int]:
        """``[height, width]`` images are resized to."""
        return self.getOrDefault(self.imageSize)


"""The stages of :class:`~gpuimages.ml.ImageTransformer`: JSON-serialisable specs and how they run.

A stage is a plain dict with an ``"action"`` key, e.g. ``{"action": "resize", "height": 200,
"width": 200}``; :func:`check_stages` validates a list of them on the driver. On executors
:func:`apply_stages` runs the list over a stack of same-sized images (``[N, H, W, C]`` uint8).

==============  ==================================================================================
action          keys
==============  ==================================================================================
resize          ``height`` and ``width``; or ``size`` (the shorter side, aspect ratio kept)
crop            ``x``, ``y`` (left, top), ``height``, ``width``: the part inside the image is kept;
                a box entirely outside it makes the image invalid
centerCrop      ``height``, ``width`` (sides larger than the image are clamped to it)
colorFormat     ``format``: "SRC2DST" with SRC and DST among BGR, RGB, BGRA, RGBA, GRAY (e.g.
                "BGR2RGB", "BGR2GRAY", "GRAY2BGR"), or an OpenCV ``COLOR_*`` code (0 to 11)
flip            ``direction``: "horizontal" (left-right), "vertical" (top-bottom) or "both"
gaussianBlur    ``kernelSize`` (odd), ``sigma`` (<= 0: derived from ``kernelSize``)
threshold       ``threshold``, ``maxVal``, ``type``: "binary", "binary_inv", "trunc", "tozero",
                "tozero_inv"
normalize       ``mean``, ``std`` (one value or one per channel), ``scale``, ``toRGB``, ``layout``
                ("CHW" or "HWC"); must be the last stage: the output becomes array<float>
==============  ==================================================================================
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from gpuimages.transforms import ops
from gpuimages.transforms.arrays import Arrays

#: OpenCV ``cv::ColorConversionCodes`` accepted as integers by ``colorFormat``.
OPENCV_COLOR_CODES = {
    0: "BGR2BGRA",
    1: "BGRA2BGR",
    2: "BGR2RGBA",
    3: "RGBA2BGR",
    4: "BGR2RGB",
    5: "BGRA2RGBA",
    6: "BGR2GRAY",
    7: "RGB2GRAY",
    8: "GRAY2BGR",
    9: "GRAY2BGRA",
    10: "BGRA2GRAY",
    11: "RGBA2GRAY",
}
_SOURCES = ("BGR", "RGB", "BGRA", "RGBA", "GRAY")
COLOR_FORMATS = tuple(f"{a}2{b}" for a in _SOURCES for b in _SOURCES if a != b)
#: OpenCV ``flipCode``: 0 flips around the x axis (top-bottom), 1 around y (left-right), -1 both.
FLIP_CODES = {0: "vertical", 1: "horizontal", -1: "both"}
FLIP_DIRECTIONS = ("horizontal", "vertical", "both")
LAYOUTS = ("CHW", "HWC")
ACTIONS = ("resize", "crop", "centerCrop", "colorFormat", "flip", "gaussianBlur", "threshold", "normalize")


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def _int(action: str, key: str, value: Any, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) and not (
        isinstance(value, float) and value.is_integer()
    ):
        raise ValueError(f"{action}.{key}: expected an integer, got {_describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{action}.{key}: expected an integer >= {minimum}, got {value}")
    return value


def _float(action: str, key: str, value: Any) -> float:
    number = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
    if not number or not math.isfinite(value):
        raise ValueError(f"{action}.{key}: expected a finite number, got {_describe(value)}")
    return float(value)


def _floats(action: str, key: str, value: Any, positive: bool = False) -> list[float]:
    items = list(value) if isinstance(value, (list, tuple, np.ndarray)) else [value]
    if not 1 <= len(items) <= 4:
        raise ValueError(f"{action}.{key}: expected a number or 1 to 4 numbers (one per channel), got {value!r}")
    out = [_float(action, key, v) for v in items]
    if positive and any(v == 0 for v in out):
        raise ValueError(f"{action}.{key}: expected non-zero values, got {value!r}")
    return out


def _choice(action: str, key: str, value: Any, choices: Sequence[str]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"{action}.{key}: expected one of {', '.join(choices)}, got {_describe(value)}")
    return value


def color_format(value: Any) -> str:
    """Normalise a ``colorFormat`` argument: a name ("BGR2RGB", any case) or an OpenCV code (int)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if int(value) not in OPENCV_COLOR_CODES:
            codes = ", ".join(f"{k} ({v})" for k, v in OPENCV_COLOR_CODES.items())
            raise ValueError(f"colorFormat.format: expected one of the OpenCV codes {codes}, got {value}")
        return OPENCV_COLOR_CODES[int(value)]
    if isinstance(value, str):
        value = value.upper().replace("COLOR_", "")
    return _choice("colorFormat", "format", value, COLOR_FORMATS)


def flip_direction(value: Any) -> str:
    """Normalise a ``flip`` argument: "horizontal", "vertical", "both", or an OpenCV ``flipCode`` (1, 0, -1)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if int(value) not in FLIP_CODES:
            raise ValueError(f"flip.direction: expected an OpenCV flipCode 1, 0 or -1, got {value}")
        return FLIP_CODES[int(value)]
    return _choice("flip", "direction", value.lower() if isinstance(value, str) else value, FLIP_DIRECTIONS)


def check_stage(stage: Mapping[str, Any]) -> dict[str, Any]:
    """Validate one stage spec and return it normalised (plain JSON types, every key present)."""
    if not isinstance(stage, Mapping) or "action" not in stage:
        raise ValueError(f"stage: expected a dict with an 'action' key, got {_describe(stage)}")
    action = _choice("stage", "action", stage["action"], ACTIONS)
    get = stage.get
    if action == "resize":
        if get("size") is not None:
            if get("height") is not None or get("width") is not None:
                raise ValueError("resize: expected either size or height and width, got both")
            return {"action": action, "size": _int(action, "size", get("size"), 1)}
        if get("height") is None or get("width") is None:
            raise ValueError("resize: expected height and width (or size for the shorter side)")
        return {"action": action, "height": _int(action, "height", get("height"), 1),
                "width": _int(action, "width", get("width"), 1)}
    if action == "crop":
        return {"action": action, "x": _int(action, "x", get("x", 0)), "y": _int(action, "y", get("y", 0)),
                "height": _int(action, "height", get("height"), 1), "width": _int(action, "width", get("width"), 1)}
    if action == "centerCrop":
        return {"action": action, "height": _int(action, "height", get("height"), 1),
                "width": _int(action, "width", get("width"), 1)}
    if action == "colorFormat":
        return {"action": action, "format": color_format(get("format"))}
    if action == "flip":
        return {"action": action, "direction": flip_direction(get("direction", "horizontal"))}
    if action == "gaussianBlur":
        sigma = _float(action, "sigma", get("sigma", 0.0))
        size = get("kernelSize")
        if size is None:
            if sigma <= 0:
                raise ValueError("gaussianBlur: expected kernelSize or a positive sigma")
            size = ops.kernel_size_for_sigma(sigma)
        size = _int(action, "kernelSize", size, 1)
        if size % 2 == 0:
            raise ValueError(f"gaussianBlur.kernelSize: expected an odd number, got {size}")
        return {"action": action, "kernelSize": size, "sigma": sigma}
    if action == "threshold":
        return {"action": action, "threshold": _float(action, "threshold", get("threshold")),
                "maxVal": _float(action, "maxVal", get("maxVal", 255.0)),
                "type": _choice(action, "type", get("type", "binary"), ops.THRESHOLD_TYPES)}
    scale = _float(action, "scale", get("scale", 1.0 / 255.0))
    to_rgb = get("toRGB", True)
    if not isinstance(to_rgb, bool):
        raise ValueError(f"normalize.toRGB: expected True or False, got {_describe(to_rgb)}")
    return {"action": action, "mean": _floats(action, "mean", get("mean", 0.0)),
            "std": _floats(action, "std", get("std", 1.0), positive=True), "scale": scale, "toRGB": to_rgb,
            "layout": _choice(action, "layout", get("layout", "CHW"), LAYOUTS)}


def check_stages(stages: Any) -> list[dict[str, Any]]:
    """Validate a list of stage specs; "normalize" may only come last."""
    if isinstance(stages, (str, bytes, Mapping)) or not isinstance(stages, Sequence):
        raise ValueError(f"stages: expected a list of stage dicts, got {_describe(stages)}")
    checked = [check_stage(s) for s in stages]
    for stage in checked[:-1]:
        if stage["action"] == "normalize":
            raise ValueError("stages: normalize turns images into arrays of floats, so it must be the last stage")
    return checked


def outputs_tensor(stages: Sequence[Mapping[str, Any]]) -> bool:
    """True when the stages end with "normalize" (array<float> output instead of an image)."""
    return bool(stages) and stages[-1]["action"] == "normalize"


def _per_channel(values: list[float], channels: int) -> list[float] | None:
    if len(values) == 1:
        return values * channels
    return values if len(values) == channels else None


def _resize(stack: Any, stage: Mapping[str, Any], arrays: Arrays) -> Any:
    _, height, width, _ = stack.shape
    if "size" in stage:
        h, w = ops.shorter_side_size(height, width, stage["size"])
    else:
        h, w = stage["height"], stage["width"]
    return ops.resize(stack, h, w, arrays)


def _crop(stack: Any, stage: Mapping[str, Any], arrays: Arrays) -> Any | None:
    _, height, width, _ = stack.shape
    box = ops.crop_box(height, width, stage["x"], stage["y"], stage["height"], stage["width"])
    return None if box is None else ops.crop(stack, *box)


def _center_crop(stack: Any, stage: Mapping[str, Any], arrays: Arrays) -> Any:
    _, height, width, _ = stack.shape
    return ops.crop(stack, *ops.center_box(height, width, stage["height"], stage["width"]))


def _color_format(stack: Any, stage: Mapping[str, Any], arrays: Arrays) -> Any:
    source, target = stage["format"].split("2")
    return ops.convert_color(stack, source, target, arrays.xp)


def _flip(stack: Any, stage: Mapping[str, Any], arrays: Arrays) -> Any:
    return ops.flip(stack, stage["direction"])


def _gaussian_blur(stack: Any, stage: Mapping[str, Any], arrays: Arrays) -> Any:
    return ops.gaussian_blur(stack, stage["kernelSize"], stage["sigma"], arrays.xp)


def _threshold(stack: Any, stage: Mapping[str, Any], arrays: Arrays) -> Any:
    return ops.threshold(stack, stage["threshold"], stage["maxVal"], stage["type"], arrays.xp)


def _normalize(stack: Any, stage: Mapping[str, Any], arrays: Arrays) -> Any | None:
    channels = stack.shape[3]
    mean = _per_channel(stage["mean"], channels)
    std = _per_channel(stage["std"], channels)
    if mean is None or std is None:
        return None
    return ops.normalize(stack, mean, std, stage["scale"], stage["toRGB"], stage["layout"], arrays.xp)


#: One function per action: ``(stack, stage, arrays) -> stack``, or None when the images become invalid.
OPERATIONS: dict[str, Callable[[Any, Mapping[str, Any], Arrays], Any | None]] = {
    "resize": _resize,
    "crop": _crop,
    "centerCrop": _center_crop,
    "colorFormat": _color_format,
    "flip": _flip,
    "gaussianBlur": _gaussian_blur,
    "threshold": _threshold,
    "normalize": _normalize,
}


def apply_stages(stack: Any, stages: Sequence[Mapping[str, Any]], arrays: Arrays) -> Any | None:
    """Run ``stages`` over ``[N, H, W, C]`` uint8 images of one size; None if they become invalid.

    Returns uint8 ``[N, H', W', C']`` images, or float32 ``[N, L]`` after "normalize".
    """
    for stage in stages:
        stack = OPERATIONS[stage["action"]](stack, stage, arrays)
        if stack is None:
            return None
    return stack

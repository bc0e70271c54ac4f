"""Image operations on stacks of same-sized images, ``[N, H, W, C]`` uint8, numpy or cupy.

Every function takes the array module ``xp`` of its input (numpy or cupy) and uses only
operations both provide, so the GPU computes exactly what the CPU computes. Pixels are in the
stored channel order (BGR(A) for Spark's image schema) unless a function says otherwise.

Definitions (the tests compare against these):

* resize: Pillow's bilinear filter (a triangle filter widened when shrinking, fixed-point 22-bit
  coefficients), the horizontal pass first and then the vertical pass, each rounded to 8 bits.
  That is ``Image.resize(..., BILINEAR)`` up to Pillow 12; Pillow 13 runs the vertical pass first
  when the height shrinks much more than the width, which moves a few pixels by one level, so the
  pass order is fixed here to give the same pixels with every Pillow version and on the GPU.
  On CPU Pillow runs one pass per call; :func:`resize_arrays` reproduces it bit for bit with two
  matrix products. Every channel is resized independently (alpha is not premultiplied).
* grayscale: ITU-R 601-2 luma as Pillow computes it,
  ``L = (19595 R + 38470 G + 7471 B + 32768) >> 16``.
* gaussian blur: separable kernel ``exp(-x^2 / (2 sigma^2))`` normalised to sum 1, borders
  mirrored without repeating the edge pixel (OpenCV's ``BORDER_REFLECT_101``), computed in
  float32 and rounded half to even; ``sigma <= 0`` means OpenCV's
  ``0.3 * ((kernelSize - 1) * 0.5 - 1) + 0.8``.
* threshold: OpenCV's types on 8-bit images (the threshold is floored, ``maxVal`` rounded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from types import ModuleType
from typing import Any

import numpy as np

from gpuimages.transforms.arrays import Arrays

#: Pillow's fixed-point precision for 8-bit resampling.
_PRECISION_BITS = 32 - 8 - 2
#: Upper bound of float64 elements per resize chunk (keeps memory bounded on large stacks).
_RESIZE_CHUNK_ELEMENTS = 8_000_000


# ---------------------------------------------------------------- resize


def bilinear_coefficients(in_size: int, out_size: int) -> np.ndarray:
    """Pillow's fixed-point bilinear weights as an ``(out_size, in_size)`` float64 matrix of integers."""
    scale = in_size / out_size
    filterscale = max(scale, 1.0)
    support = 1.0 * filterscale
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for xx in range(out_size):
        center = (xx + 0.5) * scale
        ss = 1.0 / filterscale
        xmin = max(int(center - support + 0.5), 0)
        xmax = min(int(center + support + 0.5), in_size) - xmin
        weights = np.array([max(0.0, 1.0 - abs((x + xmin - center + 0.5) * ss)) for x in range(xmax)])
        total = weights.sum()
        if total != 0.0:
            weights = weights / total
        fixed = np.where(
            weights < 0,
            np.trunc(-0.5 + weights * (1 << _PRECISION_BITS)),
            np.trunc(0.5 + weights * (1 << _PRECISION_BITS)),
        )
        matrix[xx, xmin : xmin + xmax] = fixed
    return matrix


def _apply_fixed_point(values: Any, matrix: Any, xp: ModuleType) -> Any:
    """``values @ matrix.T`` on integer-valued float64, then Pillow's rounding and clipping to 0..255."""
    acc = xp.matmul(values, matrix.T) + float(1 << (_PRECISION_BITS - 1))
    return xp.clip(xp.floor(acc / float(1 << _PRECISION_BITS)), 0.0, 255.0)


def resize_arrays(stack: Any, height: int, width: int, xp: ModuleType) -> Any:
    """Resize ``[N, H, W, C]`` uint8 to ``(height, width)`` exactly as Pillow's bilinear, with matrices."""
    n, in_h, in_w, c = stack.shape
    if (in_h, in_w) == (height, width):
        return stack.copy()
    per_image = in_h * in_w * c + in_h * width * c + height * width * c
    step = max(1, _RESIZE_CHUNK_ELEMENTS // max(per_image, 1))
    horizontal = xp.asarray(bilinear_coefficients(in_w, width)) if in_w != width else None
    vertical = xp.asarray(bilinear_coefficients(in_h, height)) if in_h != height else None
    out = xp.empty((n, height, width, c), dtype=xp.uint8)
    for start in range(0, n, step):
        part = stack[start : start + step].astype(xp.float64)
        if horizontal is not None:  # [n, H, W, C] -> [n, H, C, W] @ W.T -> [n, H, C, w]
            part = _apply_fixed_point(part.transpose(0, 1, 3, 2), horizontal, xp).transpose(0, 1, 3, 2)
        if vertical is not None:  # [n, H, w, C] -> [n, w, C, H] @ V.T -> [n, w, C, h]
            part = _apply_fixed_point(part.transpose(0, 2, 3, 1), vertical, xp).transpose(0, 3, 1, 2)
        out[start : start + step] = part.astype(xp.uint8)
    return out


def pillow_resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize one ``(H, W, C)`` uint8 image with Pillow's bilinear filter, horizontal pass first.

    Colour is resized as one RGB image, gray and alpha as "L" planes: never as "RGBA", which
    Pillow would premultiply.
    """
    from PIL import Image

    def one(plane: np.ndarray) -> np.ndarray:
        im = Image.fromarray(np.ascontiguousarray(plane))
        if im.width != width:
            im = im.resize((width, im.height), Image.BILINEAR)
        if im.height != height:
            im = im.resize((width, height), Image.BILINEAR)
        return np.asarray(im)

    c = image.shape[2]
    if c == 3:
        return one(image)
    if c == 1:
        return one(image[:, :, 0])[:, :, None]
    return np.dstack([one(image[:, :, :3]), one(image[:, :, 3])])


def resize(stack: Any, height: int, width: int, arrays: Arrays) -> Any:
    """Resize a stack to ``(height, width)``: Pillow bilinear on CPU, its matrix twin elsewhere."""
    if stack.shape[1:3] == (height, width):
        return stack
    if not arrays.use_pillow:
        return resize_arrays(stack, height, width, arrays.xp)
    out = np.empty((stack.shape[0], height, width, stack.shape[3]), dtype=np.uint8)
    for i in range(stack.shape[0]):
        out[i] = pillow_resize(stack[i], height, width)
    return out


def shorter_side_size(height: int, width: int, size: int) -> tuple[int, int]:
    """``(height, width)`` after scaling so that the shorter side is ``size``, aspect kept."""
    scale = size / min(height, width)
    return max(1, round(height * scale)), max(1, round(width * scale))


# ---------------------------------------------------------------- geometry


def crop_box(height: int, width: int, x: int, y: int, crop_h: int, crop_w: int) -> tuple[int, int, int, int] | None:
    """The part ``(top, left, h, w)`` of a ``crop_w x crop_h`` box at ``(x, y)`` inside the image, or None if empty."""
    top, left = max(0, y), max(0, x)
    bottom, right = min(height, y + crop_h), min(width, x + crop_w)
    if bottom <= top or right <= left:
        return None
    return top, left, bottom - top, right - left


def center_box(height: int, width: int, crop_h: int, crop_w: int) -> tuple[int, int, int, int]:
    """The centre ``(top, left, h, w)`` box; sides larger than the image are clamped to it."""
    h, w = min(height, crop_h), min(width, crop_w)
    return (height - h) // 2, (width - w) // 2, h, w


def crop(stack: Any, top: int, left: int, height: int, width: int) -> Any:
    """Cut ``[top:top+height, left:left+width]`` from every image (a copy)."""
    return stack[:, top : top + height, left : left + width].copy()


def flip(stack: Any, direction: str) -> Any:
    """Mirror left-right ("horizontal"), top-bottom ("vertical") or both ("both")."""
    if direction == "horizontal":
        return stack[:, :, ::-1].copy()
    if direction == "vertical":
        return stack[:, ::-1].copy()
    return stack[:, ::-1, ::-1].copy()


# ---------------------------------------------------------------- colour


def luma(rgb: Any, xp: ModuleType) -> Any:
    """ITU-R 601-2 luma of ``[..., 3]`` uint8 RGB as Pillow computes it, ``[..., 1]`` uint8."""
    wide = rgb.astype(xp.int32)
    value = (wide[..., 0] * 19595 + wide[..., 1] * 38470 + wide[..., 2] * 7471 + 0x8000) >> 16
    return value.astype(xp.uint8)[..., None]


def convert_color(stack: Any, source: str, target: str, xp: ModuleType) -> Any:
    """Convert between "BGR", "RGB", "BGRA", "RGBA" and "GRAY" layouts.

    ``source`` names the channel order of colour input ("BGR"/"RGB", with or without "A"); the
    actual channel count decides the rest: 1-channel input is gray, a 4th channel is alpha.
    The output always has ``target``'s channels (GRAY 1, BGR/RGB 3, BGRA/RGBA 4): gray to colour
    replicates the channel, a missing alpha is opaque (255), and alpha is dropped otherwise.
    """
    channels = stack.shape[-1]
    alpha = stack[..., 3:4] if channels == 4 else None
    if channels == 1:
        gray, rgb = stack, None
    else:
        color = stack[..., :3]
        rgb = color[..., ::-1] if source.startswith("BGR") else color
        gray = None
    if target == "GRAY":
        return (gray if gray is not None else luma(rgb, xp)).copy()
    if rgb is None:
        rgb = xp.concatenate([gray, gray, gray], axis=-1)
    color = rgb[..., ::-1] if target.startswith("BGR") else rgb
    if target.endswith("A"):
        if alpha is None:
            alpha = xp.full(stack.shape[:-1] + (1,), 255, dtype=xp.uint8)
        return xp.concatenate([color, alpha], axis=-1)
    return xp.ascontiguousarray(color)


# ---------------------------------------------------------------- filters


def gaussian_kernel(kernel_size: int, sigma: float) -> np.ndarray:
    """The normalised 1-D Gaussian of odd length ``kernel_size`` (OpenCV's sigma rule when ``sigma <= 0``)."""
    if sigma <= 0:
        sigma = 0.3 * ((kernel_size - 1) * 0.5 - 1) + 0.8
    offsets = np.arange(kernel_size, dtype=np.float64) - (kernel_size - 1) / 2
    kernel = np.exp(-(offsets**2) / (2.0 * sigma * sigma))
    return kernel / kernel.sum()


def kernel_size_for_sigma(sigma: float) -> int:
    """OpenCV's kernel size for 8-bit images when only ``sigma`` is given: ``round(6 sigma + 1) | 1``."""
    return max(1, int(round(sigma * 6 + 1)) | 1)


def reflect101_index(size: int, radius: int) -> np.ndarray:
    """Source indices for positions ``-radius .. size + radius - 1`` mirrored without repeating the edge."""
    positions = np.arange(-radius, size + radius)
    if size == 1:
        return np.zeros_like(positions)
    period = 2 * (size - 1)
    folded = np.abs(positions) % period
    return np.where(folded >= size, period - folded, folded)


def _convolve_axis(values: Any, kernel: np.ndarray, axis: int, xp: ModuleType) -> Any:
    radius = len(kernel) // 2
    size = values.shape[axis]
    padded = xp.take(values, xp.asarray(reflect101_index(size, radius)), axis=axis)
    acc = None
    term = None
    for j, weight in enumerate(kernel):
        index = [slice(None)] * values.ndim
        index[axis] = slice(j, j + size)
        if acc is None:
            acc = padded[tuple(index)] * xp.float32(weight)
            term = xp.empty_like(acc)
        else:  # multiply, then add: two roundings on every device (no fused multiply-add)
            xp.multiply(padded[tuple(index)], xp.float32(weight), out=term)
            acc += term
    return acc


def gaussian_blur(stack: Any, kernel_size: int, sigma: float, xp: ModuleType) -> Any:
    """Blur every channel with a separable Gaussian (rows first, then columns) in float32; uint8 out."""
    kernel = gaussian_kernel(kernel_size, sigma)
    values = stack.astype(xp.float32)
    values = _convolve_axis(values, kernel, 2, xp)
    values = _convolve_axis(values, kernel, 1, xp)
    return xp.clip(xp.rint(values), 0, 255).astype(xp.uint8)


THRESHOLD_TYPES = ("binary", "binary_inv", "trunc", "tozero", "tozero_inv")


def threshold(stack: Any, value: float, max_value: float, kind: str, xp: ModuleType) -> Any:
    """OpenCV ``threshold`` on uint8: compare each pixel with ``value`` (floored) and map it by ``kind``."""
    level = int(math.floor(value))
    top = int(min(255, max(0, round(max_value))))
    if level < 0:
        above = xp.ones(stack.shape, dtype=bool)
    elif level >= 255:
        above = xp.zeros(stack.shape, dtype=bool)
    else:
        above = stack > level
    zeros = xp.zeros_like(stack)
    if kind == "binary":
        return xp.where(above, xp.full_like(stack, top), zeros)
    if kind == "binary_inv":
        return xp.where(above, zeros, xp.full_like(stack, top))
    if kind == "trunc":
        return xp.where(above, xp.full_like(stack, min(255, max(0, level))), stack)
    if kind == "tozero":
        return xp.where(above, stack, zeros)
    return xp.where(above, zeros, stack)


# ---------------------------------------------------------------- to tensors


def normalize(
    stack: Any,
    mean: Sequence[float],
    std: Sequence[float],
    scale: float,
    to_rgb: bool,
    layout: str,
    xp: ModuleType,
) -> Any:
    """``(pixel * scale - mean[c]) / std[c]`` as float32, flattened per image to ``[N, C*H*W]``.

    ``to_rgb`` reverses the colour channels first (BGR(A) -> RGB(A)); ``mean``/``std`` are in the
    output channel order. ``layout`` "CHW" (planar, what torch models take) or "HWC" (interleaved).
    """
    if to_rgb and stack.shape[-1] >= 3:
        stack = xp.concatenate([stack[..., 2::-1], stack[..., 3:]], axis=-1)
    values = stack.astype(xp.float32) * xp.float32(scale)
    values = (values - xp.asarray(np.asarray(mean, np.float32))) / xp.asarray(np.asarray(std, np.float32))
    if layout == "CHW":
        values = values.transpose(0, 3, 1, 2)
    return xp.ascontiguousarray(values).reshape(stack.shape[0], -1)

"""The built-in "histogram" feature backbone: layout, colour and texture in one cheap vector."""

from __future__ import annotations

from typing import Any

from gpuimages.transforms import ops
from gpuimages.transforms.arrays import Arrays

#: Gradient-magnitude bin edges of the "histogram" backbone (gray levels in [0, 1] per pixel).
GRADIENT_EDGES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45)


def histogram_size(grid_size: int, bins: int) -> int:
    """Length of a "histogram" backbone feature vector."""
    return 3 * grid_size * grid_size + 3 * bins + len(GRADIENT_EDGES) + 1 + 2


def histogram_features(rgb: Any, grid_size: int, bins: int, arrays: Arrays) -> Any:
    """The built-in "histogram" backbone on ``[N, H, W, 3]`` uint8 RGB; ``[N, D]`` float64.

    Concatenates, all in [0, 1]: the image shrunk to ``grid_size`` x ``grid_size`` (RGB,
    row-major: layout and shape); per-channel histograms of ``bins`` equal-width bins (R, G, B;
    each sums to 1: colour); a histogram of gray-level gradient magnitudes over the edges
    :data:`GRADIENT_EDGES` and the mean absolute horizontal and vertical gradients (texture).
    """
    xp = arrays.xp
    n, height, width, _ = rgb.shape
    spatial = ops.resize(rgb, grid_size, grid_size, arrays).reshape(n, -1).astype(xp.float64) / 255.0
    levels = (rgb.astype(xp.int32) * bins) >> 8
    colour = xp.stack([(levels == b).mean(axis=(1, 2)) for b in range(bins)], axis=-1).reshape(n, -1)
    gray = ops.luma(rgb, xp)[..., 0].astype(xp.float64) / 255.0
    gx = xp.abs(xp.diff(gray, axis=2)) if width > 1 else xp.zeros((n, height, 1))
    gy = xp.abs(xp.diff(gray, axis=1)) if height > 1 else xp.zeros((n, 1, width))
    magnitude = xp.sqrt(gx[:, : gy.shape[1], : gy.shape[2]] ** 2 + gy[:, : gx.shape[1], : gx.shape[2]] ** 2)
    index = xp.zeros(magnitude.shape, dtype=xp.int32)
    for edge in GRADIENT_EDGES:
        index += (magnitude > edge).astype(xp.int32)
    texture = xp.stack([(index == b).mean(axis=(1, 2)) for b in range(len(GRADIENT_EDGES) + 1)], axis=-1)
    means = xp.stack([gx.mean(axis=(1, 2)), gy.mean(axis=(1, 2))], axis=-1)
    return xp.concatenate([spatial, colour, texture, means], axis=1)

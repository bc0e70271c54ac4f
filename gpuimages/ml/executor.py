"""The executor side of the ML stages: Arrow image column in, Arrow output column out.

Kept free of ``pyspark.ml`` imports so that Python workers load only numpy, pyarrow and
Pillow (and cupy when a GPU is used) to run them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from gpuimages.ml import ops
from gpuimages.ml.arrow import image_struct, list_column, read_images
from gpuimages.ml.backend import Backend, resolve_backend
from gpuimages.ml.stages import apply_stages, outputs_tensor
from gpuimages.models import ModelSpec, create_model
from gpuimages.models.function import BatchFunction
from gpuimages.task.device import TaskDevice

log = logging.getLogger(__name__)

#: Gradient-magnitude bin edges of the "histogram" backbone (gray levels in [0, 1] per pixel).
GRADIENT_EDGES = (0.02, 0.05, 0.1, 0.15, 0.2, 0.3, 0.45)


class StageRunner:
    """Run :class:`~gpuimages.ml.ImageTransformer` stages on one Arrow image column."""

    def __init__(self, stages: Sequence[Mapping[str, Any]], device: str) -> None:
        self.stages = [dict(s) for s in stages]
        self.device = device
        self.tensor = outputs_tensor(self.stages)

    def __call__(self, column: pa.Array) -> pa.Array:
        batch = read_images(column)
        backend = resolve_backend(self.device)
        results: list[Any] = [None] * len(batch)
        for (h, w, c), rows in batch.groups().items():
            out = apply_stages(backend.asarray(batch.stack(rows)), self.stages, backend)
            if out is None:
                log.warning("gpuimages.ml: %d image(s) of %dx%dx%d became invalid in the stages", len(rows), h, w, c)
                continue
            out = backend.to_numpy(out)
            for j, i in enumerate(rows):
                results[i] = out[j]
        if self.tensor:
            return list_column(results, pa.float32())
        return image_struct(batch.origin, batch.present, results, batch.data_type)


def unroll_column(column: pa.Array) -> pa.Array:
    """Each valid image's bytes as float64 in stored order (``UnrollImage``); null otherwise."""
    batch = read_images(column)
    rows: list[Any] = [None] * len(batch)
    for i in np.flatnonzero(batch.valid):
        rows[i] = batch.pixels(int(i)).reshape(-1)
    return list_column(rows, pa.float64())


def histogram_size(grid_size: int, bins: int) -> int:
    """Length of a "histogram" backbone feature vector."""
    return 3 * grid_size * grid_size + 3 * bins + len(GRADIENT_EDGES) + 1 + 2


def histogram_features(rgb: Any, grid_size: int, bins: int, backend: Backend) -> Any:
    """The built-in "histogram" backbone on ``[N, H, W, 3]`` uint8 RGB; ``[N, D]`` float64.

    Concatenates, all in [0, 1]: the image shrunk to ``grid_size`` x ``grid_size`` (RGB,
    row-major: layout and shape); per-channel histograms of ``bins`` equal-width bins (R, G, B;
    each sums to 1: colour); a histogram of gray-level gradient magnitudes over the edges
    :data:`GRADIENT_EDGES` and the mean absolute horizontal and vertical gradients (texture).
    """
    xp = backend.xp
    n, height, width, _ = rgb.shape
    spatial = ops.resize(rgb, grid_size, grid_size, backend).reshape(n, -1).astype(xp.float64) / 255.0
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


class FeatureRunner:
    """Run :class:`~gpuimages.ml.ImageFeaturizer` on one Arrow image column."""

    def __init__(
        self,
        image_size: tuple[int, int],
        device: str,
        backbone: str = "histogram",
        grid_size: int = 8,
        bins: int = 16,
        function: BatchFunction | None = None,
        model: ModelSpec | None = None,
    ) -> None:
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.device = device
        self.backbone = backbone
        self.grid_size = grid_size
        self.bins = bins
        self.function = function
        self.model = model

    def rgb(self, batch: Any, backend: Backend) -> tuple[list[int], Any]:
        """Valid rows and their images resized to ``image_size`` as ``[N, H, W, 3]`` uint8 RGB."""
        height, width = self.image_size
        rows: list[int] = []
        parts = []
        for group in batch.groups().values():
            stack = ops.resize(backend.asarray(batch.stack(group)), height, width, backend)
            parts.append(ops.convert_color(stack, "BGR", "RGB", backend.xp))
            rows.extend(group)
        if not parts:
            return rows, None
        return rows, backend.xp.concatenate(parts, axis=0)

    def features(self, rgb: Any, backend: Backend) -> np.ndarray:
        """``[N, D]`` float64 features of ``[N, H, W, 3]`` uint8 RGB images."""
        if self.backbone == "histogram":
            return backend.to_numpy(histogram_features(rgb, self.grid_size, self.bins, backend))
        if self.backbone == "onnx":
            if self.model is None:
                raise ValueError("ImageFeaturizer: backbone 'onnx' needs a model spec")
            model = create_model(self.model, TaskDevice("cpu"))
            return model.run(model.input_format.prepare(backend.to_numpy(rgb)))
        if self.function is None:
            raise ValueError("ImageFeaturizer: backbone 'function' needs a batch function (setBatchFunction)")
        model = create_model(ModelSpec("function", function=self.function), TaskDevice("cpu"))
        return model.run(backend.to_numpy(rgb).astype(np.float32) / np.float32(255.0))

    def __call__(self, column: pa.Array) -> pa.Array:
        batch = read_images(column)
        backend = resolve_backend(self.device)
        results: list[Any] = [None] * len(batch)
        rows, rgb = self.rgb(batch, backend)
        if rows:
            values = self.features(rgb, backend)
            for j, i in enumerate(rows):
                results[i] = values[j]
        return list_column(results, pa.float64())

"""A user batch function as a model: ``fn(images[N, H, W, 3] float32 RGB in [0, 1]) -> [N, D]``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpuimages.models.base import InputFormat, Model, as_features

#: A user backbone: ``[N, H, W, 3]`` float32 RGB in [0, 1] -> ``[N, D]`` features.
BatchFunction = Callable[[np.ndarray], Any]


class FunctionModel(Model):
    """Calls the user's function on NHWC float32 RGB batches in [0, 1] (numpy, on the host)."""

    name = "function"
    input_format = InputFormat("NHWC")

    def __init__(self, function: BatchFunction) -> None:
        if not callable(function):
            raise TypeError(f"batch function: expected a callable, got {type(function).__name__}")
        self.function = function

    def run(self, batch: np.ndarray) -> np.ndarray:
        out = self.function(batch)
        shape = tuple(getattr(out, "shape", np.shape(out)))
        if len(shape) != 2 or shape[0] != batch.shape[0]:
            raise ValueError(
                f"ImageFeaturizer: the batch function must return shape [N, D] for N={batch.shape[0]} images, "
                f"got {shape}"
            )
        return as_features(out, batch.shape[0], "ImageFeaturizer: the batch function")

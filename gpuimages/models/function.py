"""A user batch function as a model: ``fn(images[N, H, W, 3] float32 RGB in [0, 1]) -> [N, D]``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gpuimages.models.base import InputFormat, Model, as_features

#: A user backbone: ``[N, H, W, 3]`` float32 RGB in [0, 1] -> ``[N, D]`` features.
BatchFunction = Callable[[np.ndarray], Any]


class FunctionModel(Model):
    """Calls the user's function on NHWC float32 RGB batches in [0, 1] (numpy, on the host).

    ``max_batch``: the function gets at most this many images per call (the stage's ``batchSize``),
    whatever batch the model is run on (a DALI device batch can hold hundreds); None: the whole batch.
    """

    name = "function"
    input_format = InputFormat("NHWC")

    def __init__(self, function: BatchFunction, max_batch: int | None = None) -> None:
        if not callable(function):
            raise TypeError(f"batch function: expected a callable, got {type(function).__name__}")
        if max_batch is not None and (isinstance(max_batch, bool) or int(max_batch) < 1):
            raise ValueError(f"max_batch: expected a positive integer or None, got {max_batch!r}")
        self.function = function
        self.max_batch = None if max_batch is None else int(max_batch)

    def run(self, batch: np.ndarray) -> np.ndarray:
        n = batch.shape[0]
        step = self.max_batch or max(n, 1)
        parts = [self._call(batch[i : i + step]) for i in range(0, n, step)]
        if not parts:
            return np.zeros((0, 0), dtype=np.float64)
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    def _call(self, batch: np.ndarray) -> np.ndarray:
        out = self.function(batch)
        shape = tuple(getattr(out, "shape", np.shape(out)))
        if len(shape) != 2 or shape[0] != batch.shape[0]:
            raise ValueError(
                f"ImageFeaturizer: the batch function must return shape [N, D] for N={batch.shape[0]} images, "
                f"got {shape}"
            )
        return as_features(out, batch.shape[0], "ImageFeaturizer: the batch function")

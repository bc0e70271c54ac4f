"""Model backends behind one small interface (:class:`~gpuimages.models.base.Model`), as the engines are.

* ``"onnx"``: ONNX Runtime (:mod:`.onnx`), the CUDA provider on the task's GPU where
  ``onnxruntime-gpu`` is installed, else CPU; reads DALI's device batch without a host copy.
* ``"function"``: a user batch function (:mod:`.function`).

Backends are created on executors only, by :func:`create_model`, from a picklable :class:`ModelSpec`
and the task's :class:`~gpuimages.task.device.TaskDevice`; importing this package imports neither
onnxruntime nor any GPU library. Models are light: what is costly to build and holds memory (an ONNX
Runtime session and its CUDA arena) lives in the worker cache (:func:`gpuimages.task.cache.worker_cache`)
and is fetched by the model for each call, so evicting it really frees it. (A torch backend would be
one more module and one more branch here.)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gpuimages.models.base import InputFormat, Model
from gpuimages.task.device import TaskDevice

__all__ = ["InputFormat", "Model", "ModelSpec", "MODELS", "create_model"]

#: Backend names :func:`create_model` accepts.
MODELS = ("onnx", "function")


@dataclass(frozen=True)
class ModelSpec:
    """What an executor needs to build a model. Validated on the driver, immutable, picklable.

    kind:       "onnx" or "function".
    path:       the ONNX file (readable where executors run: a local path on every node or a shared
                filesystem).
    mean, std:  per-channel normalisation in [0, 1] units (ONNX).
    threads:    ONNX Runtime intra-op threads on CPU; None: the task's threads (``device.threads``).
    function:   the user batch function (kind "function").
    max_batch:  the most images the batch function gets per call (the stage's ``batchSize``); None:
                the whole batch it is given.
    """

    kind: str
    path: str | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    threads: int | None = None
    function: Any = None
    max_batch: int | None = None


def create_model(spec: ModelSpec, device: TaskDevice) -> Model:
    """The model for ``spec`` on ``device`` (CUDA provider on ``device.gpu_id`` when there is one).

    ONNX sessions are built once per worker, file identity, GPU, threads and provider options (the
    worker cache); the model object itself is cheap.
    """
    if spec.kind == "function":
        from gpuimages.models.function import FunctionModel

        return FunctionModel(spec.function, max_batch=spec.max_batch)
    if spec.kind != "onnx":
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {spec.kind!r}")
    if spec.path is None:
        raise ValueError("model 'onnx': expected the path of an ONNX file, got None")
    from gpuimages.models.onnx import OnnxModel

    return OnnxModel(spec.path, spec.mean, spec.std, device, threads=spec.threads)

"""Model backends behind one small interface (:class:`~gpuimages.models.base.Model`), as the engines are.

* ``"onnx"``: ONNX Runtime (:mod:`.onnx`), CPU provider, CUDA where installed; reads DALI's device
  batch without a host copy on GPU executors.
* ``"function"``: a user batch function (:mod:`.function`).

Backends are created on executors only, by :func:`create_model`, from a picklable
:class:`ModelSpec`; importing this package imports neither onnxruntime nor any GPU library.
(A torch backend would be one more module and one more branch here.)
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

    kind:      "onnx" or "function".
    path:      the ONNX file (readable where executors run: a local path on every node or a shared
               filesystem).
    mean, std: per-channel normalisation in [0, 1] units (ONNX).
    threads:   ONNX Runtime intra-op threads on CPU (one Spark task per core: default 1).
    function:  the user batch function (kind "function").
    """

    kind: str
    path: str | None = None
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)
    threads: int = 1
    function: Any = None


def create_model(spec: ModelSpec, device: TaskDevice | None = None) -> Model:
    """The model for ``spec`` on ``device``; ONNX models are built once per worker, file and device
    (in the worker cache)."""
    if spec.kind == "function":
        from gpuimages.models.function import FunctionModel

        return FunctionModel(spec.function)
    if spec.kind != "onnx":
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {spec.kind!r}")
    from gpuimages.task.cache import worker_cache

    device = device or TaskDevice()
    threads = device.threads if device.gpu_id is None else spec.threads

    def build() -> Model:
        from gpuimages.models.onnx import OnnxModel

        return OnnxModel(spec.path, spec.mean, spec.std, threads=threads, gpu_id=device.gpu_id)  # type: ignore[arg-type]

    return worker_cache().get(("model", spec, device.gpu_id, threads), build)

"""Model backends behind one small interface (:class:`~gpuimages.models.base.Model`), as the engines are.

* ``"onnx"``: ONNX Runtime (:mod:`.onnx`), CPU provider, CUDA where installed; reads DALI's device
  batch without a host copy on GPU executors.
* ``"function"``: a user batch function (:mod:`.function`).

Backends are created on executors only, by :func:`create_model`, from a picklable
:class:`ModelSpec`; importing this package imports neither onnxruntime nor any GPU library.
(A torch backend would be one more module and one more branch here.)
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from gpuimages.models.base import InputFormat, Model

__all__ = ["InputFormat", "Model", "ModelSpec", "MODELS", "create_model"]

#: Backend names :func:`create_model` accepts.
MODELS = ("onnx", "function")

_CACHE: dict[tuple, Model] = {}
_LOCK = threading.Lock()


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


def create_model(spec: ModelSpec, gpu_id: int | None = None) -> Model:
    """The model for ``spec`` on this worker; ONNX models are built once per worker, file and device."""
    if spec.kind == "function":
        from gpuimages.models.function import FunctionModel

        return FunctionModel(spec.function)
    if spec.kind != "onnx":
        raise ValueError(f"model: expected one of {', '.join(MODELS)}, got {spec.kind!r}")
    key = (spec, gpu_id)
    with _LOCK:
        model = _CACHE.get(key)
    if model is None:
        from gpuimages.models.onnx import OnnxModel

        model = OnnxModel(spec.path, spec.mean, spec.std, threads=spec.threads, gpu_id=gpu_id)  # type: ignore[arg-type]
        with _LOCK:
            _CACHE[key] = model
    return model

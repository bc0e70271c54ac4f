"""An ONNX model's inputs, read on the driver, and the check that the featuriser can feed them.

``ImageFeaturizer`` feeds one input: an NCHW ``float32`` RGB batch of ``imageSize`` images, at most
``batchSize`` (``deviceBatchSize`` on a GPU) at a time, the last batch smaller. A model that wants
anything else used to fail on every executor, after every task attempt, with an ONNX Runtime
traceback; :func:`check_featurizer_model` refuses it on the driver, before any job, with an error
naming the Param to change (``modelPath``, ``imageSize``, ``batchSize``, ``deviceBatchSize``).

The inputs are read with the ``onnx`` package (``onnx.load(..., load_external_data=False)``: the
graph only, external weights are not read), or, where ``onnx`` is not installed, from an
ONNX Runtime session's metadata. Graph inputs that are initializers (weights) are not inputs.
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: A dimension: a size, a symbolic name (dynamic), or None (unknown: dynamic).
Dim = int | str | None


@dataclass(frozen=True)
class ModelInput:
    """One graph input: its name, element type (``"float"``, ``"uint8"``, ...) and shape (None: rank unknown)."""

    name: str
    elem_type: str
    shape: tuple[Dim, ...] | None

    def describe(self) -> str:
        """``'input' [N, 3, 224, 224]`` (dynamic dimensions by name, ``?`` when unnamed)."""
        if self.shape is None:
            return f"{self.name!r} (shape unknown)"
        return f"{self.name!r} [{', '.join('?' if d is None else str(d) for d in self.shape)}]"


@dataclass(frozen=True)
class ModelSignature:
    """What the driver knows of a model: its inputs (initializers excluded) and how many outputs it has."""

    inputs: tuple[ModelInput, ...]
    outputs: int


def _static(dim: Dim) -> int | None:
    return dim if isinstance(dim, int) and dim > 0 else None


def _from_onnx(path: str, shown: str) -> ModelSignature:
    import onnx

    try:
        model = onnx.load(path, load_external_data=False)
    except Exception as exc:  # noqa: BLE001 - DecodeError and friends: not a model
        raise ValueError(
            f"modelPath: expected an ONNX model file, got {shown!r}, which is not one ({_first_line(exc)})"
        ) from None
    if model.ir_version <= 0 or not model.HasField("graph") or not model.graph.node:
        raise ValueError(f"modelPath: expected an ONNX model file, got {shown!r}, which holds no ONNX graph")
    weights = {init.name for init in model.graph.initializer}
    weights |= {init.values.name for init in model.graph.sparse_initializer}
    inputs = []
    for value in model.graph.input:
        if value.name in weights:
            continue
        kind = value.type.WhichOneof("value")
        if kind != "tensor_type":
            inputs.append(ModelInput(value.name, kind or "unknown", None))
            continue
        tensor = value.type.tensor_type
        elem = onnx.TensorProto.DataType.Name(tensor.elem_type).lower() if tensor.elem_type else "unknown"
        shape = None
        if tensor.HasField("shape"):
            shape = tuple(
                d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in tensor.shape.dim
            )
        inputs.append(ModelInput(value.name, elem, shape))
    return ModelSignature(tuple(inputs), len(model.graph.output))


def _from_onnxruntime(path: str, shown: str) -> ModelSignature:
    import onnxruntime

    try:
        session = onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - ORT raises its own exception types
        raise ValueError(
            f"modelPath: expected an ONNX model file onnxruntime can load, got {shown!r} ({_first_line(exc)})"
        ) from None
    inputs = []
    for arg in session.get_inputs():
        kind = arg.type or "unknown"
        elem = kind[len("tensor("):-1] if kind.startswith("tensor(") else kind
        shape = None if arg.shape is None else tuple(d if isinstance(d, (int, str)) else None for d in arg.shape)
        inputs.append(ModelInput(arg.name, elem, shape))
    return ModelSignature(tuple(inputs), len(session.get_outputs()))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


@functools.lru_cache(maxsize=16)
def _read_cached(path: str, shown: str, mtime_ns: int, size: int) -> ModelSignature | None:
    try:
        import onnx  # noqa: F401
    except ImportError:
        try:
            import onnxruntime  # noqa: F401
        except ImportError:
            log.info("gpuimages: neither onnx nor onnxruntime is installed here; %s is not checked", shown)
            return None
        return _from_onnxruntime(path, shown)
    return _from_onnx(path, shown)


def read_signature(path: str, shown: str | None = None) -> ModelSignature | None:
    """The inputs and output count of the ONNX file at ``path`` (None when neither onnx nor onnxruntime is
    installed). ``ValueError`` naming ``modelPath`` when the file is not an ONNX model. ``shown`` is the
    path as the user gave it, for messages. Cached per file version."""
    st = os.stat(path)
    return _read_cached(os.path.abspath(path), shown or path, st.st_mtime_ns, st.st_size)


def check_featurizer_model(
    path: str,
    image_size: Sequence[int],
    batch_size: int | None = None,
    device_batch_size: int | None = None,
    shown: str | None = None,
) -> ModelSignature | None:
    """Refuse, on the driver, an ONNX model the featuriser cannot feed; returns what was read.

    The model must have one input (initializers excluded) of type float32 and shape
    ``[N, 3, H, W]``, where a static ``H, W`` equals ``image_size`` (dynamic dimensions accept any
    size) and the batch dimension is dynamic, or 1 with ``batch_size`` (and ``device_batch_size``,
    when given) 1; and at least one output. Raises ``ValueError`` naming the Param to change.
    """
    shown = shown or path
    signature = read_signature(path, shown)
    if signature is None:
        return None
    inputs = signature.inputs
    if not inputs:
        raise ValueError(f"modelPath: expected an ONNX model with one input (the image batch), got {shown!r} with none")
    if len(inputs) > 1:
        listed = ", ".join(i.describe() for i in inputs)
        raise ValueError(
            f"modelPath: expected an ONNX model with one input (the image batch, NCHW float32), got {shown!r} with "
            f"{len(inputs)} inputs: {listed}"
        )
    if signature.outputs < 1:
        raise ValueError(f"modelPath: expected an ONNX model with an output, got {shown!r} with none")
    (model_input,) = inputs
    what = f"{shown!r}, whose input is {model_input.describe()}"
    if model_input.elem_type != "float":
        raise ValueError(
            f"modelPath: expected a model taking float32 images (the featuriser feeds NCHW float32 RGB), got {what} "
            f"of type {model_input.elem_type}"
        )
    shape = model_input.shape
    if shape is None:
        return signature
    if len(shape) != 4:
        raise ValueError(f"modelPath: expected a model taking a 4-D image batch [N, 3, H, W], got {what}")
    batch, channels, height, width = (_static(d) for d in shape)
    if channels != 3 and channels is not None:
        if _static(shape[3]) in (1, 3, 4) and channels not in (1, 3, 4):
            raise ValueError(
                f"modelPath: expected a model taking NCHW images [N, 3, H, W] (channels first, as the featuriser "
                f"feeds them), got {what}, which looks channels-last (NHWC); export it with NCHW input, or use "
                "backbone 'function' to feed it yourself"
            )
        raise ValueError(
            f"modelPath: expected a model taking 3-channel RGB images [N, 3, H, W], got {what} with {channels} "
            "channel(s); the featuriser always feeds RGB (grey images are replicated)"
        )
    expected = [height, width]
    given = [int(v) for v in image_size]
    if any(e is not None and e != g for e, g in zip(expected, given, strict=True)):
        shown_size = ", ".join("any" if e is None else str(e) for e in expected)
        raise ValueError(f"imageSize: expected the model's input size [{shown_size}], got {given}")
    if batch is not None:
        if batch != 1:
            raise ValueError(
                f"modelPath: expected a model with a dynamic batch dimension, got {what} with a fixed batch of "
                f"{batch}; the featuriser runs batches of up to batchSize images, the last one smaller (export "
                "the model with a dynamic batch axis)"
            )
        for param, value in (("batchSize", batch_size), ("deviceBatchSize", device_batch_size)):
            if value is not None and value != 1:
                raise ValueError(
                    f"{param}: expected 1 for a model with a fixed batch of 1 ({what}), got {value} (or export the "
                    "model with a dynamic batch axis)"
                )
    return signature

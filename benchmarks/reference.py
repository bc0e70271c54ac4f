"""The per-file reference featurisation, no Spark and no gpuimages engine: what featurising must equal.

Pillow decodes the whole file, converts it to RGB, resizes it to ``(height, width)`` with its
bilinear filter, the pixels are normalised ``(x / 255 - mean) / std`` and ONNX Runtime runs the
model on that one image. Tests and ``benchmarks/features.py`` compare featurised vectors with it.
"""

from __future__ import annotations

import io

import numpy as np

from gpuimages.models.base import InputFormat


def reference_input(blob: bytes, size: tuple[int, int], fmt: InputFormat) -> np.ndarray:
    """``[1, ...]`` float32 model input of one encoded file."""
    from PIL import Image

    height, width = size
    with Image.open(io.BytesIO(blob)) as im:
        rgb = np.asarray(im.convert("RGB").resize((width, height), Image.BILINEAR))
    return fmt.prepare(rgb[None])


def reference_features(
    blobs: list[bytes], model_path: str, size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]
) -> np.ndarray:
    """``[N, D]`` reference features of ``blobs`` (one ONNX Runtime call per file)."""
    import onnxruntime as ort

    fmt = InputFormat("NCHW", tuple(mean), tuple(std))  # type: ignore[arg-type]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    rows = [np.asarray(session.run(None, {name: reference_input(b, size, fmt)})[0]).reshape(-1) for b in blobs]
    return np.stack(rows).astype(np.float64)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two ``[N, D]`` arrays."""
    num = (a * b).sum(axis=1)
    den = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return num / np.maximum(den, 1e-12)

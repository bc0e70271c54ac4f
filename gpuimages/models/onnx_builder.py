"""A small ONNX CNN built in code with the ``onnx`` package's helpers (tests, docs, demo, benchmarks).

``conv 7x7/2 (3 -> channels) -> relu -> global average pool -> flatten -> gemm (channels -> outputs)``,
NCHW float32 input of ``image_size``, fixed seeded weights. Nothing is downloaded.
"""

from __future__ import annotations

import os

import numpy as np

#: ImageNet's per-channel mean and std, in [0, 1] units.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def small_cnn(
    *, image_size: tuple[int, int] = (224, 224), outputs: int = 8, channels: int = 16, seed: int = 0
) -> bytes:
    """The serialised model (``onnx`` must be installed: ``pip install "gpuimages[onnx]"``)."""
    try:
        import onnx
        from onnx import TensorProto, helper, numpy_helper
    except ImportError as exc:
        raise ImportError('building the test CNN needs the onnx package: pip install "gpuimages[onnx]"') from exc

    rng = np.random.default_rng(seed)
    height, width = image_size
    conv_w = (rng.standard_normal((channels, 3, 7, 7)) / np.sqrt(3 * 49)).astype(np.float32)
    conv_b = (0.1 * rng.standard_normal(channels)).astype(np.float32)
    fc_w = (rng.standard_normal((outputs, channels)) / np.sqrt(channels)).astype(np.float32)
    fc_b = (0.1 * rng.standard_normal(outputs)).astype(np.float32)
    nodes = [
        helper.make_node("Conv", ["input", "conv_w", "conv_b"], ["conv"], kernel_shape=[7, 7], strides=[2, 2],
                         pads=[3, 3, 3, 3]),
        helper.make_node("Relu", ["conv"], ["relu"]),
        helper.make_node("GlobalAveragePool", ["relu"], ["pool"]),
        helper.make_node("Flatten", ["pool"], ["flat"], axis=1),
        helper.make_node("Gemm", ["flat", "fc_w", "fc_b"], ["logits"], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "gpuimages_small_cnn",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, height, width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", outputs])],
        initializer=[
            numpy_helper.from_array(conv_w, "conv_w"),
            numpy_helper.from_array(conv_b, "conv_b"),
            numpy_helper.from_array(fc_w, "fc_w"),
            numpy_helper.from_array(fc_b, "fc_b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="gpuimages")
    model.ir_version = 8  # readable by onnxruntime >= 1.10
    onnx.checker.check_model(model)
    return model.SerializeToString()


def save_small_cnn(path: str | os.PathLike, **kwargs) -> str:
    """Write :func:`small_cnn` to ``path`` (folders created); returns the path as a string."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as out:
        out.write(small_cnn(**kwargs))
    return path

"""The driver-side check of an ONNX model's inputs: ImageFeaturizer refuses, before any job, a model it cannot
feed (not ONNX, several inputs, another size, layout, channel count, type or fixed batch), naming the Param.

Models are built in code with the ``onnx`` helpers; the same cases are read through onnxruntime's session
metadata where the ``onnx`` package is missing.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest
from images import encode, rgb_array

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from gpuimages.ml import ImageFeaturizer  # noqa: E402
from gpuimages.models import onnx_inputs  # noqa: E402
from gpuimages.models.onnx_builder import save_small_cnn  # noqa: E402
from gpuimages.models.onnx_inputs import check_featurizer_model  # noqa: E402


def _model(path, shape, *, elem=TensorProto.FLOAT, extra_inputs=(), weights_as_inputs=False, ir_version=8) -> str:
    """A model: cast its input to float, mean over everything but the batch; optional extra inputs and weights."""
    inputs = [helper.make_tensor_value_info("x", elem, list(shape))]
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("ReduceMean", ["xf"], ["m"], axes=list(range(1, len(shape))), keepdims=0),
             helper.make_node("Add", ["m", "bias"], ["out"])]
    outputs = [helper.make_tensor_value_info("out", TensorProto.FLOAT, [shape[0]])]
    for name, extra_shape in extra_inputs:
        inputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(extra_shape)))
        nodes.append(helper.make_node("Identity", [name], [f"{name}_out"]))
        outputs.append(helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, list(extra_shape)))
    bias = numpy_helper.from_array(np.zeros(1, np.float32), "bias")
    if weights_as_inputs:  # old exporters list every weight as a graph input too
        inputs.append(helper.make_tensor_value_info("bias", TensorProto.FLOAT, [1]))
    graph = helper.make_graph(nodes, "check", inputs, outputs, initializer=[bias])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = ir_version
    onnx.checker.check_model(model)
    onnx.save(model, str(path))
    return str(path)


@pytest.fixture(autouse=True)
def _fresh_cache():
    onnx_inputs._read_cached.cache_clear()
    yield
    onnx_inputs._read_cached.cache_clear()


@pytest.fixture(params=["onnx", "onnxruntime"])
def check(request, monkeypatch):
    """check_featurizer_model reading with the onnx package, or (onnx hidden) with onnxruntime's metadata."""

    def run(*args, **kwargs):
        with monkeypatch.context() as patch:
            if request.param == "onnxruntime":
                patch.setitem(sys.modules, "onnx", None)  # import onnx -> ImportError
            onnx_inputs._read_cached.cache_clear()
            return check_featurizer_model(*args, **kwargs)

    return run


def test_a_model_the_featurizer_can_feed_passes(tmp_path, check):
    cnn = save_small_cnn(tmp_path / "cnn.onnx", image_size=(32, 48))
    signature = check(cnn, [32, 48], 64, 256)
    assert [i.name for i in signature.inputs] == ["input"] and signature.outputs == 1
    assert signature.inputs[0].elem_type == "float" and signature.inputs[0].shape[1:] == (3, 32, 48)
    dynamic = _model(tmp_path / "dyn.onnx", ["N", 3, "H", "W"])
    for size in ([8, 8], [224, 300]):
        check(dynamic, size, 64)
    unknown = _model(tmp_path / "unknown.onnx", [None, 3, None, 20])
    check(unknown, [5, 20], 64)
    legacy = _model(tmp_path / "legacy.onnx", ["N", 3, 10, 10], weights_as_inputs=True, ir_version=3)
    assert [i.name for i in check(legacy, [10, 10], 64).inputs] == ["x"]  # a weight listed as an input is not one


def test_image_size_must_match_the_model(tmp_path, check):
    cnn = save_small_cnn(tmp_path / "cnn.onnx")
    with pytest.raises(ValueError, match=r"^imageSize: expected the model's input size \[224, 224\], got \[64, 64\]$"):
        check(cnn, [64, 64], 64)
    half = _model(tmp_path / "half.onnx", ["N", 3, 100, "W"])
    check(half, [100, 7], 64)
    with pytest.raises(ValueError, match=r"imageSize: expected the model's input size \[100, any\], got \[99, 7\]"):
        check(half, [99, 7], 64)


def test_more_than_one_input_is_refused(tmp_path, check):
    two = _model(tmp_path / "two.onnx", ["N", 3, 8, 8], extra_inputs=[("mask", ["N", 8])])
    with pytest.raises(ValueError, match=r"modelPath: expected an ONNX model with one input .* got .*two.onnx' "
                                         r"with 2 inputs: 'x' \[N, 3, 8, 8\], 'mask' \[N, 8\]"):
        check(two, [8, 8], 64)


@pytest.mark.parametrize(("shape", "elem", "message"), [
    (["N", 224, 224, 3], TensorProto.FLOAT, r"modelPath: .*NCHW.*'x' \[N, 224, 224, 3\], which looks channels-last"),
    (["N", 1, 28, 28], TensorProto.FLOAT, r"modelPath: expected a model taking 3-channel RGB .* with 1 channel"),
    (["N", 4, 28, 28], TensorProto.FLOAT, r"modelPath: expected a model taking 3-channel RGB .* with 4 channel"),
    (["N", 150528], TensorProto.FLOAT, r"modelPath: expected a model taking a 4-D image batch .*\[N, 150528\]"),
    (["N", 3, 8, 8], TensorProto.UINT8, r"modelPath: expected a model taking float32 .* of type uint8"),
    (["N", 3, 8, 8], TensorProto.DOUBLE, r"modelPath: expected a model taking float32 .* of type double"),
    ([8, 3, 8, 8], TensorProto.FLOAT, r"modelPath: expected a model with a dynamic batch dimension, .* batch of 8"),
])
def test_inputs_the_featurizer_cannot_feed(tmp_path, check, shape, elem, message):
    path = _model(tmp_path / "m.onnx", shape, elem=elem)
    with pytest.raises(ValueError, match=message):
        check(path, [8, 8], 64)


def test_a_fixed_batch_of_one_needs_batches_of_one(tmp_path, check):
    one = _model(tmp_path / "one.onnx", [1, 3, 8, 8])
    with pytest.raises(ValueError, match=r"^batchSize: expected 1 for a model with a fixed batch of 1 .*got 64"):
        check(one, [8, 8], 64)
    with pytest.raises(ValueError, match=r"^deviceBatchSize: expected 1 .*got 256"):
        check(one, [8, 8], 1, 256)
    check(one, [8, 8], 1, 1)
    check(one, [8, 8], 1)  # on CPU the device batch is not the model's


@pytest.mark.parametrize("content", [b"", b"hello, this is not a model\n", encode(rgb_array(4, 4), "PNG"),
                                     bytes(range(256)) * 8])
def test_files_that_are_not_onnx_models(tmp_path, check, content):
    path = tmp_path / "fake.onnx"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=r"^modelPath: expected an ONNX model file.*fake.onnx"):
        check(str(path), [8, 8], 64)


def test_without_onnx_or_onnxruntime_nothing_is_checked(tmp_path, monkeypatch):
    path = tmp_path / "fake.onnx"
    path.write_bytes(b"not a model")
    monkeypatch.setitem(sys.modules, "onnx", None)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    assert check_featurizer_model(str(path), [8, 8], 64) is None


# ---------------------------------------------------------------- through ImageFeaturizer, before any job


@pytest.fixture(scope="module")
def frames(spark):
    return spark.createDataFrame([(encode(rgb_array(12, 16), "JPEG"), "file:///a.jpg")],
                                 "content binary, path string")


def test_featurizer_transform_refuses_on_the_driver(spark, frames, tmp_path):
    import gpuimages

    cnn = save_small_cnn(tmp_path / "cnn.onnx")
    images = gpuimages.decode_images(frames, "content", origin_col="path", device="cpu")
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"\x08\x07garbage")
    two = _model(tmp_path / "two.onnx", ["N", 3, 64, 64], extra_inputs=[("y", ["N", 2])])
    nhwc = _model(tmp_path / "nhwc.onnx", ["N", 64, 64, 3])
    tracker = spark.sparkContext.statusTracker()
    jobs = set(tracker.getJobIdsForGroup(None))
    for df, col in ((frames, "content"), (images, "image")):
        def featurizer(model, size=(64, 64), col=col):
            return ImageFeaturizer(inputCol=col, backbone="onnx", modelPath=model, imageSize=list(size), device="cpu")

        with pytest.raises(ValueError, match=r"imageSize: expected the model's input size \[224, 224\], got \[64, 64"):
            featurizer(cnn).transform(df)
        with pytest.raises(ValueError, match="modelPath: expected an ONNX model file"):
            featurizer(str(fake)).transform(df)
        with pytest.raises(ValueError, match="modelPath: expected an ONNX model with one input"):
            featurizer(two).transform(df)
        with pytest.raises(ValueError, match="modelPath: .*channels-last"):
            featurizer(nhwc).transform(df)
        assert "features" in featurizer(cnn, (224, 224)).transform(df).columns  # the matching size is accepted
    assert set(tracker.getJobIdsForGroup(None)) == jobs  # refused before any job ran
    rows = ImageFeaturizer(inputCol="content", backbone="onnx", modelPath=cnn, imageSize=[224, 224],
                           device="cpu").transform(frames).collect()
    assert len(rows) == 1 and rows[0].error is None and len(rows[0].features) == 8

"""UnrollImage and ImageFeaturizer on Spark: vectors, element order, null rows, persistence."""

from __future__ import annotations

import numpy as np
import pytest
from test_ml_ops import pillow_two_pass
from test_ml_transformer import image_frame, sample_images

from gpuimages.ml import ImageFeaturizer, UnrollImage
from gpuimages.transforms.arrays import NUMPY
from gpuimages.transforms.histogram import histogram_features
from gpuimages.transforms.ops import convert_color


@pytest.fixture(scope="module")
def frame(spark):
    return image_frame(spark).coalesce(1)


def test_unroll_element_order_and_nulls(frame):
    from pyspark.ml.linalg import DenseVector, VectorUDT

    out = UnrollImage(outputCol="pixels").transform(frame)
    assert isinstance(out.schema["pixels"].dataType, VectorUDT)
    assert out.columns == [*frame.columns, "pixels"]
    rows = {row["id"]: row["pixels"] for row in out.collect()}
    for i, pixels in sample_images().items():
        if pixels is None:
            assert rows[i] is None
            continue
        vector = rows[i]
        assert isinstance(vector, DenseVector) and len(vector) == pixels.size
        np.testing.assert_array_equal(vector.toArray(), pixels.reshape(-1).astype(np.float64))
        h, w, c = pixels.shape  # documented index: (y * width + x) * nChannels + c
        y, x, ch = h - 1, w // 2, c - 1
        assert vector[(y * w + x) * c + ch] == pixels[y, x, ch]
    assert rows[7] is None


def test_histogram_featurizer(frame):
    from pyspark.ml.linalg import VectorUDT

    featurizer = ImageFeaturizer(imageSize=[20, 24])
    assert featurizer.numFeatures() == 250 and featurizer.getBackbone() == "histogram"
    out = featurizer.transform(frame)
    field = out.schema["features"]
    assert isinstance(field.dataType, VectorUDT)
    assert field.metadata == {"ml_attr": {"num_attrs": 250}}
    rows = {row["id"]: row["features"] for row in out.collect()}
    for i, pixels in sample_images().items():
        if pixels is None:
            assert rows[i] is None
            continue
        rgb = convert_color(pillow_two_pass(pixels, 20, 24)[None], "BGR", "RGB", np)
        np.testing.assert_allclose(rows[i].toArray(), histogram_features(rgb, 8, 16, NUMPY)[0])
    assert rows[7] is None


def test_function_backbone_and_save_load(frame, tmp_path):
    def _mean_colour(images: np.ndarray) -> np.ndarray:  # nested: cloudpickled by value for the executors
        return images.mean(axis=(1, 2))

    featurizer = ImageFeaturizer(inputCol="image", outputCol="emb", fn=_mean_colour, imageSize=[8, 8], batchSize=3)
    assert featurizer.getBackbone() == "function" and featurizer.numFeatures() is None
    out = featurizer.transform(frame)
    assert out.schema["emb"].metadata == {}
    rows = {row["id"]: row["emb"] for row in out.collect()}
    pixels = sample_images()[0]
    expected = pillow_two_pass(pixels, 8, 8)[:, :, ::-1].astype(np.float32).mean(axis=(0, 1)) / 255
    np.testing.assert_allclose(rows[0].toArray(), expected, rtol=1e-5)
    assert rows[6] is None and rows[7] is None
    featurizer.save(str(tmp_path / "feat"))
    loaded = ImageFeaturizer.load(str(tmp_path / "feat"))
    assert loaded.getBatchFunction() is not None and loaded.getImageSize() == [8, 8]
    assert {row["id"]: row["emb"] for row in loaded.transform(frame).collect()} == rows
    histogram = ImageFeaturizer(gridSize=4, histogramBins=8)
    histogram.save(str(tmp_path / "hist"))
    assert ImageFeaturizer.load(str(tmp_path / "hist")).numFeatures() == 3 * 16 + 24 + 10


def test_featurizer_errors(frame):
    with pytest.raises(ValueError, match="batch function"):
        ImageFeaturizer(backbone="function").transform(frame)
    with pytest.raises(ValueError, match="imageSize"):
        ImageFeaturizer(imageSize=[0, 3])
    with pytest.raises(ValueError, match="backbone"):
        ImageFeaturizer(backbone="resnet")
    with pytest.raises(TypeError, match="callable"):
        ImageFeaturizer().setBatchFunction(3)

"""The ML stages on Spark Connect: transform, unroll, featurise, train, and save/load a pipeline.

The stages run through a Connect client in this process on the run's one local Connect server (the
``connect_server`` fixture), with pyspark in Connect mode for the block (``connect_session``), so
``pyspark.ml`` takes its Connect code paths.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from connect_server import connect_session

pytestmark = pytest.mark.connect


def _cases(spark: Any, work: str) -> dict[str, Any]:
    """Run every case on the Connect session ``spark``; return what the parent checks."""
    import numpy as np
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import IntegerType, StringType, StructField, StructType

    from gpuimages.ml import ImageFeaturizer, ImageTransformer, TrainClassifier, UnrollImage
    from gpuimages.schema import image_struct_type, invalid_image

    rng = np.random.default_rng(0)
    rows = []
    for i in range(8):
        pixels = rng.integers(0, 256, (6 + i % 2, 7, 3), dtype=np.uint8)
        pixels[..., 2] = 250 if i % 2 else 5  # the label is in the red channel
        image = {"origin": f"img{i}", "height": pixels.shape[0], "width": 7, "nChannels": 3, "mode": 16,
                 "data": pixels.tobytes()}
        rows.append((i, image, "red" if i % 2 else "dark"))
    rows.append((8, invalid_image("bad"), "dark"))
    schema = StructType([StructField("id", IntegerType()), StructField("image", image_struct_type()),
                         StructField("label", StringType())])
    df = spark.createDataFrame(rows, schema)
    out: dict[str, Any] = {"session": f"{type(spark).__module__}.{type(spark).__name__}",
                           "dataframe": f"{type(df).__module__}.{type(df).__name__}"}

    tr = ImageTransformer(outputCol="small").resize(4, 4).flip("horizontal")
    small = tr.transform(df)
    out["transformed"] = sorted((r["id"], r["small"]["height"], r["small"]["width"]) for r in small.collect())
    tr.save(os.path.join(work, "tr"))
    out["loaded_stages"] = ImageTransformer.load(os.path.join(work, "tr")).getStages()

    unrolled = UnrollImage(inputCol="small", outputCol="vec").transform(small)
    out["unroll_is_vector"] = isinstance(unrolled.schema["vec"].dataType, VectorUDT)
    out["unrolled"] = sorted((r["id"], None if r["vec"] is None else len(r["vec"])) for r in unrolled.collect())

    features = ImageFeaturizer(inputCol="small", imageSize=[4, 4], gridSize=2, histogramBins=4).transform(small)
    out["feature_metadata"] = features.schema["features"].metadata
    out["feature_sizes"] = sorted({None if r["features"] is None else len(r["features"])
                                   for r in features.collect()}, key=str)

    pipeline = Pipeline(stages=[
        ImageTransformer(outputCol="small").resize(4, 4),
        ImageFeaturizer(inputCol="small", imageSize=[4, 4], gridSize=2, histogramBins=4),
        TrainClassifier(model=RandomForestClassifier(numTrees=3, seed=1), labelCol="label", inputCols=["features"]),
    ])
    model = pipeline.fit(df)

    def score(fitted: Any) -> list:
        rows = fitted.transform(df).select("label", "predictedLabel").collect()
        return [(r["label"], r["predictedLabel"]) for r in rows]

    scored = score(model)
    out["scored"] = scored
    model.save(os.path.join(work, "pipeline"))
    loaded = PipelineModel.load(os.path.join(work, "pipeline"))
    out["reloaded_same"] = score(loaded) == scored
    out["labels"] = loaded.stages[-1].getLabels()
    out.update(_bytes_cases(spark, work))
    return out


def _bytes_cases(spark: Any, work: str) -> dict[str, Any]:
    """binaryFile bytes -> ImageFeaturizer(onnx) -> TrainClassifier in a Pipeline, saved and reloaded."""
    import io

    import numpy as np
    from PIL import Image
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.sql import functions as F

    from gpuimages.ml import ImageFeaturizer, TrainClassifier
    from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD, save_small_cnn

    rng = np.random.default_rng(1)
    folder = os.path.join(work, "photos")
    for label, channel in (("red", 0), ("blue", 2)):
        os.makedirs(os.path.join(folder, label))
        for i in range(6):
            pixels = rng.integers(0, 120, (40 + i, 50, 3), dtype=np.uint8)
            pixels[..., channel] += 120
            buf = io.BytesIO()
            Image.fromarray(pixels).save(buf, "JPEG", quality=90)
            Path(folder, label, f"{label}{i}.jpg").write_bytes(buf.getvalue())
    Path(folder, "red", "broken.jpg").write_bytes(b"not a jpeg")
    model_path = save_small_cnn(os.path.join(work, "cnn.onnx"))
    raw = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(folder)
    labelled = raw.withColumn("label", F.regexp_extract("path", r"/(red|blue)/[^/]+$", 1))
    featurizer = ImageFeaturizer(inputCol="content", backbone="onnx", modelPath=model_path, imageSize=[224, 224],
                                 mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), device="cpu")
    rows = featurizer.transform(labelled).select("path", "features", "error").collect()
    out: dict[str, Any] = {
        "bytes_rows": len(rows),
        "bytes_sizes": sorted({None if r["features"] is None else len(r["features"]) for r in rows}, key=str),
        "bytes_errors": sorted(r["error"] for r in rows if r["error"] is not None),
    }
    pipeline = Pipeline(stages=[
        featurizer,
        TrainClassifier(model=RandomForestClassifier(numTrees=5, seed=1), labelCol="label", inputCols=["features"]),
    ])
    fitted = pipeline.fit(labelled)

    def score(model: Any) -> list:
        return sorted((r["label"], r["predictedLabel"]) for r in model.transform(labelled).collect())

    out["bytes_scored"] = score(fitted)
    fitted.save(os.path.join(work, "bytes-pipeline"))
    out["bytes_reloaded_same"] = score(PipelineModel.load(os.path.join(work, "bytes-pipeline"))) == out["bytes_scored"]
    return out


@pytest.fixture(scope="module")
def connect_result(connect_server, tmp_path_factory) -> dict:
    """Every case run through the Connect client; what each saw."""
    with connect_session(connect_server) as spark:
        return _cases(spark, str(tmp_path_factory.mktemp("ml_connect")))


def test_runs_on_a_connect_session(connect_result):
    assert connect_result["session"] == "pyspark.sql.connect.session.SparkSession"
    assert connect_result["dataframe"] == "pyspark.sql.connect.dataframe.DataFrame"


def test_transformer_and_unroll_on_connect(connect_result):
    assert connect_result["transformed"] == [(i, 4, 4) for i in range(8)] + [(8, -1, -1)]
    assert connect_result["loaded_stages"] == [
        {"action": "resize", "height": 4, "width": 4}, {"action": "flip", "direction": "horizontal"}
    ]
    assert connect_result["unroll_is_vector"]
    assert connect_result["unrolled"] == [(i, 48) for i in range(8)] + [(8, None)]


def test_featurizer_and_classifier_on_connect(connect_result):
    size = 3 * 2 * 2 + 3 * 4 + 10
    assert connect_result["feature_metadata"] == {"ml_attr": {"num_attrs": size}}
    assert connect_result["feature_sizes"] == [size, None]
    assert connect_result["labels"] == ["dark", "red"]
    scored = connect_result["scored"]
    assert len(scored) == 8  # the invalid image has no features: skipped
    assert all(label == predicted for label, predicted in scored)
    assert connect_result["reloaded_same"]


def test_bytes_pipeline_on_connect(connect_result):
    assert connect_result["bytes_rows"] == 13
    assert connect_result["bytes_sizes"] == [8, None]
    assert connect_result["bytes_errors"] == ["not a recognised image format"]
    scored = connect_result["bytes_scored"]
    assert len(scored) == 12  # the broken file has no features: skipped
    assert sum(label == predicted for label, predicted in scored) >= 11
    assert connect_result["bytes_reloaded_same"]


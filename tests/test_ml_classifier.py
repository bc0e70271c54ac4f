"""TrainClassifier: label indexing, predictions read back as the original labels, persistence, pipelines."""

from __future__ import annotations

import pytest

from gpuimages.ml import ImageFeaturizer, ImageTransformer, TrainClassifier, TrainedClassifierModel


def _schema(*fields: tuple[str, str]):
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import DoubleType, StringType, StructField, StructType

    types = {"string": StringType(), "double": DoubleType(), "vector": VectorUDT()}
    return StructType([StructField(name, types[kind]) for name, kind in fields])


@pytest.fixture(scope="module")
def fruit(spark):
    """Three string labels told apart by a vector feature and a numeric one; one row without a label."""
    from pyspark.ml.linalg import Vectors

    rows = []
    centres = {"cherry": (0.0, 5.0), "apple": (5.0, 0.0), "banana": (5.0, 5.0)}
    for label, (x, y) in centres.items():
        for k in range(8):
            rows.append((label, Vectors.dense([x + 0.1 * k, y - 0.1 * k]), float(k % 3), f"row{k}"))
    rows.append((None, Vectors.dense([0.0, 0.0]), 0.0, "unlabelled"))
    schema = _schema(("fruit", "string"), ("vec", "vector"), ("extra", "double"), ("note", "string"))
    return spark.createDataFrame(rows, schema).coalesce(1)


def _classifier():
    from pyspark.ml.classification import RandomForestClassifier

    return RandomForestClassifier(numTrees=5, maxDepth=3, seed=7)


@pytest.fixture(scope="module")
def fitted(fruit):
    trainer = TrainClassifier(model=_classifier(), labelCol="fruit", predictedLabelCol="guess")
    return trainer, trainer.fit(fruit)


def test_predictions_map_back_to_original_labels(fruit, fitted):
    _, model = fitted
    assert isinstance(model, TrainedClassifierModel)
    assert model.getLabels() == ["apple", "banana", "cherry"]  # alphabetical: index i is labels[i]
    assert model.getInputCols() == ["vec", "extra"]  # numeric and vector columns, label and strings left out
    out = model.transform(fruit)
    assert {"prediction", "probability", "rawPrediction", "guess"} <= set(out.columns)
    assert not any("__" in c for c in out.columns)  # internal columns dropped
    rows = out.select("fruit", "prediction", "guess", "note").collect()
    assert len(rows) == 25  # transform keeps the unlabelled row (features are fine)
    for row in rows:
        assert row["guess"] == model.getLabels()[int(row["prediction"])]
        if row["fruit"] is not None:
            assert row["guess"] == row["fruit"]


def test_explicit_inputs_and_null_features_skipped(spark):
    from pyspark.ml.linalg import Vectors

    rows = [("a", Vectors.dense([0.0]), 1.0), ("b", Vectors.dense([9.0]), 2.0), ("a", None, 3.0),
            ("a", Vectors.dense([0.5]), 4.0), ("b", Vectors.dense([8.5]), 5.0)]
    schema = _schema(("label", "string"), ("features", "vector"), ("other", "double"))
    df = spark.createDataFrame(rows, schema).coalesce(1)
    model = TrainClassifier(model=_classifier(), inputCols=["features"]).fit(df)
    assert model.getInputCols() == ["features"]
    out = model.transform(df).select("label", "predictedLabel").collect()
    assert len(out) == 4  # handleInvalid="skip": the row without features is dropped
    assert all(r["label"] == r["predictedLabel"] for r in out)
    with pytest.raises(ValueError, match="model="):
        TrainClassifier().fit(df)
    with pytest.raises(ValueError, match="labelCol"):
        TrainClassifier(model=_classifier(), labelCol="nope").fit(df)
    with pytest.raises(ValueError, match="handleInvalid"):
        TrainClassifier(handleInvalid="keep")


def test_save_load_estimator_and_model(fruit, fitted, tmp_path):
    from pyspark.ml.classification import RandomForestClassifier

    trainer, model = fitted
    trainer.save(str(tmp_path / "trainer"))
    loaded_trainer = TrainClassifier.load(str(tmp_path / "trainer"))
    assert isinstance(loaded_trainer.getModel(), RandomForestClassifier)
    assert loaded_trainer.getModel().getNumTrees() == 5 and loaded_trainer.getModel().getSeed() == 7
    assert (loaded_trainer.getLabelCol(), loaded_trainer.getPredictedLabelCol()) == ("fruit", "guess")
    assert loaded_trainer.uid == trainer.uid
    model.save(str(tmp_path / "model"))
    loaded = TrainedClassifierModel.load(str(tmp_path / "model"))
    assert loaded.getLabels() == model.getLabels() and loaded.uid == model.uid
    columns = ["fruit", "prediction", "guess"]
    assert loaded.transform(fruit).select(columns).collect() == model.transform(fruit).select(columns).collect()


def test_image_pipeline_with_train_classifier(spark, class_dir, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel

    import gpuimages

    images = gpuimages.read_images(spark, str(class_dir), recursive=True, label_from_folder=True).cache()
    pipeline = Pipeline(
        stages=[
            ImageTransformer(outputCol="small").resize(height=16, width=16),
            ImageFeaturizer(inputCol="small", imageSize=[16, 16], gridSize=4),
            TrainClassifier(model=_classifier(), labelCol="label", inputCols=["features"]),
        ]
    )
    model = pipeline.fit(images)
    scored = model.transform(images).select("label", "predictedLabel").collect()
    assert len(scored) == 12
    assert sum(r["label"] == r["predictedLabel"] for r in scored) >= 11  # cats (JPEG) vs dogs (PNG), training set
    model.save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    assert loaded.stages[-1].getLabels() == ["cats", "dogs"]
    assert loaded.transform(images).select("label", "predictedLabel").collect() == scored
    images.unpersist()

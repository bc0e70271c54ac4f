"""ImageFeaturizer on encoded bytes (the fused decode -> model task): vectors equal to the per-file reference,
invalid rows, kept columns, both engines, validation, persistence, the seed pipeline and a stream."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
from images import encode, rgb_array
from optional import has_module
from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType, TimestampType
from streams import write_available_now

from benchmarks.reference import cosine, reference_features
from gpuimages.ml import ImageFeaturizer
from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD, save_small_cnn

HAS_DALI = has_module("nvidia.dali")
SIZE = [224, 224]
BINARY_FILE_SCHEMA = StructType([
    StructField("path", StringType(), False), StructField("modificationTime", TimestampType(), False),
    StructField("length", LongType(), False), StructField("content", BinaryType(), True),
])


def tinted(seed: int, red: bool, height: int = 96, width: int = 128) -> np.ndarray:
    """A test pattern pushed towards red or blue (two learnable classes)."""
    rgb = rgb_array(height, width, seed=seed).astype(np.int16)
    rgb[..., 0 if red else 2] += 90
    return np.clip(rgb, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory) -> str:
    return save_small_cnn(tmp_path_factory.mktemp("fused-model") / "cnn.onnx")


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> Path:
    """JPEGs and a PNG in two class folders, plus a text file and a truncated JPEG."""
    root = tmp_path_factory.mktemp("fused-files")
    for label in ("red", "blue"):
        (root / label).mkdir()
        for i in range(8):
            arr = tinted(i + (0 if label == "red" else 50), label == "red", 80 + 4 * i, 120 - 2 * i)
            ext, fmt = ("png", "PNG") if i == 7 else ("jpg", "JPEG")
            (root / label / f"{label}{i}.{ext}").write_bytes(encode(arr, fmt, **({"quality": 90} if i < 7 else {})))
    (root / "red" / "notes.jpg").write_bytes(b"this is not an image")
    (root / "blue" / "cut.jpg").write_bytes(encode(tinted(99, False), "JPEG", quality=90)[:400])
    return root


@pytest.fixture(scope="module")
def content(spark, files):
    return spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(files))


def _onnx(cnn: str, **kwargs) -> ImageFeaturizer:
    return ImageFeaturizer(inputCol="content", outputCol="features", backbone="onnx", modelPath=cnn, imageSize=SIZE,
                           mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), **kwargs)


def _check_against_reference(rows: list, cnn: str) -> None:
    good = [r for r in rows if r["error"] is None]
    assert len(good) == 16
    assert all(r["features"] is not None and len(r["features"]) == 8 for r in good)
    blobs = [Path(r["path"][len("file:"):]).read_bytes() for r in good]
    ref = reference_features(blobs, cnn, (224, 224), IMAGENET_MEAN, IMAGENET_STD)
    sims = cosine(np.stack([r["features"].toArray() for r in good]), ref)
    assert np.median(sims) >= 0.999 and sims.min() >= 0.99, sims


def _check_invalid(rows: list) -> None:
    bad = {Path(r["path"]).name: r for r in rows if r["error"] is not None}
    assert sorted(bad) == ["cut.jpg", "notes.jpg"]
    assert bad["notes.jpg"]["error"] == "not a recognised image format"
    assert "runcated" in bad["cut.jpg"]["error"]
    assert all(r["features"] is None for r in bad.values())


@pytest.fixture(scope="module")
def cpu_onnx(content, cnn) -> tuple:
    """The ONNX featurizer on the bytes with device="cpu": (DataFrame, collected rows), shared by the comparisons."""
    out = _onnx(cnn, device="cpu").transform(content)
    return out, out.collect()


def test_onnx_on_bytes_matches_the_per_file_reference(content, cnn, cpu_onnx):
    from pyspark.ml.linalg import VectorUDT

    out, rows = cpu_onnx
    assert out.columns == ["path", "modificationTime", "length", "features", "error"]  # the bytes are dropped
    assert isinstance(out.schema["features"].dataType, VectorUDT)
    assert len(rows) == 18  # every file of the folder
    _check_invalid(rows)
    _check_against_reference(rows, cnn)
    kept = _onnx(cnn, device="cpu", keepInput=True).transform(content)
    assert kept.columns == [*content.columns, "features", "error"]
    assert all(r["content"] is not None and r["length"] == len(r["content"]) for r in kept.collect())


def test_onnx_on_paths_reads_the_files_in_the_task_and_gives_the_bytes_vectors(spark, content, cnn, cpu_onnx, files,
                                                                              tmp_path):
    """binaryFile's path column alone (Spark never reads the files): the same rows, vectors and reasons as on the
    bytes; a vanished file, a path elsewhere and a null path get their reason."""
    from gpuimages.ml.featurizer import NOT_LOCAL_REASON
    from gpuimages.task.local_files import VANISHED_REASON

    paths = content.select("path")
    assert "content" not in paths._jdf.queryExecution().executedPlan().toString().split("ReadSchema")[-1]
    featurizer = _onnx(cnn, device="cpu").setInputCol("path")
    out = featurizer.transform(paths)
    assert out.columns == ["path", "features", "error"]
    rows = out.collect()
    assert len(rows) == 18
    _check_invalid(rows)
    _check_against_reference(rows, cnn)
    by_bytes = {r["path"]: r["features"] for r in cpu_onnx[1]}
    assert all(r["features"] == by_bytes[r["path"]] for r in rows)  # identical vectors
    gone = "file:" + str(tmp_path / "gone.jpg")
    odd = spark.createDataFrame([(gone,), ("s3a://bucket/x.jpg",), (None,)], "path string")
    reasons = [r["error"] for r in featurizer.transform(odd).collect()]
    assert reasons == [VANISHED_REASON, NOT_LOCAL_REASON, NOT_LOCAL_REASON]


@pytest.mark.dali
@pytest.mark.skipif(not HAS_DALI, reason="needs nvidia-dali")
def test_dali_path_gives_the_same_vectors(content, cnn, cpu_onnx):
    """device='gpu' without a GPU: the DALI tensor path on DALI's CPU operators, small device batches."""
    rows = _onnx(cnn, device="gpu", deviceBatchSize=4).transform(content).collect()
    assert len(rows) == 18
    _check_invalid(rows)
    _check_against_reference(rows, cnn)
    cpu = {r["path"]: r["features"] for r in cpu_onnx[1]}
    for r in rows:
        if r["features"] is not None:
            np.testing.assert_allclose(r["features"].toArray(), cpu[r["path"]].toArray(), rtol=0.05, atol=0.02)


def test_function_backbone_on_bytes_and_replaced_columns(spark, cnn):
    arr = tinted(3, True, 40, 60)
    schema = StructType([StructField("id", LongType()), StructField("content", BinaryType()),
                         StructField("error", StringType())])
    df = spark.createDataFrame([(0, encode(arr, "PNG"), "old"), (1, None, "old")], schema)

    def mean_colour(images: np.ndarray) -> np.ndarray:
        return images.mean(axis=(1, 2))

    out = ImageFeaturizer(inputCol="content", fn=mean_colour, imageSize=[20, 30], device="cpu").transform(df)
    assert out.columns == ["id", "features", "error"]
    rows = {r["id"]: r for r in out.collect()}
    from PIL import Image

    expected = np.asarray(Image.fromarray(arr).resize((30, 20), Image.BILINEAR)).mean(axis=(0, 1)) / 255
    np.testing.assert_allclose(rows[0]["features"].toArray(), expected, rtol=1e-5)
    assert rows[0]["error"] is None
    assert rows[1]["features"] is None and rows[1]["error"] == "no image bytes (null value)"


def test_validation_on_the_driver(content, cnn, tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="modelPath: expected an existing ONNX file"):
        _onnx(str(tmp_path / "missing.onnx")).transform(content)
    with pytest.raises(ValueError, match="modelPath: expected the path of an ONNX file"):
        ImageFeaturizer(inputCol="content", backbone="onnx").transform(content)
    with pytest.raises(ValueError, match="modelPath: expected a local or shared-filesystem path"):
        _onnx("s3a://bucket/model.onnx").transform(content)
    with pytest.raises(ValueError, match=r"std: expected 3 positive numbers"):
        ImageFeaturizer(std=[0.2, 0.0, 0.2])
    with pytest.raises(ValueError, match=r"mean: expected 3 numbers"):
        ImageFeaturizer(mean=[0.5])
    with pytest.raises(ValueError, match="errorCol: expected a name other than outputCol"):
        _onnx(cnn, errorCol="features").transform(content)
    import gpuimages.models.onnx as onnx_module

    monkeypatch.setattr(onnx_module, "onnxruntime_installed", lambda: False)
    with pytest.raises(ImportError, match=r'pip install "gpuimages\[onnx\]"'):
        _onnx(cnn).transform(content)


def test_histogram_backbone_on_bytes_decodes_in_the_task(spark, files):
    """The built-in backbone takes encoded bytes too: decoded to imageSize in the task, as structs would be."""
    import gpuimages

    content = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(files))
    out = ImageFeaturizer(inputCol="content", imageSize=[16, 16], device="cpu").transform(content)
    assert out.columns == ["path", "modificationTime", "length", "features", "error"]
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in out.collect()}
    images = gpuimages.read_images(spark, str(files), recursive=True, device="cpu", resize=(16, 16))
    structs = ImageFeaturizer(inputCol="image", imageSize=[16, 16]).transform(images).collect()
    by_name = {r["image"]["origin"].rsplit("/", 1)[-1]: r["features"] for r in structs}
    for name, row in rows.items():
        if by_name[name] is None:
            assert row["features"] is None and row["error"]
        else:
            assert row["error"] is None and len(row["features"]) == 250
            np.testing.assert_allclose(row["features"].toArray(), by_name[name].toArray(), atol=1e-9)


def test_onnx_on_image_structs_matches_bytes(spark, files, cnn, cpu_onnx):
    import gpuimages
    from gpuimages.uris import to_origin

    images = gpuimages.read_images(spark, str(files), recursive=True, device="cpu")
    structs = ImageFeaturizer(inputCol="image", backbone="onnx", modelPath=cnn, imageSize=SIZE).transform(images)
    by_origin = {r["image"]["origin"]: r["features"] for r in structs.collect()}
    rows = cpu_onnx[1]  # the same featurizer on the folder's bytes (binaryFile, recursive)
    compared = 0
    for r in rows:
        other = by_origin[to_origin(r["path"])]
        if r["features"] is None:
            assert other is None
            continue
        assert cosine(r["features"].toArray()[None], other.toArray()[None])[0] >= 0.999
        compared += 1
    assert compared == 16


def test_save_load_references_the_model(content, cnn, tmp_path, caplog):
    import shutil

    model = str(tmp_path / "model.onnx")
    shutil.copy(cnn, model)
    featurizer = _onnx(model, device="cpu", batchSize=5, deviceBatchSize=128)
    featurizer.save(str(tmp_path / "stage"))
    metadata = json.loads(next((tmp_path / "stage" / "metadata").glob("part-*")).read_text())
    assert metadata["modelSha256"] and metadata["paramMap"]["modelPath"] == model
    loaded = ImageFeaturizer.load(str(tmp_path / "stage"))
    assert loaded.getModelPath() == model and loaded.getBackbone() == "onnx"
    assert loaded.getMean() == pytest.approx(list(IMAGENET_MEAN)) and loaded.getDeviceBatchSize() == 128
    first = {r["path"]: r["features"] for r in featurizer.transform(content).collect()}
    assert {r["path"]: r["features"] for r in loaded.transform(content).collect()} == first
    save_small_cnn(model, seed=5)
    with caplog.at_level(logging.WARNING, logger="gpuimages.ml.featurizer"):
        ImageFeaturizer.load(str(tmp_path / "stage"))
    assert "changed since the stage was saved" in caplog.text


def test_seed_pipeline_from_bytes(spark, content, cnn, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.sql import functions as F

    from gpuimages.ml import TrainClassifier

    labelled = content.withColumn("label", F.regexp_extract("path", r"/(red|blue)/[^/]+$", 1))
    pipeline = Pipeline(stages=[
        _onnx(cnn, device="cpu"),
        TrainClassifier(model=RandomForestClassifier(numTrees=10, seed=1), labelCol="label", inputCols=["features"]),
    ])
    model = pipeline.fit(labelled)
    scored = model.transform(labelled).select("label", "predictedLabel").collect()
    assert len(scored) == 16  # the two invalid files have no features
    accuracy = sum(r["label"] == r["predictedLabel"] for r in scored) / len(scored)
    assert accuracy >= 0.9
    model.save(str(tmp_path / "pipeline"))
    reloaded = PipelineModel.load(str(tmp_path / "pipeline"))
    assert reloaded.transform(labelled).select("label", "predictedLabel").collect() == scored


def test_featurizer_on_a_stream(spark, files, cnn, tmp_path):
    import shutil

    landing = tmp_path / "landing"
    landing.mkdir()
    for path in sorted((files / "red").iterdir())[:5]:
        shutil.copy(path, landing / path.name)
    stream = spark.readStream.format("binaryFile").schema(BINARY_FILE_SCHEMA).load(str(landing))
    out = _onnx(cnn, device="cpu").transform(stream).select("path", "features", "error")
    write_available_now(out, tmp_path / "out", tmp_path / "ckpt")
    written = spark.read.parquet(str(tmp_path / "out")).collect()
    assert len(written) == 5
    valid = [r for r in written if r["error"] is None]
    assert len(valid) == 4 and all(len(r["features"]) == 8 for r in valid)
    assert [r["error"] for r in written if r["error"] is not None] == ["not a recognised image format"]

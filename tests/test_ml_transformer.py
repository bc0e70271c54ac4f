"""ImageTransformer on Spark: every operation against Pillow/numpy on real pixels, rows and columns kept."""

from __future__ import annotations

import io

import numpy as np
import pytest
from images import encode, rgb_array
from PIL import Image
from test_ml_ops import blur_reference, pillow_two_pass

from gpuimages.ml import ImageTransformer, UnrollImage
from gpuimages.schema import image_struct_type, invalid_image, to_ndarray

# ---------------------------------------------------------------- test data


def decoded_bgr(height: int, width: int, seed: int) -> np.ndarray:
    """A JPEG-decoded photo-like image in BGR: real pixels, not a synthetic ramp."""
    data = encode(rgb_array(height, width, seed=seed), "JPEG", quality=85)
    return np.ascontiguousarray(np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1])


def image_row(origin: str, pixels: np.ndarray) -> dict:
    """Spark's image struct for ``(h, w, c)`` uint8 pixels."""
    h, w, c = pixels.shape
    return {"origin": origin, "height": h, "width": w, "nChannels": c, "mode": {1: 0, 3: 16, 4: 24}[c],
            "data": pixels.tobytes()}


def sample_images() -> dict[int, np.ndarray | None]:
    """id -> pixels (None: Spark's invalid row). Sizes repeat so batches hold same-size groups."""
    gray = decoded_bgr(20, 30, seed=5)[:, :, 1:2].copy()
    bgra = np.dstack([decoded_bgr(16, 16, seed=6), np.arange(256, dtype=np.uint8).reshape(16, 16)])
    return {
        0: decoded_bgr(24, 32, seed=0),
        1: decoded_bgr(24, 32, seed=1),
        2: decoded_bgr(17, 23, seed=2),
        3: decoded_bgr(40, 30, seed=3),
        4: gray,
        5: bgra,
        6: None,
    }


def image_frame(spark, with_null: bool = True):
    """A DataFrame of ``sample_images`` plus other columns (string, double, vector) and a null image."""
    from pyspark.ml.linalg import Vectors, VectorUDT
    from pyspark.sql.types import DoubleType, IntegerType, StringType, StructField, StructType

    rows = []
    for i, pixels in sample_images().items():
        image = invalid_image(f"file:/bad{i}.jpg") if pixels is None else image_row(f"file:/img{i}.png", pixels)
        rows.append((i, f"name{i}", image, i * 0.5, Vectors.dense([i, -i])))
    if with_null:
        rows.append((7, "name7", None, 3.5, Vectors.dense([7.0, -7.0])))
    schema = StructType(
        [
            StructField("id", IntegerType()),
            StructField("name", StringType()),
            StructField("image", image_struct_type()),
            StructField("weight", DoubleType()),
            StructField("vec", VectorUDT()),
        ]
    )
    return spark.createDataFrame(rows, schema)


# ---------------------------------------------------------------- references per operation


def _gray(bgr: np.ndarray) -> np.ndarray:
    if bgr.shape[2] == 1:
        return bgr
    rgb = np.ascontiguousarray(bgr[:, :, 2::-1])
    return np.asarray(Image.fromarray(rgb).convert("L"))[:, :, None]


def _threshold(bgr: np.ndarray) -> np.ndarray:
    return np.where(bgr > 100, 255, 0).astype(np.uint8)


def _center(bgr: np.ndarray) -> np.ndarray:
    h, w = bgr.shape[:2]
    ch, cw = min(h, 10), min(w, 12)
    top, left = (h - ch) // 2, (w - cw) // 2
    return bgr[top : top + ch, left : left + cw]


def _shorter(bgr: np.ndarray) -> np.ndarray:
    h, w = bgr.shape[:2]
    scale = 12 / min(h, w)
    return pillow_two_pass(bgr, max(1, round(h * scale)), max(1, round(w * scale)))


def _rgb(bgr: np.ndarray) -> np.ndarray:
    """The target names the output: 3 channels, gray replicated, alpha dropped."""
    if bgr.shape[2] == 1:
        return np.repeat(bgr, 3, axis=2)
    return bgr[:, :, 2::-1]


#: column -> (transformer, reference on one BGR(A) image, largest difference allowed)
CASES = {
    "resized": (ImageTransformer().resize(height=16, width=20), lambda b: pillow_two_pass(b, 16, 20), 0),
    "upsized": (ImageTransformer().resize(height=50, width=41), lambda b: pillow_two_pass(b, 50, 41), 0),
    "shorter": (ImageTransformer().resize(size=12), _shorter, 0),
    "cropped": (ImageTransformer().crop(3, 2, height=10, width=12), lambda b: b[2:12, 3:15], 0),
    "centered": (ImageTransformer().centerCrop(10, 12), _center, 0),
    "mirrored": (ImageTransformer().flip("horizontal"), lambda b: b[:, ::-1], 0),
    "upside": (ImageTransformer().flip(0), lambda b: b[::-1], 0),
    "gray": (ImageTransformer().colorFormat("BGR2GRAY"), _gray, 0),
    "rgb": (ImageTransformer().colorFormat(4), _rgb, 0),
    "blurred": (ImageTransformer().gaussianBlur(5, 1.0), lambda b: blur_reference(b, 5, 1.0), 1),
    "binary": (ImageTransformer().threshold(100, 255), _threshold, 0),
    "seed_chain": (
        ImageTransformer().resize(height=200, width=200).crop(0, 0, height=180, width=180),
        lambda b: pillow_two_pass(b, 200, 200)[:180, :180],
        0,
    ),
}


@pytest.fixture(scope="module")
def frame(spark):
    return image_frame(spark)


@pytest.fixture(scope="module")
def outputs(frame):
    """id -> {column: output image} for every case, plus the input row under "input".

    One small job per case: a chain of many Python stages in one job would start a Python
    worker per stage and partition, which costs more than the jobs.
    """
    out: dict = {row["id"]: {"input": row} for row in frame.collect()}
    for column, (transformer, _, _) in CASES.items():
        for row in transformer.copy().setOutputCol(column).transform(frame).collect():
            out[row["id"]][column] = row[column]
            assert row.asDict().keys() == {"id", "name", "image", "weight", "vec", column}
            assert row["image"] == out[row["id"]]["input"]["image"]
            assert (row["name"], row["weight"], row["vec"]) == tuple(out[row["id"]]["input"][k]
                                                                     for k in ("name", "weight", "vec"))
    return out


# ---------------------------------------------------------------- tests


@pytest.mark.parametrize("column", list(CASES))
def test_operation_matches_reference(outputs, column):
    _, reference, tolerance = CASES[column]
    for i, pixels in sample_images().items():
        out = outputs[i][column]
        if pixels is None:
            assert (out["height"], out["width"], out["nChannels"], out["mode"], out["data"]) == (-1, -1, -1, -1, b"")
            assert out["origin"] == f"file:/bad{i}.jpg"
            continue
        expected = reference(pixels)
        got = to_ndarray(out)
        assert got.shape == expected.shape, (i, column)
        assert out["mode"] == {1: 0, 3: 16, 4: 24}[got.shape[2]]
        assert out["origin"] == f"file:/img{i}.png"
        assert np.abs(got.astype(int) - expected.astype(int)).max() <= tolerance, (i, column)


def test_rows_and_other_columns_pass_through(frame, outputs):
    assert sorted(outputs) == list(range(8))  # every row, the invalid and the null one included
    for column in CASES:  # the fixture checked names, order and values of the other columns
        assert all(column in outputs[i] for i in outputs)
    assert outputs[7]["resized"] is None  # a null image stays null
    assert frame.count() == 8


def test_normalize_gives_float_arrays(frame):
    from pyspark.sql.types import ArrayType, FloatType

    mean, std = [0.5, 0.25, 0.125], [0.5, 0.5, 0.25]
    tr = ImageTransformer(outputCol="tensor").resize(height=4, width=5).normalize(mean=mean, std=std)
    out = tr.transform(frame)
    assert out.schema["tensor"].dataType == ArrayType(FloatType(), True)
    rows = {row["id"]: row["tensor"] for row in out.collect()}
    pixels = sample_images()
    for i in (0, 2, 3):
        rgb = pillow_two_pass(pixels[i], 4, 5)[:, :, ::-1].astype(np.float32) / np.float32(255)
        expected = ((rgb - np.float32(mean)) / np.float32(std)).transpose(2, 0, 1).ravel()
        np.testing.assert_allclose(rows[i], expected, rtol=1e-5, atol=1e-6)
    assert rows[4] is None and rows[5] is None  # 1 and 4 channels do not match 3 means
    assert rows[6] is None and rows[7] is None


def test_output_replaces_input_in_place_and_gpu_needs_the_extra(frame, monkeypatch):
    from gpuimages import scheduling

    tr = ImageTransformer(inputCol="image", outputCol="image").resize(height=8, width=8)
    replaced = tr.transform(frame)
    assert replaced.columns == frame.columns
    cpu = tr.copy().setDevice("cpu").transform(frame).collect()
    assert {row["image"]["height"] for row in cpu if row["image"] is not None} == {8, -1}
    # device="gpu" needs cupy, with the same error read_images gives without DALI
    monkeypatch.setattr(scheduling, "installed", lambda module: module != "cupy")
    with pytest.raises(ImportError, match=r"device='gpu' needs cupy, which is not installed.*gpuimages\[gpu\]"):
        tr.copy().setDevice("gpu").transform(frame)
    # with cupy installed but no GPU in the task: numpy, the same rows
    monkeypatch.setattr(scheduling, "installed", lambda module: True)
    assert tr.copy().setDevice("gpu").transform(frame).collect() == cpu


def test_params_and_errors(frame):
    tr = ImageTransformer().setOutputCol("t").resize(10, 10).flip(-1).gaussianBlur(kernelSize=None, sigma=1.0)
    assert tr.getOutputCol() == "t" and tr.getInputCol() == "image" and tr.getDevice() == "auto"
    assert [s["action"] for s in tr.getStages()] == ["resize", "flip", "gaussianBlur"]
    assert tr.getStages()[2]["kernelSize"] == 7
    with pytest.raises(ValueError, match="last stage"):
        ImageTransformer().normalize().resize(3, 3)
    with pytest.raises(ValueError, match="device"):
        ImageTransformer(device="tpu")
    with pytest.raises(ValueError, match="image struct"):
        ImageTransformer(inputCol="name").transform(frame)
    with pytest.raises(ValueError, match="inputCol"):
        ImageTransformer(inputCol="nope").transform(frame)


def test_save_load_round_trip(frame, tmp_path):
    tr = ImageTransformer(outputCol="small", device="cpu").resize(12, 14).crop(1, 1, 8, 8).colorFormat("BGR2GRAY")
    tr.save(str(tmp_path / "tr"))
    loaded = ImageTransformer.load(str(tmp_path / "tr"))
    assert loaded.uid == tr.uid
    assert loaded.getStages() == tr.getStages() and loaded.getDevice() == "cpu"
    assert loaded.transform(frame).collect() == tr.transform(frame).collect()


def test_pipeline_with_unroll_and_classifier(frame, tmp_path):
    from pyspark.ml import Pipeline, PipelineModel
    from pyspark.ml.classification import LogisticRegression
    from pyspark.sql import functions as F

    labelled = frame.where(F.col("id") <= 3).withColumn("label", (F.col("id") % 2).cast("double"))
    pipeline = Pipeline(
        stages=[
            ImageTransformer(outputCol="small").resize(6, 6),
            UnrollImage(inputCol="small", outputCol="features"),
            LogisticRegression(maxIter=20, regParam=0.01),
        ]
    )
    model = pipeline.fit(labelled)
    predicted = model.transform(labelled).select("id", "label", "prediction").collect()
    assert len(predicted) == 4
    assert all(row["prediction"] == row["label"] for row in predicted)  # 108 features, 4 rows: separable
    model.save(str(tmp_path / "pipeline"))
    loaded = PipelineModel.load(str(tmp_path / "pipeline"))
    assert loaded.transform(labelled).select("id", "label", "prediction").collect() == predicted
    assert isinstance(loaded.stages[0], ImageTransformer) and loaded.stages[0].getStages() == [
        {"action": "resize", "height": 6, "width": 6}
    ]

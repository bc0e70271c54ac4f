"""The pipeline of "Image Data Support in Apache Spark", end to end on generated images.

read_images -> ImageTransformer (resize, then crop) -> ImageFeaturizer -> TrainClassifier
(RandomForestClassifier) on a seeded train/test split; prints the test accuracy and the
confusion matrix with the original labels. Run it as ``gpuimages demo`` or
``python -m gpuimages demo``, or call :func:`run_demo`.

The images are made here, deterministically for a seed: three classes told apart by shape,
texture and (loosely) colour — "circles" (filled discs, warm hues), "stripes" (parallel bands,
green hues) and "checkers" (checkerboards, blue hues) — with random sizes, hues, positions,
noise, and a JPEG/PNG mix. Nothing is downloaded.

``backbone="onnx"`` (``gpuimages demo --backbone onnx``) runs the pipeline from encoded bytes
instead: ``binaryFile`` -> ``ImageFeaturizer(backbone="onnx")`` (decode, resize to 224x224,
normalise and a small CNN built in code, all in one task) -> ``TrainClassifier``. It needs
``onnxruntime`` and ``onnx`` (``pip install "gpuimages[onnx]"``).
"""

from __future__ import annotations

import argparse
import colorsys
import io
import logging
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Class name -> centre hue (0..1) of its colours.
CLASSES = {"circles": 0.03, "stripes": 0.33, "checkers": 0.62}


def _colour(rng: np.random.Generator, hue: float) -> np.ndarray:
    h = (hue + rng.normal(0.0, 0.09)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(0.45, 1.0), rng.uniform(0.45, 1.0))
    return np.array([r, g, b]) * 255.0


def _background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    grey = rng.uniform(40, 215)
    tint = rng.normal(0, 18, 3)
    return np.broadcast_to(grey + tint, (height, width, 3)).astype(np.float64).copy()


def draw(kind: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One ``(height, width, 3)`` uint8 RGB image of class ``kind``."""
    hue = CLASSES[kind]
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    image = _background(rng, height, width)
    if kind == "circles":
        for _ in range(int(rng.integers(1, 4))):
            radius = rng.uniform(0.15, 0.35) * min(height, width)
            cy, cx = rng.uniform(radius * 0.6, height - radius * 0.6), rng.uniform(radius * 0.6, width - radius * 0.6)
            inside = (y - cy) ** 2 + (x - cx) ** 2 <= radius**2
            image[inside] = _colour(rng, hue)
    elif kind == "stripes":
        angle = rng.choice([0.0, np.pi / 2, np.pi / 4, -np.pi / 4]) + rng.normal(0, 0.08)
        period = rng.uniform(6, 16)
        phase = (x * np.cos(angle) + y * np.sin(angle)) / period + rng.uniform(0, 1)
        band = (phase % 1.0) < rng.uniform(0.35, 0.65)
        image[band] = _colour(rng, hue)
        image[~band] = 0.5 * image[~band] + 0.5 * _colour(rng, hue) * rng.uniform(0.2, 0.6)
    else:
        cell = rng.uniform(5, 12)
        board = ((np.floor(y / cell) + np.floor(x / cell)) % 2).astype(bool)
        image[board] = _colour(rng, hue)
        image[~board] = _colour(rng, hue) * rng.uniform(0.15, 0.5)
    image += rng.normal(0, 7, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_dataset(folder: str | Path, per_class: int = 60, seed: int = 0) -> dict[str, int]:
    """Write ``per_class`` images per class under ``folder/<class>/`` (JPEG and PNG); return counts."""
    from PIL import Image

    folder = Path(folder)
    rng = np.random.default_rng(seed)
    counts = {}
    for kind in CLASSES:
        (folder / kind).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            height, width = (int(v) for v in rng.integers(48, 97, 2))
            pixels = draw(kind, rng, height, width)
            buf = io.BytesIO()
            if i % 2 == 0:
                Image.fromarray(pixels).save(buf, "JPEG", quality=int(rng.integers(80, 96)))
                name = f"{kind}_{i:03d}.jpg"
            else:
                Image.fromarray(pixels).save(buf, "PNG")
                name = f"{kind}_{i:03d}.png"
            (folder / kind / name).write_bytes(buf.getvalue())
        counts[kind] = per_class
    return counts


def confusion_table(pairs: list[tuple[str, str]], labels: list[str]) -> str:
    """A text confusion matrix: rows are true labels, columns predicted labels."""
    counts = Counter(pairs)
    corner = "actual \\ predicted"
    first = max([len(label) for label in labels] + [len(corner)])
    cell = max([len(label) for label in labels] + [5]) + 2
    lines = [corner.ljust(first) + "".join(f"{label:>{cell}}" for label in labels)]
    for actual in labels:
        lines.append(actual.ljust(first) + "".join(f"{counts.get((actual, p), 0):>{cell}}" for p in labels))
    return "\n".join(lines)


def run_demo(
    spark: SparkSession | None = None,
    data_dir: str | Path | None = None,
    device: str = "auto",
    *,
    per_class: int = 60,
    seed: int = 0,
    image_size: int = 64,
    crop_size: int = 56,
    num_trees: int = 40,
    train_ratio: float = 0.7,
    verbose: bool = True,
    backbone: str = "histogram",
) -> dict[str, Any]:
    """Generate the image set, run read -> transform -> featurise -> train, and score the test split.

    Args:
        spark: a session (classic or Spark Connect); default: :func:`gpuimages.session.local_session`,
            stopped at the end if this call started it.
        data_dir: where to write the generated images (class sub-folders; files of an earlier run
            are overwritten); default: a temporary folder, removed at the end.
        device: "auto", "cpu" or "gpu", for decoding and for the ML stages.
        per_class: images per class.
        seed: seeds the images, the split and the forest.
        image_size: images are resized to ``image_size`` x ``image_size``...
        crop_size: ...then cut to ``crop_size`` x ``crop_size`` from the top-left corner, as in
            the original post (``.resize(200, 200).crop(0, 0, 180, 180)``).
        num_trees: trees of the random forest.
        train_ratio: share of images used for training.
        verbose: print the steps, the accuracy and the confusion matrix.
        backbone: "histogram" (read -> transform -> histogram features) or "onnx" (binaryFile bytes
            -> ImageFeaturizer with the small CNN of :mod:`gpuimages.models.onnx_builder`).

    Returns:
        ``accuracy``, ``confusion`` ({actual: {predicted: count}}), ``labels``, ``train_count``,
        ``test_count``, ``image_count``, ``seconds`` and ``data_dir`` (None for a temporary folder).
    """
    from pyspark.ml.classification import RandomForestClassifier
    from pyspark.sql import SparkSession

    import gpuimages
    from gpuimages.ml import ImageFeaturizer, ImageTransformer, TrainClassifier

    def say(text: str) -> None:
        if verbose:
            print(text, flush=True)

    start = time.perf_counter()
    stop_session = False
    if spark is None:
        from gpuimages.session import local_session

        stop_session = SparkSession.getActiveSession() is None
        spark = local_session(app_name="gpuimages-demo", **{"spark.ui.showConsoleProgress": "false"})
    temp = tempfile.TemporaryDirectory(prefix="gpuimages-demo-") if data_dir is None else None
    folder = Path(temp.name if temp is not None else data_dir)
    model_dir: tempfile.TemporaryDirectory | None = None
    try:
        counts = make_dataset(folder, per_class=per_class, seed=seed)
        per_label = ", ".join(f"{k}: {v}" for k, v in counts.items())
        say(f"generated {sum(counts.values())} images in {folder} ({per_label})")

        if backbone == "onnx":
            model_dir = tempfile.TemporaryDirectory(prefix="gpuimages-demo-model-")
            features, described = _onnx_features(spark, folder, Path(model_dir.name), device, seed)
        else:
            images = gpuimages.read_images(spark, str(folder), recursive=True, label_from_folder=True, device=device)
            transformer = (
                ImageTransformer(device=device)
                .setOutputCol("transformed")
                .resize(height=image_size, width=image_size)
                .crop(0, 0, height=crop_size, width=crop_size)
            )
            featurizer = ImageFeaturizer(
                inputCol="transformed", outputCol="features", imageSize=[crop_size, crop_size], device=device
            )
            features = featurizer.transform(transformer.transform(images)).select("label", "features").cache()
            described = (f"read, resized to {image_size}x{image_size}, cropped to {crop_size}x{crop_size} and "
                         f"featurised {{n}} images ({featurizer.numFeatures()} features each)")
        image_count = features.count()
        say(described.format(n=image_count))

        # one partition: the split and the forest then depend on the seed alone, not on how the listing of a
        # temporary folder (named at random) spread the files over tasks
        train, test = features.repartition(1).randomSplit([train_ratio, 1.0 - train_ratio], seed=seed)
        trainer = TrainClassifier(
            model=RandomForestClassifier(numTrees=num_trees, maxDepth=8, seed=seed), labelCol="label",
            inputCols=["features"],
        )
        model = trainer.fit(train)
        scored = model.transform(test).select("label", "predictedLabel").collect()
        features.unpersist()

        pairs = [(row["label"], row["predictedLabel"]) for row in scored]
        labels = model.getLabels()
        accuracy = sum(a == p for a, p in pairs) / len(pairs) if pairs else float("nan")
        confusion = {a: {p: sum(1 for x in pairs if x == (a, p)) for p in labels} for a in labels}
        seconds = time.perf_counter() - start
        say(f"trained RandomForestClassifier({num_trees} trees) on {image_count - len(pairs)} images, "
            f"tested on {len(pairs)}")
        say(f"test accuracy: {accuracy:.3f} (chance {1 / max(len(labels), 1):.3f})")
        say("confusion matrix (original labels):")
        say(confusion_table(pairs, labels))
        say(f"done in {seconds:.1f} s")
        return {
            "accuracy": accuracy,
            "confusion": confusion,
            "labels": labels,
            "train_count": image_count - len(pairs),
            "test_count": len(pairs),
            "image_count": image_count,
            "seconds": seconds,
            "data_dir": None if temp is not None else str(folder),
        }
    finally:
        if model_dir is not None:
            model_dir.cleanup()
        if temp is not None:
            temp.cleanup()
        if stop_session:
            spark.stop()


def _onnx_features(spark: SparkSession, folder: Path, model_dir: Path, device: str, seed: int) -> tuple[Any, str]:
    """binaryFile bytes -> ImageFeaturizer(onnx) with the small test CNN; (cached features, description)."""
    from pyspark.sql import functions as F

    from gpuimages.ml import ImageFeaturizer
    from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD, save_small_cnn

    model_path = save_small_cnn(model_dir / "demo-cnn.onnx", seed=seed)
    raw = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(str(folder))
    labelled = raw.withColumn("label", F.regexp_extract("path", r"/([^/]+)/[^/]+$", 1))
    featurizer = ImageFeaturizer(
        inputCol="content", outputCol="features", backbone="onnx", modelPath=model_path, imageSize=[224, 224],
        mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD), device=device,
    )
    features = featurizer.transform(labelled).where(F.col("error").isNull()).select("label", "features").cache()
    return features, "decoded, resized to 224x224 and featurised {n} images from bytes with an ONNX CNN (8 features)"


def main(argv: list[str] | None = None) -> int:
    """``gpuimages demo``: run :func:`run_demo` from the command line; exit status 0 on success."""
    parser = argparse.ArgumentParser(
        prog="gpuimages demo",
        description="Generate a small labelled image set and run read -> ImageTransformer -> ImageFeaturizer "
        "-> TrainClassifier(RandomForestClassifier); print test accuracy and the confusion matrix.",
    )
    parser.add_argument("--data-dir", help="where to write the generated images (default: a temporary folder)")
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"], help="decode/transform device")
    parser.add_argument("--per-class", type=int, default=60, help="images per class (default 60)")
    parser.add_argument("--seed", type=int, default=0, help="seed for the images, the split and the forest")
    parser.add_argument("--trees", type=int, default=40, help="trees in the random forest (default 40)")
    parser.add_argument("--backbone", default="histogram", choices=["histogram", "onnx"],
                        help="histogram: read -> transform -> histogram features; onnx: binaryFile bytes -> "
                        "ImageFeaturizer with a small CNN built in code (needs onnxruntime and onnx)")
    args = parser.parse_args(argv)
    if args.per_class < 2:
        parser.error("--per-class: expected at least 2")
    if args.backbone == "onnx":
        import importlib.util

        missing = [m for m in ("onnx", "onnxruntime") if importlib.util.find_spec(m) is None]
        if missing:
            parser.error(f"--backbone onnx: needs {' and '.join(missing)}: pip install \"gpuimages[onnx]\"")
    from gpuimages.console import command_session

    with command_session("local[*]", "gpuimages-demo") as spark:  # quiet, as every command of the CLI is
        run_demo(spark=spark, data_dir=args.data_dir, device=args.device, per_class=args.per_class, seed=args.seed,
                 num_trees=args.trees, backbone=args.backbone)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Spark ML stages for image-schema columns: transform, unroll, featurise and classify images.

    >>> from gpuimages.ml import ImageTransformer, ImageFeaturizer, TrainClassifier
    >>> from pyspark.ml.classification import RandomForestClassifier
    >>> small = ImageTransformer().setOutputCol("small").resize(height=64, width=64).transform(images)
    >>> features = ImageFeaturizer(inputCol="small").transform(small)
    >>> model = TrainClassifier(model=RandomForestClassifier(), labelCol="label").fit(features)
    >>> model.transform(features).select("label", "predictedLabel")

Every stage uses only the DataFrame API on the driver (so it runs on Spark Connect too) and
computes per Arrow batch on executors, with cupy on a GPU where asked for and available.
The classes load on first use, so Python workers that only run the executor side
(:mod:`gpuimages.task`) never import ``pyspark.ml``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__all__ = ["ImageTransformer", "UnrollImage", "ImageFeaturizer", "TrainClassifier", "TrainedClassifierModel"]

_HOMES = {
    "ImageTransformer": "gpuimages.ml.transformer",
    "UnrollImage": "gpuimages.ml.unroll",
    "ImageFeaturizer": "gpuimages.ml.featurizer",
    "TrainClassifier": "gpuimages.ml.classifier",
    "TrainedClassifierModel": "gpuimages.ml.classifier",
}

if TYPE_CHECKING:  # pragma: no cover
    from gpuimages.ml.classifier import TrainClassifier, TrainedClassifierModel
    from gpuimages.ml.featurizer import ImageFeaturizer
    from gpuimages.ml.transformer import ImageTransformer
    from gpuimages.ml.unroll import UnrollImage


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name]), name)
    raise AttributeError(f"module 'gpuimages.ml' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)

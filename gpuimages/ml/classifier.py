"""``TrainClassifier``: fit any Spark ML classifier on a string (or numeric) label, read predictions back as labels.

    >>> from pyspark.ml.classification import RandomForestClassifier
    >>> model = TrainClassifier(model=RandomForestClassifier(), labelCol="label").fit(train)
    >>> model.transform(test).select("label", "predictedLabel", "prediction", "probability")

Like MMLSpark's ``TrainClassifier``: the label is indexed (``StringIndexer``, labels sorted
alphabetically, so index ``i`` is ``model.labels[i]``), the feature columns are assembled into
one vector (``VectorAssembler``), the classifier is fitted on them, and the model maps the
predicted index back to the original label (``IndexToString``).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters
from pyspark.ml.param.shared import HasLabelCol, HasPredictionCol
from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter, MLReadable, MLReader, MLWritable, MLWriter

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame
    from pyspark.sql.types import StructType

_CLASSIFIER_DIR = "classifier"
_HANDLE_INVALID = ("skip", "error")


def _to_handle_invalid(value: Any) -> str:
    if value not in _HANDLE_INVALID:
        raise ValueError(f"handleInvalid: expected one of {', '.join(_HANDLE_INVALID)}, got {value!r}")
    return value


class _TrainClassifierParams(HasLabelCol, HasPredictionCol):
    """Params shared by :class:`TrainClassifier` and :class:`TrainedClassifierModel`."""

    inputCols: Param[list[str]] = Param(
        Params._dummy(), "inputCols",
        "feature columns (numeric, boolean or vector); default: every such column except the label",
        typeConverter=TypeConverters.toListString,
    )
    predictedLabelCol: Param[str] = Param(
        Params._dummy(), "predictedLabelCol", "output column with the predicted original label (string)",
        typeConverter=TypeConverters.toString,
    )
    handleInvalid: Param[str] = Param(
        Params._dummy(), "handleInvalid",
        'rows with a null label (fit) or null/NaN features (fit and transform): "skip" drops them, "error" fails',
        typeConverter=_to_handle_invalid,
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(labelCol="label", predictionCol="prediction", predictedLabelCol="predictedLabel",
                         handleInvalid="skip")

    def getInputCols(self) -> list[str]:
        """The feature columns (empty: chosen from the schema at fit time)."""
        return list(self.getOrDefault(self.inputCols)) if self.isDefined(self.inputCols) else []

    def getPredictedLabelCol(self) -> str:
        """Column with the predicted original label."""
        return self.getOrDefault(self.predictedLabelCol)

    def getHandleInvalid(self) -> str:
        """"skip" or "error"."""
        return self.getOrDefault(self.handleInvalid)

    def _internal_col(self, what: str) -> str:
        return f"{self.uid}__{what}"


def feature_columns(schema: StructType, label_col: str) -> list[str]:
    """Columns usable as features: numeric, boolean or vectors, the label excluded."""
    from pyspark.ml.linalg import VectorUDT
    from pyspark.sql.types import BooleanType, NumericType

    return [
        f.name
        for f in schema.fields
        if f.name != label_col and isinstance(f.dataType, (NumericType, BooleanType, VectorUDT))
    ]


class TrainClassifier(Estimator, _TrainClassifierParams, MLReadable, MLWritable):
    """Index the label, assemble the features and fit ``model`` (any ``pyspark.ml`` classifier).

    ``fit`` returns a :class:`TrainedClassifierModel` whose ``transform`` adds the classifier's
    output columns (``prediction`` = label index as a double, plus ``rawPrediction`` and
    ``probability`` when the classifier makes them) and ``predictedLabel``, the predicted
    original label as a string. The training data is cached during the fit unless it already is.
    """

    model: Param[Any] = Param(
        Params._dummy(), "model", "the classifier to fit, e.g. RandomForestClassifier() (its params are kept)"
    )

    @keyword_only
    def __init__(
        self,
        *,
        model: Any = None,
        labelCol: str = "label",
        inputCols: list[str] | None = None,
        predictionCol: str = "prediction",
        predictedLabelCol: str = "predictedLabel",
        handleInvalid: str = "skip",
    ) -> None:
        super().__init__()
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    @keyword_only
    def setParams(
        self,
        *,
        model: Any = None,
        labelCol: str = "label",
        inputCols: list[str] | None = None,
        predictionCol: str = "prediction",
        predictedLabelCol: str = "predictedLabel",
        handleInvalid: str = "skip",
    ) -> TrainClassifier:
        """Set any of the params by keyword."""
        return self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    def getModel(self) -> Any:
        """The (unfitted) classifier."""
        return self.getOrDefault(self.model)

    def setModel(self, value: Any) -> TrainClassifier:
        """Set the classifier to fit."""
        return self._set(model=value)

    def setLabelCol(self, value: str) -> TrainClassifier:
        """Set the label column."""
        return self._set(labelCol=value)

    def setInputCols(self, value: list[str]) -> TrainClassifier:
        """Set the feature columns."""
        return self._set(inputCols=value)

    def setPredictionCol(self, value: str) -> TrainClassifier:
        """Set the column for the predicted index."""
        return self._set(predictionCol=value)

    def setPredictedLabelCol(self, value: str) -> TrainClassifier:
        """Set the column for the predicted original label."""
        return self._set(predictedLabelCol=value)

    def setHandleInvalid(self, value: str) -> TrainClassifier:
        """"skip" (default) or "error" for rows with a null label or null/NaN features."""
        return self._set(handleInvalid=value)

    def _fit(self, dataset: DataFrame) -> TrainedClassifierModel:
        from pyspark.ml.feature import StringIndexer, VectorAssembler

        if not self.isDefined(self.model) or self.getModel() is None:
            raise ValueError("TrainClassifier: expected a classifier in model=, e.g. RandomForestClassifier()")
        label = self.getLabelCol()
        if label not in dataset.columns:
            names = ", ".join(dataset.columns)
            raise ValueError(f"labelCol: expected a column of the DataFrame ({names}), got {label!r}")
        inputs = self.getInputCols() or feature_columns(dataset.schema, label)
        if not inputs:
            raise ValueError("TrainClassifier: no feature columns (numeric, boolean or vector) besides the label")
        index_col, features_col = self._internal_col("label"), self._internal_col("features")
        indexer = StringIndexer(
            inputCol=label, outputCol=index_col, stringOrderType="alphabetAsc", handleInvalid=self.getHandleInvalid()
        ).fit(dataset)
        assembler = VectorAssembler(inputCols=inputs, outputCol=features_col, handleInvalid=self.getHandleInvalid())
        prepared = assembler.transform(indexer.transform(dataset)).select(features_col, index_col)
        classifier = self.getModel().copy()
        for name, value in (("featuresCol", features_col), ("labelCol", index_col),
                            ("predictionCol", self.getPredictionCol())):
            classifier.set(classifier.getParam(name), value)
        cached = dataset.storageLevel.useMemory or dataset.storageLevel.useDisk
        if not cached:
            prepared = prepared.persist()
        try:
            fitted = classifier.fit(prepared)
        finally:
            if not cached:
                prepared.unpersist()
        model = TrainedClassifierModel(
            labels=list(indexer.labels), labelCol=label, inputCols=inputs, predictionCol=self.getPredictionCol(),
            predictedLabelCol=self.getPredictedLabelCol(), handleInvalid=self.getHandleInvalid(),
        )
        model._resetUid(self.uid)
        model.setClassifierModel(fitted)
        return self._copyValues(model)

    def copy(self, extra: dict | None = None) -> TrainClassifier:
        """A copy; the classifier is copied too."""
        that = super().copy(extra)
        if that.isSet(that.model) and that.getModel() is not None:
            that._set(model=that.getModel().copy())
        return that

    def write(self) -> MLWriter:
        """Writer: params as JSON, the classifier in ``path/classifier``."""
        return _TrainClassifierWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        """Reader for :meth:`write`'s output."""
        return _TrainClassifierReader(cls)


class TrainedClassifierModel(Model, _TrainClassifierParams, MLReadable, MLWritable):
    """A fitted classifier plus its label mapping; ``transform`` adds predictions as indices and labels."""

    labels: Param[list[str]] = Param(
        Params._dummy(), "labels", "original labels; index i of the prediction is labels[i]",
        typeConverter=TypeConverters.toListString,
    )

    @keyword_only
    def __init__(
        self,
        *,
        labels: list[str] | None = None,
        labelCol: str = "label",
        inputCols: list[str] | None = None,
        predictionCol: str = "prediction",
        predictedLabelCol: str = "predictedLabel",
        handleInvalid: str = "skip",
    ) -> None:
        super().__init__()
        self._classifier_model: Any = None
        self._set(**{k: v for k, v in self._input_kwargs.items() if v is not None})

    @property
    def classifierModel(self) -> Any:
        """The fitted Spark classifier model (its features column is internal)."""
        return self._classifier_model

    def setClassifierModel(self, value: Any) -> TrainedClassifierModel:
        """Attach the fitted Spark classifier model."""
        self._classifier_model = value
        return self

    def getLabels(self) -> list[str]:
        """Original labels in index order."""
        return list(self.getOrDefault(self.labels))

    def setPredictedLabelCol(self, value: str) -> TrainedClassifierModel:
        """Set the column for the predicted original label."""
        return self._set(predictedLabelCol=value)

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.ml.feature import IndexToString, VectorAssembler

        if self._classifier_model is None:
            raise ValueError("TrainedClassifierModel: no fitted classifier attached")
        features_col = self._classifier_model.getFeaturesCol()
        assembler = VectorAssembler(
            inputCols=self.getInputCols(), outputCol=features_col, handleInvalid=self.getHandleInvalid()
        )
        scored = self._classifier_model.transform(assembler.transform(dataset))
        to_label = IndexToString(
            inputCol=self._classifier_model.getPredictionCol(), outputCol=self.getPredictedLabelCol(),
            labels=self.getLabels(),
        )
        return to_label.transform(scored).drop(features_col)

    def copy(self, extra: dict | None = None) -> TrainedClassifierModel:
        """A copy sharing the fitted classifier model."""
        that = super().copy(extra)
        that._classifier_model = self._classifier_model
        return that

    def write(self) -> MLWriter:
        """Writer: params as JSON, the fitted classifier in ``path/classifier``."""
        return _TrainClassifierWriter(self)

    @classmethod
    def read(cls) -> MLReader:
        """Reader for :meth:`write`'s output."""
        return _TrainClassifierReader(cls)


class _TrainClassifierWriter(MLWriter):
    """Saves JSON params (DefaultParamsWriter's metadata) plus the nested classifier or fitted model."""

    def __init__(self, instance: TrainClassifier | TrainedClassifierModel) -> None:
        super().__init__()
        self.instance = instance

    def saveImpl(self, path: str) -> None:
        instance = self.instance
        nested = instance.getModel() if isinstance(instance, TrainClassifier) else instance.classifierModel
        params = {p.name: v for p, v in instance._paramMap.items() if p.name != "model"}
        DefaultParamsWriter.saveMetadata(
            instance, path, self.sparkSession, extraMetadata={"hasClassifier": nested is not None}, paramMap=params
        )
        if nested is not None:
            nested.save(os.path.join(path, _CLASSIFIER_DIR))


class _TrainClassifierReader(MLReader):
    """Loads what :class:`_TrainClassifierWriter` saved."""

    def __init__(self, cls: type) -> None:
        super().__init__()
        self.cls = cls

    def load(self, path: str) -> Any:
        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        instance = self.cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        if metadata.get("hasClassifier"):
            nested = DefaultParamsReader.loadParamsInstance(os.path.join(path, _CLASSIFIER_DIR), self.sparkSession)
            if isinstance(instance, TrainClassifier):
                instance.setModel(nested)
            else:
                instance.setClassifierModel(nested)
        return instance

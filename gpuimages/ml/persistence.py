"""Saving and loading :class:`~gpuimages.ml.ImageFeaturizer`: params as JSON, the batch function
cloudpickled beside them, the ONNX file referenced by path and SHA-256 (a warning on load when it changed).
"""

from __future__ import annotations

import hashlib
import logging
import os
from typing import Any

from pyspark.ml.util import DefaultParamsReader, DefaultParamsWriter

log = logging.getLogger(__name__)

_FUNCTION_DIR = "batchFunction"


def local_model_path(value: str) -> str:
    """``modelPath`` as a local filesystem path (``file:`` URIs accepted); ValueError for other schemes."""
    if value.startswith("file://"):
        return value[len("file://") :]
    if value.startswith("file:"):
        return value[len("file:") :]
    head = value.split("/", 1)[0]
    if head.endswith(":") and len(head) > 2:
        raise ValueError(
            f"modelPath: expected a local or shared-filesystem path readable by executors (onnxruntime opens "
            f"files), got {value!r}"
        )
    return value


def file_sha256(path: str) -> str:
    """SHA-256 of a file, hex."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class FeaturizerWriter(DefaultParamsWriter):
    """Saves an :class:`~gpuimages.ml.ImageFeaturizer`: metadata as JSON, the batch function as a cloudpickle blob."""

    def saveImpl(self, path: str) -> None:
        """Write ``path/metadata`` and, with a batch function, ``path/batchFunction`` (Parquet)."""
        from pyspark import cloudpickle

        fn = self.instance.getBatchFunction()
        extra: dict[str, Any] = {"hasBatchFunction": fn is not None}
        model_path = self.instance.getModelPath()
        if model_path is not None:
            try:
                extra["modelSha256"] = file_sha256(local_model_path(model_path))
            except (OSError, ValueError) as exc:
                log.warning("ImageFeaturizer.save: cannot read modelPath %r (%s); saving the path only",
                            model_path, exc)
        DefaultParamsWriter.saveMetadata(self.instance, path, self.sparkSession, extraMetadata=extra)
        if fn is not None:
            blob = bytearray(cloudpickle.dumps(fn))
            frame = self.sparkSession.createDataFrame([(blob,)], "payload binary")
            frame.coalesce(1).write.parquet(os.path.join(path, _FUNCTION_DIR))


class FeaturizerReader(DefaultParamsReader):
    """Loads what :class:`FeaturizerWriter` saved."""

    def load(self, path: str) -> Any:
        """Rebuild the featurizer, batch function included."""
        import pickle

        metadata = DefaultParamsReader.loadMetadata(path, self.sparkSession)
        instance = self.cls()
        instance._resetUid(metadata["uid"])
        DefaultParamsReader.getAndSetParams(instance, metadata)
        expected = metadata.get("modelSha256")
        if expected is not None:
            model_path = instance.getModelPath()
            try:
                found = file_sha256(local_model_path(model_path))  # type: ignore[arg-type]
            except (OSError, ValueError) as exc:
                log.warning("ImageFeaturizer.load: the model file %r is not readable here (%s)", model_path, exc)
            else:
                if found != expected:
                    log.warning("ImageFeaturizer.load: the model file %r changed since the stage was saved", model_path)
        if metadata.get("hasBatchFunction"):
            row = self.sparkSession.read.parquet(os.path.join(path, _FUNCTION_DIR)).first()
            instance._function = pickle.loads(bytes(row[0]))
        return instance

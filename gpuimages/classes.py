"""Class numbers for WebDataset ``.cls`` members: which label columns are written how, the class list, its file.

Driver side only. WebDataset readers parse ``.cls`` with ``int()`` (the ``webdataset`` package's default
decoders), so a label column of integers is written as it is, one of integral numbers as integers, and one
of text (class names, e.g. ``label_from_folder``'s folders) as the index of the name in the sorted list of
classes, torchvision's ``ImageFolder`` numbering. The list is written once beside the shards,
``_<prefix>-classes.json`` (a JSON array, index -> name; hidden from Spark's file sources as ``_SUCCESS``
is, so reading the folder back gives the images only).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gpuimages.task.stores import FsspecStore, LocalStore, open_store

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

    from gpuimages.sources.inputs import FileInputs

log = logging.getLogger(__name__)


def classes_file_name(prefix: str) -> str:
    """The class list's file name beside the shards of ``prefix``."""
    return f"_{prefix}-classes.json"


def label_kind(df: DataFrame, label_col: str) -> str:
    """How ``label_col`` becomes ``.cls`` (see :data:`gpuimages.task.steps.shards.LABEL_KINDS`); ``TypeError``
    for a column no ``.cls`` can hold."""
    from pyspark.sql.types import (
        BooleanType,
        ByteType,
        DecimalType,
        DoubleType,
        FloatType,
        IntegerType,
        LongType,
        ShortType,
        StringType,
    )

    kind = df.schema[label_col].dataType
    if isinstance(kind, (BooleanType, ByteType, ShortType, IntegerType, LongType)):
        return "int"
    if isinstance(kind, (FloatType, DoubleType, DecimalType)):
        return "number"
    if isinstance(kind, StringType):
        return "class"
    raise TypeError(
        f"label_col {label_col!r}: expected integers (class indices) or strings (class names, numbered in sorted "
        f"order), got {kind.simpleString()}: WebDataset readers parse .cls as an integer"
    )


def check_classes(classes: Any, kind: str | None) -> tuple[str, ...] | None:
    """Validate ``write_webdataset``'s ``classes``: distinct strings, for a string ``label_col`` only."""
    if classes is None:
        return None
    if kind != "class":
        raise ValueError("classes: expected None unless label_col holds strings (class names)")
    if isinstance(classes, str) or not isinstance(classes, (list, tuple)) or not all(
            isinstance(c, str) for c in classes):
        raise TypeError(f"classes: expected a list of class names (strings), got {classes!r}")
    if len(set(classes)) != len(classes):
        raise ValueError(f"classes: expected distinct names, got {list(classes)!r}")
    return tuple(classes)


def column_classes(df: DataFrame, label_col: str) -> tuple[str, ...]:
    """The sorted distinct non-null values of ``label_col`` (one Spark job over ``df``)."""
    from pyspark.sql import functions as F

    values = df.select(F.col(f"`{label_col}`")).where(F.col(f"`{label_col}`").isNotNull()).distinct().collect()
    return tuple(sorted(r[0] for r in values))


def folder_classes(inputs: FileInputs) -> tuple[str, ...]:
    """The sorted distinct folder labels of ``transcode_files``' listed files and archive members, without
    decoding anything: loose files' from the listing (a query that reads no file), archives' from their
    member names (each archive streamed once by a task)."""
    from pyspark.sql.types import StringType, StructField, StructType

    from gpuimages.sources.archives import archive_path_sql, folder_origin_sql
    from gpuimages.sources.columns import CONTENT_COL, ORIGIN_COL, REASON_COL, folder_sql, quoted
    from gpuimages.stage import run_stage, session_conf
    from gpuimages.task.spec import StageSpec
    from gpuimages.task.steps.labels import FolderLabels

    frame = inputs.frame
    origin = quoted(ORIGIN_COL)
    archive = archive_path_sql(origin) if inputs.archive_plan is not None and inputs.archive_plan.present \
        else "false"
    loose = frame.where(f"NOT ({archive}) AND {origin} IS NOT NULL").selectExpr(
        f"{folder_sql(folder_origin_sql(origin))} AS label")
    labels = {r[0] for r in loose.distinct().collect() if r[0] is not None}
    if inputs.archive_plan is not None and inputs.archive_plan.present:
        step = FolderLabels()
        spec = StageSpec(name="labels", device="cpu", input_col=CONTENT_COL, input_kind="bytes",
                         steps=(*inputs.steps(step, 64 << 20), step), columns=("label",),
                         origin_col=ORIGIN_COL, error_col=None, prior_error_col=REASON_COL)
        schema = StructType([StructField("label", StringType(), True)])
        found = run_stage(frame.where(archive), spec, schema, session_conf(frame.sparkSession), coalesce=False)
        labels |= {r[0] for r in found.distinct().collect() if r[0] is not None}
    return tuple(sorted(labels))


def write_classes(root: str, prefix: str, classes: Sequence[str], settings: dict[str, str] | None = None) -> str:
    """Write the class list (a JSON array, index -> name) beside the shards; returns its path. ``settings``:
    Spark's store settings (:func:`gpuimages.sources.stores.store_settings`)."""
    name = classes_file_name(prefix)
    data = (json.dumps(list(classes), ensure_ascii=False, indent=0) + "\n").encode("utf-8")
    store = open_store(root, settings)
    if isinstance(store, LocalStore):
        os.makedirs(store.root, exist_ok=True)
    path = store.join(name)
    store.put(path, data, replace=True)  # through a temporary file where the store has renames
    return store.uri(path) if isinstance(store, FsspecStore) else path

"""``write_webdataset``: rows of images as WebDataset shards (tar files) that GPU training loaders read.

Driver side only: validate the destination, columns and options, refuse a non-empty destination in
``mode="error"`` (remove the earlier shards of the same prefix in ``mode="overwrite"``), and run one
planned stage whose task encodes image structs where needed (:class:`gpuimages.task.steps.Encode`, the
encoders ``encode_images`` uses, on the GPU where assigned) and writes shards
(:class:`gpuimages.task.steps.WriteShards`). The report (one row per shard) is computed once, so the
shards are written once.

The img2dataset job, ``write_webdataset(transcode_files(...), ...)``, runs as one stage: the DataFrame
``transcode_files`` returns declares its plan (:class:`gpuimages.transcode.FileTranscode`), and writing it
adds the shard step to the transcode's own task, so the encoded bytes are written where they are made instead of
crossing to the JVM and into a second Python stage (which measured as costly as the writing itself).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
import os
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from gpuimages.classes import (
    check_classes,
    classes_file_name,
    column_classes,
    folder_classes,
    label_kind,
    write_classes,
)
from gpuimages.encoders import (
    DEFAULT_ENCODE_BATCH,
    DEFAULT_PNG_LEVEL,
    DEFAULT_QUALITY,
    make_encode_options,
    resolve_encode_device,
)
from gpuimages.options import check_num_partitions
from gpuimages.sources.stores import store_settings
from gpuimages.stage import run_stage, session_conf
from gpuimages.task.naming import spark_hidden
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps import Encode, WriteShards
from gpuimages.task.steps.shards import REPORT_FIELDS, TMP_PREFIX, ShardPlan
from gpuimages.task.stores import FsspecStore, folder_entries, open_store
from gpuimages.transcode import FileTranscode, planned_transcode
from gpuimages.uris import is_local, local_root_path
from gpuimages.write import check_column, check_path, pick_input

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)

#: Defaults: WebDataset's usual shard sizes (img2dataset writes 10,000 samples a shard).
DEFAULT_SHARD_SAMPLES = 10_000
DEFAULT_SHARD_BYTES = 1 << 30
#: Shard write modes: "error" refuses a non-empty destination, "overwrite" replaces the prefix's shards.
SHARD_MODES = ("error", "overwrite")


def _fusable(df: DataFrame, input_col: str, origin_col: str | None, error_col: str | None,
             wanted: Sequence[str]) -> FileTranscode | None:
    """The transcode ``df`` is the unchanged result of, when the shards can be written in its task."""
    plan = planned_transcode(df)
    if plan is None or input_col != "encoded" or origin_col not in (None, "origin"):
        return None
    if error_col not in (None, "error"):
        return None
    return plan if set(wanted) <= plan.result_columns else None


def _positive(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name}: expected a positive integer, got {value!r}")
    return value


def _check_prefix(prefix: object) -> str:
    if not isinstance(prefix, str) or not prefix or any(c in prefix for c in "/\\.*?[]\x00") or prefix.startswith("-"):
        raise ValueError(f"prefix: expected a file name prefix without dots, separators or glob characters, got "
                         f"{prefix!r}")
    if spark_hidden(prefix):
        raise ValueError(f"prefix: expected a prefix that does not start with '_' (Spark's file sources, and so "
                         f"read_images, skip such files), got {prefix!r}")
    return prefix


def _shards_in(root: str, prefix: str, settings: dict[str, str] | None = None) -> list[str]:
    """Paths of the shards named ``<prefix>-*.tar`` (and temporary shards) directly under ``root``."""
    patterns = (f"{prefix}-*.tar", f"{TMP_PREFIX}{prefix}-*.tmp")
    if is_local(root):
        folder = local_root_path(root)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return []
        return [os.path.join(folder, n) for n in names if any(fnmatch.fnmatchcase(n, p) for p in patterns)]
    store = FsspecStore(root, settings)  # a fresh listing: never a cached one
    try:
        listed = store.fs.ls(store.root, detail=False)
    except FileNotFoundError:
        return []
    return [p for p in listed
            if any(fnmatch.fnmatchcase(p.rsplit("/", 1)[-1], pat) for pat in patterns)]


def _remove(root: str, paths: Sequence[str], settings: dict[str, str] | None = None) -> None:
    if not paths:
        return
    if is_local(root):
        for path in paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    else:
        FsspecStore(root, settings).fs.rm(list(paths))


def _remove_classes(root: str, prefix: str, settings: dict[str, str] | None = None) -> None:
    """Remove the class list of ``prefix``'s earlier shards (``mode="overwrite"``)."""
    store = open_store(root, settings)
    path = store.join(classes_file_name(prefix))
    if store.exists(path):
        _remove(root, [path], settings)


def write_webdataset(
    df: DataFrame,
    path: str | os.PathLike,
    input_col: str | None = None,
    *,
    label_col: str | None = None,
    classes: Sequence[str] | None = None,
    text_col: str | None = None,
    json_cols: Sequence[str] | None = None,
    key_col: str | None = None,
    origin_col: str | None = None,
    error_col: str | None = "error",
    max_samples: int = DEFAULT_SHARD_SAMPLES,
    max_bytes: int = DEFAULT_SHARD_BYTES,
    prefix: str = "shard",
    mode: str = "error",
    format: str = "jpeg",  # noqa: A002 - the option's public name
    quality: int = DEFAULT_QUALITY,
    subsampling: str = "4:2:0",
    optimize: bool = False,
    compress_level: int = DEFAULT_PNG_LEVEL,
    device: str = "auto",
    encoder: str | None = None,
    batch_size: int = DEFAULT_ENCODE_BATCH,
    num_partitions: int | None = None,
    task_gpu_amount: float | None = None,
) -> DataFrame:
    """Write the rows of ``df`` as WebDataset shards under the folder ``path``; return one report row per shard.

    Each sample is ``<key>.jpg`` (or ``.png``, ...) with the image, and, where asked, ``<key>.cls`` with
    ``label_col``'s class as an integer in decimal (what WebDataset readers parse with ``int()``),
    ``<key>.txt`` with ``text_col``'s and ``<key>.json`` with the ``json_cols`` (an object of column name to
    value; dates as ISO text, binary as base64). The image is an image-struct column (encoded in the task as
    ``format``, with ``encode_images``' encoders: nvImageCodec on a GPU where assigned, Pillow otherwise) or
    a binary column of encoded bytes (``transcode_files``/``transcode_images``/``encode_images`` output, or
    ``binaryFile`` content) written as it is, its extension from its signature, once Pillow (the decoder of
    webdataset's ``decode("pil")`` and torchvision) has decoded it: bytes it cannot decode (a truncated
    JPEG that Spark's image source reads as valid) are not written, and the report says why.
    ``input_col`` defaults to the first of ``image``, ``encoded``, ``content``.

    Labels: integers and booleans are written as they are, floats and decimals when integral (another
    value is not written, with the reason). Strings are class names: ``.cls`` is the index of the name in
    ``classes`` (default: the sorted distinct values of ``label_col``, torchvision's ``ImageFolder``
    numbering; one Spark job over ``df``, or for ``transcode_files(label_from_folder=True)``'s ``label`` a
    listing that decodes nothing), the name goes into ``<key>.json`` under ``label_col``, and the list is
    written beside the shards as ``_<prefix>-classes.json`` (a JSON array, index -> name; hidden from
    Spark's file sources, as ``_SUCCESS`` is). A name not in ``classes`` is not written, with the reason.

    Shards hold at most ``max_samples`` samples and ``max_bytes`` bytes (a larger sample goes alone) and
    are named ``<prefix>-<partition:05d>-<index:05d>.tar``; a sample's key is ``<partition:05d>-<row:08d>``
    (unique, and the same when a task is retried) unless ``key_col`` names it (dots and separators
    replaced). Each shard is written to a temporary name (or, on object stores, a local file uploaded in
    one PUT) and renamed when complete, so readers never see part of a shard, and a retried task leaves
    no partial or duplicate shard. A row without an image (an invalid image, ``error_col``'s reason,
    null bytes) is counted in its shard's report row, not written.

    ``path`` is a local path, a FUSE mount (``/dbfs/...``, ``/Volumes/...``), a ``file:`` URI, or another
    URI written through fsspec where installed. ``mode``: "error" (default) refuses a folder that exists
    and is not empty; "overwrite" removes the shards named ``<prefix>-*.tar`` (and their class list)
    directly under it first. ``prefix`` may not start with ``_`` (Spark's file sources skip such files).

    Returns a DataFrame (already computed) with ``shard`` (the file; null for a partition whose rows
    all lacked an image), ``partition``, ``samples``, ``bytes``, ``skipped`` (rows without an image),
    ``status`` ("written", "failed" or "skipped") and ``reason``.

    Args:
        format, quality, subsampling, optimize, compress_level, device, encoder, batch_size: encoding of
            image structs, as in :func:`gpuimages.encode_images` (ignored for binary input).
        origin_col: binary input: the column naming each image in the report's reasons (default ``origin``
            then ``path``).
        num_partitions: repartition to this many write tasks; by default each partition of ``df`` is one
            task writing its own shards (``read_images`` and ``transcode_files`` give about one partition
            per core, or per few archives when reading archives: the upstream work is not squeezed into
            fewer tasks).
    """
    if df.isStreaming:
        raise ValueError(
            "df: expected a batch DataFrame, got a streaming one; in a stream, call write_webdataset on each "
            "micro-batch inside foreachBatch (with a prefix per batch)"
        )
    if mode not in SHARD_MODES:
        raise ValueError(f"mode: expected one of {', '.join(SHARD_MODES)}, got {mode!r}")
    settings = store_settings(df.sparkSession)
    root = check_path(path, settings)
    prefix = _check_prefix(prefix)
    max_samples = _positive("max_samples", max_samples)
    max_bytes = _positive("max_bytes", max_bytes)
    input_col, is_struct = pick_input(df, input_col)
    options = make_encode_options(
        format=format, quality=quality, subsampling=subsampling, optimize=optimize,
        compress_level=compress_level, device=device, encoder=encoder, batch_size=batch_size,
    )
    num_partitions = check_num_partitions(num_partitions)
    key_col = check_column(df, "key_col", key_col)
    label_col = check_column(df, "label_col", label_col)
    kind = None if label_col is None else label_kind(df, label_col)
    classes = check_classes(classes, kind)
    text_col = check_column(df, "text_col", text_col)
    if json_cols is None:
        json_cols = ()
    if isinstance(json_cols, str) or not isinstance(json_cols, (list, tuple)):
        raise TypeError(f"json_cols: expected a list of column names, got {json_cols!r}")
    json_cols = tuple(check_column(df, "json_cols", c) for c in json_cols)
    if origin_col is None and not is_struct:
        origin_col = next((c for c in ("origin", "path") if c in df.columns), None)
    origin_col = check_column(df, "origin_col", origin_col)
    error_col = error_col if error_col in df.columns and error_col != input_col else None

    if mode == "error":
        entries = folder_entries(root, settings)
        if entries:
            raise FileExistsError(
                f"path: expected a missing or empty folder with mode='error', got {root!r} holding {entries} "
                "entries (use mode='overwrite' to replace its shards)"
            )
    else:
        old = _shards_in(root, prefix, settings)
        log.info("gpuimages: write_webdataset removes %d earlier shard(s) under %s", len(old), root)
        _remove(root, old, settings)
        _remove_classes(root, prefix, settings)

    device = resolve_encode_device(options.device, options.encoder) if is_struct else "cpu"
    options = dataclasses.replace(options, device=device)
    source = None if is_struct else _fusable(
        df, input_col, origin_col, error_col, [c for c in (key_col, label_col, text_col, *json_cols) if c])
    label_from_origin = source is not None and source.inputs.label_from_folder
    if kind == "class" and classes is None:  # class names numbered in sorted order, as ImageFolder does
        by_folder = label_from_origin and label_col == "label"
        classes = folder_classes(source.inputs) if by_folder else column_classes(df, label_col)
        log.info("gpuimages: write_webdataset numbers %d class(es) of %r in sorted order", len(classes), label_col)
    plan = ShardPlan(
        root=root, max_samples=max_samples, max_bytes=max_bytes, prefix=prefix,
        extension=options.extension if is_struct else None, key_col=key_col, label_col=label_col,
        text_col=text_col, json_cols=json_cols, mtime=int(time.time()),
        label_from_origin=label_from_origin,
        stage_columns=() if source is None else source.inputs.stage_columns,
        label_kind=kind or "int", classes=classes or (),
        verify=not is_struct and source is None,  # bytes written as they are must decode as trainers decode them
        store_settings=settings,
    )
    from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType

    spark_types = {"string": StringType(), "int32": IntegerType(), "int64": LongType()}
    schema = StructType([StructField(n, spark_types[str(t)], True) for n, t in REPORT_FIELDS])
    steps = (Encode(options), WriteShards(plan, options.batch_size)) if is_struct else \
        (WriteShards(plan, options.batch_size),)
    columns = [c for c in (input_col, origin_col, key_col, label_col, text_col, *json_cols, error_col) if c]
    spec = StageSpec(
        name="shards",
        device=device,
        input_col=input_col,
        input_kind="struct" if is_struct else "bytes",
        steps=steps,
        columns=tuple(n for n, _ in REPORT_FIELDS),
        origin_col=None if is_struct else origin_col,
        error_col=None,
        prior_error_col=error_col,
        rows_per_batch=options.batch_size,
    )
    try:
        if source is not None:  # transcode_files' result: the shards are written in the transcode's own task
            log.info("gpuimages: write_webdataset writes the shards in the transcode's tasks")
            report = source.frame(WriteShards(plan, options.batch_size), schema, num_partitions=num_partitions,
                                  task_gpu_amount=task_gpu_amount)
        else:
            report = run_stage(
                df.select(*[f"`{c}`" for c in dict.fromkeys(columns)]), spec, schema, session_conf(df.sparkSession),
                num_partitions=num_partitions, task_gpu_amount=task_gpu_amount, coalesce=False,
            )
        # computed once: a local checkpoint is never recomputed (a lost block fails the query instead)
        report = report.localCheckpoint(eager=True)
        if kind == "class":
            where = write_classes(root, prefix, classes, settings)
            log.info("gpuimages: write_webdataset wrote the class list (index -> name) to %s", where)
    finally:
        _remove(root, [p for p in _shards_in(root, prefix, settings) if p.rsplit("/", 1)[-1].startswith(TMP_PREFIX)],
                settings)
    log.info("gpuimages: write_webdataset wrote under %s (the report has a row per shard)", root)
    return report


"""``write_images``: one image file per row, written by executors, with a report of what was written.

Driver side only: validate the destination, the columns and the options, refuse a non-empty destination
in ``mode="error"``, make the job id that the tasks' claims carry, and run one planned stage whose task
encodes image structs where needed and writes the files (:class:`gpuimages.task.steps.Encode`,
:class:`gpuimages.task.steps.Write`). The report is materialised once (the files are written exactly once)
and returned as a DataFrame; the job's claims folder is then removed.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import TYPE_CHECKING, Any

from gpuimages.encoders import (
    DEFAULT_ENCODE_BATCH,
    DEFAULT_PNG_LEVEL,
    DEFAULT_QUALITY,
    make_encode_options,
    resolve_encode_device,
)
from gpuimages.options import check_num_partitions
from gpuimages.schema import IMAGE_FIELDS
from gpuimages.sources.stores import store_settings
from gpuimages.stage import run_stage, session_conf
from gpuimages.task.claims import MODES, REPORT_FIELDS, WritePlan, new_job_id, remove_claims
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps import Encode, Write
from gpuimages.task.stores import FsspecStore, folder_entries
from gpuimages.uris import is_local, local_root_path, scheme_of

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

log = logging.getLogger(__name__)


def _is_image_struct(data_type) -> bool:
    from pyspark.sql.types import StructType

    return isinstance(data_type, StructType) and set(IMAGE_FIELDS) <= set(data_type.fieldNames())


def pick_input(df: DataFrame, input_col: str | None) -> tuple[str, bool]:
    """The column to write and whether it holds image structs (else encoded bytes)."""
    from pyspark.sql.types import BinaryType

    types = {f.name: f.dataType for f in df.schema.fields}
    if input_col is None:
        for name in ("image", "encoded", "content"):
            if name in types and (_is_image_struct(types[name]) or isinstance(types[name], BinaryType)):
                input_col = name
                break
        else:
            raise ValueError(
                "input_col: expected an image-struct or binary column (none named image, encoded or content in "
                f"{sorted(types)}), got None"
            )
    if input_col not in types:
        raise ValueError(f"input_col: expected one of the columns {sorted(types)}, got {input_col!r}")
    if _is_image_struct(types[input_col]):
        return input_col, True
    if isinstance(types[input_col], BinaryType):
        return input_col, False
    raise TypeError(
        f"input_col {input_col!r}: expected an image struct ({', '.join(IMAGE_FIELDS)}) or a binary column, "
        f"got {types[input_col].simpleString()}"
    )


def check_column(df: DataFrame, name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in df.columns:
        raise ValueError(f"{name}: expected one of the columns {sorted(df.columns)} or None, got {value!r}")
    return value


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_path(path: Any, settings: dict[str, str] | None = None) -> str:
    """Validate ``write_images``' ``path``: a folder path or URI that is, or can become, a folder.

    Raises ``TypeError`` for anything but ``str``/``os.PathLike`` and ``ValueError`` for an empty path or
    one that names an existing file, a broken link, or a folder that cannot be created because a parent
    is a file, and ``FileNotFoundError`` for a bucket that does not exist (buckets are never created) or a
    ``dbfs:/`` path on a machine without the Databricks FUSE mount. ``settings``: Spark's store settings
    (:func:`gpuimages.sources.stores.store_settings`). Returns the path as a string.
    """
    value = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(value, str):
        raise TypeError(f"path: expected a folder path or URI (str or os.PathLike), got {_describe(path)}")
    if not value.strip() or "\x00" in value:
        raise ValueError(f"path: expected a folder path or URI, got {value!r}")
    if scheme_of(value) == "dbfs":
        mount = local_root_path(value)
        mount = "/" + mount.lstrip("/").split("/", 1)[0]
        if not os.path.isdir(mount):
            raise FileNotFoundError(
                f"path: {value!r} is written through the Databricks FUSE mount {mount}, which this machine does not "
                "have (write to the store's own URI, e.g. s3a://..., instead)"
            )
    if not is_local(value):
        store = FsspecStore(value, settings)  # ImportError naming the package when fsspec or s3fs is missing
        try:
            store.check_bucket()
            is_file = store.fs.isfile(store.root)
        except FileNotFoundError:
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. no credentials on the driver: the executors may have them
            log.info("gpuimages: could not check %s on the driver (%s)", value, exc)
            return value
        if is_file:
            raise ValueError(f"path: expected a folder (missing or existing), got {value!r}, which is a file")
        return value
    local = local_root_path(value)
    if os.path.lexists(local):
        if not os.path.isdir(local):
            what = "a broken symbolic link" if os.path.islink(local) else "an existing file, not a folder"
            raise ValueError(f"path: expected a folder (missing or existing), got {value!r}, which is {what}")
        return value
    parent = os.path.dirname(os.path.abspath(local))
    while parent and not os.path.lexists(parent) and parent != os.path.dirname(parent):
        parent = os.path.dirname(parent)
    if os.path.lexists(parent) and not os.path.isdir(parent):
        raise ValueError(f"path: expected a folder that can be created, got {value!r}: {parent!r} is not a folder")
    return value


def check_destination(path: Any, mode: Any, settings: dict[str, str] | None = None) -> str:
    """Validate ``path`` (:func:`check_path`) and ``mode``; in ``mode="error"`` the folder must be missing or
    empty (``FileExistsError`` otherwise). The CLI runs the same check before starting Spark."""
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    root = check_path(path, settings)
    if mode == "error":
        entries = folder_entries(root, settings)
        if entries:
            raise FileExistsError(
                f"path: expected a missing or empty folder with mode='error', got {root!r} holding {entries} "
                "entries (use mode='overwrite' or mode='skip')"
            )
    return root


def write_images(
    df: DataFrame,
    path: str | os.PathLike,
    input_col: str | None = None,
    *,
    format: str = "jpeg",  # noqa: A002 - the option's public name
    quality: int = DEFAULT_QUALITY,
    subsampling: str = "4:2:0",
    optimize: bool = False,
    compress_level: int = DEFAULT_PNG_LEVEL,
    name_col: str | None = None,
    origin_col: str | None = None,
    partition_by: str | None = None,
    error_col: str | None = "error",
    mode: str = "error",
    device: str = "auto",
    encoder: str | None = None,
    batch_size: int = DEFAULT_ENCODE_BATCH,
    num_partitions: int | None = None,
    task_gpu_amount: float | None = None,
) -> DataFrame:
    """Write one image file per row of ``df`` under the folder ``path``; return a report of each row.

    The input is an image-struct column (encoded in the task as ``format``) or a binary column of
    encoded bytes (``encode_images`` / ``transcode_images`` output, or ``binaryFile`` content),
    written as they are with the extension their signature says. ``input_col`` defaults to the
    first of ``image``, ``encoded``, ``content`` present.

    A file is named after its origin's file name (``image.origin``, or ``origin_col`` for bytes,
    default ``origin`` then ``path``) with the format's extension, or after ``name_col``; a row
    without either gets ``part<partition>-<row>``. With ``partition_by`` (e.g. ``"label"``) files go
    into one sub-folder per value: the ImageFolder layout torchvision reads; null values go to
    ``~null``. A name or folder Spark's file sources would skip (a leading ``.`` or ``_``) gets a ``~``
    before it (``_0001`` -> ``~_0001.jpg``), so everything written reads back. A name longer than 255
    bytes is cut, with a hash of the whole name. Two rows wanting the same name both get a file,
    identical bytes or not: the later one is suffixed (``-1`` in the same task, a short hash across
    tasks).

    Each file is written by an executor to a temporary name in its folder and then linked or renamed to
    its name, so a retried task never leaves a half-written file. Every row claims its name in a hidden
    folder of this job (``<path>/.gpuimages-write-<job id>/``, removed when the job ends): a retried task
    recognises its own files, and a file not claimed by this job counts as existing before it, whatever
    its timestamp. A symbolic link inside ``path`` is never written through (the row fails with the
    reason; ``mode="skip"`` skips a link at the file's name). ``path`` is a local path, a FUSE mount
    (``/dbfs/...``, ``/Volumes/...``) or a ``file:`` URI; other URIs (``s3://``...) are written through
    fsspec where installed (an object PUT appears whole). See docs/writing.md for the policies.

    ``mode``: ``"error"`` (default) refuses a destination folder that exists and is not empty;
    ``"overwrite"`` replaces files this job did not write; ``"skip"`` keeps them and reports the row as
    skipped. Files of this job are never replaced.

    Returns a DataFrame (already computed; the files are written once) with ``origin``, ``path``
    (the file written), ``bytes``, ``status`` ("written", "skipped" or "failed") and ``reason``. An
    invalid or null image is a "failed" row with its reason (``error_col``'s when the input has
    one, e.g. ``read_images``' reason), never a failed task.

    Args:
        format, quality, subsampling, optimize, compress_level, device, encoder, batch_size: encoding of
            image structs, as in :func:`gpuimages.encode_images` (ignored for binary input).
        num_partitions: repartition to this many write tasks (default: about one per core or GPU slot).

    Raises:
        TypeError, ValueError: before any job runs, for a ``path`` that is not a string or path, is empty,
            or names an existing file ("path: expected ..., got ..."), and for bad options or columns.
        FileExistsError: ``mode="error"`` and ``path`` is a folder that is not empty.
    """
    if df.isStreaming:
        raise ValueError(
            "df: expected a batch DataFrame, got a streaming one; in a stream, call write_images on each "
            "micro-batch inside foreachBatch"
        )
    if mode not in MODES:
        raise ValueError(f"mode: expected one of {', '.join(MODES)}, got {mode!r}")
    settings = store_settings(df.sparkSession)
    root = check_path(path, settings)
    input_col, is_struct = pick_input(df, input_col)
    options = make_encode_options(
        format=format, quality=quality, subsampling=subsampling, optimize=optimize,
        compress_level=compress_level, device=device, encoder=encoder, batch_size=batch_size,
    )
    num_partitions = check_num_partitions(num_partitions)
    name_col = check_column(df, "name_col", name_col)
    partition_by = check_column(df, "partition_by", partition_by)
    if origin_col is None and not is_struct:
        origin_col = next((c for c in ("origin", "path") if c in df.columns), None)
    origin_col = check_column(df, "origin_col", origin_col)
    error_col = error_col if error_col in df.columns and error_col != input_col else None
    root = check_destination(root, mode, settings)

    device = resolve_encode_device(options.device, options.encoder) if is_struct else "cpu"
    options = dataclasses.replace(options, device=device)
    plan = WritePlan(
        root=root, input_col=input_col, input_is_struct=is_struct, origin_col=origin_col, name_col=name_col,
        partition_by=partition_by, mode=mode, extension=options.extension if is_struct else None,
        error_col=error_col, job_id=new_job_id(), store_settings=settings,
    )
    columns = list(dict.fromkeys(c for c in (input_col, origin_col, name_col, partition_by, error_col) if c))
    from pyspark.sql.types import LongType, StringType, StructField, StructType

    schema = StructType([
        StructField(name, LongType() if kind == "int64" else StringType(), True)
        for name, kind in ((n, str(t)) for n, t in REPORT_FIELDS)
    ])
    steps = (Encode(options), Write(plan, options.batch_size)) if is_struct else (Write(plan, options.batch_size),)
    spec = StageSpec(
        name="write",
        device=device,
        input_col=input_col,
        input_kind="struct" if is_struct else "bytes",
        steps=steps,
        columns=tuple(name for name, _ in REPORT_FIELDS),
        origin_col=None if is_struct else origin_col,
        error_col="reason",
        prior_error_col=error_col,
        rows_per_batch=options.batch_size,
    )
    try:
        report = run_stage(
            df.select(*[f"`{c}`" for c in columns]), spec, schema, session_conf(df.sparkSession),
            num_partitions=num_partitions, task_gpu_amount=task_gpu_amount,
        )
        # computed once: a local checkpoint is never recomputed (a lost block fails the query instead)
        report = report.localCheckpoint(eager=True)
    finally:
        remove_claims(root, plan.job_id, settings)
    if log.isEnabledFor(logging.INFO):  # a Spark job over the report: only for a log that shows it
        counts = {r["status"]: r["count"] for r in report.groupBy("status").count().collect()}
        log.info("gpuimages: write_images under %s: %s", root, counts)
    return report

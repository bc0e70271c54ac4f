"""``read_images``: list and sample files, read their bytes with ``binaryFile``, then decode them
through the same path as :func:`gpuimages.decode_images`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gpuimages import listing, planning
from gpuimages.decode import decode_frame
from gpuimages.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_PIXELS,
    check_bool,
    check_num_partitions,
    check_sample_ratio,
    check_seed,
    make_decode_options,
)
from gpuimages.schema import image_struct_type, invalid_image
from gpuimages.stage import session_conf
from gpuimages.tasks import DecodeLayout

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

#: Reason recorded for a listed file that the binary read returned no bytes for.
UNREAD_REASON = "no bytes read: the file is empty (0 bytes), unreadable, or vanished after listing"


def read_images(
    spark: SparkSession,
    path: str | os.PathLike | Sequence[str | os.PathLike],
    *,
    recursive: bool = False,
    num_partitions: int | None = None,
    drop_invalid: bool = False,
    sample_ratio: float = 1.0,
    seed: int = 0,
    device: str = "auto",
    resize: Any = None,
    center_crop: Any = None,
    label_from_folder: bool = False,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    apply_exif: bool = False,
    batch_size: int = DEFAULT_BATCH_SIZE,
    path_glob_filter: str | None = None,
    task_gpu_amount: float | None = None,
    hw_decoder_load: float = 0.65,
    strict: bool = False,
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES,
) -> DataFrame:
    """Read images into a DataFrame with Spark's image schema.

    Returns columns ``image`` (struct origin, height, width, nChannels, mode, data: BGR(A) bytes,
    OpenCV modes), ``error`` (why an image is invalid, null when it decoded) and, with
    ``label_from_folder``, ``label`` (the parent folder's name). Every listed file gets one row:
    files that cannot be decoded, are empty or cannot be read give Spark's invalid row (-1 sizes,
    empty data) with a reason, unless ``drop_invalid``.

    Args:
        spark: the session (classic or Spark Connect).
        path: a file, folder or glob, or a list of them, on any filesystem Spark reads.
        recursive: look into sub-folders (Spark's ``recursiveFileLookup``).
        num_partitions: partitions of the result; default planned from executor cores/GPUs.
        drop_invalid: drop files that could not be decoded.
        sample_ratio: keep this share of files, chosen by a seeded hash of the path;
            files not sampled are never read.
        seed: the sampling seed.
        device: "auto", "cpu" (Pillow) or "gpu" (DALI/nvJPEG).
        resize: ``(height, width)`` exact, or an int for the shorter side, applied while decoding.
        center_crop: ``(height, width)`` (or int) cut from the centre after resizing.
        label_from_folder: add a ``label`` column with the parent folder name.
        max_pixels: refuse images whose header claims more pixels.
        apply_exif: apply EXIF orientation (off by default, as Spark's image source).
        batch_size: images per decode batch and per Arrow batch.
        path_glob_filter: only files whose name matches this glob (Spark's ``pathGlobFilter``).
        task_gpu_amount: GPU share per decode task in the resource profile (device="gpu").
        hw_decoder_load: share of JPEGs for the GPU's hardware JPEG decoder.
        strict: a file whose data ends before the image does (a truncated JPEG or PNG) is an
            invalid row with the reason; by default it is decoded as far as its data goes, as
            Spark's image source does (files Spark refuses are invalid either way).
        max_batch_bytes: decoded pixel bytes per engine call and per Arrow batch returned, predicted
            from each file's header after resize/crop (default 128 MiB); an image larger than
            this is decoded alone. Bounds a worker's memory by bytes as ``batch_size`` does by count.
    """
    paths = listing.normalize_paths(path)
    options = make_decode_options(
        resize=resize,
        center_crop=center_crop,
        max_pixels=max_pixels,
        apply_exif=apply_exif,
        batch_size=batch_size,
        device=device,
        hw_decoder_load=hw_decoder_load,
        strict=strict,
        max_batch_bytes=max_batch_bytes,
    )
    recursive = check_bool("recursive", recursive)
    drop_invalid = check_bool("drop_invalid", drop_invalid)
    label_from_folder = check_bool("label_from_folder", label_from_folder)
    sample_ratio = check_sample_ratio(sample_ratio)
    seed = check_seed(seed)
    num_partitions = check_num_partitions(num_partitions)
    if path_glob_filter is not None and not isinstance(path_glob_filter, str):
        raise TypeError(f"path_glob_filter: expected a glob string or None, got {path_glob_filter!r}")

    found = listing.list_files(spark, paths, recursive=recursive, path_glob_filter=path_glob_filter)
    files = listing.sample_paths(found.files, sample_ratio, seed)
    log.info(
        "gpuimages: %d file(s) listed, %d sampled (ratio %g, seed %d)", len(found.files), len(files), sample_ratio, seed
    )

    frame = found.frame
    if len(files) < len(found.files):
        if not files:
            return _empty(spark, label_from_folder)
        frame = listing.binary_reader(spark, False, None).load([listing.load_path(f) for f in files])

    # A path-and-length pass (no content read) finds files the scan skips and sizes the plan;
    # coalesced so that it costs a task per core, not one per ~30 small files.
    conf = session_conf(spark)
    slots = planning.cpu_slots(conf) or planning.plan_partitions(None)
    present = frame.select("path", "length").coalesce(slots).collect()
    read_origins = {listing.to_origin(r["path"]) for r in present}
    total_bytes = sum(r["length"] for r in present)
    unread = [f for f in files if f not in read_origins]
    if unread:
        log.warning("gpuimages: %d listed file(s) returned no bytes (empty or unreadable)", len(unread))

    layout = DecodeLayout(
        "content", "path", "image", "error", ("path",), drop_invalid=drop_invalid, origin_is_hadoop_path=True
    )
    decoded = decode_frame(
        frame.select("path", "content"),
        options,
        layout,
        num_partitions=num_partitions,
        task_gpu_amount=task_gpu_amount,
        total_bytes=total_bytes,
        num_files=len(present),
        conf=conf,
    )
    result = _with_label(decoded, label_from_folder).drop("path")
    if unread and not drop_invalid:
        result = result.unionByName(_unread_rows(spark, unread, label_from_folder))
    return result


def _with_label(df: DataFrame, label_from_folder: bool) -> DataFrame:
    if not label_from_folder:
        return df
    from pyspark.sql import functions as F

    return df.withColumn("label", F.element_at(F.split(F.col("path"), "/"), -2))


def _result_schema(label_from_folder: bool):
    from pyspark.sql.types import StringType, StructField, StructType

    fields = [StructField("image", image_struct_type(), True), StructField("error", StringType(), True)]
    if label_from_folder:
        fields.append(StructField("label", StringType(), True))
    return StructType(fields)


def _unread_rows(spark: SparkSession, origins: list[str], label_from_folder: bool) -> DataFrame:
    rows = []
    for origin in origins:
        row: list = [invalid_image(origin), UNREAD_REASON]
        if label_from_folder:
            row.append(listing.folder_label(origin))
        rows.append(tuple(row))
    return spark.createDataFrame(rows, _result_schema(label_from_folder))


def _empty(spark: SparkSession, label_from_folder: bool) -> DataFrame:
    log.warning("gpuimages: sampling kept no file; returning an empty DataFrame")
    return spark.createDataFrame([], _result_schema(label_from_folder))

"""``read_images``: list and sample files, read their bytes with ``binaryFile``, then decode them
through the same path as :func:`gpuimages.decode_images`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gpuimages.decode import DecodeColumns, decode_frame
from gpuimages.options import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_DEVICE_BATCH_SIZE,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_PIXELS,
    check_bool,
    check_num_partitions,
    check_sample_ratio,
    check_seed,
    make_decode_options,
)
from gpuimages.sources.archives import archive_plan
from gpuimages.sources.columns import CONTENT_COL, ORIGIN_COL, REASON_COL
from gpuimages.sources.inputs import file_inputs
from gpuimages.sources.scan import normalize_paths
from gpuimages.sources.stores import store_settings
from gpuimages.stage import session_conf
from gpuimages.task.local_files import EMPTY_REASON

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession


log = logging.getLogger(__name__)

#: Reason recorded for a listed zero-byte file (the most common file the binary read returns no bytes
#: for); the others are in :mod:`gpuimages.task.local_files` (``PERMISSION_REASON``, ``COLON_REASON``, ...).
UNREAD_REASON = EMPTY_REASON


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
    device_batch_size: int = DEFAULT_DEVICE_BATCH_SIZE,
    archives: bool | str = True,
    webdataset: Any = False,
) -> DataFrame:
    """Read images into a DataFrame with Spark's image schema.

    Returns columns ``image`` (struct origin, height, width, nChannels, mode, data: BGR(A) bytes,
    OpenCV modes), ``error`` (why an image is invalid, null when it decoded), the partition columns
    of Spark's partition discovery (``root/cls=kittens/a.jpg`` -> ``cls``, typed as
    ``spark.read.format("image")`` types them) and, with ``label_from_folder``, ``label`` (the
    parent folder's name), in that order. Every listed (and sampled) file gets one row: files that
    cannot be decoded, are empty or cannot be read give Spark's invalid row (-1 sizes, empty data)
    with a reason, unless ``drop_invalid``. The driver holds no Python object per file; on Spark
    Connect, past the client's message limit, zero-byte and unreadable files get no row (logged).

    Args:
        spark: the session (classic or Spark Connect).
        path: a file, folder or glob, or a list of them, on any filesystem Spark reads.
        recursive: look into sub-folders (Spark's ``recursiveFileLookup``; partition inference off).
        num_partitions: partitions of the result; default planned from executor cores/GPUs, or
            the parallelism the session reports where the conf does not size the cluster.
        drop_invalid: drop files that could not be decoded.
        sample_ratio: keep this share of files, chosen by Spark's ``xxhash64`` of ``seed`` and the
            file's origin (the same sample on every session and run); files not sampled are never opened.
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
        device_batch_size: images per GPU decode (a DALI device batch); also bounded by ``max_batch_bytes``.
        archives: ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` files are read as folders: one row per image
            member, ``origin`` ``<archive URI>#<member path>``, streamed member by member in the task,
            sampled per member (see docs/training-data.md). True: opened by path in the tasks where the
            path is local (plain, ``file:``, ``dbfs:``), read through ``binaryFile`` otherwise; "path" or
            "content" force either; False: archives are files like any other.
        webdataset: add the WebDataset siblings of each image member (``key.cls``, ``key.txt``, ...) as
            columns after ``error``: True for ``cls`` (bigint), ``txt`` and ``json`` (strings), a list of
            extensions, or a mapping of extension to "long", "string" or "binary".
    """
    paths = normalize_paths(path)
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
        device_batch_size=device_batch_size,
    )
    recursive = check_bool("recursive", recursive)
    drop_invalid = check_bool("drop_invalid", drop_invalid)
    label_from_folder = check_bool("label_from_folder", label_from_folder)
    sample_ratio = check_sample_ratio(sample_ratio)
    seed = check_seed(seed)
    num_partitions = check_num_partitions(num_partitions)
    if path_glob_filter is not None and not isinstance(path_glob_filter, str):
        raise TypeError(f"path_glob_filter: expected a glob string or None, got {path_glob_filter!r}")

    conf = session_conf(spark)
    reading = archive_plan(archives, webdataset, paths, sample_ratio, seed,
                           store_settings(spark))  # archives: None when off
    inputs = file_inputs(
        spark, paths, recursive=recursive, path_glob_filter=path_glob_filter, sample_ratio=sample_ratio, seed=seed,
        keep_unread=not drop_invalid, label_from_folder=label_from_folder, conf=conf, archive_plan=reading,
    )
    layout = DecodeColumns(
        CONTENT_COL, ORIGIN_COL, "image", "error", inputs.passthrough, drop_invalid=drop_invalid,
        prior_error_col=REASON_COL,
    )
    decoded = decode_frame(
        inputs.frame,
        options,
        layout,
        num_partitions=num_partitions,
        task_gpu_amount=task_gpu_amount,
        total_bytes=inputs.total_bytes,
        num_files=inputs.num_files,
        conf=conf,
        before=inputs.steps,  # local files read in the task, archives streamed member by member
        keep_partitions=inputs.keeps_partitions,
    )
    return inputs.finish(decoded, ["image", "error"], origin="image.origin")

"""``read_images``: list and sample files, read their bytes with ``binaryFile``, then decode them
through the same path as :func:`gpuimages.decode_images`.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gpuimages import listing, planning
from gpuimages.archives import ArchiveReading, archive_reading, folder_origin
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
from gpuimages.sources.stores import store_settings
from gpuimages.stage import session_conf

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from gpuimages.task.steps import Step

log = logging.getLogger(__name__)

#: Reason recorded for a listed zero-byte file (the most common file the binary read returns no bytes
#: for); the others are in :mod:`gpuimages.listing` (``PERMISSION_REASON``, ``COLON_REASON``, ...).
UNREAD_REASON = listing.EMPTY_REASON


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
    reading = archive_reading(archives, webdataset, paths, sample_ratio, seed,
                              store_settings(spark))  # archives: None when off
    inputs = file_inputs(
        spark, paths, recursive=recursive, path_glob_filter=path_glob_filter, sample_ratio=sample_ratio, seed=seed,
        keep_unread=not drop_invalid, label_from_folder=label_from_folder, conf=conf, archives=reading,
    )
    layout = DecodeColumns(
        listing.CONTENT_COL, listing.ORIGIN_COL, "image", "error", inputs.passthrough, drop_invalid=drop_invalid,
        prior_error_col=listing.REASON_COL,
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
        unpack=inputs.unpack,  # archives: the step that streams their members
    )
    return inputs.finish(decoded, ["image", "error"], origin="image.origin")


@dataclass(frozen=True)
class FileInputs:
    """Listed (and sampled) files as the input of an in-task stage, one row per file.

    ``frame`` has the origin (:data:`gpuimages.listing.ORIGIN_COL`), the bytes
    (:data:`~gpuimages.listing.CONTENT_COL`, null for a file the scan returned no bytes for), the
    partition columns and the reason of such a file (:data:`~gpuimages.listing.REASON_COL`).
    ``passthrough`` are the columns a stage must carry for :meth:`finish`.
    """

    frame: DataFrame
    partition_columns: tuple[str, ...]
    label_from_folder: bool
    total_bytes: int | None
    num_files: int | None
    archives: ArchiveReading | None = None  # archives: how they are read (None: archives are files)

    @property
    def passthrough(self) -> tuple[str, ...]:
        """Columns of :attr:`frame` a stage passes through: the partition columns (under internal names,
        so that any folder name survives ``mapInArrow``), the WebDataset sibling columns, the unread reason."""
        return (*map(_partition_alias, range(len(self.partition_columns))), *self._archive_columns,
                listing.REASON_COL)

    @property
    def stage_columns(self) -> tuple[tuple[str, str], ...]:
        """``(partition column, the name a stage carries it under)`` pairs."""
        return tuple((p, _partition_alias(i)) for i, p in enumerate(self.partition_columns))

    @property
    def _archive_columns(self) -> tuple[str, ...]:
        return () if self.archives is None else self.archives.columns

    def unpack(self, bounds: Step, max_batch_bytes: int, keep_input: bool = False) -> Step | None:
        """archives: the task step that unpacks them before ``bounds`` (the decode), or None."""
        if self.archives is None:
            return None
        return self.archives.step(listing.CONTENT_COL, bounds, max_batch_bytes, path_col=listing.ORIGIN_COL,
                                  keep_input=keep_input)

    def finish(self, out: DataFrame, columns: Sequence[str], origin: str, error_col: str = "error") -> DataFrame:
        """The stage's ``columns``, then the partition columns and ``label`` (from the ``origin`` column);
        files the scan returned no bytes for get their reason."""
        from pyspark.sql import functions as F

        error = F.coalesce(F.col(listing.REASON_COL), F.col(error_col)).alias(error_col)
        selected = [error if c == error_col else F.col(listing.quoted(c)) for c in columns]
        selected += [F.col(c) for c in self._archive_columns]
        selected += [F.col(_partition_alias(i)).alias(p) for i, p in enumerate(self.partition_columns)]
        if self.label_from_folder:
            selected.append(listing.folder_column(folder_origin(F.col(origin))).alias("label"))
        return out.select(*selected)


def _partition_alias(index: int) -> str:
    return f"{listing.INTERNAL_PREFIX}part{index}"


def file_inputs(
    spark: SparkSession,
    paths: list[str],
    *,
    recursive: bool,
    path_glob_filter: str | None,
    sample_ratio: float,
    seed: int,
    keep_unread: bool,
    label_from_folder: bool,
    conf: dict[str, str | None],
    output_columns: Sequence[str] = ("image", "error"),
    archives: ArchiveReading | None = None,
) -> FileInputs:
    """List and sample ``paths`` (see :func:`gpuimages.listing.list_files`) into a stage's input.

    With ``keep_unread``, listed files the scan returns no bytes for (empty, unreadable, vanished)
    join the input with null content and their reason, each file exactly once (see
    :func:`gpuimages.listing.stage_input`), so they are planned with the rest (an explicit
    ``num_partitions`` stays exact) and get a row. ``output_columns`` are the stage's result columns,
    which partition folders may not be named like.
    """
    from pyspark.sql import functions as F

    found = listing.list_files(
        spark, paths, recursive=recursive, path_glob_filter=path_glob_filter,
        sample_ratio=sample_ratio if archives is None else 1.0, seed=seed, keep_listing=keep_unread,
    )
    if archives is not None:  # archives: loose files sampled by file, archives kept whole (members sampled in tasks)
        found = archives.sample_listing(found)
        archives = archives.probe(found)
        archives.check_names(("image", "error", "label", *found.partition_columns))
    parts = found.partition_columns
    check_partition_names(parts, [*output_columns, *(["label"] if label_from_folder else [])])
    log.info(
        "gpuimages: %s file(s) listed (%s bytes), sample ratio %g (seed %d), partition columns %s",
        found.num_files, found.total_bytes, sample_ratio, seed, list(parts),
    )
    slots = planning.cluster_slots(conf) or planning.DEFAULT_FALLBACK_SLOTS
    frame = listing.stage_input(found, keep_unread, slots, conf)
    if archives is not None:  # archives: not read by Spark where the tasks open them by path
        frame = archives.split(frame, slots)
    frame = frame.select(
        listing.ORIGIN_COL, listing.CONTENT_COL,
        *[F.col(listing.quoted(p)).alias(_partition_alias(i)) for i, p in enumerate(parts)], listing.REASON_COL,
    )
    if archives is not None:  # archives: null sibling columns, filled for members in the task
        frame = archives.with_columns(frame)
    return FileInputs(frame, parts, label_from_folder, found.planned_bytes(), found.planned_files(), archives)


def check_partition_names(parts: Sequence[str], taken: Sequence[str]) -> None:
    """Refuse partition columns named like an output column (or an internal one), ignoring case as
    Spark's column resolution does."""
    lowered = {t.lower() for t in taken}
    clash = sorted(p for p in parts if p.lower() in lowered or p.lower().startswith(listing.INTERNAL_PREFIX))
    if clash:
        raise ValueError(
            f"partition columns: expected names other than {sorted(taken)} (in any case), got partition "
            f"folder(s) named {clash}"
        )

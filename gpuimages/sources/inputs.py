"""A read's files as the input of an in-task stage: listed, sampled, one row per file, archives split.

:func:`file_inputs` is what ``read_images`` and ``transcode_files`` start from: the listing
(:mod:`gpuimages.sources.scan`), the rows of files the scan returns no bytes for
(:mod:`gpuimages.sources.unread`) and the archives' plan (:mod:`gpuimages.sources.archives`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpuimages import planning
from gpuimages.sources.archives import ARCHIVE_PARTITION_BYTES, ArchivePlan, folder_origin_sql
from gpuimages.sources.columns import (
    CONTENT_COL,
    INTERNAL_PREFIX,
    ORIGIN_COL,
    REASON_COL,
    folder_sql,
    partition_alias,
    quoted,
    to_partition_names,
)
from gpuimages.sources.scan import list_files
from gpuimages.sources.unread import stage_input
from gpuimages.task.steps.read_local import BINARY_MAX_LENGTH, ReadLocal, max_length_of

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

    from gpuimages.task.steps import Step

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FileInputs:
    """Listed (and sampled) files as the input of an in-task stage, one row per file.

    ``frame`` has the origin (:data:`gpuimages.ORIGIN_COL`), the bytes (:data:`~gpuimages.CONTENT_COL`:
    null for local files, which the task reads, and for files the scan returned no bytes for), the
    partition columns and the reason of a file known to give no bytes (:data:`~gpuimages.REASON_COL`).
    ``passthrough`` are the columns a stage must carry for :meth:`finish`.
    """

    frame: DataFrame
    partition_columns: tuple[str, ...]
    label_from_folder: bool
    total_bytes: int | None
    num_files: int | None
    archive_plan: ArchivePlan | None = None  # how archives are read (None: archives are files)
    reads_local: bool = False  # local files arrive as paths: the task reads them (ReadLocal)
    max_length: int = BINARY_MAX_LENGTH  # the largest file read (Spark's binaryFile.maxLength)

    @property
    def passthrough(self) -> tuple[str, ...]:
        """Columns of :attr:`frame` a stage passes through: the partition columns (under internal names,
        so that any folder name survives ``mapInArrow``), the WebDataset sibling columns, the unread reason."""
        return (*map(partition_alias, range(len(self.partition_columns))), *self._archive_columns,
                REASON_COL)

    @property
    def stage_columns(self) -> tuple[tuple[str, str], ...]:
        """``(partition column, the name a stage carries it under)`` pairs."""
        return tuple((p, partition_alias(i)) for i, p in enumerate(self.partition_columns))

    @property
    def _archive_columns(self) -> tuple[str, ...]:
        return () if self.archive_plan is None else self.archive_plan.columns

    @property
    def keeps_partitions(self) -> bool:
        """The frame's partitions are planned already (a few archives each): a stage keeps them."""
        return self.archive_plan is not None and self.archive_plan.present

    def steps(self, bounds: Step, max_batch_bytes: int, keep_input: bool = False) -> tuple[Step, ...]:
        """The task steps that bring the files to ``bounds`` (the decode): local files read from their path
        (:class:`~gpuimages.task.steps.read_local.ReadLocal`), archives unpacked into their members
        (:class:`~gpuimages.task.steps.unpack.Unpack`); each bounds its parts as ``bounds``' chunks are."""
        plan = self.archive_plan
        unpack = None if plan is None else plan.step(CONTENT_COL, bounds, max_batch_bytes, path_col=ORIGIN_COL,
                                                     keep_input=keep_input)
        if not self.reads_local:
            return () if unpack is None else (unpack,)
        read = ReadLocal(bounds=unpack or bounds, max_batch_bytes=max_batch_bytes, max_length=self.max_length,
                         skip_archives=unpack is not None and plan.by_path)
        return (read,) if unpack is None else (read, unpack)

    def finish(self, out: DataFrame, columns: Sequence[str], origin: str, error_col: str = "error") -> DataFrame:
        """The stage's ``columns``, then the partition columns and ``label`` (from ``origin``, a SQL column
        reference such as ``image.origin``); files the scan returned no bytes for get their reason."""
        error = f"coalesce({quoted(REASON_COL)}, {quoted(error_col)}) AS {quoted(error_col)}"
        selected = [error if c == error_col else quoted(c) for c in columns]
        selected += [quoted(c) for c in self._archive_columns]
        selected += [partition_alias(i) for i in range(len(self.partition_columns))]
        if self.label_from_folder:
            selected.append(f"{folder_sql(folder_origin_sql(origin))} AS label")
        return to_partition_names(out.selectExpr(*selected), self.partition_columns)


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
    archive_plan: ArchivePlan | None = None,
) -> FileInputs:
    """List and sample ``paths`` (see :func:`gpuimages.sources.scan.list_files`) into a stage's input.

    With ``keep_unread``, listed files the scan returns no bytes for (empty, unreadable, vanished)
    join the input with null content and their reason, each file exactly once (see
    :func:`gpuimages.sources.unread.stage_input`), so they are planned with the rest (an explicit
    ``num_partitions`` stays exact) and get a row. ``output_columns`` are the stage's result columns,
    which partition folders may not be named like.
    """

    slots = planning.cluster_slots(conf) or planning.DEFAULT_FALLBACK_SLOTS
    found = list_files(
        spark, paths, recursive=recursive, path_glob_filter=path_glob_filter,
        sample_ratio=sample_ratio if archive_plan is None else 1.0, seed=seed, keep_listing=keep_unread, slots=slots,
    )
    if archive_plan is not None:  # loose files sampled by file, archives kept whole (members sampled in tasks)
        found = archive_plan.sample_listing(found)
        archive_plan = archive_plan.probe(found)
        archive_plan.check_names(("image", "error", "label", *found.partition_columns))
    parts = found.partition_columns
    check_partition_names(parts, [*output_columns, *(["label"] if label_from_folder else [])])
    log.info(
        "gpuimages: %s file(s) listed (%s bytes), sample ratio %g (seed %d), partition columns %s",
        found.num_files, found.total_bytes, sample_ratio, seed, list(parts),
    )
    frame = stage_input(found, keep_unread, slots)
    if archive_plan is not None:  # archives are not read by Spark where the tasks open them by path
        frame = archive_plan.split(frame, slots, planning.byte_size(conf.get("spark.sql.files.maxPartitionBytes"),
                                                                   ARCHIVE_PARTITION_BYTES))
    frame = frame.selectExpr(
        quoted(ORIGIN_COL), quoted(CONTENT_COL), *map(partition_alias, range(len(parts))), quoted(REASON_COL),
    )
    if archive_plan is not None:  # null sibling columns, filled for members in the task
        frame = archive_plan.with_columns(frame)
    return FileInputs(frame, parts, label_from_folder, found.planned_bytes(), found.planned_files(), archive_plan,
                      reads_local=found.listed is not None and found.any_local, max_length=max_length_of(conf))


def check_partition_names(parts: Sequence[str], taken: Sequence[str]) -> None:
    """Refuse partition columns named like an output column (or an internal one), ignoring case as
    Spark's column resolution does."""
    lowered = {t.lower() for t in taken}
    clash = sorted(p for p in parts if p.lower() in lowered or p.lower().startswith(INTERNAL_PREFIX))
    if clash:
        raise ValueError(
            f"partition columns: expected names other than {sorted(taken)} (in any case), got partition "
            f"folder(s) named {clash}"
        )

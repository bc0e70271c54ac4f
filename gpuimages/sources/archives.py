"""Reading images inside archives: the driver's side (options, the listing's split, sampling, columns).

``read_images`` and ``transcode_files`` treat ``.tar``, ``.tar.gz``/``.tgz`` and ``.zip`` files as
folders of images (``archives=True``, the default). The listing stays Spark's: the driver splits the
``binaryFile`` scan in two by each file's name (a filter on ``_metadata.file_path``, which Spark
applies to its listing):

- loose files are read as before (``content``), and sampled by file;
- archives are read **without** their ``content`` column where the task can open them by path (a
  ``binaryFile`` scan that does not select ``content`` never opens the file), so each archive reaches
  its task as a path and is streamed there member by member (:class:`gpuimages.task.steps.unpack.Unpack`).
  Where the task cannot open the path, the scan reads the archive's bytes (the whole archive is then in
  the task's memory while it is unpacked). Archives are never dropped by file sampling: their members
  are sampled in the task by the same seeded rule.

``decode_images(archives=True)`` unpacks a column of archive bytes (a ``binaryFile`` read of ``*.tar``),
recognised by their signature. Only the DataFrame API is used, on classic and Spark Connect sessions.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from gpuimages.planning import plan_partitions
from gpuimages.sources.columns import CONTENT_COL, ORIGIN_COL, quoted, sample_sql, sql_regex
from gpuimages.task.archive_members import ARCHIVE_SUFFIXES, SIBLING_TYPES, Sibling
from gpuimages.task.steps.unpack import Unpack
from gpuimages.uris import LOCAL_SCHEMES, scheme_of

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

    from gpuimages.sources.scan import Listing
    from gpuimages.task.steps.base import Step

log = logging.getLogger(__name__)

#: ``webdataset=True``: the sibling members read and their columns' kinds (see :class:`Sibling`); also the
#: kind of such an extension named in a list (``webdataset=["cls", "seg.png"]``; others are binary).
DEFAULT_SIBLINGS = {"cls": "long", "txt": "string", "json": "string"}
#: Spark SQL type of each sibling kind.
SPARK_TYPES = {"string": "string", "long": "bigint", "binary": "binary"}
#: Bytes of archives per partition of a stage reading local archives (Spark's default ``maxPartitionBytes``).
ARCHIVE_PARTITION_BYTES = 128 << 20
_SUFFIX_ALTERNATIVES = "(?i)(" + "|".join(sql_regex(s) for s in ARCHIVE_SUFFIXES) + ")"
_COLUMN_UNSAFE = re.compile(r"[^A-Za-z0-9_]")


def archive_path_sql(path: str) -> str:
    """SQL: true where the path or URI (SQL ``path``) names an archive (by its ending, any case)."""
    return f"{path} RLIKE '{_SUFFIX_ALTERNATIVES}$'"


def sibling_columns(webdataset: Any) -> tuple[Sibling, ...]:
    """The WebDataset siblings asked for: ``False``/``None`` none; ``True`` ``cls`` (long), ``txt`` and
    ``json`` (strings); a list of extensions (``cls`` long, ``txt``/``json`` string, others binary); or a
    mapping of extension to kind ("string", "long" or "binary")."""
    if webdataset is None or webdataset is False:
        return ()
    if webdataset is True:
        kinds = dict(DEFAULT_SIBLINGS)
    elif isinstance(webdataset, Mapping):
        kinds = dict(webdataset)
    elif isinstance(webdataset, (list, tuple)) and not isinstance(webdataset, str):
        kinds = {ext: DEFAULT_SIBLINGS.get(str(ext).lower(), "binary") for ext in webdataset}
    else:
        raise TypeError(
            "webdataset: expected True/False, a list of extensions or a mapping of extension to kind, "
            f"got {webdataset!r}"
        )
    siblings = []
    for ext, kind in kinds.items():
        if not isinstance(ext, str) or not ext.strip(".") or "/" in ext:
            raise ValueError(f"webdataset: expected extensions such as 'cls' or 'seg.png', got {ext!r}")
        if kind not in SIBLING_TYPES:
            raise ValueError(f"webdataset: expected a kind among {sorted(SIBLING_TYPES)} for {ext!r}, got {kind!r}")
        ext = ext.strip(".").lower()
        siblings.append(Sibling(ext, _COLUMN_UNSAFE.sub("_", ext), kind))
    names = [s.column for s in siblings]
    if len(set(names)) != len(names):
        raise ValueError(f"webdataset: expected extensions that make distinct column names, got {names}")
    return tuple(siblings)


def check_archives(value: Any) -> bool | str:
    """Validate ``archives``: True (opened by path where local, else read by Spark), False, "path" or "content"."""
    if isinstance(value, bool) or value in ("path", "content"):
        return value
    raise ValueError(f"archives: expected True, False, 'path' or 'content', got {value!r}")


def opens_by_path(mode: bool | str, paths: Sequence[str], default_fs: str = "file:///") -> bool:
    """Whether the tasks open archives by path: ``"path"``, or ``True`` with every path local (plain
    paths on a local default filesystem, ``file:``, ``dbfs:`` through the Databricks FUSE mounts) or on an
    object store the tasks reach through fsspec (``s3a://``, ``gs://``, ``abfss://``, with its package
    installed), read there by ranges whatever the archive's size. Paths without a scheme are on
    ``default_fs`` (``fs.defaultFS``); on HDFS and other filesystems Spark's ``binaryFile`` reads them."""
    if mode == "path":
        return True
    if mode == "content":
        return False
    import importlib.util

    from gpuimages.task.filesystems import OBJECT_STORES, PACKAGES, PROTOCOLS

    default = scheme_of(default_fs) or "file"
    for p in paths:
        scheme = scheme_of(p) or default
        if scheme in LOCAL_SCHEMES:
            continue
        package = PACKAGES.get(PROTOCOLS.get(scheme, ""))
        if scheme in OBJECT_STORES and package and importlib.util.find_spec(package) is not None:
            continue
        if scheme in OBJECT_STORES:
            log.warning("gpuimages: archives on %s:// are read through Spark's binaryFile (whole, at most 2 GiB "
                        "each) as %s is not installed; install it to stream them by ranges", scheme, package)
        return False
    return True


@dataclass(frozen=True)
class ArchivePlan:
    """How a read treats archives (made on the driver by :func:`archive_plan`).

    ``present``: the listing holds archives (:meth:`probe`); without any, the read is the plain one
    (the sibling columns are still added, null).
    """

    by_path: bool
    siblings: tuple[Sibling, ...]
    sample_ratio: float
    seed: int
    present: bool = True
    store_settings: dict[str, str] | None = field(default=None, repr=False)  # Spark's, for the tasks' fsspec
    local_files: int = 0  # local archives the driver's walk saw (:meth:`probe`), and their bytes
    local_bytes: int = 0

    @property
    def columns(self) -> tuple[str, ...]:
        """The WebDataset sibling columns the read adds."""
        return tuple(s.column for s in self.siblings)

    def check_names(self, taken: Sequence[str]) -> None:
        """Refuse sibling columns named like other columns of the result."""
        clash = sorted(set(self.columns).intersection(taken))
        if clash:
            raise ValueError(
                f"webdataset: expected extensions whose columns are not already columns ({sorted(taken)}), "
                f"got {clash}"
            )

    def sample_listing(self, found: Listing) -> Listing:
        """Sample loose files by file as :func:`gpuimages.sources.scan.list_files` does; archives stay whole (the
        task samples their members by the same rule). ``found`` must be listed unsampled."""
        if self.sample_ratio >= 1.0:
            return found
        def kept(origin: str) -> str:
            return f"{archive_path_sql(origin)} OR {sample_sql(origin, self.sample_ratio, self.seed)}"

        frame = found.frame.filter(kept(quoted(ORIGIN_COL)))
        listed = found.listed
        if listed is not None:
            listed = listed.filter(kept("origin"))
        return replace(found, frame=frame, listed=listed, sample_ratio=self.sample_ratio)

    def probe(self, found: Listing) -> ArchivePlan:
        """This plan with ``present`` set: whether ``found`` lists an archive. Local trees: what the driver's
        walk of them counted (no Spark job). Elsewhere a query of the listing where there is one (a small job
        over the JVM-held listing on classic sessions, a local table on Spark Connect), else a scan of the
        archive names; no file is read either way."""
        if found.local_archives is not None:
            files, size = found.local_archives
            log.info("gpuimages: the local trees hold %d archive(s) (%d bytes)", files, size)
            return replace(self, present=files > 0, local_files=files, local_bytes=size)
        if found.listed is not None:
            empty = found.listed.filter(archive_path_sql("origin")).isEmpty()
        else:
            empty = found.frame.filter(archive_path_sql(quoted(ORIGIN_COL))).select(ORIGIN_COL).isEmpty()
        log.info("gpuimages: the listing holds %s", "no archive" if empty else "archives, read member by member")
        return replace(self, present=not empty)

    def split(self, frame: DataFrame, slots: int, partition_bytes: int = ARCHIVE_PARTITION_BYTES) -> DataFrame:
        """A stage's input (:func:`gpuimages.sources.unread.stage_input`) as loose files (coalesced to
        ``slots`` partitions as a decode stage is) and archives (with null content where the task opens them
        by path, so Spark never reads them) in partitions of a few archives each, so that the stage (which
        keeps these partitions) runs one task per few archives and Spark's scheduler spreads them over the
        cores. Local archives (read from the listing) are spread evenly, by ranges of their names (a small
        job samples the names), over as many partitions as Spark's scan would pack them in
        (``partition_bytes`` each, Spark's ``maxPartitionBytes``; at least one per slot); others stay in
        the partitions Spark's scan packs them in."""
        if not self.present:
            return frame
        from pyspark.sql import functions as F

        archive = archive_path_sql(quoted(ORIGIN_COL))
        loose = frame.filter(f"NOT ({archive})").coalesce(max(1, slots))
        archives = frame.filter(archive)
        if self.by_path:
            archives = archives.withColumn(CONTENT_COL, F.expr("CAST(NULL AS BINARY)"))
        if self.local_files:
            count = plan_partitions(slots, total_bytes=self.local_bytes, num_files=self.local_files,
                                    max_partition_bytes=max(1, partition_bytes))
            archives = archives.repartitionByRange(count, ORIGIN_COL)  # even: round-robin starts at random
        return loose.unionByName(archives)

    def with_columns(self, frame: DataFrame) -> DataFrame:
        """``frame`` with a null column per sibling (the task fills them for member rows)."""
        if not self.siblings:
            return frame
        return frame.selectExpr("*", *[f"CAST(NULL AS {SPARK_TYPES[s.kind]}) AS {quoted(s.column)}"
                                       for s in self.siblings])

    def step(self, input_col: str, bounds: Step, max_batch_bytes: int, *, path_col: str | None,
             keep_input: bool = False) -> Unpack | None:
        """The task's :class:`~gpuimages.task.steps.unpack.Unpack` step, feeding ``bounds`` (None when the
        listing holds no archive)."""
        if not self.present:
            return None
        return Unpack(
            input_col=input_col, bounds=bounds, max_batch_bytes=max_batch_bytes, path_col=path_col,
            keep_input=keep_input, sample_ratio=self.sample_ratio, seed=self.seed, siblings=self.siblings,
            store_settings=self.store_settings,
        )


def folder_origin_sql(origin: str) -> str:
    """SQL of a member's origin (SQL ``origin``) as if each archive were a folder named after it
    (``.../n01.tar#x.jpg`` -> ``.../n01/x.jpg``), so the folder a label comes from is the member's
    (``label_from_folder``)."""
    return f"regexp_replace({origin}, '{_SUFFIX_ALTERNATIVES}#', '/')"


def archive_plan(archives: Any, webdataset: Any, paths: Sequence[str], sample_ratio: float = 1.0,
                 seed: int = 0, settings: dict[str, str] | None = None) -> ArchivePlan | None:
    """The archive plan of a read of ``paths`` (None with ``archives=False``); options checked here.
    ``settings``: the session's store settings (:func:`gpuimages.sources.stores.store_settings`)."""
    mode = check_archives(archives)
    siblings = sibling_columns(webdataset)
    if mode is False:
        if siblings:
            raise ValueError("webdataset: expected archives to be read (archives=True) to read WebDataset siblings")
        return None
    settings = settings or {}
    by_path = opens_by_path(mode, paths, settings.get("fs.defaultFS") or "file:///")
    log.info("gpuimages: archives are %s", "opened by path in the tasks" if by_path else "read by Spark's binaryFile")
    return ArchivePlan(by_path, siblings, sample_ratio, seed, store_settings=settings)

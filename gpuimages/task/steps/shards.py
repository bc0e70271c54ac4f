"""Writing WebDataset shards: the rows of a partition as tar files of samples, one report row per shard.

Each sample is ``<key>.<jpg|png|...>`` (the encoded image) with, where asked, ``<key>.cls`` (an integer),
``<key>.txt`` (a text) and ``<key>.json`` (chosen columns), adjacent in the tar as WebDataset readers
(DALI's ``fn.readers.webdataset``, the ``webdataset`` package, torchdata) expect. A shard holds at most
``max_samples`` samples and ``max_bytes`` bytes (headers, data and the end-of-archive blocks; the file is
not padded to tar's 10 KiB records, which readers do not need); a larger sample goes alone.

Names and retries: shard ``s`` of partition ``p`` is ``<prefix>-<p:05d>-<s:05d>.tar`` and a sample's key
is ``<p:05d>-<row:08d>`` (its row in the partition) unless a key column names it, so a retried task
writes the same shards under the same names. A shard is written under a temporary name in the
destination (``.gpuimages-<name>-<random>.tmp``) and renamed when complete (on object stores, spooled
to an unnamed local file, which the system removes even when the task is killed, and uploaded in one
PUT or a multipart upload, which appears whole), so no reader ever sees part of a shard; at the end the task
removes the shards of its partition numbered past its own (left by an earlier attempt that cut
them differently), so a retried task leaves no duplicate.
"""

from __future__ import annotations

import datetime as dt
import decimal
import io
import json
import logging
import os
import re
import shutil
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

import pyarrow as pa

from gpuimages.task.archive_members import ARCHIVE_SUFFIXES
from gpuimages.task.device import TaskDevice, task_partition
from gpuimages.task.naming import clash_suffix, signature_extension
from gpuimages.task.steps.base import Step, Work
from gpuimages.task.steps.write import missing_bytes
from gpuimages.task.stores import FsspecStore
from gpuimages.task.trainer_check import decode_problem
from gpuimages.uris import is_local, local_root_path

log = logging.getLogger(__name__)

#: The report columns, one row per shard (and one per partition that only had rows without an image).
REPORT_FIELDS = (
    ("shard", pa.string()), ("partition", pa.int32()), ("samples", pa.int64()), ("bytes", pa.int64()),
    ("skipped", pa.int64()), ("status", pa.string()), ("reason", pa.string()),
)
#: Temporary shards are hidden files with this prefix in the destination.
TMP_PREFIX = ".gpuimages-"
#: Longest key kept from a key column (longer ones are cut and marked with a hash).
MAX_KEY = 80
_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_\-]+")
_TAR_BLOCK = 512
#: The end-of-archive blocks a shard ends with.
_TAR_END = 2 * _TAR_BLOCK
_COPY_BUFFER = 8 << 20


def shard_name(prefix: str, partition: int, index: int) -> str:
    """``<prefix>-<partition:05d>-<index:05d>.tar``."""
    return f"{prefix}-{partition:05d}-{index:05d}.tar"


def default_key(partition: int, row: int) -> str:
    """The key of a sample without a key column: its partition and row (unique, the same on a retry)."""
    return f"{partition:05d}-{row:08d}"


def safe_key(value: str) -> str:
    """A key column's value as a WebDataset key: no dots or separators (the key ends at the first dot)."""
    key = _KEY_UNSAFE.sub("_", value).strip("_") or "_"
    if len(key) > MAX_KEY:
        key = f"{key[: MAX_KEY - 9]}~{clash_suffix(value)}"
    return key


#: An archive's ending and the ``#`` before its member, in a member's origin.
_ARCHIVE_MEMBER = re.compile("(?i)(" + "|".join(re.escape(s) for s in ARCHIVE_SUFFIXES) + ")#")


def folder_of(origin: str) -> str | None:
    """The parent folder's name of an origin, decoded, as ``read_images``' ``label_from_folder`` takes it
    (an archive counts as a folder named after it: ``.../n01.tar#x.jpg`` is in ``n01``)."""
    parts = _ARCHIVE_MEMBER.sub("/", origin).split("/")
    return unquote(parts[-2]) if len(parts) >= 2 else None


#: How a label column becomes ``.cls``: "int" (integers, booleans: as they are), "number" (floats, decimals:
#: integral values as integers) or "class" (text: its index in :attr:`ShardPlan.classes`).
LABEL_KINDS = ("int", "number", "class")


def label_text(value: Any, kind: str = "int", classes: dict[str, int] | None = None) -> tuple[str | None, str | None]:
    """The text of a ``.cls`` member (an integer in decimal, as WebDataset readers parse it with ``int()``) and
    None, or None and the reason the row is not written."""
    if kind == "class":
        index = (classes or {}).get(str(value))
        if index is None:
            return None, f"label {value!r} is not among the classes"
        return str(index), None
    if isinstance(value, bool):
        return str(int(value)), None
    if isinstance(value, int):
        return str(value), None
    try:
        number = decimal.Decimal(str(value))
        integral = number.is_finite() and number == number.to_integral_value()
    except decimal.InvalidOperation:
        integral = False
    if not integral:
        return None, f"label {value!r} is not an integer (WebDataset readers read .cls with int())"
    return str(int(number)), None


def _json_value(value: Any) -> Any:
    if isinstance(value, (bytes, bytearray)):
        import base64

        return base64.b64encode(value).decode("ascii")
    if isinstance(value, (dt.date, dt.datetime, dt.time)):
        return value.isoformat()
    if isinstance(value, decimal.Decimal):
        return str(value)
    return str(value)


def _padded(size: int) -> int:
    return _TAR_BLOCK + (size + _TAR_BLOCK - 1) // _TAR_BLOCK * _TAR_BLOCK


@dataclass(frozen=True)
class ShardPlan:
    """What every shard-writing task needs to know (picklable, made on the driver).

    ``extension``: the image member's extension for image structs encoded in the task; None: from the
    bytes' signature. ``mtime``: the members' modification time (the job's start), the same on a retry.
    ``label_from_origin``: where the step follows a transcode in the same task, the value named
    ``label`` is the folder of each row's origin (as ``label_from_folder`` makes it; an archive counts as
    a folder named after it). ``label_kind`` (:data:`LABEL_KINDS`) and ``classes``: how a label becomes
    ``.cls``; with "class" the label's text also goes into ``.json`` under ``label_col``. ``verify``: bytes
    written as they are must decode with Pillow (:mod:`gpuimages.task.trainer_check`), else the row is
    not written. ``stage_columns``: ``(name, column)`` pairs for values the stage carries
    under another name (partition columns). Columns are looked up among the earlier steps' outputs
    (``origin``, ``height``, ``width``) first.
    """

    root: str
    max_samples: int
    max_bytes: int
    prefix: str = "shard"
    extension: str | None = None
    key_col: str | None = None
    label_col: str | None = None
    text_col: str | None = None
    json_cols: tuple[str, ...] = ()
    mtime: int = 0
    label_from_origin: bool = False
    stage_columns: tuple[tuple[str, str], ...] = ()
    label_kind: str = "int"
    classes: tuple[str, ...] = ()
    verify: bool = False
    # Spark's Hadoop store settings (gpuimages.sources.stores); keys and secrets: never in a repr or a log
    store_settings: dict[str, str] | None = field(default=None, repr=False)


class _Shard:
    """One shard being written: a tar stream into a temporary file, placed at its name when complete."""

    def __init__(self, plan: ShardPlan, store: Any, name: str) -> None:
        self.plan = plan
        self.store = store
        self.name = name
        self.samples = 0
        self.skipped = 0
        self.first_skip: str | None = None
        self.keys: set[str] = set()
        if store is None:
            folder = local_root_path(plan.root)
            self.tmp = os.path.join(folder, f"{TMP_PREFIX}{name}-{uuid.uuid4().hex[:12]}.tmp")
            self.final = os.path.join(folder, name)
        else:
            # spooled to an unnamed local file (O_TMPFILE where available): gone with the process, even killed
            self.tmp = None
            self.final = store.join(name)
        self.file = open(self.tmp, "wb") if self.tmp else tempfile.TemporaryFile()  # noqa: SIM115 - closed in commit/abort
        self.tar = tarfile.open(fileobj=self.file, mode="w", format=tarfile.USTAR_FORMAT)

    @property
    def size(self) -> int:
        """Bytes written so far (the end-of-archive blocks not included)."""
        return self.tar.offset

    def add(self, members: list[tuple[str, bytes]]) -> None:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mtime = self.plan.mtime
            info.mode = 0o644
            self.tar.addfile(info, io.BytesIO(data))
        self.samples += 1

    def commit(self) -> int:
        """End the tar and place it at its name; returns its size in bytes."""
        self.file.write(tarfile.NUL * _TAR_END)  # the end blocks, without tarfile's padding to a record
        self.tar.closed = True
        self.file.flush()
        size = self.file.tell()
        if self.store is None:
            self.file.close()
            os.replace(self.tmp, self.final)
            return size
        try:
            self.file.seek(0)
            with self.store.fs.open(self.final, "wb") as out:  # one PUT, or a multipart upload when large
                shutil.copyfileobj(self.file, out, _COPY_BUFFER)
        finally:
            self.file.close()
        return size

    def abort(self) -> None:
        """Drop the temporary file (nothing is placed)."""
        try:
            self.tar.close()
        except Exception:  # noqa: BLE001, S110 - the file goes anyway
            pass
        self.file.close()
        if self.tmp is None:
            return
        try:
            os.unlink(self.tmp)
        except FileNotFoundError:
            pass


@dataclass
class WriteShards(Step):
    """``work.blobs`` as WebDataset samples in shards under ``plan.root``; one report row per shard, at the
    end of the partition (see the module docstring)."""

    plan: ShardPlan
    rows_per_chunk: int = 64
    name = "shards"
    _store: Any = field(default=None, init=False, repr=False, compare=False)
    _partition: int = field(default=0, init=False, repr=False, compare=False)
    _row: int = field(default=0, init=False, repr=False, compare=False)
    _index: int = field(default=0, init=False, repr=False, compare=False)
    _shard: Any = field(default=None, init=False, repr=False, compare=False)
    _report: list = field(default_factory=list, init=False, repr=False, compare=False)
    _pending_skips: list = field(default_factory=lambda: [0, None], init=False, repr=False, compare=False)
    _classes: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def open(self, device: TaskDevice) -> None:
        self._partition = task_partition()
        self._classes = {name: index for index, name in enumerate(self.plan.classes)}
        self._store = None if is_local(self.plan.root) else FsspecStore(self.plan.root, self.plan.store_settings)
        if self._store is None:
            os.makedirs(local_root_path(self.plan.root), exist_ok=True)
        else:
            self._store.folder(None)
        self._row = self._index = 0
        self._shard = None
        self._report = []
        self._pending_skips = [0, None]

    def chunk_rows(self, rows_per_batch: int) -> int:
        return self.rows_per_chunk

    def _column(self, work: Work, name: str | None) -> list[Any]:
        if name is None:
            return [None] * len(work)
        if name in work.columns:
            return work.columns[name].to_pylist()
        if name == "label" and self.plan.label_from_origin:
            return [None if o is None else folder_of(o) for o in work.origins.to_pylist()]
        return work.chunk.column(dict(self.plan.stage_columns).get(name, name)).to_pylist()

    def run(self, work: Work) -> None:
        work.note([missing_bytes(b) for b in work.blobs])
        work.emit = False
        plan = self.plan
        keys = self._column(work, plan.key_col)
        labels = self._column(work, plan.label_col)
        texts = self._column(work, plan.text_col)
        extras = {c: self._column(work, c) for c in plan.json_cols}
        origins = work.origins.to_pylist()
        classes = self._classes
        for i, blob in enumerate(work.blobs):
            row = self._row
            self._row += 1
            ext = None if work.reasons[i] is not None else (plan.extension or signature_extension(blob))
            if work.reasons[i] is None and ext is None:
                work.reasons[i] = "not an image: the bytes start with no known image signature"
            cls = None
            if work.reasons[i] is None and labels[i] is not None:
                cls, work.reasons[i] = label_text(labels[i], plan.label_kind, classes)
            if work.reasons[i] is None and plan.verify:
                work.reasons[i] = decode_problem(blob)
            if work.reasons[i] is not None:
                self._skip(origins[i], work.reasons[i])
                continue
            key = default_key(self._partition, row) if keys[i] is None else safe_key(str(keys[i]))
            members = [(ext, blob)]
            if cls is not None:
                members.append(("cls", cls.encode("utf-8")))
            if texts[i] is not None:
                members.append(("txt", str(texts[i]).encode("utf-8")))
            record = {c: extras[c][i] for c in plan.json_cols}
            if plan.label_kind == "class" and labels[i] is not None:
                record[plan.label_col] = labels[i]  # the class's name beside its index
            if record:
                members.append(("json", json.dumps(record, default=_json_value, ensure_ascii=False).encode("utf-8")))
            self._add(key, members)
        work.blobs = None

    def _skip(self, origin: str | None, reason: str) -> None:
        """Count a row without an image against the open shard (or the next one)."""
        if self._shard is None:
            self._pending_skips[0] += 1
            self._pending_skips[1] = self._pending_skips[1] or f"{origin}: {reason}"
        else:
            self._shard.skipped += 1
            self._shard.first_skip = self._shard.first_skip or f"{origin}: {reason}"

    def _add(self, key: str, members: list[tuple[str, bytes]]) -> None:
        plan = self.plan
        size = sum(_padded(len(data)) for _, data in members)
        shard = self._shard
        if shard is not None and (shard.samples >= plan.max_samples or shard.size + size + _TAR_END > plan.max_bytes):
            self._close_shard()
            shard = None
        if shard is None:
            shard = self._open_shard()
            if shard is None:
                return
        if key in shard.keys:  # the same key twice in a shard (a key column with duplicates): keep both apart
            n = 1
            while f"{key}-{n}" in shard.keys:
                n += 1
            key = f"{key}-{n}"
        shard.keys.add(key)
        try:
            shard.add([(f"{key}.{ext}", data) for ext, data in members])
        except Exception as exc:  # noqa: BLE001 - a shard that cannot be written is reported, not a failed task
            self._fail_shard(exc)

    def _open_shard(self) -> _Shard | None:
        name = shard_name(self.plan.prefix, self._partition, self._index)
        self._index += 1
        try:
            shard = _Shard(self.plan, self._store, name)
        except Exception as exc:  # noqa: BLE001
            self._report.append(self._row_of(name, 1, None, 0, None, "failed", f"{type(exc).__name__}: {exc}"))
            return None
        shard.skipped, shard.first_skip = self._pending_skips
        self._pending_skips = [0, None]
        self._shard = shard
        return shard

    def _row_of(self, name: str | None, samples: int, size: int | None, skipped: int, skip: str | None,
                status: str, reason: str | None = None) -> dict[str, Any]:
        path = None
        if name is not None:
            path = os.path.join(local_root_path(self.plan.root), name) if self._store is None else \
                self._store.uri(self._store.join(name))
        if reason is None and skipped:
            reason = f"{skipped} row(s) without an image not written, e.g. {skip}"
        return {"shard": path, "partition": self._partition, "samples": samples, "bytes": size,
                "skipped": skipped, "status": status, "reason": reason}

    def _fail_shard(self, exc: BaseException) -> None:
        shard, self._shard = self._shard, None
        shard.abort()
        self._report.append(self._row_of(shard.name, shard.samples, None, shard.skipped, shard.first_skip, "failed",
                                         f"{type(exc).__name__}: {exc}"))

    def _close_shard(self) -> None:
        shard = self._shard
        if shard is None:
            return
        try:
            size = shard.commit()
        except Exception as exc:  # noqa: BLE001
            self._fail_shard(exc)
            return
        self._shard = None
        self._report.append(self._row_of(shard.name, shard.samples, size, shard.skipped, shard.first_skip,
                                         "written"))

    def _remove_stale(self) -> None:
        """Remove shards of this partition numbered past this attempt's (an earlier attempt's leftovers)."""
        index = self._index
        while True:
            name = shard_name(self.plan.prefix, self._partition, index)
            try:
                if self._store is None:
                    path = os.path.join(local_root_path(self.plan.root), name)
                    if not os.path.lexists(path):
                        return
                    os.unlink(path)
                else:
                    path = self._store.join(name)
                    if not self._store.fs.exists(path):
                        return
                    self._store.fs.rm(path)
            except Exception as exc:  # noqa: BLE001 - reported in the task log only
                log.warning("gpuimages: could not remove the stale shard %s: %s", name, exc)
                return
            log.info("gpuimages: removed %s, left by an earlier attempt of partition %d", name, self._partition)
            index += 1

    def finish(self) -> Iterator[pa.RecordBatch]:
        self._close_shard()
        self._remove_stale()
        if self._pending_skips[0]:
            self._report.append(self._row_of(None, 0, None, self._pending_skips[0], self._pending_skips[1],
                                             "skipped"))
        rows = self._report
        self._report = []
        written = sum(r["samples"] for r in rows if r["status"] == "written")
        log.info("gpuimages: shard task %d wrote %d sample(s) in %d shard(s) under %s", self._partition, written,
                 sum(r["status"] == "written" for r in rows), self.plan.root)
        if rows:
            yield pa.RecordBatch.from_arrays(
                [pa.array([r[n] for r in rows], type=t) for n, t in REPORT_FIELDS], names=[n for n, _ in REPORT_FIELDS]
            )

    def close(self) -> None:
        if self._shard is not None:  # the task stopped part-way: nothing half-written stays
            self._shard.abort()
            self._shard = None


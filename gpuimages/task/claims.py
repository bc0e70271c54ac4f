"""Writing one file per row from a task: claims, the existing-file policy, exactly once across retries.

How a row becomes a file (see docs/writing.md, "Policies"):

- **Names**: the origin's (or ``name_col``'s) file name with separators and control characters replaced,
  cut to :data:`~gpuimages.task.naming.NAME_MAX` bytes when longer (with a hash of the whole name, so it
  stays unique); see :mod:`gpuimages.task.naming`.
- **Claims**: every ``write_images`` call has a job id (made on the driver, in :class:`WritePlan`). A
  row claims its target name in the job's hidden claims folder (``<dest>/.gpuimages-write-<job id>/``)
  before touching the name; a claim is created without overwriting, records the row that holds it
  (partition, row, origin, name), what it decided (``write``, ``skip``, ``taken``) and, on local
  filesystems, the identity (device, inode) of the file it placed. So exactly one row of a job owns a
  name; a retried task finds its own claims and files (no duplicates), and a file not claimed by this
  job existed before it (or was written by someone else) whatever its timestamps say. The driver
  removes the folder when the job ends.
- **Atomic and link-safe**: through the stores of :mod:`gpuimages.task.stores`.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from gpuimages.task.naming import claim_key, clash_suffix, file_stem, fit_name, safe_part, signature_extension
from gpuimages.task.stores import Entry, FsspecStore, LocalStore, RefusedPath, open_store

log = logging.getLogger(__name__)

MODES = ("error", "overwrite", "skip")
#: Prefix of the job's hidden claims folder under the destination.
CLAIMS_PREFIX = ".gpuimages-write-"
#: Candidate names a row tries (its name, then deterministic suffixes) before it fails.
MAX_CANDIDATES = 4

REPORT_FIELDS = (("origin", pa.string()), ("path", pa.string()), ("bytes", pa.int64()),
                 ("status", pa.string()), ("reason", pa.string()))


def new_job_id() -> str:
    """A fresh job id (32 hex characters) for :attr:`WritePlan.job_id`."""
    return uuid.uuid4().hex


@dataclass(frozen=True)
class WritePlan:
    """What every write task needs to know (picklable)."""

    root: str  # destination folder (local path or URI)
    input_col: str
    input_is_struct: bool  # image structs (encoded in the task) or encoded bytes (written as they are)
    origin_col: str | None  # binary input: column naming the source file
    name_col: str | None  # a column with the file name to use instead of the origin's
    partition_by: str | None  # a column whose value names a sub-folder (ImageFolder layout)
    mode: str  # "error", "overwrite" or "skip"
    extension: str | None  # "jpg"/"png" for image structs; None: from the bytes' signature
    error_col: str | None = None  # a reason column of the input (e.g. read_images' "error"), kept in the report
    job_id: str = field(default_factory=new_job_id)  # names this job's claims folder (made on the driver)
    # Spark's Hadoop store settings (gpuimages.sources.stores); keys and secrets: never in a repr or a log
    store_settings: dict[str, str] | None = field(default=None, repr=False)

    @property
    def claims_folder(self) -> str:
        """Name of this job's hidden claims folder under :attr:`root`."""
        return claims_folder_name(self.job_id)


def claims_folder_name(job_id: str) -> str:
    """The hidden folder (under the destination) that holds a job's claims."""
    return f"{CLAIMS_PREFIX}{job_id}"


@dataclass(frozen=True)
class Claim:
    """A row's claim on a target name in this job: who holds it, what it decided, the file it placed."""

    owner: str
    state: str  # "write": its file is (to be) at the name; "skip": a file not of this job was kept; "taken": moved on
    ident: str | None = None

    def text(self) -> str:
        return f"{self.owner}\n{self.state}\n{self.ident or ''}\n"

    @staticmethod
    def parse(text: str) -> Claim | None:
        lines = text.split("\n")
        if len(lines) < 3 or not lines[0] or lines[1] not in ("write", "skip", "taken"):
            return None
        return Claim(lines[0], lines[1], lines[2] or None)


def remove_claims(root: str, job_id: str, settings: dict[str, str] | None = None) -> None:
    """Remove a job's claims folder (driver, when the job has ended); never raises."""
    try:
        open_store(root, settings).remove_tree(claims_folder_name(job_id))
    except Exception as exc:  # noqa: BLE001 - cleaning up must not hide the job's own outcome
        log.warning("gpuimages: could not remove the claims folder of write job %s under %s: %s", job_id, root, exc)


#: A row's outcome: (path, status, reason); None from a candidate name means "taken: try the next".
Outcome = tuple[str, str, str | None]


class Writer:
    """Claims names and writes one file per row, following the plan's existing-file policy.

    See the module docstring for the claim protocol. Within a task, rows wanting the same name get
    ``-1``, ``-2``, ... in row order; across tasks the row that finds the name claimed by another row
    of the job tries ``<stem>-<hash>`` (a hash of its partition, row, origin and name).
    """

    def __init__(self, plan: WritePlan, store: LocalStore | FsspecStore, partition: int) -> None:
        self.plan = plan
        self.store = store
        self.partition = partition
        self.used: dict[str, int] = {}  # names taken in this task -> rows that asked for them

    def close(self) -> None:
        """Release the store's handles."""
        self.store.close()

    def _claims_folder(self) -> Any:
        return self.store.folder(self.plan.claims_folder, pin=True)

    def _base(self, row: int, origin: str | None, name: str | None, folder: str | None) -> str:
        stem, _ = file_stem(origin, name)
        stem = stem or f"part{self.partition:05d}-{row:06d}"
        key = stem if folder is None else f"{folder}/{stem}"
        seen = self.used.get(key, 0)
        self.used[key] = seen + 1
        if seen:  # the same name twice in one task: -1, -2, ... in row order (stable on a retry)
            stem = f"{stem}-{seen}"
            key = stem if folder is None else f"{folder}/{stem}"
            self.used[key] = self.used.get(key, 0) + 1
        return stem

    def write(self, row: int, origin: str | None, name: str | None, folder: str | None,
              data: bytes) -> Outcome:
        """Write one file; returns (path, status, reason)."""
        _, own_ext = file_stem(origin, name)
        ext = self.plan.extension or signature_extension(data) or own_ext or "bin"
        folder = None if folder is None else fit_name(safe_part(folder))
        stem = self._base(row, origin, name, folder)
        owner = clash_suffix(f"{origin}\0{name}\0{self.partition}\0{row}") + f":{self.partition}:{row}"
        first = fit_name(stem, ext)
        try:
            handle = self.store.folder(folder)
        except RefusedPath as exc:
            return self.store.path(folder, first), "failed", str(exc)
        candidates = [first] + [
            fit_name(f"{stem}-{clash_suffix(f'{owner}' + ('' if i == 1 else f'#{i}'))}", ext)
            for i in range(1, MAX_CANDIDATES)
        ]
        for fname in candidates:
            outcome = self._attempt(handle, folder, fname, owner, data)
            if outcome is not None:
                return outcome
        return self.store.path(folder, first), "failed", (
            f"could not find a free file name: {', '.join(candidates)} are taken by other rows or files"
        )

    # -- one candidate name
    def _read_claim(self, key: str) -> Claim | None:
        text = self.store.read_text(self._claims_folder(), key)
        if text is None:
            return None
        parsed = Claim.parse(text)
        return parsed if parsed is not None else Claim("?", "taken")  # half-written by another row: not ours

    def _set_claim(self, key: str, claim: Claim, held: bool) -> bool:
        if held:
            self.store.replace_text(self._claims_folder(), key, claim.text())
            return True
        return self.store.create_text(self._claims_folder(), key, claim.text())

    def _attempt(self, handle: Any, folder: str | None, fname: str, owner: str, data: bytes) -> Outcome | None:
        rel = fname if folder is None else f"{folder}/{fname}"
        key = claim_key(rel)
        path = self.store.path(folder, fname)
        if getattr(self.store, "conditional", False):
            outcome = self._create_first(handle, key, fname, path, owner, data)
            if outcome is not _RETRY:
                return outcome  # type: ignore[return-value]
        for _ in range(4):  # a claim another attempt created in between, or a name that changed: look again
            claim = self._read_claim(key)
            if claim is not None and claim.owner != owner:
                return None  # another row of this job holds the name
            held = claim is not None
            entry = self.store.entry(handle, fname)
            if claim is not None:  # an earlier (or twin) attempt of this task claimed it: recognise what it did
                if claim.state == "taken":
                    return None
                if claim.state == "write" and entry.kind == "file" and claim.ident in (None, entry.ident):
                    return path, "written", None
                if claim.state == "skip" and entry.kind != "missing":
                    return path, "skipped", _skip_reason(entry)
            if entry.kind == "missing":
                outcome = self._place_new(handle, key, fname, path, owner, data, held)
            else:
                outcome = self._existing(handle, key, fname, path, owner, entry, data, held)
            if outcome is not _RETRY:
                return outcome  # type: ignore[return-value]
        return path, "failed", f"{path} kept changing while this row claimed it"

    def _create_first(self, handle: Any, key: str, fname: str, path: str, owner: str, data: bytes
                      ) -> Outcome | None | object:
        """Where names are created atomically (a conditional PUT): create the claim, then the file, one request
        each; anything already there (an earlier attempt's claim, a file) goes the careful way."""
        if not self._set_claim(key, Claim(owner, "write"), held=False):
            return _RETRY  # a claim exists: read it (another row's, or an earlier attempt of this one)
        staged = self.store.stage(handle, data)
        if self.store.place(staged, fname, replace=self.plan.mode == "overwrite"):
            return path, "written", None
        entry = self.store.entry(handle, fname)
        if entry.kind == "missing":
            return _RETRY
        return self._existing(handle, key, fname, path, owner, entry, data, held=True)

    def _place_new(self, handle: Any, key: str, fname: str, path: str, owner: str, data: bytes,
                   held: bool) -> Outcome | None | object:
        """Claim a missing name and link the row's file to it."""
        staged = self.store.stage(handle, data)
        try:
            if not self._set_claim(key, Claim(owner, "write", staged.ident), held):
                return _RETRY
            if self.store.place(staged, fname, replace=False):
                return path, "written", None
        finally:
            self.store.discard(staged)
        # the name appeared after the check: a twin attempt of this task, or a writer outside this job
        entry = self.store.entry(handle, fname)
        claim = self._read_claim(key)
        if (claim is not None and claim.owner == owner and claim.state == "write" and entry.kind == "file"
                and claim.ident is not None and claim.ident == entry.ident):
            return path, "written", None
        if entry.kind == "missing":
            return _RETRY
        return self._existing(handle, key, fname, path, owner, entry, data, held=True)

    def _existing(self, handle: Any, key: str, fname: str, path: str, owner: str, entry: Entry, data: bytes,
                  held: bool) -> Outcome | None | object:
        """``fname`` holds an entry this job did not write: apply the existing-file policy."""
        mode = self.plan.mode
        if mode == "skip":
            if not self._set_claim(key, Claim(owner, "skip"), held):
                return _RETRY
            return path, "skipped", _skip_reason(entry)
        if entry.kind != "file":
            return path, "failed", (
                f"{path} is a {entry.kind}: gpuimages does not write through or replace links and other "
                "entries in the destination"
            )
        if mode == "overwrite":
            staged = self.store.stage(handle, data)
            try:
                if not self._set_claim(key, Claim(owner, "write", staged.ident), held):
                    return _RETRY
                self.store.place(staged, fname, replace=True)
            finally:
                self.store.discard(staged)
            return path, "written", None
        # mode "error": a file from outside this job holds the name; keep it, move on to a suffixed name
        if not self._set_claim(key, Claim(owner, "taken"), held):
            return _RETRY
        return None


_RETRY = object()


def _skip_reason(entry: Entry) -> str:
    if entry.kind == "file":
        return "a file with this name exists and was not written by this write (mode='skip')"
    return f"a {entry.kind} with this name exists in the destination (mode='skip')"

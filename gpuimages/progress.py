"""One progress bar for a command's Spark work, fed by Spark's status tracker.

The command's jobs run under a job group of their own, so only their tasks are counted (another thread's
jobs on a shared session are not). On a terminal the bar is redrawn in place on stderr (tasks done, rate,
time left); elsewhere (a log file, a pipe) a plain line is printed every ``interval`` seconds while the
count changes. Totals grow as Spark plans further stages, so the time left is an estimate. A session that
draws Spark's own console progress bar (``spark.ui.showConsoleProgress``, on in PySpark's shell) keeps it,
and this bar stays off.
"""

from __future__ import annotations

import itertools
import sys
import threading
import time
from dataclasses import dataclass
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

_GROUPS = itertools.count(1)
_JOB_PROPERTIES = ("spark.jobGroup.id", "spark.job.description", "spark.job.interruptOnCancel")


@dataclass(frozen=True)
class Count:
    """Tasks done of the tasks planned so far, after ``seconds``."""

    done: int
    total: int
    seconds: float

    @property
    def rate(self) -> float:
        """Tasks per second so far."""
        return self.done / self.seconds if self.seconds > 0 else 0.0

    @property
    def left(self) -> float | None:
        """Seconds left at the rate so far (None before the first task is done)."""
        return (self.total - self.done) / self.rate if self.rate > 0 else None


def clock(seconds: float | None) -> str:
    """``seconds`` as ``m:ss`` (``h:mm:ss`` from an hour), ``?`` when unknown."""
    if seconds is None:
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def bar(count: Count, width: int = 24) -> str:
    """The terminal line: ``[#####-----] 12/40 tasks  3.1/s  0:09 left``."""
    filled = width * count.done // count.total if count.total else 0
    return (f"[{'#' * filled}{'-' * (width - filled)}] {count.done}/{count.total} tasks  "
            f"{count.rate:.1f}/s  {clock(count.left)} left")


def line(count: Count) -> str:
    """The plain line for logs: ``progress: 12/40 tasks (30%), 3.1 tasks/s, about 0:09 left`` (the time left
    once a task is done)."""
    share = 100 * count.done // count.total if count.total else 0
    left = "" if count.left is None else f", about {clock(count.left)} left"
    return f"progress: {count.done}/{count.total} tasks ({share}%), {count.rate:.1f} tasks/s{left}"


class Progress:
    """Shows the progress of the Spark jobs run inside the ``with`` block on ``stream`` (stderr)."""

    def __init__(self, spark: SparkSession, description: str = "gpuimages", *, interval: float | None = None,
                 stream: IO[str] | None = None, terminal: bool | None = None) -> None:
        self._sc = spark.sparkContext
        self._tracker = self._sc.statusTracker()
        self._stream = stream if stream is not None else sys.stderr
        self._terminal = terminal if terminal is not None else bool(getattr(self._stream, "isatty", lambda: False)())
        self._interval = interval if interval is not None else (0.2 if self._terminal else 10.0)
        self._description = description
        self._group = f"gpuimages-{id(self):x}-{next(_GROUPS)}"
        self._saved: dict[str, str | None] = {}
        self._stages: dict[int, tuple[int, int]] = {}
        self._start = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpuimages-progress", daemon=True)
        self._shown = ""
        # a session that draws Spark's own console bar keeps it alone: one bar, not two interleaved
        self.enabled = self._sc.getConf().get("spark.ui.showConsoleProgress", "false").lower() != "true"

    def count(self) -> Count:
        """Tasks of this block's jobs: done and planned so far (stages a finished job skipped are left out)."""
        stages: dict[int, tuple[int, int]] = {}
        for job_id in self._tracker.getJobIdsForGroup(self._group):
            job = self._tracker.getJobInfo(job_id)
            if job is None:
                continue
            finished = str(job.status) == "SUCCEEDED"
            for stage_id in job.stageIds:
                stage = self._tracker.getStageInfo(stage_id)
                if stage is not None and not (finished and stage.numCompletedTasks < stage.numTasks):
                    stages[stage_id] = (stage.numCompletedTasks, stage.numTasks)
        self._stages.update(stages)  # a stage's figures stay once the tracker forgets it
        done = sum(d for d, _ in self._stages.values())
        total = sum(t for _, t in self._stages.values())
        return Count(done, total, time.monotonic() - self._start)

    def _show(self, final: bool = False, succeeded: bool = False) -> None:
        count = self.count()
        if not count.total:
            return
        if succeeded:  # every job of the block is done: the tracker may not have heard of the last tasks yet
            count = Count(count.total, count.total, count.seconds)
        text = f"{self._description} {bar(count)}" if self._terminal else line(count)
        if text == self._shown and not (final and self._terminal):  # a terminal's bar ends its line at the end
            return
        self._shown = text
        if self._terminal:
            self._stream.write(f"\r{text}\033[K" + ("\n" if final else ""))
        else:
            self._stream.write(text + "\n")
        self._stream.flush()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._show()
            except Exception:  # noqa: BLE001 - the session went away: the command reports it, not the bar
                return

    def __enter__(self) -> Progress:
        self._saved = {key: self._sc.getLocalProperty(key) for key in _JOB_PROPERTIES}
        self._sc.setJobGroup(self._group, self._description)
        self._start = time.monotonic()
        if self.enabled:
            self._thread.start()
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        self._stop.set()
        if self.enabled:
            self._thread.join()
        try:
            if self.enabled and (self._shown or self._terminal):
                self._show(final=True, succeeded=exc_type is None)
        finally:
            for key, value in self._saved.items():
                self._sc.setLocalProperty(key, value)

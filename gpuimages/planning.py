"""Partition planning: how many decode tasks, from executor slots and bytes. Pure functions.

With many small files Spark's default file partitioning (each file charged
``spark.sql.files.openCostInBytes`` = 4 MB) makes one task per ~30 files, and the fixed cost of
each Python task then dominates decode time. The decode stage is therefore coalesced to about one
partition per concurrent task slot, split further only when the bytes per partition get large.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Mapping

#: Above this many encoded bytes per partition, add partitions (retries and stragglers stay cheap).
DEFAULT_MAX_PARTITION_BYTES = 1 << 30
#: Slots assumed when neither the conf nor the session tells the cluster's size.
DEFAULT_FALLBACK_SLOTS = 8
#: The pseudo conf key under which :func:`gpuimages.stage.session_conf` records the parallelism the
#: session reports (``SparkContext.defaultParallelism``, or the splits of ``spark.range`` on Connect):
#: the cores of the executors registered now, which is what Spark's own scans split by.
REPORTED_PARALLELISM_KEY = "gpuimages.reportedParallelism"

_LOCAL = re.compile(r"^local(?:\[(\*|\d+)(?:,\s*\d+)?\])?$")
_LOCAL_CLUSTER = re.compile(r"^local-cluster\[\s*(\d+)\s*,\s*(\d+)\s*,\s*\d+\s*\]$")


def _int(conf: Mapping[str, str | None], key: str) -> int | None:
    value = conf.get(key)
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def _float(conf: Mapping[str, str | None], key: str) -> float | None:
    value = conf.get(key)
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def cpu_slots(conf: Mapping[str, str | None], local_cores: int | None = None) -> int | None:
    """Concurrent CPU tasks the cluster can run, from Spark conf; None when it cannot be told.

    ``local[N]`` -> N, ``local[*]`` -> the driver's cores, ``local-cluster[N,C,M]`` -> N*C,
    otherwise ``spark.executor.instances * spark.executor.cores / spark.task.cpus``,
    or ``spark.default.parallelism`` when set.
    """
    master = (conf.get("spark.master") or "").strip()
    task_cpus = _int(conf, "spark.task.cpus") or 1
    m = _LOCAL.match(master)
    if m:
        n = m.group(1)
        if n is None:
            return 1
        return (local_cores or os.cpu_count() or 1) if n == "*" else max(1, int(n))
    m = _LOCAL_CLUSTER.match(master)
    if m:
        return max(1, int(m.group(1)) * int(m.group(2)) // task_cpus)
    instances = _int(conf, "spark.executor.instances")
    cores = _int(conf, "spark.executor.cores")
    if instances and cores:
        return max(1, instances * cores // task_cpus)
    return _int(conf, "spark.default.parallelism")


def executor_cores(conf: Mapping[str, str | None]) -> int | None:
    """Cores per executor: ``spark.executor.cores``, or ``C`` of ``local-cluster[N,C,M]``; None if unknown."""
    m = _LOCAL_CLUSTER.match((conf.get("spark.master") or "").strip())
    if m:
        return int(m.group(2))
    return _int(conf, "spark.executor.cores")


def cluster_slots(conf: Mapping[str, str | None], local_cores: int | None = None) -> int | None:
    """Concurrent CPU tasks from everything the session knows; None only when nothing tells.

    First the explicit sizes of :func:`cpu_slots`; then, for clusters whose size is not in the conf
    (dynamic allocation, Databricks autoscaling, Spark Connect), what Spark's own file scans split
    by: ``spark.sql.files.minPartitionNum``, ``spark.sql.leafNodeDefaultParallelism``, and the
    parallelism the session reports (:data:`REPORTED_PARALLELISM_KEY`, the registered cores).
    """
    explicit = cpu_slots(conf, local_cores)
    if explicit:
        return explicit
    for key in ("spark.sql.files.minPartitionNum", "spark.sql.leafNodeDefaultParallelism", REPORTED_PARALLELISM_KEY):
        value = _int(conf, key)
        if value and value > 0:
            return value
    return None


_RANGE_SPLITS = re.compile(r"\bRange \(.*?splits=(?:Some\()?(\d+)")


def parse_range_splits(plan: str) -> int | None:
    """The ``splits=N`` of a ``Range`` node in a physical plan's text (``spark.range(1).explain()``).

    ``spark.range`` without a partition count splits by ``spark.sql.leafNodeDefaultParallelism``,
    else ``SparkContext.defaultParallelism``: a way to read the latter over Spark Connect.
    """
    m = _RANGE_SPLITS.search(plan)
    return int(m.group(1)) if m else None


def gpu_slots(conf: Mapping[str, str | None]) -> int | None:
    """Concurrent GPU tasks: executors x GPUs per executor / GPU amount per task; None if unknown."""
    per_executor = _float(conf, "spark.executor.resource.gpu.amount")
    per_task = _float(conf, "spark.task.resource.gpu.amount") or 1.0
    if not per_executor:
        return None
    master = (conf.get("spark.master") or "").strip()
    m = _LOCAL_CLUSTER.match(master)
    executors = int(m.group(1)) if m else _int(conf, "spark.executor.instances")
    if not executors:
        return None
    return max(1, int(executors * per_executor / per_task))


def plan_partitions(
    slots: int | None,
    *,
    total_bytes: int | None = None,
    num_files: int | None = None,
    max_partition_bytes: int = DEFAULT_MAX_PARTITION_BYTES,
    fallback: int = DEFAULT_FALLBACK_SLOTS,
) -> int:
    """Number of decode partitions: one per slot, more when a partition would exceed the byte cap.

    Never more partitions than files; at least 1. ``fallback`` is the slot count to assume when
    the cluster's size is unknown.
    """
    n = slots if slots and slots > 0 else fallback
    if total_bytes:
        n = max(n, math.ceil(total_bytes / max_partition_bytes))
    if num_files is not None:
        n = min(n, max(num_files, 1))
    return max(1, n)


_BYTE_STRING = re.compile(r"^\s*(\d+)\s*([kmgtp]?)b?\s*$", re.IGNORECASE)


def byte_size(text: str | None, default: int) -> int:
    """A Spark byte-size conf value (``134217728b``, ``128m``, ``1``: bytes without a unit), else ``default``."""
    m = _BYTE_STRING.match(text or "")
    if not m:
        return default
    return int(m.group(1)) * 1024 ** " kmgtp".index(m.group(2).lower() or " ")

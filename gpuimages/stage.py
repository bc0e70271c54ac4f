"""One planned ``mapInArrow`` stage: partitions from slots and bytes, a GPU resource profile where it
applies, and the task runtime (:func:`gpuimages.task.runner.run_partition`) with the stage's spec.
Every in-task capability (decoding, transforming, featurising, encoding, writing) and every ML
stage goes through :func:`run_stage`, so they plan and schedule alike.

Driver side only, and only the DataFrame API, so it runs on classic and Spark Connect sessions.
"""

from __future__ import annotations

import functools
import logging
from typing import TYPE_CHECKING

from gpuimages import planning, scheduling
from gpuimages.sources.file_index import is_connect_session
from gpuimages.task.runner import run_partition
from gpuimages.task.spec import StageSpec

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.types import StructType

log = logging.getLogger(__name__)

_CONF_KEYS = (
    "spark.master",
    "spark.executor.instances",
    "spark.executor.cores",
    "spark.task.cpus",
    "spark.default.parallelism",
    "spark.executor.resource.gpu.amount",
    "spark.task.resource.gpu.amount",
    "spark.dynamicAllocation.enabled",
    "spark.sql.files.minPartitionNum",
    "spark.sql.leafNodeDefaultParallelism",
    "spark.sql.sources.binaryFile.maxLength",  # ReadLocal's limit (max_length_of)
    "spark.sql.files.maxPartitionBytes",
)


def session_conf(spark: SparkSession) -> dict[str, str | None]:
    """The Spark conf entries the planners read (works on Connect sessions).

    Where the conf does not size the cluster (dynamic allocation, autoscaling, Connect), the
    parallelism the session reports is added under :data:`gpuimages.planning.REPORTED_PARALLELISM_KEY`.
    """
    conf = {}
    for key in _CONF_KEYS:
        try:
            conf[key] = spark.conf.get(key, None)
        except Exception:  # noqa: BLE001 - some servers refuse reading static confs
            conf[key] = None
    conf[planning.REPORTED_PARALLELISM_KEY] = None
    if planning.cpu_slots(conf) is None:
        reported = reported_parallelism(spark)
        conf[planning.REPORTED_PARALLELISM_KEY] = None if reported is None else str(reported)
    return conf


def reported_parallelism(spark: SparkSession) -> int | None:
    """``SparkContext.defaultParallelism`` (classic), or the splits of ``spark.range(1)`` (Connect)."""
    try:
        if is_connect_session(spark):
            return planning.parse_range_splits(spark.range(1)._explain_string(mode="simple"))
        return int(spark.sparkContext.defaultParallelism)
    except Exception as exc:  # noqa: BLE001 - a hint only
        log.info("gpuimages: the session's parallelism could not be read (%s)", exc)
        return None


def run_stage(
    df: DataFrame,
    spec: StageSpec,
    schema: StructType,
    conf: dict[str, str | None],
    *,
    num_partitions: int | None = None,
    task_gpu_amount: float | None = None,
    total_bytes: int | None = None,
    num_files: int | None = None,
    coalesce: bool = True,
) -> DataFrame:
    """Plan the partitions of ``df`` and run ``spec`` over them: the one way into ``mapInArrow``.

    ``num_partitions`` repartitions explicitly; otherwise a batch DataFrame is coalesced (no
    shuffle) to about one partition per slot (GPU slots for ``device="gpu"``), more above the
    byte cap (see :mod:`gpuimages.planning`), unless ``coalesce`` is False: ``df``'s partitions were
    planned already (archives: one task per few archives, which Spark's scheduler balances). For
    ``spec.device == "gpu"`` the stage gets the resource profile
    :func:`gpuimages.scheduling.decide_profile` allows. Every task runs
    :func:`gpuimages.task.runner.run_partition` with ``spec``.
    """
    import pyspark

    device, name = spec.device, spec.name
    if num_partitions is not None:
        df = df.repartition(num_partitions)
    elif not df.isStreaming and coalesce:
        slots = (planning.gpu_slots(conf) if device == "gpu" else None) or planning.cluster_slots(conf)
        n = planning.plan_partitions(slots, total_bytes=total_bytes, num_files=num_files)
        log.info("gpuimages: %s stage planned as %d partition(s) (%s slots)", name, n, slots)
        df = df.coalesce(n)

    decision = scheduling.decide_profile(
        device, conf, pyspark_version=pyspark.__version__, task_gpu_amount=task_gpu_amount
    )
    func = functools.partial(run_partition, spec=spec, gpu_share=scheduling.task_gpu_share(decision, conf))
    if decision.use:
        log.info("gpuimages: %s stage runs with a GPU resource profile: %s", name, decision.reason)
        return df.mapInArrow(func, schema, profile=scheduling.build_profile(decision))
    if device == "gpu":
        log.info("gpuimages: no resource profile for the %s stage: %s", name, decision.reason)
    return df.mapInArrow(func, schema)

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
from gpuimages.task.runner import StageSpec, run_partition

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
        if type(spark).__module__.startswith("pyspark.sql.connect"):
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
) -> DataFrame:
    """Plan the partitions of ``df`` and run ``spec`` over them: the one way into ``mapInArrow``.

    ``num_partitions`` repartitions explicitly; otherwise a batch DataFrame is coalesced (no
    shuffle) to about one partition per slot (GPU slots for ``device="gpu"``), more above the
    byte cap (see :mod:`gpuimages.planning`). For ``spec.device == "gpu"`` the stage gets the
    resource profile :func:`gpuimages.scheduling.decide_profile` allows. Every task runs
    :func:`gpuimages.task.runner.run_partition` with ``spec``.
    """
    import pyspark

    device, name = spec.device, spec.name
    if num_partitions is not None:
        df = df.repartition(num_partitions)
    elif not df.isStreaming:
        slots = (planning.gpu_slots(conf) if device == "gpu" else None) or planning.cluster_slots(conf)
        n = planning.plan_partitions(slots, total_bytes=total_bytes, num_files=num_files)
        log.info("gpuimages: %s stage planned as %d partition(s) (%s slots)", name, n, slots)
        df = df.coalesce(n)

    func = functools.partial(run_partition, spec=spec)
    decision = scheduling.decide_profile(
        device, conf, pyspark_version=pyspark.__version__, task_gpu_amount=task_gpu_amount, connect=is_connect(df)
    )
    if decision.use:
        log.info("gpuimages: %s stage runs with a GPU resource profile: %s", name, decision.reason)
        profile = scheduling.build_profile(decision)
        if decision.via_rdd:
            return map_in_arrow_on_rdd(df, func, schema, profile)
        return df.mapInArrow(func, schema, profile=profile)
    if device == "gpu":
        log.info("gpuimages: no resource profile for the %s stage: %s", name, decision.reason)
    return df.mapInArrow(func, schema)


def is_connect(df: DataFrame) -> bool:
    return type(df).__module__.startswith("pyspark.sql.connect")


#: Rows per Arrow batch handed to the decode function on the RDD path.
RDD_ARROW_ROWS = 256


def map_in_arrow_on_rdd(df: DataFrame, func, schema, profile) -> DataFrame:
    """``mapInArrow`` for pyspark < 4 with a resource profile: the same Arrow function over the RDD's
    rows, the RDD run ``withResources(profile)``, and turned back into a DataFrame (classic sessions).
    """
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_in = to_arrow_schema(df.schema)
    names = schema.fieldNames()
    struct_fields = {f.name: f.dataType.fieldNames() for f in schema.fields if hasattr(f.dataType, "fieldNames")}

    def batches(rows):
        import pyarrow as pa

        chunk = []
        for row in rows:
            chunk.append(row.asDict())
            if len(chunk) == RDD_ARROW_ROWS:
                yield pa.RecordBatch.from_pylist(chunk, schema=arrow_in)
                chunk = []
        if chunk:
            yield pa.RecordBatch.from_pylist(chunk, schema=arrow_in)

    def run(rows):
        for out in func(batches(rows)):
            for rec in out.to_pylist():
                yield tuple(
                    tuple(rec[n][k] for k in struct_fields[n]) if n in struct_fields and rec[n] is not None else rec[n]
                    for n in names
                )

    rdd = df.rdd.mapPartitions(run).withResources(profile)
    return df.sparkSession.createDataFrame(rdd, schema)

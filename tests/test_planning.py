"""Partition planning and scheduling decisions are pure functions: tested directly."""

from __future__ import annotations

import pytest

from gpuimages import planning, scheduling


@pytest.mark.parametrize(
    "conf, local_cores, expected",
    [
        ({"spark.master": "local[2]"}, 8, 2),
        ({"spark.master": "local[*]"}, 6, 6),
        ({"spark.master": "local"}, 8, 1),
        ({"spark.master": "local-cluster[2,3,1024]"}, 8, 6),
        ({"spark.master": "local-cluster[2,4,1024]", "spark.task.cpus": "2"}, 8, 4),
        ({"spark.master": "spark://h:7077", "spark.executor.instances": "4", "spark.executor.cores": "8"}, 1, 32),
        ({"spark.master": "yarn", "spark.default.parallelism": "48"}, 1, 48),
        ({"spark.master": "yarn"}, 1, None),
    ],
)
def test_cpu_slots(conf, local_cores, expected):
    assert planning.cpu_slots(conf, local_cores=local_cores) == expected


def test_gpu_slots_counts_fractional_task_amounts():
    conf = {
        "spark.master": "local-cluster[2,1,1024]",
        "spark.executor.resource.gpu.amount": "1",
        "spark.task.resource.gpu.amount": "0.25",
    }
    assert planning.gpu_slots(conf) == 8
    assert planning.gpu_slots({"spark.master": "local[2]"}) is None


def test_plan_partitions_one_per_slot_capped_by_files_and_split_by_bytes():
    assert planning.plan_partitions(2, total_bytes=54_000_000, num_files=2000) == 2
    assert planning.plan_partitions(2, total_bytes=5 << 30, num_files=2000) == 5
    assert planning.plan_partitions(16, num_files=3) == 3
    assert planning.plan_partitions(None) == 8
    assert planning.plan_partitions(0, num_files=0) == 1


def test_profile_refused_in_local_mode_with_reason():
    d = scheduling.decide_profile("gpu", {"spark.master": "local[2]"}, pyspark_version="4.0.1")
    assert not d.use and "local mode" in d.reason


def test_profile_on_local_cluster_is_task_level_without_dynamic_allocation():
    conf = {
        "spark.master": "local-cluster[2,1,1024]",
        "spark.executor.resource.gpu.amount": "1",
        "spark.task.resource.gpu.amount": "1",
    }
    d = scheduling.decide_profile("gpu", conf, pyspark_version="4.1.0", task_gpu_amount=0.5)
    assert d.use and d.task_only and d.task_gpus == 0.5 and d.executor_gpus == 1.0
    dyn = scheduling.decide_profile(
        "gpu", {**conf, "spark.dynamicAllocation.enabled": "true"}, pyspark_version="4.1.0"
    )
    assert dyn.use and not dyn.task_only


@pytest.mark.parametrize(
    "device, conf, version, fragment",
    [
        ("cpu", {"spark.master": "yarn"}, "4.0.0", "no GPU profile"),
        ("gpu", {"spark.master": "yarn"}, "4.0.0", "executors have no GPUs"),
    ],
)
def test_profile_not_used(device, conf, version, fragment):
    d = scheduling.decide_profile(device, conf, pyspark_version=version)
    assert not d.use and fragment in d.reason


def test_gpu_profiles_need_pyspark_4():
    conf = {"spark.master": "yarn", "spark.executor.resource.gpu.amount": "1"}
    old = scheduling.decide_profile("gpu", conf, pyspark_version="3.5.3")
    assert not old.use and old.reason == (
        "GPU resource profiles need pyspark >= 4 (mapInArrow's profile=); this is pyspark 3.5.3"
    )
    assert scheduling.decide_profile("gpu", conf, pyspark_version="4.0.1").use


def test_gpu_tasks_ask_for_cores_in_proportion_to_their_gpu_share():
    conf = {"spark.master": "yarn", "spark.executor.resource.gpu.amount": "2", "spark.executor.cores": "16"}
    assert scheduling.decide_profile("gpu", conf, pyspark_version="4.0.1").task_cpus == 8
    assert scheduling.decide_profile("gpu", conf, pyspark_version="4.0.1", task_gpu_amount=0.25).task_cpus == 2
    assert scheduling.decide_profile("gpu", {**conf, "spark.task.cpus": "4"}, pyspark_version="4.0.1",
                                     task_gpu_amount=0.25).task_cpus == 4
    cluster = {"spark.master": "local-cluster[2,1,1024]", "spark.executor.resource.gpu.amount": "2"}
    assert scheduling.decide_profile("gpu", cluster, pyspark_version="4.0.1").task_cpus == 1
    profile = scheduling.build_profile(scheduling.decide_profile("gpu", conf, pyspark_version="4.0.1"))
    assert profile.taskResources["cpus"].amount == 8


def test_task_gpu_amount_above_executor_gpus_is_rejected():
    conf = {"spark.master": "yarn", "spark.executor.resource.gpu.amount": "1"}
    with pytest.raises(ValueError, match=r"task GPU amount: expected a number in \(0, 1\]"):
        scheduling.decide_profile("gpu", conf, pyspark_version="4.0.0", task_gpu_amount=2)


def test_build_profile_requests():
    d = scheduling.ProfileDecision(True, "x", executor_gpus=2, task_gpus=0.5, task_only=False)
    profile = scheduling.build_profile(d)
    assert profile.taskResources["gpu"].amount == 0.5
    assert profile.executorResources["gpu"].amount == 2
    task_only = scheduling.build_profile(scheduling.ProfileDecision(True, "x", 1, 1, True))
    assert "gpu" not in task_only.executorResources


REPORTED = planning.REPORTED_PARALLELISM_KEY


@pytest.mark.parametrize(
    "conf, expected",
    [
        ({"spark.master": "yarn", "spark.dynamicAllocation.enabled": "true"}, None),
        ({"spark.master": "yarn", REPORTED: "96"}, 96),
        ({"spark.master": "k8s://x", "spark.sql.leafNodeDefaultParallelism": "40", REPORTED: "8"}, 40),
        ({"spark.master": "sc://host", "spark.sql.files.minPartitionNum": "12", REPORTED: "8"}, 12),
        ({"spark.master": "yarn", "spark.executor.instances": "3", "spark.executor.cores": "4", REPORTED: "2"}, 12),
        ({"spark.master": "local[2]", REPORTED: "64"}, 2),
        ({"spark.master": "yarn", REPORTED: "not a number"}, None),
    ],
)
def test_cluster_slots_without_executor_counts(conf, expected):
    assert planning.cluster_slots(conf, local_cores=4) == expected


def test_plan_from_reported_parallelism_is_bounded_by_bytes_and_files():
    conf = {"spark.master": "yarn", "spark.dynamicAllocation.enabled": "true", planning.REPORTED_PARALLELISM_KEY: "200"}
    slots = planning.cluster_slots(conf)
    assert planning.plan_partitions(slots, total_bytes=10 << 30, num_files=100_000) == 200
    assert planning.plan_partitions(slots, total_bytes=500 << 30, num_files=100_000) == 500  # 1 GiB a partition
    assert planning.plan_partitions(slots, total_bytes=1 << 20, num_files=50) == 50
    assert planning.plan_partitions(planning.cluster_slots({"spark.master": "yarn"})) == planning.DEFAULT_FALLBACK_SLOTS


@pytest.mark.parametrize(
    "plan, expected",
    [
        ("*(1) Range (0, 1, step=1, splits=16)", 16),
        ("== Physical Plan ==\n*(1) Range (0, 1, step=1, splits=Some(4))", 4),
        ("LocalTableScan [id#0L]", None),
    ],
)
def test_parse_range_splits(plan, expected):
    assert planning.parse_range_splits(plan) == expected


def test_session_conf_reports_parallelism_only_when_the_conf_does_not_size_the_cluster(spark):
    from gpuimages.stage import reported_parallelism, session_conf

    conf = session_conf(spark)
    assert conf["spark.master"] == "local[2]"  # the shared session as conftest made it (tests restore its conf)
    assert planning.cpu_slots(conf, local_cores=64) == 2  # local[2] says it all, whatever the machine
    assert conf[planning.REPORTED_PARALLELISM_KEY] is None
    assert reported_parallelism(spark) == spark.sparkContext.defaultParallelism == 2
    range_plan = spark.range(1)._jdf.queryExecution().executedPlan().toString()
    assert planning.parse_range_splits(range_plan) == 2


def test_run_stage_decides_the_gpu_profile_by_the_installed_pyspark(spark, caplog):
    """The one decision that differs by pyspark version, as ``run_stage`` takes it (no job runs)."""
    import logging

    import pyarrow as pa
    import pyspark
    from pyspark.sql.types import LongType, StructField, StructType

    from gpuimages.stage import run_stage
    from gpuimages.task.spec import StageSpec
    from gpuimages.task.steps.base import Step

    class Length(Step):
        name = "length"

        def run(self, work):
            work.columns["n"] = pa.array([len(b or b"") for b in work.blobs], pa.int64())

    spec = StageSpec("decode", "gpu", "content", "bytes", (Length(),), ("n",), error_col=None)
    conf = {"spark.master": "local-cluster[2,1,1024]", "spark.executor.resource.gpu.amount": "1"}
    df = spark.createDataFrame([(b"ab",)], "content binary")
    with caplog.at_level(logging.INFO, logger="gpuimages"):
        out = run_stage(df, spec, StructType([StructField("n", LongType())]), conf, num_partitions=1)
    assert out.columns == ["n"]
    messages = [r.getMessage() for r in caplog.records if "resource profile" in r.getMessage()]
    if int(pyspark.__version__.split(".")[0]) >= 4:
        assert messages == ["gpuimages: decode stage runs with a GPU resource profile: " + scheduling.decide_profile(
            "gpu", conf, pyspark_version=pyspark.__version__).reason]
    else:
        assert len(messages) == 1 and f"need pyspark >= 4 (mapInArrow's profile=); this is pyspark " \
            f"{pyspark.__version__}" in messages[0]


@pytest.mark.parametrize(("text", "expected"), [
    ("134217728b", 128 << 20), ("128m", 128 << 20), ("64MB", 64 << 20), ("1", 1), ("2g", 2 << 30), (" 3k ", 3072),
    (None, 7), ("", 7), ("lots", 7), ("-1", 7),
])
def test_byte_size_reads_sparks_byte_strings(text, expected):
    assert planning.byte_size(text, 7) == expected


def test_a_listing_has_a_partition_per_core_more_per_gigabyte_and_never_more_than_files():
    """The listing a stage reads local files from is planned as the stage plans (it can only coalesce)."""
    def listing(count, size, parallelism):
        return planning.plan_partitions(parallelism, total_bytes=size, num_files=count)

    assert listing(2000, 55 << 20, 2) == 2
    assert listing(2000, None, 8) == 8
    assert listing(100_000, (10 << 30) + 1, 4) == 11  # 1 GiB a partition, as the stage plans
    assert listing(3, 50 << 30, 16) == 3
    assert listing(0, 0, 4) == 1

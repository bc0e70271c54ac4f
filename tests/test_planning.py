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


def test_pyspark_35_attaches_the_profile_to_the_rdd_except_on_connect():
    conf = {"spark.master": "yarn", "spark.executor.resource.gpu.amount": "1"}
    classic = scheduling.decide_profile("gpu", conf, pyspark_version="3.5.3")
    assert classic.use and classic.via_rdd
    assert not scheduling.decide_profile("gpu", conf, pyspark_version="4.0.1").via_rdd
    connect = scheduling.decide_profile("gpu", conf, pyspark_version="3.5.3", connect=True)
    assert not connect.use and "Connect has no RDDs" in connect.reason


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

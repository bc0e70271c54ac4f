"""The task device resolver: Spark GPU addresses to CUDA ordinals, spreading under "auto", threads."""

from __future__ import annotations

import pytest

from gpuimages.task import device as dev
from gpuimages.task.device import TaskDevice, cuda_ordinal, spread_order, visible_entries


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", []),
        ("2,3", ["2", "3"]),
        ("3, 2", ["3", "2"]),
        ("0,-1,1", ["0"]),
        ("GPU-abc,1", ["GPU-abc", "1"]),
        ("02", ["2"]),
    ],
)
def test_visible_entries_follow_cuda_parsing(value, expected):
    assert visible_entries(value) == expected


def test_address_is_the_ordinal_when_cuda_visible_devices_is_unset():
    assert cuda_ordinal("0", None, 4) == 0
    assert cuda_ordinal("3", None, 4) == 3


def test_address_maps_to_its_position_in_cuda_visible_devices():
    assert cuda_ordinal("2", ["2", "3"], 2) == 0
    assert cuda_ordinal("3", ["2", "3"], 2) == 1


def test_reordered_cuda_visible_devices():
    assert cuda_ordinal("3", ["3", "2"], 2) == 0
    assert cuda_ordinal("2", ["3", "2"], 2) == 1


def test_uuid_entries_are_matched_by_name():
    assert cuda_ordinal("GPU-b", ["GPU-a", "GPU-b"], 2) == 1


def test_one_visible_device_with_a_high_address_uses_device_zero():
    assert cuda_ordinal("3", None, 1) == 0
    assert cuda_ordinal("7", ["5"], 1) == 0


def test_an_address_that_is_not_visible_names_what_is():
    with pytest.raises(ValueError, match=r"GPU address '1'.*CUDA_VISIBLE_DEVICES='2,3'"):
        cuda_ordinal("1", ["2", "3"], 2)
    with pytest.raises(ValueError, match=r"GPU address '5'.*CUDA_VISIBLE_DEVICES=unset"):
        cuda_ordinal("5", None, 4)
    with pytest.raises(ValueError, match="no CUDA device is visible"):
        cuda_ordinal("0", None, 0)


def test_spread_order_starts_at_the_partition_and_covers_every_gpu():
    assert spread_order(0, 4) == [0, 1, 2, 3]
    assert spread_order(6, 4) == [2, 3, 0, 1]
    assert spread_order(5, 0) == []
    firsts = [spread_order(p, 3)[0] for p in range(9)]
    assert [firsts.count(g) for g in range(3)] == [3, 3, 3]


def test_threads_come_from_the_task_cpus_or_the_environment():
    assert dev.task_threads(4, {}) == 4
    assert dev.task_threads(None, {}) == 1
    assert dev.task_threads(4, {dev.THREADS_ENV: "2"}) == 2
    assert dev.task_threads(4, {dev.THREADS_ENV: "x"}) == 4


class _Context:
    def __init__(self, addresses=None, cpus=1, partition=0):
        self._addresses, self._cpus, self._partition = addresses, cpus, partition

    def resources(self):
        if self._addresses is None:
            return {}

        class Info:
            addresses = self._addresses

        return {"gpu": Info()}

    def cpus(self):
        return self._cpus

    def partitionId(self):
        return self._partition


@pytest.fixture
def fresh_slots(monkeypatch, tmp_path):
    slots = dev._Slots()
    slots.folder = str(tmp_path / "slots")
    monkeypatch.setattr(dev, "_slots", slots)
    return slots


def _gpus(monkeypatch, count):
    monkeypatch.setattr(dev, "visible_gpu_count", lambda refresh=False: count)


def test_assigned_address_is_mapped_through_cuda_visible_devices(monkeypatch, fresh_slots):
    _gpus(monkeypatch, 2)
    got = dev.resolve_task_device("gpu", _Context(["3"], cpus=4), env={"CUDA_VISIBLE_DEVICES": "2,3"})
    assert got == TaskDevice("gpu", 1, 4, "3")
    assert "gpu 1 (Spark address 3), 4 threads" == got.describe()


def test_cpu_mode_never_takes_a_gpu(monkeypatch, fresh_slots):
    _gpus(monkeypatch, 2)
    assert dev.resolve_task_device("cpu", _Context(["0"]), env={}) == TaskDevice("cpu", None, 1)


def test_auto_without_address_spreads_by_partition(monkeypatch, fresh_slots):
    _gpus(monkeypatch, 4)
    got = dev.resolve_task_device("auto", _Context(partition=6), env={})
    assert got.gpu_id == 2 and got.address is None
    assert fresh_slots.holds() == "2"


def test_a_worker_stays_on_the_gpu_it_claimed(monkeypatch, fresh_slots):
    _gpus(monkeypatch, 4)
    first = dev.resolve_task_device("auto", _Context(partition=1), env={})
    later = dev.resolve_task_device("auto", _Context(partition=2), env={})
    assert first.gpu_id == later.gpu_id == 1


def test_auto_bounds_the_workers_per_gpu_and_falls_back_to_cpu(monkeypatch, tmp_path):
    _gpus(monkeypatch, 2)
    folder = str(tmp_path / "slots")
    env = {dev.AUTO_WORKERS_PER_GPU_ENV: "1"}
    holders = []
    for partition in range(3):  # each "worker" has its own slot table, as separate processes do
        slots = dev._Slots()
        slots.folder = folder
        monkeypatch.setattr(dev, "_slots", slots)
        holders.append(slots)
        holders[-1].result = dev.resolve_task_device("auto", _Context(partition=partition), env=env)
    assert [h.result.gpu_id for h in holders] == [0, 1, None]


def test_gpu_mode_without_devices_runs_library_cpu_paths(monkeypatch, fresh_slots):
    _gpus(monkeypatch, 0)
    got = dev.resolve_task_device("gpu", _Context(), env={})
    assert got == TaskDevice("gpu", None, 1)
    assert got.uses("nvidia.dali") and not TaskDevice("cpu").uses("nvidia.dali")


def test_auto_uses_a_library_only_on_a_gpu_where_it_imports(monkeypatch):
    assert not TaskDevice("auto", None).uses("json")
    assert TaskDevice("auto", 0).uses("json")
    assert not TaskDevice("auto", 0).uses("gpuimages_no_such_module")


def test_unknown_mode_is_refused():
    with pytest.raises(ValueError, match="device: expected one of auto, cpu, gpu, got 'tpu'"):
        dev.resolve_task_device("tpu", _Context(), env={})


def test_an_address_cuda_cannot_see_fails_gpu_tasks_but_auto_tasks_are_placed(monkeypatch, fresh_slots, caplog):
    _gpus(monkeypatch, 2)
    env = {"CUDA_VISIBLE_DEVICES": "2,3"}
    with pytest.raises(ValueError, match=r"GPU address '1'"):
        dev.resolve_task_device("gpu", _Context(["1"], partition=1), env=env)
    got = dev.resolve_task_device("auto", _Context(["1"], partition=1), env=env)
    assert got == TaskDevice("auto", 1, 1) and "placed as if Spark had assigned no GPU" in caplog.text


def test_slot_locks_that_cannot_be_written_do_not_fail_the_task(monkeypatch, fresh_slots, tmp_path, caplog):
    _gpus(monkeypatch, 2)
    blocker = tmp_path / "file"
    blocker.write_text("")
    fresh_slots.folder = str(blocker / "slots")  # a folder under a file: makedirs raises NotADirectoryError
    got = dev.resolve_task_device("auto", _Context(partition=1), env={})
    assert got.gpu_id == 1 and "GPU slot locks in" in caplog.text
    assert dev.resolve_task_device("auto", _Context(partition=0), env={}).gpu_id == 1  # the worker stays on it


def test_cuda_numbers_gpus_as_nvidia_smi_unless_the_environment_chose(monkeypatch):
    """Discovery scripts print nvidia-smi's indices (PCI order); CUDA's default order is FASTEST_FIRST, which
    differs on a node with mixed GPU models. The order is set before this process's first CUDA call."""
    seen = []

    def driver() -> int:
        seen.append(dev.os.environ.get("CUDA_DEVICE_ORDER"))
        return 2

    monkeypatch.setattr(dev, "_count", None)  # restored afterwards
    monkeypatch.setattr(dev, "_count_from_driver_api", driver)
    monkeypatch.delenv("CUDA_DEVICE_ORDER", raising=False)
    assert dev.visible_gpu_count() == 2 and seen == ["PCI_BUS_ID"]
    monkeypatch.setenv("CUDA_DEVICE_ORDER", "FASTEST_FIRST")
    dev.visible_gpu_count(refresh=True)
    assert seen == ["PCI_BUS_ID", "FASTEST_FIRST"]


def test_an_assigned_gpu_cuda_cannot_see_fails_gpu_tasks_with_the_reason(monkeypatch, fresh_slots, caplog):
    _gpus(monkeypatch, 0)
    with pytest.raises(RuntimeError, match=r"device='gpu': Spark assigned GPU 0 .* sees no CUDA device"):
        dev.resolve_task_device("gpu", _Context(["0"]), env={"CUDA_VISIBLE_DEVICES": "0"})
    got = dev.resolve_task_device("auto", _Context(["0"]), env={})
    assert got.gpu_id is None and "the task computes on CPU" in caplog.text


UUIDS = {0: "GPU-1111aaaa-0000-0000-0000-000000000000", 1: "GPU-2222bbbb-0000-0000-0000-000000000000",
         2: "GPU-3333cccc-0000-0000-0000-000000000000"}


def test_index_addresses_map_through_uuids_in_cuda_visible_devices():
    """Discovery scripts print nvidia-smi indices; CUDA_VISIBLE_DEVICES may list the same GPUs by UUID (or a
    unique prefix of one), in any order."""
    visible = visible_entries(f"{UUIDS[2]},{UUIDS[0][:12]}")
    assert cuda_ordinal("2", visible, 2, UUIDS.get) == 0
    assert cuda_ordinal("0", visible, 2, UUIDS.get) == 1
    with pytest.raises(ValueError, match="GPU address '1'"):
        cuda_ordinal("1", visible, 2, UUIDS.get)  # a GPU of the node that this process does not see
    with pytest.raises(ValueError, match="GPU address '2'"):
        cuda_ordinal("2", visible, 2, lambda index: None)  # no NVML: nothing to map with


def test_an_index_address_resolves_on_a_node_whose_cuda_visible_devices_holds_uuids(monkeypatch, fresh_slots):
    _gpus(monkeypatch, 2)
    monkeypatch.setattr(dev, "nvml_uuid", UUIDS.get)
    env = {"CUDA_VISIBLE_DEVICES": f"{UUIDS[1]},{UUIDS[2]}"}
    assert dev.resolve_task_device("gpu", _Context(["2"]), env=env) == TaskDevice("gpu", 1, 1, "2")


def test_the_task_share_of_a_gpu_comes_from_the_profile_the_environment_or_the_auto_bound(monkeypatch, fresh_slots):
    from gpuimages.scheduling import ProfileDecision, task_gpu_share

    _gpus(monkeypatch, 2)
    assert dev.resolve_task_device("gpu", _Context(["1"]), env={}, gpu_share=0.25).gpu_share == 0.25
    overridden = dev.resolve_task_device("gpu", _Context(["1"]), env={dev.GPU_SHARE_ENV: "0.5"}, gpu_share=0.25)
    assert overridden.gpu_share == 0.5
    assert dev.resolve_task_device("auto", _Context(), env={dev.AUTO_WORKERS_PER_GPU_ENV: "2"}).gpu_share == 0.5
    assert dev.resolve_task_device("gpu", _Context(["1"]), env={}).gpu_share is None
    device = TaskDevice("gpu", 0, 1, gpu_share=0.25)
    assert device.memory_share({}) == 0.25 and device.memory_share({dev.GPU_MEMORY_FRACTION_ENV: "0.6"}) == 0.15
    assert TaskDevice("gpu", 0).memory_share({dev.AUTO_WORKERS_PER_GPU_ENV: "8"}) == 0.125  # unknown: 1 / workers
    used = ProfileDecision(True, "", executor_gpus=1.0, task_gpus=0.25)
    assert task_gpu_share(used, {}) == 0.25
    assert task_gpu_share(ProfileDecision(False, ""), {"spark.task.resource.gpu.amount": "0.5"}) == 0.5
    assert task_gpu_share(ProfileDecision(False, ""), {"spark.task.resource.gpu.amount": "2"}) is None
    assert task_gpu_share(ProfileDecision(False, ""), {}) is None

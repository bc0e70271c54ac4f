"""The RAPIDS Accelerator settings documented in docs/databricks.md leave room on the GPU for gpuimages.

The rules are the plugin's (NVIDIA/spark-rapids ``RapidsConf.scala``, ``GpuDeviceManager.computeRmmPoolSize``,
``PythonConfEntries.scala``): the executor's pool is ``allocFraction × (free − reserve)``, at most
``maxAllocFraction × total`` and at least ``minAllocFraction × total`` (default 0.25), with ``allocFraction`` ≤
``maxAllocFraction``; Python workers get an RMM pool of their own only with ``spark.rapids.sql.python.gpu.enabled``.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from gpuimages.models import onnx as onnx_module
from gpuimages.task.device import GPU_MEMORY_FRACTION_ENV, TaskDevice

DOC = Path(__file__).resolve().parents[1] / "docs" / "databricks.md"
#: GPU memory of the documented node type as nvidia-smi reports it (g5.4xlarge: one NVIDIA A10G).
GPU_MIB = {"g5.4xlarge": 23028}
#: A CUDA context (the executor's JVM, each Python worker), a conservative figure for Ampere GPUs.
CONTEXT_MIB = 512
MIB = 1 << 20


def cluster() -> dict:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(), re.S)
    return next(json.loads(b) for b in blocks if '"spark_conf"' in b)


def size_mib(text: str) -> float:
    number, unit = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)b?", text.strip().lower()).groups()
    return float(number) * {"k": 1 / 1024, "m": 1, "g": 1024, "": 1 / MIB}[unit]


def test_documented_rapids_pool_leaves_gpuimages_its_fraction_of_the_gpu():
    spec = cluster()
    conf, env = spec["spark_conf"], spec["spark_env_vars"]
    total = GPU_MIB[spec["node_type_id"]]
    alloc = float(conf["spark.rapids.memory.gpu.allocFraction"])
    most = float(conf["spark.rapids.memory.gpu.maxAllocFraction"])
    least = float(conf.get("spark.rapids.memory.gpu.minAllocFraction", 0.25))
    reserve = size_mib(conf.get("spark.rapids.memory.gpu.reserve", "640m"))
    assert least <= alloc <= most <= 1  # the plugin refuses anything else at start
    assert conf.get("spark.rapids.sql.python.gpu.enabled", "false") == "false"  # no RMM pool in our workers
    ours = float(env[GPU_MEMORY_FRACTION_ENV])
    executor_gpus = float(conf["spark.executor.resource.gpu.amount"])
    tasks_per_gpu = round(executor_gpus / float(conf["spark.task.resource.gpu.amount"]))
    contexts = (1 + tasks_per_gpu) * CONTEXT_MIB
    used = most * total + reserve + ours * total + contexts
    assert used <= total, f"{used:.0f} MiB of {total} MiB"
    assert "GPUIMAGES_ORT_GPU_MEM_LIMIT" not in env  # the bound follows from the fraction and the task share


def test_documented_onnx_arena_bound_is_what_gpuimages_computes(monkeypatch):
    spec = cluster()
    conf, env = spec["spark_conf"], spec["spark_env_vars"]
    total = GPU_MIB[spec["node_type_id"]] * MIB
    monkeypatch.setattr(onnx_module, "device_total_memory", lambda gpu_id: total)
    device = TaskDevice("gpu", 0, 1, gpu_share=float(conf["spark.task.resource.gpu.amount"]))
    share = device.memory_share({GPU_MEMORY_FRACTION_ENV: env[GPU_MEMORY_FRACTION_ENV]})
    limit = onnx_module.gpu_mem_limit(0, {}, share=share)
    assert f"{limit / (1 << 30):.1f} GiB per session" in DOC.read_text().replace("\n", " ")

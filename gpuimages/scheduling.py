"""Device choice and stage-level scheduling: small pure decisions plus one step that applies them.

The driver never imports DALI or cupy: it only asks whether the ``gpu`` extra is installed
(``importlib.util.find_spec``) and reads Spark conf through the DataFrame API, so this works on
Spark Connect sessions too.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from gpuimages.options import check_device

log = logging.getLogger(__name__)

GPU_EXTRA_HINT = "pip install gpuimages[gpu]"


#: The GPU libraries of the ``gpu`` extra, by module, with the name users know them by.
GPU_LIBRARIES = {"nvidia.dali": "NVIDIA DALI", "cupy": "cupy", "nvidia.nvimgcodec": "nvImageCodec"}
#: What decoding on a GPU needs (the default of :func:`resolve_device`).
DECODE_LIBRARIES = ("nvidia.dali",)


def installed(module: str) -> bool:
    """True when ``module`` can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def require_gpu_extra(modules: tuple[str, ...] = DECODE_LIBRARIES) -> None:
    """Raise an ImportError naming the missing libraries and the extra to install."""
    missing = [GPU_LIBRARIES.get(m, m) for m in modules if not installed(m)]
    if missing:
        verb = "is" if len(missing) == 1 else "are"
        raise ImportError(
            f"device='gpu' needs {' and '.join(missing)}, which {verb} not installed. "
            f"Install the GPU extra: {GPU_EXTRA_HINT} (or use device='cpu' / 'auto')."
        )


@dataclass(frozen=True)
class ProfileDecision:
    """Whether to attach a resource profile to the decode stage, and why (for the log)."""

    use: bool
    reason: str
    executor_gpus: float = 0.0
    task_gpus: float = 0.0
    task_only: bool = True
    task_cpus: int = 1


def decide_profile(
    device: str,
    conf: Mapping[str, str | None],
    *,
    pyspark_version: str,
    task_gpu_amount: float | None = None,
) -> ProfileDecision:
    """Decide whether the decode stage gets a GPU ``ResourceProfile``.

    Stage-level scheduling needs a cluster manager (standalone, YARN, Kubernetes; also
    ``local-cluster``); plain ``local`` refuses it. With dynamic allocation off Spark accepts only
    task-level profiles (``TaskResourceProfile``), so the executor part is left out then.
    ``task_gpu_amount`` overrides ``spark.task.resource.gpu.amount`` (e.g. 0.25: four tasks per GPU).
    Profiles go on ``mapInArrow`` (``profile=``), which pyspark 4.0 added (SPARK-46812); with pyspark
    3.5 the stage runs without one (the tasks then decode on the GPUs they see, spread by partition).
    The RDD route pyspark 3.5 offers (``RDD.withResources``) pickles every row's pixels and measured
    1.7x slower than ``mapInArrow`` on the decode itself, which is more than a GPU saves there.
    """
    if device != "gpu":
        return ProfileDecision(False, f"device={device!r}: no GPU profile requested")
    master = (conf.get("spark.master") or "").strip()
    if master.startswith("local") and not master.startswith("local-cluster"):
        return ProfileDecision(
            False, f"master {master!r} is local mode, which does not support stage-level scheduling"
        )
    if int(pyspark_version.split(".")[0]) < 4:
        return ProfileDecision(
            False, f"GPU resource profiles need pyspark >= 4 (mapInArrow's profile=); this is pyspark {pyspark_version}"
        )
    executor_gpus = float(conf.get("spark.executor.resource.gpu.amount") or 0)
    if executor_gpus <= 0:
        return ProfileDecision(False, "spark.executor.resource.gpu.amount is not set: executors have no GPUs")
    task_gpus = task_gpu_amount if task_gpu_amount is not None else float(
        conf.get("spark.task.resource.gpu.amount") or 1.0
    )
    if not 0 < task_gpus <= executor_gpus:
        raise ValueError(
            f"task GPU amount: expected a number in (0, {executor_gpus:g}] (GPUs per executor), got {task_gpus!r}"
        )
    dynamic = (conf.get("spark.dynamicAllocation.enabled") or "false").lower() == "true"
    cpus = gpu_task_cpus(conf, task_gpus, executor_gpus)
    return ProfileDecision(
        True,
        f"{master}: tasks ask for {task_gpus:g} GPU and {cpus} CPU(s) each"
        + ("" if dynamic else " (task-level profile: dynamic allocation is off)"),
        executor_gpus=executor_gpus,
        task_gpus=task_gpus,
        task_only=not dynamic,
        task_cpus=cpus,
    )


def task_gpu_share(decision: ProfileDecision, conf: Mapping[str, str | None]) -> float | None:
    """The share of one GPU each task of a stage holds: the profile's task GPU amount, else the session's
    ``spark.task.resource.gpu.amount``; None when neither says or the amount is a whole GPU or more."""
    amount = decision.task_gpus if decision.use else None
    if amount is None:
        try:
            amount = float(conf.get("spark.task.resource.gpu.amount") or 0) or None
        except ValueError:
            amount = None
    return float(amount) if amount is not None and 0 < amount <= 1 else None


def gpu_task_cpus(conf: Mapping[str, str | None], task_gpus: float, executor_gpus: float) -> int:
    """CPUs a GPU task asks for: the executor's cores in proportion to its GPU share, at least
    ``spark.task.cpus``. A GPU task's libraries (DALI's threads, nvImageCodec, ONNX Runtime) size their
    thread pools from ``TaskContext.cpus()``, so this is what they get; CPU tasks are not starved of
    cores the GPU tasks' threads use."""
    from gpuimages.planning import executor_cores

    base = _int_conf(conf, "spark.task.cpus") or 1
    cores = executor_cores(conf)
    if not cores or executor_gpus <= 0:
        return base
    return max(base, int(cores * task_gpus / executor_gpus))


def _int_conf(conf: Mapping[str, str | None], key: str) -> int | None:
    try:
        value = conf.get(key)
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def build_profile(decision: ProfileDecision):
    """Build the ``pyspark.resource.ResourceProfile`` for a positive decision."""
    from pyspark.resource import ExecutorResourceRequests, ResourceProfileBuilder, TaskResourceRequests

    builder = ResourceProfileBuilder()
    builder.require(TaskResourceRequests().cpus(decision.task_cpus).resource("gpu", decision.task_gpus))
    if not decision.task_only:
        builder.require(ExecutorResourceRequests().resource("gpu", decision.executor_gpus))
    return builder.build


def resolve_device(
    device: str, conf: Mapping[str, str | None], modules: tuple[str, ...] = DECODE_LIBRARIES
) -> str:
    """Driver-side device resolution for a stage whose GPU path needs ``modules``.

    "gpu" needs them installed (an ImportError naming the extra otherwise, the same for every function
    and stage); "auto" stays "auto" for executors to decide per task, or becomes "cpu" when none of
    them is installed (said in the log); "cpu" stays "cpu".
    """
    device = check_device(device)
    if device == "gpu":
        require_gpu_extra(modules)
    elif device == "auto" and modules and not any(installed(m) for m in modules):
        names = " / ".join(GPU_LIBRARIES.get(m, m) for m in modules)
        log.info("device='auto': %s not installed; computing on CPU", names)
        return "cpu"
    return device

"""Which GPU a Spark task should decode on: small, import-light helpers.

Spark's GPU scheduling gives each task one or more device addresses
(``TaskContext.get().resources()["gpu"].addresses``). Without it (local mode, a single-GPU
box, a cluster not configured for GPU scheduling) the first visible device is used. With no
CUDA device at all the DALI engine runs its CPU operators. Nothing here imports cupy, DALI or
pyspark at module import; the device count is probed once per process and cached.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import shutil
import subprocess
from collections.abc import Sequence
from typing import Any

log = logging.getLogger(__name__)

_visible_count: int | None = None


def parse_gpu_address(address: Any) -> int:
    """Turn a Spark GPU address (a string such as ``"0"``) into a CUDA device index.

    Raises ``ValueError`` when the address is not a non-negative integer: the GPU discovery
    script must print CUDA device indices (``{"name": "gpu", "addresses": ["0", "1"]}``).
    """
    text = str(address).strip()
    if not text.isdigit():
        raise ValueError(
            f"Spark assigned GPU address {address!r} to this task; expected a CUDA device index "
            "(a non-negative integer such as '0'). Check the GPU discovery script "
            "(spark.worker.resource.gpu.discoveryScript / spark.executor.resource.gpu.discoveryScript)."
        )
    return int(text)


def task_gpu_addresses(context: Any = None) -> list[str]:
    """The GPU addresses Spark assigned to the running task (empty outside a task or without GPUs).

    ``context`` is a ``pyspark.TaskContext``-like object; by default ``TaskContext.get()``.
    """
    if context is None:
        try:
            from pyspark import TaskContext
        except ImportError:  # pragma: no cover - pyspark is a dependency
            return []
        context = TaskContext.get()
    if context is None:
        return []
    try:
        resources = context.resources()
    except Exception:  # noqa: BLE001 - an old or partial context has no resources
        return []
    info = resources.get("gpu") if resources else None
    if info is None:
        return []
    return [str(a) for a in getattr(info, "addresses", []) or []]


def task_gpu_id(context: Any = None) -> int | None:
    """The CUDA device index Spark assigned to the running task, or None if it assigned none."""
    addresses = task_gpu_addresses(context)
    return parse_gpu_address(addresses[0]) if addresses else None


def _count_from_driver() -> int | None:
    """Device count from the CUDA driver API (honours ``CUDA_VISIBLE_DEVICES``), or None."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    try:
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except (AttributeError, OSError):
        return None


def _count_from_nvidia_smi() -> int | None:
    """Device count from ``nvidia-smi -L``, limited by ``CUDA_VISIBLE_DEVICES``, or None."""
    exe = shutil.which("nvidia-smi")
    if exe is None:
        return None
    try:
        result = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if result.returncode != 0:
        return 0
    count = sum(1 for line in result.stdout.splitlines() if line.startswith("GPU "))
    return min(count, visible_devices_limit(os.environ.get("CUDA_VISIBLE_DEVICES"), count))


def visible_devices_limit(value: str | None, count: int) -> int:
    """How many of ``count`` devices a ``CUDA_VISIBLE_DEVICES`` value leaves visible.

    CUDA stops at the first entry it cannot use, so ``"0,-1,1"`` shows one device and
    ``""`` or ``"-1"`` none.
    """
    if value is None:
        return count
    visible = 0
    for entry in value.split(","):
        entry = entry.strip()
        if entry.isdigit():
            if int(entry) >= count:
                break
        elif not (entry.startswith(("GPU-", "MIG-")) and len(entry) > 4):
            break
        visible += 1
    return min(visible, count)


def visible_gpu_count(refresh: bool = False) -> int:
    """Number of CUDA devices this process can use (0 without a GPU); probed once and cached.

    Asks the CUDA driver first, then ``nvidia-smi -L``; neither imports a Python GPU library.
    """
    global _visible_count
    if _visible_count is None or refresh:
        count = _count_from_driver()
        if count is None:
            count = _count_from_nvidia_smi()
        _visible_count = count or 0
        log.debug("visible CUDA devices: %d", _visible_count)
    return _visible_count


def resolve_gpu_id(addresses: Sequence[str] | None = None, visible: int | None = None) -> int | None:
    """Decide the CUDA device this process decodes on; None means DALI's CPU operators.

    ``addresses``: the task's GPU addresses (None: read them from the running task).
    ``visible``: the number of visible CUDA devices (None: probe, see :func:`visible_gpu_count`).

    * The task was assigned a GPU: its first address, checked against the visible devices
      (a container that shows only its own GPU as device 0 maps any address to 0).
    * No GPU assigned but devices are visible (local mode, single-GPU box): device 0.
    * No CUDA device at all: None, with a warning.
    """
    if addresses is None:
        addresses = task_gpu_addresses()
    if visible is None:
        visible = visible_gpu_count()
    if addresses:
        gpu = parse_gpu_address(addresses[0])
        if visible == 0:
            log.warning(
                "Spark assigned GPU %s to this task but no CUDA device is visible in this process; "
                "decoding with DALI's CPU operators", gpu,
            )
            return None
        if gpu >= visible:
            if visible == 1:
                log.info("Spark assigned GPU %s; the only visible CUDA device is 0 (isolated container), using it", gpu)
                return 0
            raise ValueError(
                f"Spark assigned GPU address {gpu} to this task but only {visible} CUDA devices are visible "
                f"(indices 0..{visible - 1}); check CUDA_VISIBLE_DEVICES and the GPU discovery script"
            )
        return gpu
    if visible > 0:
        log.info("no GPU assigned to this task by Spark; using the first visible CUDA device (0 of %d)", visible)
        return 0
    log.warning("no CUDA device visible; the DALI engine will run on CPU operators")
    return None


def library_gpu(device: str, module: str, label: str) -> tuple[bool, int | None]:
    """Whether a task with ``device`` ("auto", "cpu" or "gpu") uses the GPU library ``module``, and on which device.

    "cpu": never. "gpu": always, on :func:`resolve_gpu_id`'s device (None: the library's CPU path).
    "auto": when the task was assigned a GPU or the process sees one, and ``module`` imports (else a
    warning naming ``label``). Decode engines (DALI) and encoders (nvImageCodec) choose alike.
    """
    if device == "cpu":
        return False, None
    if device == "auto":
        if task_gpu_id() is None and visible_gpu_count() == 0:
            return False, None
        try:
            importlib.import_module(module)
        except ImportError:
            log.warning("device='auto': this executor sees a GPU but %s does not import; using Pillow", label)
            return False, None
    return True, resolve_gpu_id()

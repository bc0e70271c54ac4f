"""Which device a Spark task computes on: one resolver for every in-task step.

Spark's GPU scheduling gives a task device *addresses* (``TaskContext.get().resources()["gpu"]``),
which are whatever the discovery script printed: usually physical ``nvidia-smi`` indices. DALI,
cupy, ONNX Runtime and nvImageCodec number devices after ``CUDA_VISIBLE_DEVICES``: with
``CUDA_VISIBLE_DEVICES=2,3`` physical GPU 3 is CUDA ordinal 1. :func:`cuda_ordinal` does that
mapping, and every step gets its GPU from :func:`resolve_task_device`, never from the address.

Without an assigned address (local mode, no resource profile), tasks are spread over the visible
GPUs by partition id, and a Python worker that already computes on a GPU stays on it (each GPU a
worker touches costs it a CUDA context and decoder pools). Under ``device="auto"`` at most
:data:`AUTO_WORKERS_PER_GPU_ENV` workers (default :data:`DEFAULT_AUTO_WORKERS_PER_GPU`) share one
GPU; the others compute on CPU. The claim is an advisory file lock per GPU slot, held for the life
of the worker process (its cached GPU objects live as long).

Threads: a task may use ``TaskContext.cpus()`` CPU threads (``spark.task.cpus`` or its resource
profile's), which sizes DALI's, nvImageCodec's and ONNX Runtime's thread pools.

Nothing here imports a GPU library or pyspark at module import. The CUDA driver is asked for the
device count inside the worker only (never in Spark's forking daemon: CUDA does not survive a fork),
after setting ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` where the environment did not choose an order, so that
CUDA numbers GPUs as ``nvidia-smi`` and the discovery scripts do on nodes with mixed GPU models too.
"""

from __future__ import annotations

import ctypes
import errno
import importlib
import logging
import os
import tempfile
import threading
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

#: Environment variable: Python workers per GPU under ``device="auto"`` without Spark GPU scheduling.
AUTO_WORKERS_PER_GPU_ENV = "GPUIMAGES_AUTO_WORKERS_PER_GPU"
DEFAULT_AUTO_WORKERS_PER_GPU = 4
#: Environment variable overriding the CPU threads a task's libraries may use.
THREADS_ENV = "GPUIMAGES_TASK_THREADS"
#: Environment variable: the share of one GPU a task holds (``0.25``: four tasks per GPU); overrides what the
#: stage's resource profile (``spark.task.resource.gpu.amount``) or the worker bound under "auto" says.
GPU_SHARE_ENV = "GPUIMAGES_GPU_SHARE"
#: Environment variable: the part of each GPU's memory gpuimages' tasks may use between them (default 1.0);
#: lower it where another library holds a pool on the same GPU (the RAPIDS Accelerator: docs/databricks.md).
GPU_MEMORY_FRACTION_ENV = "GPUIMAGES_GPU_MEMORY_FRACTION"
#: CUDA's device order. Its default, FASTEST_FIRST, numbers the GPUs of a node with mixed models differently
#: from ``nvidia-smi`` (and from the indices discovery scripts print, and ``CUDA_VISIBLE_DEVICES`` lists);
#: PCI_BUS_ID numbers them as ``nvidia-smi`` does. The same order on a node of one GPU model.
DEVICE_ORDER_ENV = "CUDA_DEVICE_ORDER"

DEVICES = ("auto", "cpu", "gpu")


@dataclass(frozen=True)
class TaskDevice:
    """Where one task computes.

    mode:      the stage's ``device`` ("auto", "cpu" or "gpu").
    gpu_id:    CUDA ordinal in this process (after ``CUDA_VISIBLE_DEVICES``); None: no GPU.
    threads:   CPU threads the task's libraries may use.
    address:   Spark's GPU address the ordinal came from (logs), if Spark assigned one.
    gpu_share: the share of the GPU this task holds (``spark.task.resource.gpu.amount``, or one over the
               workers sharing it); None when unknown. Sizes memory bounds (:meth:`memory_share`).
    """

    mode: str = "cpu"
    gpu_id: int | None = None
    threads: int = 1
    address: str | None = None
    gpu_share: float | None = field(default=None, compare=False)

    def memory_share(self, env: Mapping[str, str] | None = None) -> float:
        """The part of the GPU's memory this task's libraries may use between them.

        ``$GPUIMAGES_GPU_MEMORY_FRACTION`` (what gpuimages may use of each GPU, default 1.0) times the task's
        share of the GPU (``gpu_share``; unknown: one over ``$GPUIMAGES_AUTO_WORKERS_PER_GPU``, default 4).
        """
        fraction = env_fraction(GPU_MEMORY_FRACTION_ENV, 1.0, env)
        share = self.gpu_share if self.gpu_share else 1.0 / max(1, auto_workers_per_gpu(env))
        return fraction * min(1.0, share)

    @property
    def on_gpu(self) -> bool:
        """True when the task has a CUDA device."""
        return self.gpu_id is not None

    def uses(self, module: str) -> bool:
        """Whether a step should use the GPU library ``module`` (e.g. ``"nvidia.dali"``).

        "cpu": never. "gpu": always (with ``gpu_id`` None the library runs its CPU path, or the
        step raises the library's ImportError naming the extra). "auto": when the task has a GPU
        and ``module`` imports in this worker.
        """
        if self.mode == "cpu":
            return False
        if self.mode == "gpu":
            return True
        return self.gpu_id is not None and library_imports(module)

    def describe(self) -> str:
        """``gpu 1 (Spark address 3), 4 threads`` or ``cpu, 1 thread`` for logs."""
        threads = f"{self.threads} thread{'s' if self.threads != 1 else ''}"
        if self.gpu_id is None:
            return f"cpu, {threads}"
        where = f" (Spark address {self.address})" if self.address is not None else ""
        return f"gpu {self.gpu_id}{where}, {threads}"


# --------------------------------------------------------------------------- pure decisions


def visible_entries(value: str | None) -> list[str] | None:
    """The entries of a ``CUDA_VISIBLE_DEVICES`` value that CUDA uses; None when it is unset.

    CUDA stops at the first entry it cannot parse (``"0,-1,1"`` shows one device; ``""`` none).
    Entries are indices (``"3"``) or UUIDs (``"GPU-…"``, ``"MIG-…"``).
    """
    if value is None:
        return None
    out: list[str] = []
    for entry in value.split(","):
        entry = entry.strip()
        if entry.isdigit():
            out.append(str(int(entry)))
        elif entry.startswith(("GPU-", "MIG-")) and len(entry) > 4:
            out.append(entry)
        else:
            break
    return out


def _uuid_position(uuid: str, visible: Sequence[str], count: int) -> int | None:
    """The position in ``visible`` of the entry naming GPU ``uuid`` (CUDA accepts a unique prefix of a UUID)."""
    matches = [i for i, entry in enumerate(visible[:count]) if entry.startswith("GPU-") and uuid.startswith(entry)]
    return matches[0] if len(matches) == 1 else None


def cuda_ordinal(
    address: Any, visible: Sequence[str] | None, count: int, uuid_of: Callable[[int], str | None] | None = None
) -> int:
    """The CUDA ordinal, in this process, of the GPU Spark calls ``address``.

    ``visible``: :func:`visible_entries` of ``CUDA_VISIBLE_DEVICES`` (None: unset); ``count``: the
    CUDA devices this process sees. The address is looked up in ``CUDA_VISIBLE_DEVICES`` (its
    position is the ordinal); unset, the address is the ordinal. Where ``CUDA_VISIBLE_DEVICES`` lists
    GPU UUIDs and the address is an ``nvidia-smi`` index (what discovery scripts print), ``uuid_of(index)``
    (default :func:`nvml_uuid`) names that GPU's UUID, which is then looked up. A process that sees exactly one
    device uses it whatever the address says (a container that shows only its own GPU).
    Raises ``ValueError`` naming the address and what is visible otherwise.
    """
    text = str(address).strip()
    key = str(int(text)) if text.isdigit() else text
    if count < 1:
        raise ValueError(f"Spark assigned GPU address {text!r} to this task but no CUDA device is visible")
    if visible is not None and key in visible[:count]:
        return list(visible).index(key)
    if visible is not None and text.isdigit() and any(e.startswith("GPU-") for e in visible[:count]):
        uuid = (uuid_of or nvml_uuid)(int(text))
        position = None if uuid is None else _uuid_position(uuid, visible, count)
        if position is not None:
            return position
    if visible is None and text.isdigit() and int(text) < count:
        return int(text)
    if count == 1:
        log.info("Spark assigned GPU address %r; this process sees one CUDA device (0) and uses it", text)
        return 0
    shown = "unset" if visible is None else repr(",".join(visible))
    raise ValueError(
        f"Spark assigned GPU address {text!r} to this task, but it is not one of the {count} CUDA devices this "
        f"process sees (CUDA_VISIBLE_DEVICES={shown}): expected the discovery script "
        "(spark.{worker,executor}.resource.gpu.discoveryScript) to print addresses that CUDA_VISIBLE_DEVICES lists, "
        "or indices below the device count when it is unset"
    )


def spread_order(partition: int, count: int) -> list[int]:
    """GPUs to try for a task without an assigned address: ``partition % count`` first, then the next ones."""
    if count < 1:
        return []
    first = partition % count
    return [(first + k) % count for k in range(count)]


def physical_name(ordinal: int, visible: Sequence[str] | None) -> str:
    """A name for CUDA ordinal ``ordinal`` that every process on the node agrees on (slot locks)."""
    if visible is not None and ordinal < len(visible):
        return visible[ordinal]
    return str(ordinal)


def env_int(name: str, default: int, minimum: int = 0, env: Mapping[str, str] | None = None) -> int:
    """The integer in environment variable ``name`` (at least ``minimum``), else ``default``; a value that
    is not an integer is ignored with a warning."""
    value = (os.environ if env is None else env).get(name)
    if value:
        try:
            return max(minimum, int(value))
        except ValueError:
            log.warning("%s=%r is not an integer; ignoring it", name, value)
    return default


def env_fraction(name: str, default: float, env: Mapping[str, str] | None = None) -> float:
    """The number in (0, 1] in environment variable ``name``, else ``default``; anything else is ignored with a
    warning."""
    value = (os.environ if env is None else env).get(name)
    if value:
        try:
            number = float(value)
            if 0 < number <= 1:
                return number
        except ValueError:
            pass
        log.warning("%s=%r is not a number in (0, 1]; ignoring it", name, value)
    return default


def task_threads(cpus: int | None, env: Mapping[str, str] | None = None) -> int:
    """CPU threads for a task: ``$GPUIMAGES_TASK_THREADS``, else the task's CPUs, at least 1."""
    return env_int(THREADS_ENV, max(1, int(cpus or 1)), 1, env)


def auto_workers_per_gpu(env: Mapping[str, str] | None = None) -> int:
    """Python workers that may share one GPU under ``device="auto"``."""
    return env_int(AUTO_WORKERS_PER_GPU_ENV, DEFAULT_AUTO_WORKERS_PER_GPU, 0, env)


# --------------------------------------------------------------------------- what this process sees

_count: int | None = None
_imports: dict[str, bool] = {}
_lock = threading.Lock()


def _count_from_driver_api() -> int:
    """CUDA devices visible to this process (honours ``CUDA_VISIBLE_DEVICES``); 0 without a driver."""
    try:
        lib = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return 0
    try:
        if lib.cuInit(0) != 0:
            return 0
        count = ctypes.c_int(0)
        if lib.cuDeviceGetCount(ctypes.byref(count)) != 0:
            return 0
        return int(count.value)
    except (AttributeError, OSError):
        return 0


def nvml_uuid(index: int) -> str | None:
    """The UUID (``GPU-…``) of the GPU ``nvidia-smi`` calls ``index``, from NVML; None without NVML or that GPU.

    NVML numbers GPUs in PCI bus order, as ``nvidia-smi`` and Spark's discovery scripts do, whatever
    ``CUDA_VISIBLE_DEVICES`` says; its UUIDs are the ones ``CUDA_VISIBLE_DEVICES`` may list.
    """
    try:
        lib = ctypes.CDLL("libnvidia-ml.so.1")
        if lib.nvmlInit_v2() != 0:
            return None
    except (OSError, AttributeError):
        return None
    try:
        handle = ctypes.c_void_p()
        if lib.nvmlDeviceGetHandleByIndex_v2(ctypes.c_uint(int(index)), ctypes.byref(handle)) != 0:
            return None
        buf = ctypes.create_string_buffer(96)  # NVML_DEVICE_UUID_V2_BUFFER_SIZE
        if lib.nvmlDeviceGetUUID(handle, buf, ctypes.c_uint(len(buf))) != 0:
            return None
        return buf.value.decode("ascii", "replace") or None
    except (OSError, AttributeError):
        return None
    finally:
        lib.nvmlShutdown()  # NVML counts its initialisations


def pci_device_order(env: MutableMapping[str, str] | None = None) -> None:
    """Number CUDA devices as ``nvidia-smi`` does (``CUDA_DEVICE_ORDER=PCI_BUS_ID``) unless the environment
    chose an order. Read by CUDA when it initialises, so this runs before this process's first CUDA call."""
    (os.environ if env is None else env).setdefault(DEVICE_ORDER_ENV, "PCI_BUS_ID")


def visible_gpu_count(refresh: bool = False) -> int:
    """CUDA devices this process can use, asked of the CUDA driver once per process (devices in PCI order)."""
    global _count
    with _lock:
        if _count is None or refresh:
            pci_device_order()
            _count = _count_from_driver_api()
            log.debug("visible CUDA devices: %d", _count)
        return _count


def library_imports(module: str) -> bool:
    """Whether ``module`` imports in this process (tried once; a failure is logged once)."""
    with _lock:
        known = _imports.get(module)
    if known is not None:
        return known
    try:
        importlib.import_module(module)
        ok = True
    except Exception as exc:  # noqa: BLE001 - any import failure means "not here"
        log.warning("gpuimages: %s does not import on this executor (%s); the step uses its CPU path", module, exc)
        ok = False
    with _lock:
        _imports[module] = ok
    return ok


def task_gpu_addresses(context: Any = None) -> list[str]:
    """The GPU addresses Spark assigned to the running task (empty outside a task or without GPUs)."""
    if context is None:
        context = _task_context()
    if context is None:
        return []
    try:
        resources = context.resources()
    except Exception:  # noqa: BLE001 - an old or partial context has no resources
        return []
    info = resources.get("gpu") if resources else None
    return [str(a) for a in getattr(info, "addresses", None) or []]


def _task_context() -> Any:
    try:
        from pyspark import TaskContext
    except ImportError:  # pragma: no cover - pyspark is a dependency
        return None
    return TaskContext.get()


def _task_cpus(context: Any) -> int | None:
    try:
        return int(context.cpus()) if context is not None else None
    except Exception:  # noqa: BLE001 - pyspark < 3.3 or no task
        return None


def _partition(context: Any) -> int:
    try:
        return int(context.partitionId()) if context is not None else 0
    except Exception:  # noqa: BLE001
        return 0


def task_partition() -> int:
    """The running task's partition id (0 outside a task)."""
    return _partition(_task_context())


# --------------------------------------------------------------------------- GPU slots under "auto"


class _Slots:
    """Advisory per-GPU slot locks shared by the Python workers of one node (``fcntl.flock``)."""

    def __init__(self) -> None:
        self.held: dict[str, Any] = {}  # physical GPU name -> open lock file (kept for the process's life)
        self.folder = os.path.join(tempfile.gettempdir(), f"gpuimages-gpu-slots-{os.getuid()}")

    def holds(self) -> str | None:
        return next(iter(self.held), None)

    def claim(self, name: str, limit: int) -> bool:
        """Take one of ``limit`` slots of GPU ``name`` for this process; False when all are taken."""
        if name in self.held:
            return True
        if limit <= 0:
            return False
        import fcntl

        try:
            os.makedirs(self.folder, exist_ok=True)
            for k in range(limit):
                path = os.path.join(self.folder, f"gpu-{name}-{k}.lock")
                handle = open(path, "a+")  # noqa: SIM115 - held open on purpose: the lock lives with it
                try:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                except OSError as exc:
                    handle.close()
                    if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        continue
                    raise
                self.held[name] = handle
                return True
        except OSError as exc:  # no writable temporary folder, no flock: the bound is advisory, not a failure
            log.warning("gpuimages: GPU slot locks in %s are unavailable (%s); using GPU %s without the bound on "
                        "workers per GPU", self.folder, exc, name)
            self.held[name] = None
            return True
        return False


_slots = _Slots()


def _sticky_ordinal(visible: Sequence[str] | None, count: int) -> int | None:
    """The ordinal of the GPU this process already claimed, if any."""
    held = _slots.holds()
    if held is None:
        return None
    names = [physical_name(i, visible) for i in range(count)]
    return names.index(held) if held in names else None


def resolve_task_device(
    mode: str, context: Any = None, env: Mapping[str, str] | None = None, gpu_share: float | None = None
) -> TaskDevice:
    """The :class:`TaskDevice` of the running task for a stage whose ``device`` is ``mode``.

    * "cpu": no GPU.
    * Spark assigned GPU addresses: the first one, mapped by :func:`cuda_ordinal`. An address it cannot map,
      or one assigned where CUDA sees no device, fails the task under "gpu" with the reason; under "auto" the
      task is placed as without an address (or on CPU), with a warning.
    * None assigned, CUDA devices visible: the GPU this worker already uses, else spread by
      partition id; under "auto" only where one of the GPU's worker slots is free (else CPU).
    * No CUDA device: no GPU (under "gpu" the steps then use their libraries' CPU paths, with a warning).

    ``gpu_share``: the task's share of a GPU from the stage's resource profile (the driver passes
    ``spark.task.resource.gpu.amount``); ``$GPUIMAGES_GPU_SHARE`` overrides it, and under "auto" without an
    assigned GPU it is one over the workers allowed per GPU.
    """
    if mode not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {mode!r}")
    env = os.environ if env is None else env
    context = _task_context() if context is None else context
    threads = task_threads(_task_cpus(context), env)
    share = env_fraction(GPU_SHARE_ENV, 0.0, env) or (gpu_share if gpu_share and 0 < gpu_share <= 1 else None)
    if mode == "cpu":
        return TaskDevice("cpu", None, threads)
    addresses = task_gpu_addresses(context)
    count = visible_gpu_count()
    visible = visible_entries(env.get("CUDA_VISIBLE_DEVICES"))
    if addresses:
        if count == 0:
            why = (f"Spark assigned GPU {addresses[0]} to this task but this process sees no CUDA device "
                   f"(CUDA_VISIBLE_DEVICES={env.get('CUDA_VISIBLE_DEVICES', 'unset')!s}; no driver, or a container "
                   "without the GPU)")
            if mode == "gpu":  # a GPU stage must not run on CPU without being asked to
                raise RuntimeError(f"device='gpu': {why}")
            log.warning("device='auto': %s; the task computes on CPU", why)
            return TaskDevice(mode, None, threads, addresses[0])
        try:
            return TaskDevice(mode, cuda_ordinal(addresses[0], visible, count), threads, addresses[0], share)
        except ValueError as exc:
            if mode == "gpu":
                raise
            # "auto" must not fail a job over a discovery script that disagrees with CUDA_VISIBLE_DEVICES
            log.warning("device='auto': %s; the task is placed as if Spark had assigned no GPU", exc)
    if count == 0:
        if mode == "gpu":
            log.warning("device='gpu' but this process sees no CUDA device; GPU libraries run their CPU paths")
        return TaskDevice(mode, None, threads)
    with _lock:
        sticky = _sticky_ordinal(visible, count)
        limit = auto_workers_per_gpu(env)
        if mode == "auto" and share is None and limit > 0:
            share = 1.0 / limit
        if sticky is not None:
            return TaskDevice(mode, sticky, threads, None, share)
        order = spread_order(_partition(context), count)
        if mode == "gpu":
            _slots.claim(physical_name(order[0], visible), 1 << 20)
            return TaskDevice(mode, order[0], threads, None, share)
        for ordinal in order:
            if _slots.claim(physical_name(ordinal, visible), limit):
                return TaskDevice(mode, ordinal, threads, None, share)
    log.info("device='auto': every GPU already serves %d Python workers; this one computes on CPU", limit)
    return TaskDevice(mode, None, threads)

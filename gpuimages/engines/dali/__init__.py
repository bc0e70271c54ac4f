"""The GPU engine: NVIDIA DALI, split into routing (which files DALI takes), pipelines (built once per
worker and key, run a few batches ahead) and the engine (batches, Pillow fallbacks, device output).

``from gpuimages.engines.dali import DaliEngine, route`` imports no DALI: DALI is imported when an
engine or pipeline is created, on executors only.
"""

from __future__ import annotations

from gpuimages.engines.dali.engine import HOST_COPIES, DaliEngine, DeviceImages, host_copy
from gpuimages.engines.dali.install import DALI_FLOOR, import_dali
from gpuimages.engines.dali.pipelines import (
    OUTPUTS,
    THREADS_ENV,
    DecoderSettings,
    ImageKey,
    TensorKey,
    dali_threads,
    pipeline_stats,
    run_windowed,
)
from gpuimages.engines.dali.routing import Job, make_job, route, route_all

__all__ = [
    "DALI_FLOOR", "HOST_COPIES", "OUTPUTS", "THREADS_ENV", "DaliEngine", "DecoderSettings", "DeviceImages",
    "ImageKey", "Job", "TensorKey", "dali_threads", "host_copy", "import_dali", "make_job", "pipeline_stats",
    "route", "route_all", "run_windowed",
]

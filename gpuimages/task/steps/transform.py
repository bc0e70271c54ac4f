"""Transforming: ``ImageTransformer``'s operations on pixels, and ``UnrollImage``'s flat vectors.

Images of one size are stacked and processed together (numpy, or cupy on the task's GPU); the result
is an image struct again, or ``list<float>`` after a final "normalize". Rows without an image stay
without one (null structs stay null); an operation that cannot apply to an image makes it invalid.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from gpuimages.task.device import TaskDevice
from gpuimages.task.images import ImageBatchBuilder, list_column
from gpuimages.task.steps.base import Step, Work

log = logging.getLogger(__name__)

#: Reason for an image that an operation could not apply to.
INVALID_AFTER_STAGES = "invalid after the stages (an operation could not apply to the image)"


@dataclass
class Transform(Step):
    """``stages`` (checked specs, see :mod:`gpuimages.transforms.stages`) over ``work.images`` into ``output_col``."""

    stages: tuple[dict[str, Any], ...]
    output_col: str
    name = "transform"
    _arrays: Any = field(default=None, init=False, repr=False, compare=False)

    def open(self, device: TaskDevice) -> None:
        from gpuimages.transforms.arrays import arrays_for

        self._arrays = arrays_for(device)

    @property
    def tensor_output(self) -> bool:
        """True when the stages end with "normalize" (``list<float>`` instead of images)."""
        return bool(self.stages) and self.stages[-1]["action"] == "normalize"

    def run(self, work: Work) -> None:
        from gpuimages.transforms.stages import apply_stages

        images, arrays = work.images, self._arrays
        results: list[Any] = [None] * len(images)
        failed: list[str | None] = [None] * len(images)
        with arrays.on_device():
            for (h, w, c), rows in images.groups().items():
                out = apply_stages(arrays.asarray(images.stack(rows)), self.stages, arrays)
                if out is None:
                    log.info("gpuimages: %d image(s) of %dx%dx%d became invalid in the stages", len(rows), h, w, c)
                    for i in rows:
                        failed[i] = INVALID_AFTER_STAGES
                    continue
                out = arrays.to_numpy(out)
                for j, i in enumerate(rows):
                    results[i] = out[j]
        work.note(failed)
        if self.tensor_output:
            work.columns[self.output_col] = list_column(results, pa.float32())
            work.row_bytes = np.array([0 if r is None else r.size * 4 for r in results], dtype=np.int64)
            return
        builder = ImageBatchBuilder(len(images))
        for i, image in enumerate(results):
            if image is None:
                builder.set_error(i, work.reasons[i] or INVALID_AFTER_STAGES)
            else:
                builder.set_image(i, image, owned=True)
        out = builder.build()
        out.present = images.present
        work.columns[self.output_col] = out.to_struct(work.origins, work.pixel_type)
        work.row_bytes = np.diff(out.offsets)
        work.images = out

    def engine(self) -> str | None:
        return None if self._arrays is None else f"transform ({self._arrays.name})"


@dataclass
class Unroll(Step):
    """Each image's bytes as doubles in stored order (``list<double>`` in ``output_col``); null otherwise."""

    output_col: str
    name = "unroll"

    def run(self, work: Work) -> None:
        images = work.images
        rows: list[np.ndarray | None] = [
            images.pixels(i).reshape(-1) if images.channels[i] > 0 else None for i in range(len(images))
        ]
        work.columns[self.output_col] = list_column(rows, pa.float64())
        work.row_bytes = np.array([0 if r is None else r.size * 8 for r in rows], dtype=np.int64)

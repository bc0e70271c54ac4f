"""Sniffing: the format each file's header names ("jpeg", "png", a format Pillow knows, "unknown",
"empty"), without decoding it (``gpuimages info``)."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from gpuimages.engines.formats import sniff
from gpuimages.task.steps.base import Step, Work


def format_name(blob: bytes | None) -> str:
    """The format a file's header names."""
    if not blob:
        return "empty"
    info = sniff(blob)
    if info.format != "other":
        return info.format
    from PIL import Image

    try:
        with Image.open(io.BytesIO(blob)) as im:
            return (im.format or "unknown").lower()
    except Exception:  # noqa: BLE001 - not an image
        return "unknown"


@dataclass
class Sniff(Step):
    """Encoded bytes to their format name in ``output_col``."""

    output_col: str = "format"
    name = "sniff"

    def run(self, work: Work) -> None:
        work.columns[self.output_col] = pa.array([format_name(b) for b in work.blobs], type=pa.string())
        work.row_bytes = np.zeros(len(work), dtype=np.int64)

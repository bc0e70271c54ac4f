"""``StageSpec``: a stage as the driver planned it, the one thing every task of the stage receives."""

from __future__ import annotations

from dataclasses import dataclass

from gpuimages.task.steps.base import Step

#: What a stage's input column holds.
INPUT_KINDS = ("bytes", "paths", "struct", "values")


@dataclass(frozen=True)
class StageSpec:
    """A stage as the driver planned it: picklable, validated, complete.

    name:            the stage's name in logs ("decode", "encode", "featurize", ...).
    device:          "auto", "cpu" or "gpu" (resolved on the driver).
    input_col:       the column the first step reads.
    input_kind:      "bytes" (encoded files), "paths" (the files' paths: the first step reads them), "struct"
                     (Spark's image struct) or "values" (any column: its values are the steps' input, as
                     bytes are).
    steps:           the capabilities, in order.
    columns:         the output columns in order: an input column name is passed through, a name a
                     step produces (or ``error_col``) is taken from the work.
    origin_col:      bytes or paths input: the string column naming each file (None: no origin).
    origin_is_path:  ``origin_col`` holds ``binaryFile`` paths, turned into image-source URIs.
    error_col:       the reason column (None: no reason column).
    prior_error_col: an input column of earlier reasons, which win over the stage's own.
    drop_invalid:    drop rows with a reason.
    rows_per_batch:  rows per Arrow batch returned to the JVM.
    max_batch_bytes: bytes per chunk held and per Arrow batch returned (one larger row goes alone).
    """

    name: str
    device: str
    input_col: str
    input_kind: str
    steps: tuple[Step, ...]
    columns: tuple[str, ...]
    origin_col: str | None = None
    origin_is_path: bool = False
    error_col: str | None = "error"
    prior_error_col: str | None = None
    drop_invalid: bool = False
    rows_per_batch: int = 16
    max_batch_bytes: int = 128 * 1024 * 1024

    def __post_init__(self) -> None:
        if self.input_kind not in INPUT_KINDS:
            raise ValueError(f"input_kind: expected one of {', '.join(INPUT_KINDS)}, got {self.input_kind!r}")
        if not self.steps:
            raise ValueError("steps: expected at least one step")

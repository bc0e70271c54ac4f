"""Structured Streaming in tests: one availableNow run to Parquet, ended when its query ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def write_available_now(frame: Any, out: Path, checkpoint: Path) -> Any:
    """Write the streaming ``frame`` to Parquet at ``out`` in one availableNow run; returns the ended query.

    availableNow ends by itself, so the query is awaited without a time window (the test's timeout bounds a
    hang); it must end without an exception."""
    query = (
        frame.writeStream.format("parquet")
        .option("checkpointLocation", str(checkpoint))
        .trigger(availableNow=True)
        .start(str(out))
    )
    try:
        query.awaitTermination()
    finally:
        if query.isActive:
            query.stop()
    assert query.exception() is None
    assert not query.isActive
    return query

"""Smoke test of benchmarks/encode.py on a tiny photo set: every row runs, the JSON has ratios and sizes (not speed)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root


def test_encode_benchmark_on_a_tiny_set(spark, tmp_path):
    pytest.importorskip("skimage")
    from benchmarks import encode

    payload = encode.run(8, 1, tmp_path / "out", str(tmp_path / "data"), cores=2, spark=spark, size=(60, 80))
    assert set(payload["img_per_s"]) == {"transcode", "read_encode", "read_raw", "pillow"}
    assert all(v > 0 for v in payload["img_per_s"].values())
    assert payload["valid_rows"] == {"transcode_rows": 8, "read_encode_rows": 8}
    assert payload["parquet_bytes"]["raw"] > payload["parquet_bytes"]["jpeg"] > 0
    assert set(payload["goals"]) == {"transcode_vs_pillow", "transcode_vs_read_encode"}
    assert json.loads((tmp_path / "out" / "encode.json").read_text())["ratios"] == payload["ratios"]
    assert "goal transcode_vs_pillow" in encode.format_report(payload)
    assert encode.pillow_transcode_file(str(next((tmp_path / "data").rglob("*.jpg")))) > 0

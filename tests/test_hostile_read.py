"""Hostile inputs on the read side: resizes far larger than the image."""

from __future__ import annotations

import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from images import encode, rgb_array, write_files

import gpuimages
from gpuimages.options import DEFAULT_MAX_PIXELS
from gpuimages.transcode import transcode_files


def _name(origin: str) -> str:
    return unquote(origin).rsplit("/", 1)[-1]


def _rows(df, origin: str = "image.origin") -> dict:
    rows = df.collect()
    out = {}
    for r in rows:
        key = _name(r["image"]["origin"] if origin == "image.origin" else r[origin])
        assert key not in out, f"{key!r} came back twice"
        out[key] = r
    return out


# --- Resizes far larger than the image ------------------------------------------------------------


@pytest.fixture()
def tiny(tmp_path) -> Path:
    folder = tmp_path / "tiny"
    write_files(folder, {
        f"t{i}.{ext}": encode(rgb_array(16, 16, seed=i), "JPEG" if ext == "jpg" else "PNG")
        for i, ext in enumerate(["jpg", "png", "jpg"])
    })
    return folder


@pytest.mark.parametrize("kwargs", [
    {"resize": (100000, 100000)},
    {"resize": (100000, 100000), "center_crop": 8},
    {"resize": (300, 300), "max_pixels": 1000},
])
def test_a_fixed_resize_over_max_pixels_fails_on_the_driver(spark, tiny, kwargs):
    with pytest.raises(ValueError, match=r"resize: expected at most max_pixels=\d+ pixels"):
        gpuimages.read_images(spark, str(tiny), device="cpu", **kwargs)
    with pytest.raises(ValueError, match="resize.*max_pixels"):
        transcode_files(spark, str(tiny), device="cpu", **kwargs)


@pytest.mark.timeout(300)
def test_a_shorter_side_resize_over_max_pixels_is_an_invalid_row_per_file(spark, tiny):
    started = time.perf_counter()
    rows = _rows(gpuimages.read_images(spark, str(tiny), device="cpu", resize=100000))
    assert len(rows) == 3
    for row in rows.values():
        assert row.image.height == -1
        assert row.error.startswith("resize=100000 would make this 16x16 image 100000x100000")
        assert f"over max_pixels={DEFAULT_MAX_PIXELS}" in row.error
    out = _rows(transcode_files(spark, str(tiny), device="cpu", resize=100000, center_crop=8), origin="origin")
    assert all("max_pixels" in r.error and r.encoded is None for r in out.values())
    # Within the limit the same option decodes: 16x16 -> 2000x2000 pixels.
    ok = _rows(gpuimages.read_images(spark, str(tiny), device="cpu", resize=2000, max_pixels=4_000_000))
    assert all(r.error is None and (r.image.height, r.image.width) == (2000, 2000) for r in ok.values())
    assert time.perf_counter() - started < 240


def test_the_dali_router_sends_an_oversized_resize_to_pillow():
    pytest.importorskip("nvidia.dali")
    from gpuimages.engines import dali
    from gpuimages.engines.pillow import PillowEngine
    from gpuimages.options import make_decode_options

    blob = encode(rgb_array(16, 16), "JPEG")
    options = make_decode_options(resize=100000)
    assert dali.route(blob, options) == "over max_pixels"
    assert dali.route(blob, make_decode_options(resize=64)) == (16, 16, 3)
    decoded = PillowEngine(options).decode([blob])
    assert decoded.channels[0] == -1 and "resize=100000" in decoded.errors[0]
    assert np.asarray(decoded.data).size == 0

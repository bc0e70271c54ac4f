"""Hostile inputs on the read side: directory links and resizes far larger than the image."""

from __future__ import annotations

import os
import time
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from images import encode, rgb_array, write_files

import gpuimages
from gpuimages import listing
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


# --- Directory links -----------------------------------------------------------------------------


def _tree_with(tmp_path: Path, links: dict[str, str]) -> Path:
    root = tmp_path / "tree"
    write_files(root, {
        "a/x.jpg": encode(rgb_array(8, 8, seed=1), "JPEG"),
        "b/y.png": encode(rgb_array(6, 6, seed=2), "PNG"),
    })
    for link, target in links.items():
        os.symlink(target, root / link)
    return root


@pytest.mark.timeout(120)
@pytest.mark.parametrize("links, why", [
    ({"a/loop": ".."}, "link back to a folder above it"),
    ({"a/loop": "..", "b/loop": "../a"}, "(link back to a folder above it|second way into a folder)"),
    ({"a/loop": "..", "b/loop": ".."}, "link back to a folder above it"),
    ({"a/self": "."}, "link back to a folder above it"),
])
def test_directory_link_loops_are_a_clear_error_and_fast(spark, tmp_path, links, why):
    root = _tree_with(tmp_path, links)
    started = time.perf_counter()
    with pytest.raises(ValueError, match=f"again through a directory {why}"):
        gpuimages.read_images(spark, str(root), recursive=True, device="cpu")
    with pytest.raises(ValueError, match="directory link"):
        transcode_files(spark, str(root), recursive=True, device="cpu")
    assert time.perf_counter() - started < 60


@pytest.mark.timeout(120)
def test_a_loop_below_a_partition_folder_is_refused_without_recursive(spark, tmp_path):
    root = tmp_path / "parts"
    write_files(root, {"cls=a/x.jpg": encode(rgb_array(8, 8), "JPEG")})
    os.symlink("..", root / "cls=a" / "loop")
    with pytest.raises(ValueError, match="link back to a folder above it"):
        gpuimages.read_images(spark, str(root), device="cpu")


def test_links_reached_once_are_followed_and_twice_refused(spark, tmp_path):
    outside = tmp_path / "outside"
    write_files(outside, {"z.png": encode(rgb_array(4, 4, seed=5), "PNG")})
    root = _tree_with(tmp_path, {"ext": str(outside), "dangling": str(tmp_path / "nowhere"),
                                 "a/file_link.jpg": "x.jpg"})
    rows = _rows(gpuimages.read_images(spark, str(root), recursive=True, device="cpu"))
    assert sorted(rows) == ["file_link.jpg", "x.jpg", "y.png", "z.png"]  # the dangling link lists nothing, as in Spark
    assert all(r.error is None for r in rows.values())
    theirs = spark.read.format("image").option("recursiveFileLookup", "true").load(str(root))
    assert sorted(r.image.origin for r in rows.values()) == sorted(r.image.origin for r in theirs.collect())

    os.symlink(str(outside), root / "b" / "ext_again")
    with pytest.raises(ValueError, match="second way into a folder"):
        gpuimages.read_images(spark, str(root), recursive=True, device="cpu")


def test_a_glob_only_walks_what_it_matches(spark, tmp_path):
    root = _tree_with(tmp_path, {"b/loop": ".."})
    rows = _rows(gpuimages.read_images(spark, str(root / "a"), device="cpu"))
    assert sorted(rows) == ["x.jpg"]
    rows = _rows(gpuimages.read_images(spark, str(root / "{a,c}"), recursive=True, device="cpu"))
    assert sorted(rows) == ["x.jpg"]
    with pytest.raises(ValueError, match="link back to a folder above it"):
        gpuimages.read_images(spark, str(root / "[ab]"), recursive=True, device="cpu")


def test_glob_translation():
    assert listing._glob_regex("plain") is None
    assert listing._glob_regex("*.jpg").fullmatch("a.jpg")
    assert not listing._glob_regex("*.jpg").fullmatch("a.png")
    assert listing._glob_regex("{a,b}?").fullmatch("bx")
    assert listing._glob_regex("[!a]*").fullmatch("bcd") and not listing._glob_regex("[^a]*").fullmatch("abc")
    assert listing._glob_regex("\\*x").fullmatch("*x") and not listing._glob_regex("\\*x").fullmatch("yx")
    assert listing._glob_regex("{a,b") is None


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

"""The DALI engine on CPU operators (``gpu_id=None``) against the Pillow engine, plus gpu.py helpers.

DALI's CPU decoder and Pillow both use libjpeg-turbo (fancy upsampling, islow IDCT) and zlib,
so decoded pixels are expected to match exactly; the tolerances below leave room for a
rounding difference between library builds, not for a different algorithm.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

pytest.importorskip("nvidia.dali")

from images import bad_huffman_jpeg, encode, exif_jpeg, odd_files, rgb_array  # noqa: E402
from PIL import Image  # noqa: E402

from gpuimages import gpu  # noqa: E402
from gpuimages.engines import create_engine, dali  # noqa: E402
from gpuimages.engines.dali import DaliEngine, pipeline_stats, route  # noqa: E402
from gpuimages.engines.pillow import PillowEngine  # noqa: E402
from gpuimages.options import DecodeOptions  # noqa: E402

pytestmark = pytest.mark.dali

#: Max abs difference allowed for JPEG pixels decoded without resizing (measured: 0).
JPEG_MAX_DIFF = 2
#: Resizing: DALI filters in float, Pillow in fixed point; measured max 1, mean <= 0.2.
RESIZE_MAX_DIFF = 2
RESIZE_MEAN_DIFF = 0.5
#: Strong JPEG downscale: Pillow decodes at a reduced DCT scale first (draft mode), DALI decodes
#: full size and filters; measured mean 2.5, max 19 on smooth 375x500 content shrunk to 64.
DRAFT_MEAN_DIFF = 4.0

#: Files of odd_files() that DALI must decode itself (everything else goes to Pillow by design).
DALI_FILES = {
    "rgb.png", "rgb.jpg", "progressive.jpg", "gray.png", "gray.jpg", "rgba.png", "exif6.jpg", "with space.jpg",
}


def smooth(height: int, width: int, seed: int) -> np.ndarray:
    """Photo-like content: a coarse random grid upscaled (JPEG-friendly, non-trivial to resize)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (height // 16 + 2, width // 16 + 2, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(small).resize((width, height), Image.BICUBIC))


def palette8_png(arr: np.ndarray, colors: int = 256) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr).convert("P", palette=Image.ADAPTIVE, colors=colors).save(buf, "PNG")
    return buf.getvalue()


def extra_files() -> dict[str, bytes]:
    """Larger and additional cases DALI decodes: 8-bit palette, ImageNet-sized JPEGs, grey + tRNS."""
    gray = smooth(64, 80, 9)[:, :, 0]
    return {
        "pal8.png": palette8_png(smooth(50, 70, 4)),
        "pal8_short.png": palette8_png(smooth(50, 70, 4), colors=200),  # indices 200..255 unassigned
        "photo_landscape.jpg": encode(smooth(375, 500, 1), "JPEG", quality=90),
        "photo_portrait.jpg": encode(smooth(500, 375, 2), "JPEG", quality=90),
        "photo_gray.jpg": encode(smooth(300, 200, 5)[:, :, 0], "JPEG", quality=90),
        "photo.png": encode(smooth(120, 90, 6), "PNG"),
        "gray_trns.png": encode(gray, "PNG", transparency=5),
        "rgba_big.png": encode(np.dstack([smooth(64, 48, 7), gray[:64, :48]]), "PNG"),
    }


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def decode_both(options: DecodeOptions, blobs: list[bytes | None]):
    engine = DaliEngine(options)
    return engine, engine.decode(blobs), PillowEngine(options).decode(blobs)


def assert_same_images(names, ours, ref, exact_png: bool = True, max_jpeg: int = JPEG_MAX_DIFF) -> None:
    assert len(ours) == len(ref) == len(names)
    for i, name in enumerate(names):
        assert (ours.errors[i] is None) == (ref.errors[i] is None), (name, ours.errors[i], ref.errors[i])
        if ref.errors[i] is not None:
            assert ours.errors[i], name
            assert ours.channels[i] == -1
            continue
        a, b = ours.pixels(i), ref.pixels(i)
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if name.endswith(".png") and exact_png:
            assert np.array_equal(a, b), name
        else:
            assert diff(a, b).max() <= max_jpeg, (name, int(diff(a, b).max()))


# --------------------------------------------------------------------------------------------
# Decoding against Pillow
# --------------------------------------------------------------------------------------------


def test_odd_files_match_pillow():
    files = {**odd_files(), **extra_files()}
    names = list(files)
    engine, ours, ref = decode_both(DecodeOptions(batch_size=64), [files[n] for n in names])
    assert engine.name == "dali-cpu"
    assert_same_images(names, ours, ref)
    assert list(ours.channels) == list(ref.channels)
    invalid = {n for i, n in enumerate(names) if ours.errors[i] is not None}
    assert invalid == {"empty.jpg", "text.jpg", "truncated.jpg", "bomb.png"}
    routes = dict(zip(names, engine.last_routes, strict=True))
    for name in DALI_FILES | {"pal8.png", "photo_landscape.jpg", "photo_portrait.jpg", "photo_gray.jpg", "photo.png"}:
        assert routes[name] == "dali", (name, routes[name])
    assert routes["truncated.jpg"] == "pillow: truncated"
    for name in ("la.png", "cmyk.jpg", "rgb_trns.png", "gray16.png", "image.gif", "gray_trns.png", "bomb.png"):
        assert routes[name].startswith("pillow: "), (name, routes[name])


def test_missing_values_and_empty_batch():
    engine = DaliEngine(DecodeOptions())
    assert len(engine.decode([])) == 0
    batch = engine.decode([None, b"", odd_files()["rgb.jpg"]])
    assert batch.errors[0] and batch.errors[1] and batch.errors[2] is None
    assert batch.pixels(2).shape == (20, 30, 3)


def test_corrupt_file_in_the_middle_keeps_the_others():
    good = [encode(rgb_array(20 + i, 30, seed=i), "JPEG", quality=90) for i in range(9)]
    blobs: list[bytes | None] = [*good[:4], bad_huffman_jpeg(), *good[4:]]
    engine, ours, ref = decode_both(DecodeOptions(batch_size=16), blobs)
    assert [e is None for e in ours.errors] == [True] * 4 + [False] + [True] * 5
    assert ours.errors[4]
    for i in range(len(blobs)):
        if i != 4:
            assert ours.pixels(i).shape == ref.pixels(i).shape == (20 + i - (i > 4), 30, 3)
            assert diff(ours.pixels(i), ref.pixels(i)).max() <= JPEG_MAX_DIFF
    assert engine.last_routes.count("dali") == 9


def test_batches_larger_than_batch_size_are_chunked():
    blobs = [encode(rgb_array(16, 16 + i, seed=i), "PNG") for i in range(11)]
    engine, ours, ref = decode_both(DecodeOptions(batch_size=4), blobs)
    assert engine.last_routes == ["dali"] * 11
    for i in range(11):
        assert np.array_equal(ours.pixels(i), ref.pixels(i))


def test_one_run_is_returned_without_copying():
    blobs = [encode(rgb_array(20, 30, seed=i), "JPEG", quality=90) for i in range(3)]
    engine, ours, ref = decode_both(DecodeOptions(), blobs)
    assert not ours.data.flags.owndata  # DALI's host buffer, not a repacked copy
    assert list(ours.offsets) == [0, 1800, 3600, 5400]
    for i in range(3):
        assert diff(ours.pixels(i), ref.pixels(i)).max() <= JPEG_MAX_DIFF


#: Geometries where Pillow decodes at full scale (no draft mode) for every file of the set below.
GEOMETRIES = [
    pytest.param(DecodeOptions(resize=(200, 260)), id="exact-hw"),
    pytest.param(DecodeOptions(resize=224), id="shorter-224"),
    pytest.param(DecodeOptions(resize=600), id="shorter-600-upscale"),
    pytest.param(DecodeOptions(resize=256, center_crop=(224, 224)), id="shorter-256-crop-224"),
    pytest.param(DecodeOptions(center_crop=(17, 23)), id="crop-only"),
    pytest.param(DecodeOptions(resize=375), id="shorter-unchanged"),
]


@pytest.mark.parametrize("options", GEOMETRIES)
def test_geometry_matches_pillow(options):
    files = {**extra_files(), "rgb.jpg": odd_files()["rgb.jpg"], "gray.png": odd_files()["gray.png"]}
    names = list(files)
    engine, ours, ref = decode_both(options, [files[n] for n in names])
    for i, name in enumerate(names):
        assert ours.errors[i] is None and ref.errors[i] is None, name
        a, b = ours.pixels(i), ref.pixels(i)
        assert a.shape == b.shape, (name, a.shape, b.shape)
        d = diff(a, b)
        if options.resize is None:  # crop only: no resampling
            assert d.max() <= (0 if name.endswith(".png") else JPEG_MAX_DIFF), name
        else:
            assert d.max() <= RESIZE_MAX_DIFF and d.mean() <= RESIZE_MEAN_DIFF, (name, int(d.max()), float(d.mean()))
    routes = dict(zip(names, engine.last_routes, strict=True))
    assert routes["photo_landscape.jpg"] == routes["photo.png"] == "dali"
    rgba = "pillow: rgba resize" if options.resize is not None else "dali"
    assert routes["rgba_big.png"] == rgba


DRAFT_GEOMETRIES = [DecodeOptions(resize=r) for r in (64, (48, 64), 40, 150)]


@pytest.mark.parametrize("options", DRAFT_GEOMETRIES)
def test_strong_jpeg_downscale(options):
    """Pillow decodes these at a reduced DCT scale (draft mode) first; DALI decodes full size and filters.

    The output size follows ``DecodeOptions.output_size`` of the stored size. Pillow's pixels
    differ more here (its draft decode is coarser), so only the mean difference is bounded.
    """
    arrays = [smooth(375, 500, 1), smooth(500, 375, 2)]
    blobs = [encode(a, "JPEG", quality=90) for a in arrays]
    engine, ours, ref = decode_both(options, blobs)
    assert engine.last_routes == ["dali", "dali"]
    for i, arr in enumerate(arrays):
        expected = (*options.output_size(*arr.shape[:2]), 3)
        assert ours.pixels(i).shape == expected
        if ref.pixels(i).shape == expected:
            assert diff(ours.pixels(i), ref.pixels(i)).mean() <= DRAFT_MEAN_DIFF


@pytest.mark.parametrize("apply_exif, shape", [(False, (20, 40, 3)), (True, (40, 20, 3))])
def test_exif_orientation(apply_exif, shape):
    blob = exif_jpeg(rgb_array(20, 40, seed=3), 6)  # stored 40 wide, 20 high
    engine, ours, ref = decode_both(DecodeOptions(apply_exif=apply_exif), [blob])
    assert ours.pixels(0).shape == ref.pixels(0).shape == shape
    assert diff(ours.pixels(0), ref.pixels(0)).max() <= JPEG_MAX_DIFF
    assert engine.last_routes == ["dali"]


def test_exif_orientation_with_resize():
    blob = exif_jpeg(smooth(60, 120, 8), 6)
    engine, ours, ref = decode_both(DecodeOptions(apply_exif=True, resize=40), [blob])
    assert ours.pixels(0).shape == ref.pixels(0).shape == (80, 40, 3)
    assert diff(ours.pixels(0), ref.pixels(0)).mean() <= RESIZE_MEAN_DIFF


# --------------------------------------------------------------------------------------------
# Routing, failures, caching
# --------------------------------------------------------------------------------------------


def test_route():
    files = {**odd_files(), **extra_files()}
    opts = DecodeOptions()
    assert route(files["rgb.jpg"], opts) == (20, 30, 3)
    assert route(files["gray.png"], opts) == (20, 30, 1)
    assert route(files["rgba.png"], opts) == (20, 30, 4)
    assert route(files["pal8.png"], opts) == (50, 70, 3)
    assert route(files["pal8_short.png"], opts) == "png palette shorter than its index range"
    assert route(files["exif6.jpg"], DecodeOptions(apply_exif=True)) == (30, 20, 3)
    assert route(files["rgba.png"], DecodeOptions(resize=10)) == "rgba resize"
    assert route(files["cmyk.jpg"], opts).startswith("jpeg with 4 components")
    assert route(files["bomb.png"], opts) == "over max_pixels"
    assert route(files["rgb.jpg"], DecodeOptions(max_pixels=100)) == "over max_pixels"
    for name in ("la.png", "la16.png", "rgb16.png", "bilevel.png", "rgb_trns.png", "palette_trns.png", "gray_trns.png"):
        assert isinstance(route(files[name], opts), str), name
    assert route(None, opts) == route(b"", opts) == "missing or empty"
    assert route(files["image.bmp"], opts) == "not jpeg/png"


def test_dali_failures_fall_back_to_pillow(monkeypatch):
    engine = DaliEngine(DecodeOptions())
    calls = []

    def broken(pipe, jobs):
        calls.append(len(jobs))
        raise RuntimeError("Critical error in pipeline: something went wrong")

    monkeypatch.setattr(engine, "_run", broken)
    blobs = [encode(rgb_array(20, 30, seed=i), "JPEG", quality=90) for i in range(4)]
    ours = engine.decode(blobs)
    ref = PillowEngine(DecodeOptions()).decode(blobs)
    assert ours.errors == [None] * 4
    assert all(r.startswith("pillow after dali: RuntimeError: Critical error") for r in engine.last_routes)
    assert calls == [4, 2, 1, 1, 2, 1, 1]  # halves until each file stands alone
    for i in range(4):
        assert np.array_equal(ours.pixels(i), ref.pixels(i))


def test_dali_that_keeps_failing_is_rebuilt_then_switched_off(monkeypatch, caplog):
    engine = DaliEngine(DecodeOptions())
    monkeypatch.setattr(engine, "_run", lambda pipe, jobs: (_ for _ in ()).throw(RuntimeError("Critical error")))
    blobs = [encode(rgb_array(20, 30, seed=i), "JPEG", quality=90) for i in range(2)]
    built = pipeline_stats()["built"]
    with caplog.at_level(logging.WARNING, logger="gpuimages.engines.dali"):
        for _ in range(3 * (dali._MAX_REBUILDS + 1)):
            assert engine.decode(blobs).errors == [None, None]
    assert caplog.text.count("rebuilding its pipelines") == dali._MAX_REBUILDS
    assert pipeline_stats()["built"] - built == dali._MAX_REBUILDS
    assert engine.disabled and "decoding the rest with Pillow" in caplog.text
    batch = engine.decode(blobs)
    assert batch.errors == [None, None]
    assert engine.last_routes == ["pillow: dali switched off after repeated failures"] * 2


def test_out_of_memory_shrinks_the_batch(monkeypatch, caplog):
    engine = DaliEngine(DecodeOptions(batch_size=8))
    real = engine._run
    sizes = []

    def tight(pipe, jobs):
        sizes.append(len(jobs))
        if len(jobs) > 2:
            raise RuntimeError("Critical error in pipeline: CUDA error: out of memory")
        return real(pipe, jobs)

    monkeypatch.setattr(engine, "_run", tight)
    blobs = [encode(rgb_array(20, 30, seed=i), "PNG") for i in range(7)]
    with caplog.at_level(logging.WARNING, logger="gpuimages.engines.dali"):
        ours = engine.decode(blobs)
    assert engine.chunk_size == 2
    assert "out of GPU memory" in caplog.text
    assert engine.last_routes == ["dali"] * 7
    ref = PillowEngine(DecodeOptions()).decode(blobs)
    for i in range(7):
        assert np.array_equal(ours.pixels(i), ref.pixels(i))
    sizes.clear()
    engine.decode(blobs)
    assert max(sizes) == 2  # the smaller batch is kept


def test_unexpected_dali_shape_goes_to_pillow(monkeypatch):
    blob = odd_files()["rgb.png"]
    real_route = dali.route
    monkeypatch.setattr(dali, "route", lambda b, o: (30, 20, 3) if b is blob else real_route(b, o))
    engine = DaliEngine(DecodeOptions())
    ours = engine.decode([blob, odd_files()["rgb.jpg"]])
    assert engine.last_routes[0].startswith("pillow after dali: DALI gave shape (20, 30, 3)")
    assert engine.last_routes[1] == "dali"
    assert np.array_equal(ours.pixels(0), PillowEngine(DecodeOptions()).decode([blob]).pixels(0))


def test_pipeline_built_once_per_configuration():
    dali.clear_pipelines()
    options = DecodeOptions(resize=(12, 12), batch_size=5)
    files = odd_files()
    blobs = [files["rgb.jpg"], files["gray.jpg"], files["rgb.png"]]
    before = pipeline_stats()["built"]
    engine = DaliEngine(options)
    engine.decode(blobs)
    built = pipeline_stats()["built"] - before
    assert built == 2  # 3-channel and 1-channel pipelines
    for _ in range(3):
        engine.decode(blobs)
    DaliEngine(options).decode(blobs)  # a new engine (next task) reuses them
    assert pipeline_stats()["built"] - before == built
    assert pipeline_stats()["cached"] == 2
    DaliEngine(DecodeOptions(resize=(13, 13), batch_size=5))
    assert pipeline_stats()["built"] - before == built + 1


def test_create_engine_gives_dali_cpu():
    engine = create_engine(DecodeOptions(), gpu_id=None, engine="dali")
    assert isinstance(engine, DaliEngine) and engine.name == "dali-cpu"


def test_host_copy_is_validated():
    with pytest.raises(ValueError, match="host_copy"):
        DaliEngine(DecodeOptions(), host_copy="dlpack")


def test_missing_dali_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(ImportError, match=r"pip install gpuimages\[gpu\]"):
        DaliEngine(DecodeOptions())


def test_importing_gpuimages_does_not_import_dali():
    code = (
        "import sys, gpuimages, gpuimages.engines, gpuimages.engines.dali, gpuimages.gpu\n"
        "from gpuimages.engines import create_engine\n"
        "bad = [m for m in ('nvidia.dali', 'cupy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------------------------
# gpu.py
# --------------------------------------------------------------------------------------------


def fake_context(*addresses: str) -> SimpleNamespace:
    resources = {"gpu": SimpleNamespace(name="gpu", addresses=list(addresses))} if addresses else {}
    return SimpleNamespace(resources=lambda: resources)


def test_parse_gpu_address():
    assert gpu.parse_gpu_address("0") == 0
    assert gpu.parse_gpu_address(" 3 ") == 3
    for bad in ("GPU-1234", "", "-1", "0.5", None):
        with pytest.raises(ValueError, match="expected a CUDA device index"):
            gpu.parse_gpu_address(bad)


def test_task_gpu_id():
    assert gpu.task_gpu_id(fake_context("2", "3")) == 2
    assert gpu.task_gpu_id(fake_context()) is None
    assert gpu.task_gpu_addresses(fake_context("1")) == ["1"]
    assert gpu.task_gpu_id() is None  # not inside a Spark task
    with pytest.raises(ValueError):
        gpu.task_gpu_id(fake_context("gpu0"))


def test_resolve_gpu_id(caplog):
    with caplog.at_level(logging.INFO, logger="gpuimages.gpu"):
        assert gpu.resolve_gpu_id(["1"], visible=2) == 1
        assert gpu.resolve_gpu_id([], visible=2) == 0
        assert "no GPU assigned" in caplog.text
        caplog.clear()
        assert gpu.resolve_gpu_id([], visible=0) is None
        assert "CPU operators" in caplog.text
        caplog.clear()
        assert gpu.resolve_gpu_id(["3"], visible=0) is None
        assert "no CUDA device is visible" in caplog.text
        assert gpu.resolve_gpu_id(["5"], visible=1) == 0  # isolated container
    with pytest.raises(ValueError, match="only 2 CUDA devices"):
        gpu.resolve_gpu_id(["5"], visible=2)
    with pytest.raises(ValueError, match="expected a CUDA device index"):
        gpu.resolve_gpu_id(["x"], visible=2)


def test_visible_devices_limit():
    assert gpu.visible_devices_limit(None, 4) == 4
    assert gpu.visible_devices_limit("", 4) == 0
    assert gpu.visible_devices_limit("-1", 4) == 0
    assert gpu.visible_devices_limit("1,2", 4) == 2
    assert gpu.visible_devices_limit("0,-1,1", 4) == 1
    assert gpu.visible_devices_limit("0,7", 4) == 1
    assert gpu.visible_devices_limit("GPU-8f2a,GPU-11c3", 4) == 2


def test_visible_gpu_count_is_probed_once(monkeypatch):
    calls = []
    monkeypatch.setattr(gpu, "_visible_count", None)
    monkeypatch.setattr(gpu, "_count_from_driver", lambda: calls.append("driver"))
    monkeypatch.setattr(gpu, "_count_from_nvidia_smi", lambda: calls.append("smi") or 2)
    assert gpu.visible_gpu_count() == 2
    assert gpu.visible_gpu_count() == 2
    assert calls == ["driver", "smi"]
    assert gpu.visible_gpu_count(refresh=True) == 2 and len(calls) == 4


def test_visible_gpu_count_real_probe():
    count = gpu.visible_gpu_count(refresh=True)
    assert isinstance(count, int) and count >= 0


def test_jpeg_with_non_srgb_profile_goes_to_pillow_for_colour_management():
    from images import odd_files

    files = odd_files()
    engine, ours, ref = decode_both(DecodeOptions(), [files["icc_linear.jpg"], files["rgb.jpg"]])
    assert engine.last_routes[0] == "pillow: jpeg with a non-sRGB ICC profile"
    assert engine.last_routes[1] == "dali"
    assert np.array_equal(ours.pixels(0), ref.pixels(0))


def test_library_gpu_follows_the_device(monkeypatch, caplog):
    monkeypatch.setattr(gpu, "task_gpu_id", lambda context=None: None)
    monkeypatch.setattr(gpu, "visible_gpu_count", lambda refresh=False: 0)
    monkeypatch.setattr(gpu, "resolve_gpu_id", lambda *a, **k: 1)
    assert gpu.library_gpu("cpu", "nvidia.dali", "DALI") == (False, None)
    assert gpu.library_gpu("auto", "nvidia.dali", "DALI") == (False, None)  # no GPU seen
    assert gpu.library_gpu("gpu", "nvidia.dali", "DALI") == (True, 1)
    monkeypatch.setattr(gpu, "visible_gpu_count", lambda refresh=False: 1)
    assert gpu.library_gpu("auto", "nvidia.dali", "DALI") == (True, 1)
    with caplog.at_level("WARNING", logger="gpuimages.gpu"):
        assert gpu.library_gpu("auto", "no_such_gpu_library", "NoSuchLib") == (False, None)
    assert "NoSuchLib does not import" in caplog.text

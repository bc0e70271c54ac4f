"""The DALI engine on CPU operators (a task device without a GPU) against the Pillow engine; its pipelines
(keys, worker cache, eviction, windowed runs) and the device-output API.

DALI's CPU decoder and Pillow both use libjpeg-turbo (fancy upsampling, islow IDCT) and zlib,
so decoded pixels are expected to match exactly; the tolerances below leave room for a
rounding difference between library builds, not for a different algorithm.
"""

from __future__ import annotations

import io
import logging
import subprocess
import sys
from collections import Counter

import numpy as np
import pytest

pytest.importorskip("nvidia.dali")

from images import bad_huffman_jpeg, encode, exif_jpeg, odd_files, rgb_array  # noqa: E402
from PIL import Image  # noqa: E402

from gpuimages.engines import create_engine  # noqa: E402
from gpuimages.engines.dali import DaliEngine, pipeline_stats, pipelines, route, routing  # noqa: E402  # noqa: E402
from gpuimages.engines.dali import engine as dali_engine  # noqa: E402
from gpuimages.engines.pillow import PillowEngine  # noqa: E402
from gpuimages.options import DecodeOptions  # noqa: E402
from gpuimages.task.cache import worker_cache  # noqa: E402
from gpuimages.task.device import TaskDevice  # noqa: E402

pytestmark = pytest.mark.dali

#: A task without a GPU under device="gpu": DALI's CPU operators, two threads.
CPU = TaskDevice("gpu", None, 2)

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
    engine = DaliEngine(options, CPU)
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
    engine = DaliEngine(DecodeOptions(), CPU)
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


def failing_collect(engine, fail):
    """Wrap ``engine._collect``: take DALI's real output (as DALI does), then raise when ``fail(jobs)`` says so."""
    real = engine._collect
    sizes = []

    def collect(run, key, jobs):
        sizes.append(len(jobs))
        result = real(run, key, jobs)
        message = fail(jobs)
        if message:
            raise RuntimeError(message)
        return result

    return collect, sizes


def test_dali_failures_fall_back_to_pillow(monkeypatch):
    engine = DaliEngine(DecodeOptions(), CPU)
    collect, sizes = failing_collect(engine, lambda jobs: "Critical error in pipeline: something went wrong")
    monkeypatch.setattr(engine, "_collect", collect)
    blobs = [encode(rgb_array(20, 30, seed=i), "JPEG", quality=90) for i in range(4)]
    ours = engine.decode(blobs)
    ref = PillowEngine(DecodeOptions()).decode(blobs)
    assert ours.errors == [None] * 4
    assert all(r.startswith("pillow after dali: RuntimeError: Critical error") for r in engine.last_routes)
    assert Counter(sizes) == {4: 1, 2: 2, 1: 4}  # halves until each file stands alone
    for i in range(4):
        assert np.array_equal(ours.pixels(i), ref.pixels(i))


def test_a_failed_batch_leaves_the_pipeline_aligned(monkeypatch):
    """Batches in flight behind a failed one still get their own outputs (DALI keeps them in order)."""
    engine = DaliEngine(DecodeOptions(batch_size=2), CPU)
    bad = {1}
    collect, _ = failing_collect(engine, lambda jobs: "broken" if any(j.index in bad for j in jobs) else None)
    monkeypatch.setattr(engine, "_collect", collect)
    blobs = [encode(rgb_array(10 + 3 * i, 12, seed=i), "PNG") for i in range(7)]
    ours = engine.decode(blobs)
    ref = PillowEngine(DecodeOptions()).decode(blobs)
    assert engine.last_routes[1].startswith("pillow after dali: RuntimeError: broken")
    assert [r == "dali" for r in engine.last_routes] == [True, False, True, True, True, True, True]
    for i in range(7):
        assert np.array_equal(ours.pixels(i), ref.pixels(i)), i
    monkeypatch.undo()
    again = engine.decode(blobs)  # the pipeline is reused after the failure, outputs still aligned
    assert engine.last_routes == ["dali"] * 7
    for i in range(7):
        assert np.array_equal(again.pixels(i), ref.pixels(i)), i


def test_dali_that_keeps_failing_is_rebuilt_then_switched_off(monkeypatch, caplog):
    worker_cache().clear()
    engine = DaliEngine(DecodeOptions(), CPU)
    collect, _ = failing_collect(engine, lambda jobs: "Critical error")
    monkeypatch.setattr(engine, "_collect", collect)
    blobs = [encode(rgb_array(20, 30, seed=i), "JPEG", quality=90) for i in range(2)]
    built = pipeline_stats()["built"]
    with caplog.at_level(logging.WARNING, logger="gpuimages.engines.dali.engine"):
        for _ in range(3 * (dali_engine._MAX_REBUILDS + 1)):
            assert engine.decode(blobs).errors == [None, None]
    assert caplog.text.count("rebuilding its pipelines") == dali_engine._MAX_REBUILDS
    assert pipeline_stats()["built"] - built == dali_engine._MAX_REBUILDS
    assert engine.disabled and "decoding the rest with Pillow" in caplog.text
    batch = engine.decode(blobs)
    assert batch.errors == [None, None]
    assert engine.last_routes == ["pillow: dali switched off after repeated failures"] * 2


def test_out_of_memory_shrinks_the_batch(monkeypatch, caplog):
    engine = DaliEngine(DecodeOptions(batch_size=8), CPU)
    collect, sizes = failing_collect(
        engine, lambda jobs: "Critical error in pipeline: CUDA error: out of memory" if len(jobs) > 2 else None
    )
    monkeypatch.setattr(engine, "_collect", collect)
    blobs = [encode(rgb_array(20, 30, seed=i), "PNG") for i in range(7)]
    with caplog.at_level(logging.WARNING, logger="gpuimages.engines.dali.pipelines"):
        ours = engine.decode(blobs)
    assert engine.chunk_size == 2 and engine.window == 1
    assert "out of memory" in caplog.text
    assert engine.last_routes == ["dali"] * 7
    ref = PillowEngine(DecodeOptions()).decode(blobs)
    for i in range(7):
        assert np.array_equal(ours.pixels(i), ref.pixels(i))
    sizes.clear()
    engine.decode(blobs)
    assert max(sizes) == 2  # the smaller batch is kept


def test_unexpected_dali_shape_goes_to_pillow(monkeypatch):
    blob = odd_files()["rgb.png"]
    real_route = routing.route
    monkeypatch.setattr(routing, "route", lambda b, o: (30, 20, 3) if b is blob else real_route(b, o))
    engine = DaliEngine(DecodeOptions(), CPU)
    ours = engine.decode([blob, odd_files()["rgb.jpg"]])
    assert engine.last_routes[0].startswith("pillow after dali: DALI gave shape (20, 30, 3)")
    assert engine.last_routes[1] == "dali"
    assert np.array_equal(ours.pixels(0), PillowEngine(DecodeOptions()).decode([blob]).pixels(0))


def test_pipeline_built_once_per_key_and_keyed_only_by_what_builds_it():
    worker_cache().clear()
    options = DecodeOptions(resize=(12, 12), batch_size=5)
    files = odd_files()
    blobs = [files["rgb.jpg"], files["gray.jpg"], files["rgb.png"]]
    before = pipeline_stats()["built"]
    engine = DaliEngine(options, CPU)
    engine.decode(blobs)
    built = pipeline_stats()["built"] - before
    assert built == 2  # 3-channel and 1-channel pipelines
    for _ in range(3):
        engine.decode(blobs)
    DaliEngine(options, CPU).decode(blobs)  # a new engine (next task) reuses them
    assert pipeline_stats()["built"] - before == built
    assert pipeline_stats()["cached"] == 2
    # the resize target is fed per sample, max_pixels and strict are not read by the graph: same pipelines
    DaliEngine(DecodeOptions(resize=(13, 40), batch_size=5, max_pixels=10**6, strict=True), CPU).decode(blobs)
    assert pipeline_stats()["built"] - before == built
    DaliEngine(DecodeOptions(resize=(12, 12), batch_size=6), CPU)  # another max batch size: another pipeline
    assert pipeline_stats()["built"] - before == built + 1
    DaliEngine(options, TaskDevice("gpu", None, 1))  # other thread count: another pipeline
    assert pipeline_stats()["built"] - before == built + 2


def test_evicted_pipeline_is_closed_and_rebuilt():
    worker_cache().clear()
    engine = DaliEngine(DecodeOptions(), CPU)
    blob = odd_files()["rgb.jpg"]
    engine.decode([blob])
    (key,) = [k for k in worker_cache().keys() if isinstance(k, pipelines.ImageKey)]
    holder = pipelines.get_pipeline(key)
    worker_cache().discard(key)
    assert holder.closed and holder.pipeline is None  # idle: dropped at once
    before = pipeline_stats()["built"]
    assert engine.decode([blob]).errors == [None] and engine.last_routes == ["dali"]
    assert pipeline_stats()["built"] == before + 1


def test_closing_a_running_pipeline_waits_for_the_run():
    worker_cache().clear()
    key = pipelines.ImageKey(pipelines.DecoderSettings(None, 1), 3, 2, False, False)
    holder = pipelines.get_pipeline(key)
    with holder.running() as run:
        worker_cache().discard(key)
        assert holder.closed and holder.pipeline is not None  # still in use
        run.submit({"encoded": [np.frombuffer(odd_files()["rgb.jpg"], np.uint8)]})
        assert run.collect().shape() == [(20, 30, 3)]
        with pytest.raises(RuntimeError, match="already running"):
            with holder.running():
                pass
    assert holder.pipeline is None
    with pytest.raises(pipelines.PipelineClosed):
        with holder.running():
            pass


def test_a_half_fed_pipeline_is_dropped(monkeypatch):
    """A submit that fails after feeding some inputs would misalign the next batches: the pipeline is rebuilt."""
    worker_cache().clear()
    options = DecodeOptions(resize=(10, 12))
    engine = DaliEngine(options, CPU)
    blobs = [encode(rgb_array(20, 30, seed=i), "JPEG", quality=90) for i in range(3)]
    real_feed = pipelines.job_feed

    def bad_feed(jobs, resize, crop):
        feed = real_feed(jobs, resize, crop)
        feed["size"] = "not a batch"  # feed_input("encoded") succeeds, feed_input("size") raises
        return feed

    monkeypatch.setattr(dali_engine, "job_feed", bad_feed)
    before = pipeline_stats()["built"]
    assert engine.decode(blobs).errors == [None] * 3  # Pillow
    assert all(r.startswith("pillow after dali") for r in engine.last_routes)
    monkeypatch.undo()
    ours = engine.decode(blobs)
    assert engine.last_routes == ["dali"] * 3 and pipeline_stats()["built"] > before  # a fresh, aligned pipeline
    ref = PillowEngine(options).decode(blobs)
    for i in range(3):
        assert diff(ours.pixels(i), ref.pixels(i)).mean() <= RESIZE_MEAN_DIFF


def test_create_engine_follows_the_task_device():
    assert isinstance(create_engine(DecodeOptions(), CPU), DaliEngine)
    assert create_engine(DecodeOptions(), CPU).name == "dali-cpu"
    assert create_engine(DecodeOptions(), TaskDevice("cpu")).name == "pillow"
    assert create_engine(DecodeOptions(), TaskDevice("auto", None, 1)).name == "pillow"  # auto without a GPU
    assert create_engine(DecodeOptions(), TaskDevice("cpu"), engine="dali").name == "dali-cpu"


def test_host_copy_is_validated():
    with pytest.raises(ValueError, match="host_copy"):
        DaliEngine(DecodeOptions(), CPU, host_copy="dlpack")


def test_missing_dali_is_a_clear_import_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)
    with pytest.raises(ImportError, match=r'pip install "gpuimages\[gpu\]"'):
        DaliEngine(DecodeOptions(), CPU)


def test_old_dali_fails_loudly_with_the_version_needed(monkeypatch):
    import nvidia.dali

    from gpuimages.engines.versions import LibraryVersionError

    monkeypatch.setattr(nvidia.dali, "__version__", "1.43.0")
    with pytest.raises(LibraryVersionError, match=r"DALI \(nvidia-dali-cuda120\) >= 1.44, found 1.43.0"):
        DaliEngine(DecodeOptions(), CPU)
    assert issubclass(LibraryVersionError, ImportError)  # the task code re-raises ImportErrors: no quiet Pillow


def test_importing_gpuimages_does_not_import_dali():
    code = (
        "import sys, gpuimages, gpuimages.engines, gpuimages.engines.dali, gpuimages.engines.dali_tensors\n"
        "import gpuimages.encoders.nvimgcodec, gpuimages.models.onnx\n"
        "from gpuimages.engines import create_engine\n"
        "bad = [m for m in ('nvidia.dali', 'nvidia.nvimgcodec', 'onnxruntime', 'cupy') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


# --------------------------------------------------------------------------------------------
# Settings, keys and the windowed runner
# --------------------------------------------------------------------------------------------


def test_decoder_settings_come_from_the_task_device(monkeypatch):
    monkeypatch.delenv(pipelines.THREADS_ENV, raising=False)
    options = DecodeOptions(apply_exif=True, hw_decoder_load=0.3)
    gpu = pipelines.DecoderSettings.of(options, TaskDevice("gpu", 1, 4, address="3"), fancy_upsampling=False)
    assert (gpu.gpu_id, gpu.threads, gpu.apply_exif, gpu.hw_decoder_load, gpu.fancy_upsampling) == (1, 4, True, 0.3,
                                                                                                    False)
    cpu = pipelines.DecoderSettings.of(options, TaskDevice("gpu", None, 3), fancy_upsampling=False)
    assert (cpu.gpu_id, cpu.threads, cpu.hw_decoder_load, cpu.fancy_upsampling) == (None, 3, 0.0, True)
    monkeypatch.setenv(pipelines.THREADS_ENV, "7")
    assert pipelines.DecoderSettings.of(options, TaskDevice("gpu", 0, 2)).threads == 7


def test_decoder_arguments_on_a_gpu():
    from nvidia.dali import types

    args = pipelines.decoder_args(pipelines.DecoderSettings(2, 4, True, 0.65, True), types.RGB)
    assert args == {"output_type": types.RGB, "adjust_orientation": True, "device": "mixed", "hw_decoder_load": 0.65,
                    "jpeg_fancy_upsampling": True, "affine": False}
    assert pipelines.decoder_args(pipelines.DecoderSettings(None, 4), types.RGB)["device"] == "cpu"


def test_image_keys():
    gpu = pipelines.DecoderSettings(0, 2)
    cpu = pipelines.DecoderSettings(None, 2)
    assert pipelines.ImageKey(gpu, 3, 8, False, False, "device").device_output
    assert pipelines.ImageKey(gpu, 3, 8, False, False, "as_cpu").device_output
    assert not pipelines.ImageKey(gpu, 3, 8, False, False, "pinned").device_output
    # CPU operators: one host graph whatever output was asked (no duplicate pipelines)
    assert pipelines.ImageKey(cpu, 3, 8, False, False, "device") == pipelines.ImageKey(cpu, 3, 8, False, False)
    assert pipelines.ImageKey(gpu, 4, 8, False, False, "device", drop_alpha=True).out_channels == 3
    # drop_alpha only changes 4-channel graphs
    assert pipelines.ImageKey(gpu, 3, 8, False, False, "device", drop_alpha=True) == pipelines.ImageKey(
        gpu, 3, 8, False, False, "device")
    with pytest.raises(ValueError, match="output"):
        pipelines.ImageKey(gpu, 3, 8, False, False, "pageable")


class Sizing:
    def __init__(self, chunk_size, window):
        self.chunk_size = chunk_size
        self.window = window


def jobs_of(n):
    return [routing.Job(i, np.zeros(1, np.uint8), (1, 1, 3)) for i in range(n)]


def test_run_windowed_keeps_a_window_in_flight_and_overlaps_idle_work():
    events = []
    inflight = []

    def submit(chunk):
        inflight.append(chunk[0].index)
        events.append(("submit", chunk[0].index, len(inflight)))
        return chunk[0].index

    def collect(chunk, ticket):
        assert inflight.pop(0) == ticket  # in submission order
        events.append(("collect", ticket))
        return [j.index for j in chunk]

    done = [i for _, result in pipelines.run_windowed(jobs_of(7), submit, collect, Sizing(2, 2), {},
                                                       idle=lambda: events.append(("idle",))) for i in result]
    assert done == list(range(7))
    assert max(e[2] for e in events if e[0] == "submit") == 2  # never more than the window
    assert events[:3] == [("submit", 0, 1), ("submit", 2, 2), ("idle",)]  # host work while two batches run
    assert events.count(("idle",)) == 1
    idle = []
    assert list(pipelines.run_windowed([], submit, collect, Sizing(2, 2), {}, idle=lambda: idle.append(1))) == []
    assert idle == [1]  # nothing for DALI: the idle work still runs


def test_run_windowed_isolates_failures_and_halves_on_oom():
    def run(chunk):
        if any(j.index in (2, 7) for j in chunk):
            raise RuntimeError("Critical error in pipeline: bad file")
        return [j.index for j in chunk]

    retry: dict[int, str] = {}
    results = pipelines.run_windowed(jobs_of(10), run, lambda chunk, result: result, Sizing(4, 2), retry)
    done = [i for _, result in results for i in result]
    assert sorted(done) == [0, 1, 3, 4, 5, 6, 8, 9]
    assert sorted(retry) == [2, 7] and retry[2].startswith("RuntimeError: Critical error")
    sizing = Sizing(4, 2)
    oom = iter([True])

    def run_oom(chunk):
        if len(chunk) == 4 and next(oom, False):
            raise RuntimeError("CUDA_ERROR_OUT_OF_MEMORY")
        return chunk

    assert sum(len(c) for c, _ in pipelines.run_windowed(jobs_of(4), run_oom, lambda c, r: r, sizing, {})) == 4
    assert sizing.chunk_size == 2 and sizing.window == 1


def test_run_windowed_collects_what_is_in_flight_when_the_consumer_leaves():
    collected = []

    def collect(chunk, ticket):
        collected.append(ticket)
        return ticket

    stream = pipelines.run_windowed(jobs_of(6), lambda chunk: chunk[0].index, collect, Sizing(1, 2), {})
    assert next(stream)[1] == 0
    stream.close()
    assert collected == [0, 1]  # the second batch in flight was collected and dropped, nothing else submitted


# --------------------------------------------------------------------------------------------
# Device output (the transcode hand-off), on CPU operators
# --------------------------------------------------------------------------------------------


def test_decode_device_gives_the_same_pixels_as_decode():
    files = {**odd_files(), **extra_files()}
    names = list(files)
    blobs = [files[n] for n in names]
    engine = DaliEngine(DecodeOptions(batch_size=8), CPU)
    host = engine.decode(blobs)
    images = engine.decode_device(blobs, drop_alpha=False)
    assert len(images) == len(blobs) and images.routes == engine.last_routes
    for i, name in enumerate(names):
        assert (images.errors[i] is None) == (host.errors[i] is None), name
        if host.errors[i] is not None:
            assert images.images[i] is None and images.shape(i) is None
            continue
        assert not images.is_device(images.images[i])  # CPU operators: host arrays
        assert images.shape(i) == host.pixels(i).shape, name
        assert np.array_equal(images.host(i), host.pixels(i)), name
    assert "dali" in images.routes and any(r.startswith("pillow") for r in images.routes)


def test_an_engine_for_device_output_builds_only_what_it_uses(monkeypatch):
    worker_cache().clear()
    built = []
    real = pipelines.build_image_pipeline
    monkeypatch.setattr(pipelines, "build_image_pipeline", lambda key: built.append(key) or real(key))
    gpu_like = pipelines.DecoderSettings.of(DecodeOptions(), CPU)
    engine = DaliEngine(DecodeOptions(), CPU, device_output=True)
    engine.decode_device([odd_files()["rgb.jpg"]])
    assert len(built) == 1 and built[0].decoder == gpu_like  # the up-front pipeline is the one decode_device uses


def test_decode_device_drops_alpha_for_jpeg():
    files = extra_files()
    blobs = [files["rgba_big.png"], encode(np.dstack([rgb_array(9, 7, seed=3), np.full((9, 7), 5, np.uint8)]),
                                           "PNG", mode="RGBA")]
    engine = DaliEngine(DecodeOptions(), CPU)
    host = engine.decode(blobs)
    images = engine.decode_device(blobs)
    for i in range(2):
        assert host.pixels(i).shape[2] == 4
        assert images.shape(i) == (*host.pixels(i).shape[:2], 3)
        assert np.array_equal(images.host(i), host.pixels(i)[:, :, :3])
        assert images.host(i).flags.c_contiguous
    images.release()
    assert images.images == [None, None]


def test_jpeg_with_non_srgb_profile_goes_to_pillow_for_colour_management():
    from images import odd_files

    files = odd_files()
    engine, ours, ref = decode_both(DecodeOptions(), [files["icc_linear.jpg"], files["rgb.jpg"]])
    assert engine.last_routes[0] == "pillow: jpeg with a non-sRGB ICC profile"
    assert engine.last_routes[1] == "dali"
    assert np.array_equal(ours.pixels(0), ref.pixels(0))


@pytest.mark.parametrize(
    ("message", "oom"),
    [
        ("Critical error in pipeline: CUDA error: out of memory", True),
        ("Can't allocate 268435456 bytes on device 0.", True),
        ("nvjpeg error #5 (allocator failure) when running nvjpegDecodeJpegHost", True),
        ("NVJPEG_STATUS_ALLOCATOR_FAILURE", True),
        ("nvjpeg error #6 (execution failed) when running nvjpegDecodeJpegDevice", False),
        ("Bad jpeg", False),
    ],
)
def test_out_of_memory_messages_are_recognised(message, oom):
    assert pipelines.is_oom(RuntimeError(message)) is oom


def test_the_oom_shrink_grows_back_after_good_runs():
    """Memory pressure from workers sharing a GPU passes: the halved batch and the one-deep window do not stick
    for the engine's life."""
    sizing = Sizing(8, 2)
    sizing.full_chunk_size = 8
    first = iter([True])

    def run(chunk):
        if len(chunk) == 8 and next(first, False):
            raise RuntimeError("Critical error in pipeline: CUDA error: out of memory")
        return chunk

    list(pipelines.run_windowed(jobs_of(8), run, lambda c, r: r, sizing, {}))
    assert (sizing.chunk_size, sizing.window) == (4, 1)
    sizes = [len(c) for c, _ in pipelines.run_windowed(jobs_of(4 * pipelines.RECOVER_AFTER), run, lambda c, r: r,
                                                        sizing, {})]
    assert set(sizes) == {4}  # chunks already planned keep their size...
    assert (sizing.chunk_size, sizing.window) == (8, pipelines.WINDOW)  # ...the next call runs full batches again
    assert [len(c) for c, _ in pipelines.run_windowed(jobs_of(16), run, lambda c, r: r, sizing, {})] == [8, 8]


def test_the_install_hint_names_the_dali_build_for_the_cuda_driver(monkeypatch):
    from gpuimages.engines.dali import install

    assert install.dali_package(12080) == "nvidia-dali-cuda120"
    assert install.dali_package(13000) == "nvidia-dali-cuda130"
    monkeypatch.setitem(sys.modules, "nvidia.dali", None)  # DALI not installed
    monkeypatch.setattr(install, "cuda_driver_version", lambda: 13010)
    with pytest.raises(ImportError, match=r"package nvidia-dali-cuda130\): pip install \"nvidia-dali-cuda130>=1.44\""):
        install.import_dali()
    monkeypatch.setattr(install, "cuda_driver_version", lambda: None)  # no driver: the CUDA 12 build
    with pytest.raises(ImportError, match=r"package nvidia-dali-cuda120\)"):
        install.import_dali()

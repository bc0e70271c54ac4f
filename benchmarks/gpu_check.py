#!/usr/bin/env python
"""GPU check: one call on a machine with one GPU, under five minutes, every GPU code path of gpuimages.

Rows (each prints "ok", "FAILED: <why>" or "skipped: <why>", and goes into the JSON summary):

1. ``decode``: DaliEngine pixels vs Pillow (JPEG within tolerance, PNG exact) on one batch with a
   corrupt JPEG in the middle; the same pipeline decodes the next batch (no rebuild); the pinned host
   copy really lands in page-locked memory.
2. ``exif``: an EXIF-tagged (orientation 6) non-square JPEG through both engines, ``apply_exif`` on and off.
3. ``fused``: TensorDecoder -> ONNX Runtime with the CUDA provider asserted active (a GPU run without it
   fails), model time per batch at batch sizes 64, 64, 22, 37, 64 (a per-shape cuDNN search shows as a
   spike on 22 and 37), vectors against the per-file reference.
4. ``encode``: nvImageCodec on the GPU with only GPU backends allowed (asserted: whatever encoded ran on a
   GPU backend) and zero Pillow fallbacks, from host BGR arrays and from ``DaliEngine.decode_device`` (the
   transcode hand-off, no host round trip).
5. ``throughput``: img/s of a bare DALI pipeline, gpuimages' engine (pinned and as_cpu host copies,
   device output), torchvision's batched ``decode_jpeg(device="cuda")`` and Pillow on one core, same files
   (12 batches of 128 by default, best of 3 passes); gpuimages must reach half of bare DALI's rate.
6. ``hw_decoder_load``: engine img/s at 0, 0.65 and 1.0.
7. ``memory``: GPU memory used before, after, and after ``worker_cache().clear()`` + ``release_unused()``.
8. ``spark``: a whole ``read_images(device="gpu")`` job with a GPU resource profile on ``local-cluster``
   (one worker discovering GPU 0, a quarter of it per task) against Spark's image source; the task log
   shows every decode task on the GPU with DALI. With ``--cpu-smoke`` (no CUDA device) every such task
   must fail, naming its GPU address: a GPU stage never runs on CPU unasked.

Run from a checkout with ``benchmarks/gpu_pack.sh``'s parts on the GPU machine: see benchmarks/README.md.

    python benchmarks/gpu_check.py --out gpu_check.json
    python benchmarks/gpu_check.py --cpu-smoke --out /tmp/smoke.json   # no GPU: tiny counts, DALI CPU operators

Exits with status 1 when a row FAILED (skipped rows do not fail the check).
"""

from __future__ import annotations

import argparse
import ctypes
import importlib
import importlib.util
import io
import json
import logging
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
try:
    import gpuimages  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(ROOT))
if importlib.util.find_spec("benchmarks") is None:  # gpuimages installed, the check run from its checkout
    sys.path.append(str(ROOT))

from gpuimages.engines.pillow import PillowEngine  # noqa: E402
from gpuimages.options import DecodeOptions  # noqa: E402
from gpuimages.task.device import TaskDevice, visible_gpu_count  # noqa: E402

log = logging.getLogger("gpu_check")

#: JPEG pixels vs Pillow: mean absolute difference over the batch, and per image (a corrupted image).
MAX_MEAN_DIFF = 2.0
MAX_IMAGE_MEAN_DIFF = 6.0
#: Fused vectors vs the per-file reference (median cosine).
MIN_FUSED_COSINE = 0.999
#: A model call on a new (smaller) batch shape slower than this many times a warm full batch is a spike.
SPIKE_FACTOR = 5.0
#: gpuimages' engine against a bare DALI pipeline on the same files: at least this share of its img/s.
MIN_OVER_BARE = 0.5
#: ImageNet-like sizes (width, height).
SIZES = [(500, 375), (375, 500), (500, 333), (500, 400), (333, 500), (480, 360)]
#: DLPack device type of page-locked host memory (kDLCUDAHost).
DL_CUDA_HOST = 3


class Skip(Exception):
    """A row that cannot run here, and why."""


# --------------------------------------------------------------------------------------------- data


def smooth_rgb(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
    image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
    return np.clip(image + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)


def to_bytes(image: Image.Image, fmt: str, **save: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, fmt, **save)
    return buf.getvalue()


def make_jpegs(count: int, seed: int, scale: float = 1.0) -> list[bytes]:
    """Seeded, smooth, photo-like JPEGs of ImageNet-like sizes (quality 90)."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(count):
        width, height = (max(16, int(d * scale)) for d in SIZES[i % len(SIZES)])
        out.append(to_bytes(Image.fromarray(smooth_rgb(rng, height, width)), "JPEG", quality=90))
    return out


def make_pngs(seed: int, scale: float = 1.0) -> dict[str, bytes]:
    rng = np.random.default_rng(seed)
    size = (max(16, int(120 * scale)), max(16, int(90 * scale)))
    rgb = smooth_rgb(rng, *size)
    return {
        "rgb.png": to_bytes(Image.fromarray(rgb), "PNG"),
        "grey.png": to_bytes(Image.fromarray(rgb[:, :, 1]), "PNG"),
        "palette.png": to_bytes(Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=256), "PNG"),
        "rgba.png": to_bytes(Image.fromarray(np.dstack([rgb, rgb[:, :, 0]]), "RGBA"), "PNG"),
    }


def corrupt_jpeg(blob: bytes) -> bytes:
    """A complete JPEG whose first Huffman table is corrupt: no decoder reads it."""
    dht = blob.find(b"\xff\xc4")
    counts = dht + 5
    return blob[:counts] + b"\xff" * 16 + blob[counts + 16 :]


def exif_jpeg(rgb: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return to_bytes(Image.fromarray(rgb), "JPEG", quality=95, exif=exif.tobytes())


# --------------------------------------------------------------------------------------------- helpers


def diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16))


def best_rate(label: str, run: Callable[[list[bytes]], Any], groups: list[list[bytes]], repeat: int) -> float:
    """Best images/s over ``repeat`` passes, after one warm-up group."""
    run(groups[0])
    total = sum(len(g) for g in groups)
    best = 0.0
    for r in range(repeat):
        start = time.perf_counter()
        for group in groups:
            run(group)
        rate = total / (time.perf_counter() - start)
        log.info("%s pass %d: %.1f img/s", label, r + 1, rate)
        best = max(best, rate)
    return best


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def version(module: str) -> str | None:
    try:
        return getattr(importlib.import_module(module), "__version__", "?")
    except Exception:  # noqa: BLE001 - absent or broken: reported as such
        return None


def gpu_memory_used(gpu_id: int | None) -> int | None:
    """Bytes used on CUDA device ``gpu_id`` (whole device, every process), from the CUDA driver."""
    if gpu_id is None:
        return None
    try:
        lib = ctypes.CDLL("libcuda.so.1")
        if lib.cuInit(0) != 0:
            return None
        dev, ctx = ctypes.c_int(0), ctypes.c_void_p()
        if lib.cuDeviceGet(ctypes.byref(dev), int(gpu_id)) != 0:
            return None
        if lib.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), dev) != 0:
            return None
        try:
            lib.cuCtxPushCurrent_v2(ctx)
            free, total = ctypes.c_size_t(0), ctypes.c_size_t(0)
            ok = lib.cuMemGetInfo_v2(ctypes.byref(free), ctypes.byref(total)) == 0
            lib.cuCtxPopCurrent_v2(ctypes.byref(ctypes.c_void_p()))
        finally:
            lib.cuDevicePrimaryCtxRelease_v2(dev)
        return int(total.value - free.value) if ok else None
    except (OSError, AttributeError):
        return None


def mib(value: int | None) -> str:
    return "n/a" if value is None else f"{value / (1 << 20):.0f} MiB"


class Context:
    """What every row shares: arguments, device, data sets."""

    def __init__(self, args: argparse.Namespace, device: TaskDevice) -> None:
        self.args = args
        self.device = device
        self.gpu = device.gpu_id is not None
        scale = 0.25 if args.cpu_smoke else 1.0
        self.jpegs = make_jpegs(args.count, args.seed, scale)
        self.pngs = make_pngs(args.seed, scale)
        self.scale = scale


# --------------------------------------------------------------------------------------------- rows


def row_decode(ctx: Context) -> dict[str, Any]:
    """Pixels vs Pillow with a corrupt JPEG mid-batch; the pipeline reused; pinned host copies."""
    from gpuimages.engines.dali import DaliEngine, pipeline_stats

    n = min(len(ctx.jpegs), ctx.args.batch_size)
    jpegs = ctx.jpegs[:n]
    names = [f"{i}.jpg" for i in range(n)] + list(ctx.pngs)
    blobs = jpegs + list(ctx.pngs.values())
    middle = len(blobs) // 2
    names.insert(middle, "corrupt.jpg")
    blobs.insert(middle, corrupt_jpeg(jpegs[0]))
    options = DecodeOptions(batch_size=ctx.args.batch_size)
    engine = DaliEngine(options, ctx.device)
    ours = engine.decode(blobs)
    built = pipeline_stats()["built"]
    ref = PillowEngine(options).decode(blobs)
    problems: list[str] = []
    if ours.errors[middle] is None:
        problems.append("the corrupt JPEG decoded")
    jpeg_total, jpeg_pixels, worst, png_exact = 0.0, 0, 0.0, True
    for i, name in enumerate(names):
        if i == middle:
            continue
        if ours.errors[i] is not None or ref.errors[i] is not None:
            problems.append(f"{name}: {ours.errors[i] or ref.errors[i]}")
            continue
        a, b = ours.pixels(i), ref.pixels(i)
        if a.shape != b.shape:
            problems.append(f"{name}: shape {a.shape} vs Pillow {b.shape}")
            continue
        d = diff(a, b)
        if name.endswith(".png"):
            png_exact &= bool(d.max() == 0)
        else:
            jpeg_total += float(d.sum())
            jpeg_pixels += d.size
            worst = max(worst, float(d.mean()))
    mean = jpeg_total / max(jpeg_pixels, 1)
    routes = {r.split(":")[0]: 0 for r in engine.last_routes}
    for r in engine.last_routes:
        routes[r.split(":")[0]] += 1
    if mean > MAX_MEAN_DIFF or worst > MAX_IMAGE_MEAN_DIFF:
        problems.append(f"JPEG pixels off: mean {mean:.3f}, worst image {worst:.3f}")
    if not png_exact:
        problems.append("PNG pixels differ from Pillow")
    # the next batch on the same pipeline (DALI survived the failed batch; nothing rebuilt)
    again = engine.decode(jpegs)
    reused = pipeline_stats()["built"] == built and engine.last_routes == ["dali"] * len(jpegs)
    reused &= all(e is None for e in again.errors)
    if not reused:
        problems.append(f"the pipeline was not reused after the failed batch (routes {set(engine.last_routes)})")
    pinned = pinned_host_copy(ctx)
    if ctx.gpu and pinned is False:
        problems.append("the in-pipeline host copy is not in page-locked memory")
    return {
        "status": "ok" if not problems else "FAILED: " + "; ".join(problems[:5]),
        "engine": engine.name, "images": len(blobs), "routes": routes, "jpeg_mean_abs_diff": mean,
        "jpeg_worst_image_mean_abs_diff": worst, "png_exact": png_exact, "corrupt_reason": ours.errors[middle],
        "pipeline_reused": reused, "host_copy_pinned": pinned,
    }


def pinned_host_copy(ctx: Context) -> bool | None:
    """Whether the "pinned" output of an image pipeline is page-locked (DLPack device kDLCUDAHost); None on CPU."""
    if not ctx.gpu:
        return None
    from gpuimages.engines.dali.pipelines import DecoderSettings, ImageKey, open_pipeline

    key = ImageKey(DecoderSettings.of(DecodeOptions(), ctx.device), 3, 4, False, False, "pinned")
    with open_pipeline(key) as run:
        run.submit({"encoded": [np.frombuffer(ctx.jpegs[0], np.uint8)]})
        out = run.collect()
    return int(out[0].__dlpack_device__()[0]) == DL_CUDA_HOST


def row_exif(ctx: Context) -> dict[str, Any]:
    from gpuimages.engines.dali import DaliEngine

    rgb = smooth_rgb(np.random.default_rng(7), 48, 96)  # stored 96 wide, 48 high
    blob = exif_jpeg(rgb, 6)
    out: dict[str, Any] = {}
    problems = []
    for apply_exif, shape in ((False, (48, 96, 3)), (True, (96, 48, 3))):
        options = DecodeOptions(apply_exif=apply_exif)
        engine = DaliEngine(options, ctx.device)
        ours, ref = engine.decode([blob]), PillowEngine(options).decode([blob])
        a, b = ours.pixels(0), ref.pixels(0)
        mean = float(diff(a, b).mean()) if a.shape == b.shape else None
        out[f"apply_exif={apply_exif}"] = {"dali": a.shape, "pillow": b.shape, "route": engine.last_routes[0],
                                           "mean_abs_diff": mean}
        if a.shape != shape or b.shape != shape or mean is None or mean > MAX_IMAGE_MEAN_DIFF:
            problems.append(f"apply_exif={apply_exif}: DALI {a.shape}, Pillow {b.shape}, mean diff {mean}")
        if engine.last_routes[0] != "dali":
            problems.append(f"apply_exif={apply_exif}: routed {engine.last_routes[0]}")
    out["status"] = "ok" if not problems else "FAILED: " + "; ".join(problems)
    return out


def row_fused(ctx: Context) -> dict[str, Any]:
    if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
        raise Skip("onnx and onnxruntime (or onnxruntime-gpu) are not installed")
    from benchmarks.reference import cosine, reference_features
    from gpuimages.engines.dali_tensors import TensorDecoder
    from gpuimages.models import ModelSpec, create_model
    from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD, save_small_cnn

    folder = Path(tempfile.mkdtemp(prefix="gpu-check-"))
    try:
        model_path = save_small_cnn(folder / "cnn.onnx", channels=32)
        model = create_model(ModelSpec("onnx", model_path, IMAGENET_MEAN, IMAGENET_STD), ctx.device)
        sizes = [max(1, round(s * ctx.args.fused_batch / 64)) for s in (64, 64, 22, 37, 64)]
        options = DecodeOptions(resize=(224, 224), batch_size=max(sizes))
        decoder = TensorDecoder(options, model.input_format, ctx.device)
        files = (ctx.jpegs * (sum(sizes) // len(ctx.jpegs) + 1))[: sum(sizes)]
        calls = []
        vectors: dict[int, np.ndarray] = {}
        start = 0
        for size in sizes:
            group = files[start : start + size]
            t0 = time.perf_counter()
            batches = list(decoder.decode(group, {}))
            t1 = time.perf_counter()
            ms_model = 0.0
            for batch in batches:
                t2 = time.perf_counter()
                if batch.tensor is not None:
                    values = model.run_device(batch.tensor, len(batch.rows))
                else:
                    values = model.run(batch.array)
                ms_model += 1000 * (time.perf_counter() - t2)
                for j, i in enumerate(batch.rows):
                    vectors[start + i] = values[j]
            calls.append({"batch": size, "decode_ms": 1000 * (t1 - t0), "model_ms": ms_model,
                          "on_device": all(b.on_device for b in batches)})
            start += size
        steady = calls[1]["model_ms"]  # the second full batch: warm
        spikes = [c["batch"] for c in calls[2:4] if c["model_ms"] > SPIKE_FACTOR * steady]
        sample = sorted(vectors)[: ctx.args.fused_sample]
        ref = reference_features([files[i] for i in sample], model_path, (224, 224), IMAGENET_MEAN, IMAGENET_STD)
        sims = cosine(np.stack([vectors[i] for i in sample]), ref)
        import onnxruntime

        problems = []
        no_cuda_provider = ctx.gpu and "CUDAExecutionProvider" not in onnxruntime.get_available_providers()
        if ctx.gpu and not model.on_cuda and not no_cuda_provider:
            problems.append("the ONNX session is not on the CUDA provider although it is available (see the "
                            "warning above)")
        if ctx.gpu and not all(c["on_device"] for c in calls):
            problems.append("some DALI batches were not in GPU memory")
        if float(np.median(sims)) < MIN_FUSED_COSINE:
            problems.append(f"median cosine {float(np.median(sims)):.5f} < {MIN_FUSED_COSINE}")
        if spikes:
            problems.append(f"per-shape spike at batch sizes {spikes} (a warm full batch takes {steady:.2f} ms)")
        if no_cuda_provider:
            problems.insert(0, f"this onnxruntime ({onnxruntime.__version__}, {onnxruntime.__file__}) has no CUDA "
                               f"provider: {onnxruntime.get_available_providers()}")
        status = "FAILED: " + "; ".join(problems) if problems else "ok"
        return {
            "status": status,
            "model_on_cuda": bool(model.on_cuda), "providers": list(model._session()[0].providers),
            "calls": calls, "warm_full_batch_ms": steady,
            "cosine_median": float(np.median(sims)), "cosine_min": float(sims.min()),
        }
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def row_encode(ctx: Context) -> dict[str, Any]:
    from gpuimages.encoders import make_encode_options
    from gpuimages.encoders.nvimgcodec import NvImageCodecEncoder, import_nvimgcodec

    try:
        import_nvimgcodec()
    except ImportError as exc:
        raise Skip(str(exc)) from exc
    from gpuimages.engines.dali import DaliEngine

    grey = to_bytes(Image.open(io.BytesIO(ctx.jpegs[0])).convert("L"), "JPEG", quality=90)
    blobs = ctx.jpegs[: max(1, ctx.args.batch_size - 2)] + [grey, ctx.pngs["rgba.png"]]  # BGR, grey and BGRA
    options = DecodeOptions(batch_size=ctx.args.batch_size)
    host = [PillowEngine(options).decode([b]).pixels(0).copy() for b in blobs]
    encoder = NvImageCodecEncoder(make_encode_options(quality=90), ctx.device)
    rate_host = best_rate("nvimgcodec host BGR", encoder.encode, [host], ctx.args.repeat)
    fallbacks_host = encoder.fallbacks
    out = encoder.encode(host)
    engine = DaliEngine(options, ctx.device)
    images = engine.decode_device(blobs)
    on_device = sum(images.is_device(im) for im in images.images)
    before = encoder.fallbacks
    encoded = encoder.encode(images.images)
    fallbacks_device = encoder.fallbacks - before

    def handoff(group: list[bytes]) -> None:
        encoder.encode(engine.decode_device(group).images)

    rate_device = best_rate("decode_device -> nvimgcodec", handoff, [blobs], ctx.args.repeat)
    worst = 0.0
    for i, blob in enumerate(encoded.data):
        if blob is None:
            continue
        back = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))[:, :, ::-1]
        want = host[i][:, :, :3] if host[i].shape[2] >= 3 else np.repeat(host[i], 3, axis=2)
        worst = max(worst, float(diff(back, want).mean()))
    from gpuimages.encoders.nvimgcodec import GPU_BACKENDS

    problems = []
    backends = encoder.backends
    if ctx.gpu and (encoder.name != "nvimgcodec-gpu" or not backends or not set(backends) <= set(GPU_BACKENDS)):
        problems.append(f"{encoder.name} allowed the backends {backends}: not only GPU ones {GPU_BACKENDS}")
    if fallbacks_host or encoder.fallbacks - before:
        problems.append(f"Pillow fallbacks: {fallbacks_host} from host arrays, {fallbacks_device} from device images")
    if any(e is not None for e in out.errors + encoded.errors):
        problems.append("some images were not encoded")
    if ctx.gpu and on_device != len(blobs):
        problems.append(f"only {on_device}/{len(blobs)} images stayed on the device")
    if worst > 4 * MAX_IMAGE_MEAN_DIFF:
        problems.append(f"re-encoded images are far off (worst mean diff {worst:.2f}): channel order?")
    return {
        "status": "ok" if not problems else "FAILED: " + "; ".join(problems),
        "encoder": encoder.name, "backends": backends, "img_per_s_host_bgr": rate_host,
        "img_per_s_decode_device_encode": rate_device,
        "device_images": on_device, "fallbacks": encoder.fallbacks, "worst_roundtrip_mean_diff": worst,
    }


def bare_dali(ctx: Context, to_host: bool) -> Any:
    from nvidia.dali import fn, types
    from nvidia.dali.pipeline import Pipeline

    decoder: dict[str, Any] = {"output_type": types.RGB, "device": "mixed" if ctx.gpu else "cpu"}
    if ctx.gpu:
        decoder.update(hw_decoder_load=0.65, jpeg_fancy_upsampling=True, affine=False)
    pipe = Pipeline(batch_size=ctx.args.batch_size, num_threads=ctx.device.threads, device_id=ctx.device.gpu_id,
                    exec_dynamic=True, prefetch_queue_depth=1)
    with pipe:
        images = fn.decoders.image(fn.external_source(name="encoded", dtype=types.UINT8, ndim=1), **decoder)
        pipe.set_outputs(images.cpu() if (to_host and ctx.gpu) else images)
    pipe.build()
    return pipe


def row_throughput(ctx: Context) -> dict[str, Any]:
    from gpuimages.engines.dali import DaliEngine

    groups = chunks(ctx.jpegs, ctx.args.batch_size)
    rates: dict[str, float | str] = {}
    for label, to_host in (("bare_dali_device", False), ("bare_dali_host", True)):
        pipe = bare_dali(ctx, to_host)

        def run(group: list[bytes], pipe: Any = pipe) -> None:
            pipe.run(encoded=[np.frombuffer(b, np.uint8) for b in group])

        rates[label] = best_rate(label, run, groups, ctx.args.repeat)
        del pipe
    options = DecodeOptions(batch_size=ctx.args.batch_size)
    copies = ("pinned", "as_cpu") if ctx.gpu else ("pinned",)
    for host_copy in copies:
        engine = DaliEngine(options, ctx.device, host_copy=host_copy)
        rates[f"gpuimages_{host_copy}"] = best_rate(host_copy, engine.decode, groups, ctx.args.repeat)
    engine = DaliEngine(options, ctx.device)
    rates["gpuimages_device"] = best_rate("device", engine.decode_device, groups, ctx.args.repeat)
    rates["torchvision_cuda"] = torchvision_rate(ctx, groups)
    pillow = PillowEngine(options)
    sample = ctx.jpegs[: max(1, min(len(ctx.jpegs), ctx.args.pillow_count))]
    rates["pillow_1core"] = best_rate("pillow", pillow.decode, chunks(sample, ctx.args.batch_size), 1)
    bare = float(rates["bare_dali_host"])
    ours = float(rates["gpuimages_pinned"])
    problems = []
    if ctx.gpu and ours < MIN_OVER_BARE * bare:  # the smoke run's 3 tiny batches measure nothing
        problems.append(f"gpuimages {ours:.0f} img/s is under {MIN_OVER_BARE} x bare DALI's {bare:.0f}")
    if ctx.gpu and isinstance(rates["torchvision_cuda"], str):
        problems.append(f"torchvision did not run: {rates['torchvision_cuda']}")
    return {"status": "ok" if not problems else "FAILED: " + "; ".join(problems), "img_per_s": rates,
            "images_per_pass": len(ctx.jpegs), "batches_per_pass": len(groups),
            "gpuimages_over_bare_host": ours / bare, "gpuimages_over_pillow": ours / float(rates["pillow_1core"])}


def torchvision_rate(ctx: Context, groups: list[list[bytes]]) -> float | str:
    if not ctx.gpu:
        return "skipped: no GPU"
    try:
        import torch
        from torchvision.io import decode_jpeg
    except Exception as exc:  # noqa: BLE001 - absent or broken: the row says so
        return f"skipped: torchvision does not import ({type(exc).__name__}: {exc})"
    device = f"cuda:{ctx.device.gpu_id}"
    tensors = [[torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in g] for g in groups]

    def run(group: list[Any]) -> None:
        decode_jpeg(group, device=device)
        torch.cuda.synchronize(device)

    try:
        return best_rate("torchvision", run, tensors, ctx.args.repeat)
    except Exception as exc:  # noqa: BLE001 - an old torchvision without batched GPU decoding
        return f"skipped: {type(exc).__name__}: {exc}"


def row_hw_decoder_load(ctx: Context) -> dict[str, Any]:
    if not ctx.gpu:
        raise Skip("the hardware JPEG decoder needs a GPU")
    from gpuimages.engines.dali import DaliEngine

    groups = chunks(ctx.jpegs, ctx.args.batch_size)
    rates = {}
    for load in (0.0, 0.65, 1.0):
        engine = DaliEngine(DecodeOptions(batch_size=ctx.args.batch_size, hw_decoder_load=load), ctx.device)
        rates[str(load)] = best_rate(f"hw_decoder_load={load}", engine.decode, groups, ctx.args.repeat)
    return {"status": "ok", "img_per_s": rates, "best": max(rates, key=rates.get)}


def row_spark(ctx: Context) -> dict[str, Any]:
    """A ``read_images(device="gpu")`` job whose stage gets a GPU resource profile (``local-cluster``)."""
    if importlib.util.find_spec("pyspark") is None:
        raise Skip("pyspark is not installed (benchmarks/gpu_pack.sh packs it with a Java runtime)")
    import json as json_module
    import os

    from gpuimages.java import ensure_java

    try:
        ensure_java()
    except RuntimeError as exc:
        raise Skip(str(exc)) from exc
    import gpuimages
    from gpuimages.task.runner import TASK_LOG_ENV

    # Spark's Python workers import gpuimages from the checkout too (they inherit the driver's environment)
    paths = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    if str(ROOT) not in paths:
        os.environ["PYTHONPATH"] = os.pathsep.join([str(ROOT), *paths])
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    folder = Path(tempfile.mkdtemp(prefix="gpu-check-spark-"))
    spark = None
    try:
        files = ctx.jpegs[: ctx.args.spark_count]
        data = folder / "images"
        data.mkdir()
        for i, blob in enumerate(files):
            (data / f"{i:05d}.jpg").write_bytes(blob)
        discovery = folder / "gpus.sh"
        discovery.write_text('#!/usr/bin/env bash\necho \'{"name":"gpu","addresses":["0"]}\'\n')
        discovery.chmod(0o755)
        tasklog = folder / "tasklog"
        cores = ctx.args.spark_cores
        from pyspark.sql import SparkSession

        try:
            spark = (
                SparkSession.builder.master(f"local-cluster[1,{cores},4096]").appName("gpu-check")
                .config("spark.ui.enabled", "false")
                .config("spark.driver.memory", "2g")
                .config("spark.worker.resource.gpu.amount", "1")
                .config("spark.worker.resource.gpu.discoveryScript", str(discovery))
                .config("spark.executor.resource.gpu.amount", "1")
                .config("spark.executor.resource.gpu.discoveryScript", str(discovery))
                .config("spark.executorEnv.GPUIMAGES_TASK_LOG", str(tasklog))
                .config("spark.executorEnv.PYTHONPATH", os.environ["PYTHONPATH"])
                .config("spark.task.maxFailures", "1")
                .getOrCreate()
            )
        except Exception as exc:  # noqa: BLE001 - no Java, no Spark: the row says so
            raise Skip(f"no Spark session ({type(exc).__name__}: {exc})") from exc
        spark.sparkContext.setLogLevel("ERROR")
        os.environ[TASK_LOG_ENV] = str(tasklog)
        t0 = time.perf_counter()
        theirs = {r.image.origin: r.image for r in spark.read.format("image").load(str(data)).collect()}
        t1 = time.perf_counter()
        job = gpuimages.read_images(spark, str(data), device="gpu", task_gpu_amount=0.25)
        try:
            ours = {r.image.origin: r.image for r in job.collect()}
            failure = None
        except Exception as exc:  # noqa: BLE001 - the task's error, through Py4J
            ours, failure = {}, str(exc)
        t2 = time.perf_counter()
        records = [json_module.loads(line) for f in tasklog.glob("*.jsonl") for line in f.read_text().splitlines()]
        tasks = [r for r in records if r["stage"] == "decode" and r["gpu_addresses"]]
        problems = []
        if not ctx.gpu:  # no CUDA device: the GPU stage must fail, naming the address its profile gave
            expected = "Spark assigned GPU 0 to this task but this process sees no CUDA device"
            if failure is None or expected not in failure:
                problems.append(f"expected each task to fail for want of a CUDA device, got {failure!r:.300}")
            return {"status": "ok" if not problems else "FAILED: " + "; ".join(problems),
                    "gpu_stage_failed_with": (failure or "")[-300:], "spark_image_source_rows": len(theirs)}
        if failure is not None:
            problems.append(f"the job failed: {failure[-1500:]}")
        if not tasks or any(r["gpu_id"] is None or not r["engine"].startswith("dali-gpu") for r in tasks):
            problems.append(f"decode tasks not all on the GPU with DALI: {[(r['engine'], r['gpu_id']) for r in tasks]}")
        if sum(r["rows"] for r in tasks) != len(files):
            problems.append(f"GPU tasks decoded {sum(r['rows'] for r in tasks)} rows of {len(files)}")
        if sorted(ours) != sorted(theirs):
            problems.append(f"{len(ours)} rows vs Spark's {len(theirs)}")
        worst = 0.0
        for origin, image in ours.items():
            ref = theirs.get(origin)
            if ref is None:
                continue
            if (image.height, image.width, image.nChannels) != (ref.height, ref.width, ref.nChannels):
                problems.append(f"{origin}: shape differs")
                continue
            a = np.frombuffer(image.data, np.uint8)
            b = np.frombuffer(ref.data, np.uint8)
            worst = max(worst, float(diff(a, b).mean()))
        if worst > MAX_IMAGE_MEAN_DIFF:
            problems.append(f"pixels off (worst image mean diff {worst:.2f})")
        return {
            "status": "ok" if not problems else "FAILED: " + "; ".join(problems[:5]),
            "files": len(files), "gpu_tasks": len(tasks), "spark_image_source_s": t1 - t0,
            "read_images_gpu_s": t2 - t1, "worst_image_mean_abs_diff": worst,
        }
    finally:
        if spark is not None:
            spark.stop()
        shutil.rmtree(folder, ignore_errors=True)


# --------------------------------------------------------------------------------------------- main


def environment(device: TaskDevice) -> dict[str, Any]:
    env: dict[str, Any] = {"device": device.describe(), "visible_gpus": visible_gpu_count()}
    for module in ("nvidia.dali", "nvidia.nvimgcodec", "onnxruntime", "torch", "torchvision", "cupy", "pyspark"):
        env[module] = version(module)
    if env["onnxruntime"]:
        import onnxruntime

        env["onnxruntime_providers"] = onnxruntime.get_available_providers()
    return env


def run_row(name: str, fn: Callable[[Context], dict[str, Any]], ctx: Context) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        result = fn(ctx)
    except Skip as exc:  # rows raise Skip for what may be absent; any other ImportError is a failure
        result = {"status": f"skipped: {exc}"}
    except Exception as exc:  # noqa: BLE001 - one broken row must not hide the others
        log.debug("%s", traceback.format_exc())
        result = {"status": f"FAILED: {type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"}
    result["seconds"] = round(time.perf_counter() - start, 2)
    print(f"{name:16s} {result['status']}  ({result['seconds']} s)", flush=True)
    for key, value in result.items():
        if key not in ("status", "seconds"):
            print(f"    {key}: {value}", flush=True)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=None, help="write the JSON summary here")
    parser.add_argument("--cpu-smoke", action="store_true", help="no GPU: tiny counts on DALI's CPU operators")
    parser.add_argument("--gpu-id", type=int, default=0, help="CUDA ordinal to check (default 0)")
    parser.add_argument("--threads", type=int, default=None, help="DALI / nvImageCodec / ORT threads (default 8)")
    parser.add_argument("--count", type=int, default=None, help="JPEGs in the data set (default 1536; smoke 24)")
    parser.add_argument("--batch-size", type=int, default=None, help="DALI batch (default 128; smoke 8)")
    parser.add_argument("--fused-batch", type=int, default=None, help="the fused row's 64 (smoke 8)")
    parser.add_argument("--fused-sample", type=int, default=32, help="fused vectors compared with the reference")
    parser.add_argument("--pillow-count", type=int, default=None, help="JPEGs timed with Pillow (default 200)")
    parser.add_argument("--spark-count", type=int, default=None, help="files of the Spark job (default 256; smoke 12)")
    parser.add_argument("--spark-cores", type=int, default=4)
    parser.add_argument("--repeat", type=int, default=None, help="timed passes, the best kept (default 3; smoke 1)")
    parser.add_argument("--skip", default="", help="comma-separated rows to skip")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    smoke = args.cpu_smoke
    defaults = {"count": (1536, 24), "batch_size": (128, 8), "fused_batch": (64, 8), "pillow_count": (200, 8),
                "spark_count": (256, 12), "repeat": (3, 1), "threads": (8, 2)}
    for name, (full, small) in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, small if smoke else full)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    if smoke:
        device = TaskDevice("gpu", None, args.threads)
    else:
        if visible_gpu_count() == 0:
            parser.error("no CUDA device visible; use --cpu-smoke for a run on DALI's CPU operators")
        device = TaskDevice("gpu", args.gpu_id, args.threads)
    t0 = time.perf_counter()
    summary: dict[str, Any] = {"environment": environment(device), "rows": {}}
    for key, value in summary["environment"].items():
        print(f"{key}: {value}")
    used_before = gpu_memory_used(device.gpu_id)
    try:
        importlib.import_module("nvidia.dali")
    except ImportError as exc:
        print(f"DALI does not import ({exc}): nothing to check")
        return 1
    ctx = Context(args, device)
    print(f"data: {len(ctx.jpegs)} JPEGs ({sum(map(len, ctx.jpegs)) / len(ctx.jpegs) / 1024:.1f} KB average) in "
          f"{time.perf_counter() - t0:.1f} s")
    rows: list[tuple[str, Callable[[Context], dict[str, Any]]]] = [
        ("decode", row_decode), ("exif", row_exif), ("fused", row_fused), ("encode", row_encode),
        ("throughput", row_throughput), ("hw_decoder_load", row_hw_decoder_load),
    ]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    for name, fn in rows:
        summary["rows"][name] = {"status": "skipped: --skip"} if name in skip else run_row(name, fn, ctx)

    from gpuimages.task.cache import release_unused, worker_cache

    used_after = gpu_memory_used(device.gpu_id)
    worker_cache().clear()
    release_unused(device.gpu_id)
    used_released = gpu_memory_used(device.gpu_id)
    memory = {"status": "ok" if device.gpu_id is not None else "skipped: no GPU", "before": mib(used_before),
              "after": mib(used_after), "after_release_unused": mib(used_released)}
    summary["rows"]["memory"] = memory
    print(f"{'memory':16s} {memory['status']}  before {memory['before']}, after {memory['after']}, after clear + "
          f"release_unused {memory['after_release_unused']}")
    summary["rows"]["spark"] = {"status": "skipped: --skip"} if "spark" in skip else run_row("spark", row_spark, ctx)
    summary["seconds"] = round(time.perf_counter() - t0, 1)
    failed = [name for name, row in summary["rows"].items() if str(row.get("status", "")).startswith("FAILED")]
    summary["failed"] = failed
    print(f"total {summary['seconds']} s; {'FAILED: ' + ', '.join(failed) if failed else 'every row ok or skipped'}")
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(summary, indent=2, default=str) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

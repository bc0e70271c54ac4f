#!/usr/bin/env python
"""GPU decode check, no Spark: bare DALI vs gpuimages' DaliEngine vs Pillow on the same JPEGs.

Generates a seeded set of ImageNet-sized JPEGs (about 500x375, smooth random content,
quality 90) in memory, then decodes them with

(a) a bare DALI pipeline: external_source -> decoders.image (mixed) [-> resize] -> copy to host,
(b) gpuimages' DaliEngine on the same batches (routing, Spark byte layout, host buffer),
(c) gpuimages' PillowEngine on one core,
(d) the fused featurising path: DALI decode -> resize 224 -> normalise into one NCHW float batch on the
    device (:class:`gpuimages.engines.dali_tensors.TensorDecoder`) read in place by an ONNX CNN built in
    code (IO binding on CUDA where onnxruntime-gpu and cupy are installed), against the per-file
    reference (Pillow -> bilinear -> normalise -> onnxruntime; median cosine >= 0.999),

compares (b)'s pixels with (c)'s (max and mean absolute difference, overall and per image) and
prints images/s for each with the ratios b/a (goal >= 0.9) and b/c (goal >= 20).
Exits with status 1 if the pixels disagree (a large mean difference, or any single image far
off: batched hardware decoding has produced corrupted images on some GPUs).

    python benchmarks/gpu_check.py --count 2000 --batch-size 128 --json out.json
    python benchmarks/gpu_check.py --cpu --count 64          # smoke check on DALI CPU operators

(d) runs when onnx and onnxruntime are installed (``--no-fused`` skips it).
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

try:
    import gpuimages  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuimages.engines.dali import DaliEngine, default_num_threads  # noqa: E402
from gpuimages.engines.pillow import PillowEngine  # noqa: E402
from gpuimages.gpu import resolve_gpu_id  # noqa: E402
from gpuimages.options import DecodeOptions  # noqa: E402

log = logging.getLogger("gpu_check")

#: Fail when (b) and Pillow differ by more than this on average over all pixels...
MAX_MEAN_DIFF = 2.0
#: ...or when any single image's mean difference is above this (a corrupted image).
MAX_IMAGE_MEAN_DIFF = 6.0
#: ImageNet-like sizes (width, height).
SIZES = [(500, 375), (375, 500), (500, 333), (500, 400), (333, 500), (480, 360)]


def make_jpegs(count: int, seed: int, quality: int = 90) -> list[bytes]:
    """Seeded, smooth, photo-like JPEGs of ImageNet-like sizes, encoded in memory."""
    rng = np.random.default_rng(seed)
    blobs = []
    for i in range(count):
        width, height = SIZES[i % len(SIZES)]
        coarse = rng.integers(0, 256, (height // 24 + 2, width // 24 + 2, 3), dtype=np.uint8)
        image = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), dtype=np.int16)
        image = np.clip(image + rng.integers(-6, 7, image.shape), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=quality)
        blobs.append(buf.getvalue())
    return blobs


def batches(blobs: list[bytes], size: int) -> list[list[bytes]]:
    return [blobs[i : i + size] for i in range(0, len(blobs), size)]


def bare_pipeline(args: argparse.Namespace, gpu_id: int | None, threads: int) -> Any:
    """The reference: decode (and resize) with DALI and copy to host, nothing else."""
    from nvidia.dali import fn, types
    from nvidia.dali.pipeline import Pipeline

    decoder: dict[str, Any] = {"output_type": types.RGB, "adjust_orientation": False}
    if gpu_id is None:
        decoder["device"] = "cpu"
    else:
        # The same decoder settings as DaliEngine, so that b/a measures the engine's own overhead.
        decoder.update(
            device="mixed",
            hw_decoder_load=args.hw_decoder_load,
            jpeg_fancy_upsampling=args.fancy_upsampling,
            affine=False,
        )
    pipe = Pipeline(
        batch_size=args.batch_size, num_threads=threads, device_id=gpu_id, exec_dynamic=True, prefetch_queue_depth=1
    )
    with pipe:
        images = fn.decoders.image(fn.external_source(name="encoded", dtype=types.UINT8, ndim=1), **decoder)
        if args.resize:
            images = fn.resize(images, resize_shorter=args.resize, interp_type=types.INTERP_LINEAR, antialias=True)
        pipe.set_outputs(images)
    pipe.build()
    return pipe


def time_runs(label: str, run_batch: Any, groups: list[list[bytes]], repeat: int) -> float:
    """Best images/s over ``repeat`` passes (after one warm-up batch)."""
    run_batch(groups[0])
    total = sum(len(g) for g in groups)
    best = 0.0
    for r in range(repeat):
        start = time.perf_counter()
        for group in groups:
            run_batch(group)
        rate = total / (time.perf_counter() - start)
        log.info("%s pass %d: %.1f img/s", label, r + 1, rate)
        best = max(best, rate)
    return best


def compare(ours: list[np.ndarray], ref: list[np.ndarray]) -> dict[str, float]:
    """Max and mean absolute differences overall and the worst per-image mean."""
    max_diff, total, pixels, worst, shape_mismatch = 0, 0.0, 0, 0.0, 0
    for a, b in zip(ours, ref, strict=True):
        if a.shape != b.shape:
            shape_mismatch += 1
            continue
        d = np.abs(a.astype(np.int16) - b.astype(np.int16))
        max_diff = max(max_diff, int(d.max()))
        total += float(d.sum())
        pixels += d.size
        worst = max(worst, float(d.mean()))
    return {
        "max_abs_diff": max_diff,
        "mean_abs_diff": total / max(pixels, 1),
        "worst_image_mean_abs_diff": worst,
        "shape_mismatches": shape_mismatch,
    }


#: The fused path's vectors must match the per-file reference this closely (median cosine).
MIN_FUSED_COSINE = 0.999


def fused_check(blobs: list[bytes], gpu_id: int | None, args: argparse.Namespace, threads: int) -> dict[str, Any]:
    """(d): bytes -> device batch -> ONNX model; images/s, where the batches lived, cosine vs the reference."""
    import tempfile

    from gpuimages.engines.dali_tensors import TensorDecoder
    from gpuimages.models import ModelSpec, create_model
    from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD, save_small_cnn
    from gpuimages.models.reference import cosine, reference_features

    folder = tempfile.mkdtemp(prefix="gpu-check-")
    model_path = save_small_cnn(Path(folder) / "cnn.onnx")
    model = create_model(ModelSpec("onnx", model_path, IMAGENET_MEAN, IMAGENET_STD, threads=threads), gpu_id=gpu_id)
    options = DecodeOptions(resize=(224, 224), batch_size=args.fused_batch_size, hw_decoder_load=args.hw_decoder_load)
    decoder = TensorDecoder(options, model.input_format, gpu_id, num_threads=threads,
                            fancy_upsampling=args.fancy_upsampling)
    where = {"device": 0, "host": 0}

    def featurize(group: list[bytes]) -> np.ndarray:
        out = np.zeros((len(group), 8))
        for batch in decoder.decode(group, {}):
            where["device" if batch.on_device else "host"] += 1
            values = model.run_device(batch.tensor, len(batch.rows)) if batch.tensor is not None else model.run(
                batch.array)
            out[batch.rows] = values
        return out

    group_size = args.fused_batch_size * 4
    groups = batches(blobs, group_size)
    rate = time_runs("fused DALI -> ONNX", featurize, groups, args.repeat)
    sample = blobs[: min(len(blobs), args.fused_sample)]
    got = np.concatenate([featurize(g) for g in batches(sample, group_size)])
    ref = reference_features(sample, model_path, (224, 224), IMAGENET_MEAN, IMAGENET_STD)
    sims = cosine(got, ref)
    return {
        "img_per_s": rate,
        "device_batch": args.fused_batch_size,
        "model_on_cuda": bool(getattr(model, "on_cuda", False)),
        "batches": dict(where),
        "cosine_median": float(np.median(sims)),
        "cosine_min": float(sims.min()),
        "check": "ok" if float(np.median(sims)) >= MIN_FUSED_COSINE else "FAILED",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000, help="number of JPEGs (default 2000)")
    parser.add_argument("--batch-size", type=int, default=128, help="images per DALI batch (default 128)")
    parser.add_argument("--resize", type=int, default=None, help="resize the shorter side to this length")
    parser.add_argument("--hw-decoder-load", type=float, default=0.65, help="share sent to the HW JPEG decoder")
    parser.add_argument("--no-fancy-upsampling", dest="fancy_upsampling", action="store_false",
                        help="nvJPEG's default chroma upsampling instead of libjpeg-turbo's")
    parser.add_argument("--host-copy", choices=["as_cpu", "pipeline", "both"], default="both",
                        help="how DaliEngine brings GPU pixels to the host (default: time both)")
    parser.add_argument("--threads", type=int, default=None, help="DALI CPU threads (default: usable cores, <= 16)")
    parser.add_argument("--repeat", type=int, default=3, help="timed passes; the best is reported")
    parser.add_argument("--pillow-count", type=int, default=500, help="images timed with Pillow (one core)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cpu", action="store_true", help="DALI CPU operators (smoke check without a GPU)")
    parser.add_argument("--gpu-id", type=int, default=None, help="CUDA device (default: first visible)")
    parser.add_argument("--json", dest="json_out", default=None, help="write the results to this JSON file")
    parser.add_argument("--no-fused", dest="fused", action="store_false", help="skip (d), the fused model path")
    parser.add_argument("--fused-batch-size", type=int, default=256, help="(d): DALI device batch (default 256)")
    parser.add_argument("--fused-sample", type=int, default=64, help="(d): files compared with the reference")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")

    if args.cpu:
        gpu_id = None
    elif args.gpu_id is not None:
        gpu_id = args.gpu_id
    else:
        gpu_id = resolve_gpu_id(addresses=[])
        if gpu_id is None:
            parser.error("no CUDA device visible; use --cpu for a smoke check on DALI's CPU operators")
    threads = args.threads or default_num_threads()

    t0 = time.perf_counter()
    blobs = make_jpegs(args.count, args.seed)
    log.warning("generated %d JPEGs (%.1f KB average) in %.1f s", len(blobs),
                sum(map(len, blobs)) / len(blobs) / 1024, time.perf_counter() - t0)
    groups = batches(blobs, args.batch_size)
    options = DecodeOptions(resize=args.resize, batch_size=args.batch_size, hw_decoder_load=args.hw_decoder_load)

    # (a) bare DALI
    bare = bare_pipeline(args, gpu_id, threads)

    def run_bare(group: list[bytes]) -> None:
        (out,) = bare.run(encoded=[np.frombuffer(b, dtype=np.uint8) for b in group])
        if gpu_id is not None:
            out = out.as_cpu()

    rate_a = time_runs("bare DALI", run_bare, groups, args.repeat)

    # (b) gpuimages' DaliEngine, for each way of bringing pixels to the host
    if gpu_id is None:
        host_copies = ["as_cpu"]  # CPU operators: outputs are already in host memory
    elif args.host_copy == "both":
        host_copies = ["as_cpu", "pipeline"]
    else:
        host_copies = [args.host_copy]
    variants: dict[str, dict[str, Any]] = {}
    engine = None
    for host_copy in host_copies:
        engine = DaliEngine(options, gpu_id=gpu_id, num_threads=threads, fancy_upsampling=args.fancy_upsampling,
                            host_copy=host_copy)
        rate = time_runs(f"{engine.name} ({host_copy})", engine.decode, groups, args.repeat)
        ours: list[np.ndarray] = []
        routes: dict[str, int] = {}
        invalid = 0
        for group in groups:
            batch = engine.decode(group)
            ours.extend(batch.pixels(i).copy() for i in range(len(batch)))
            invalid += sum(e is not None for e in batch.errors)
            for r in engine.last_routes:
                routes[r.split(":")[0]] = routes.get(r.split(":")[0], 0) + 1
        variants[host_copy] = {"img_per_s": rate, "routes": routes, "invalid": invalid, "pixels": ours}
    assert engine is not None
    best = max(variants, key=lambda k: variants[k]["img_per_s"])
    rate_b = variants[best]["img_per_s"]

    # (c) Pillow, one core
    pillow = PillowEngine(options)
    sample = blobs[: max(1, min(args.pillow_count, len(blobs)))]
    rate_c = time_runs("pillow", pillow.decode, batches(sample, args.batch_size), 1)
    ref = [pillow.decode([b]).pixels(0).copy() for b in blobs]

    failed = False
    for variant in variants.values():
        variant["pixels_vs_pillow"] = compare(variant.pop("pixels"), ref)
        pix = variant["pixels_vs_pillow"]
        variant["pixel_check"] = "ok"
        if (
            pix["mean_abs_diff"] > MAX_MEAN_DIFF
            or pix["worst_image_mean_abs_diff"] > MAX_IMAGE_MEAN_DIFF
            or pix["shape_mismatches"] > 0
            or variant["invalid"] > 0
        ):
            variant["pixel_check"] = "FAILED"
            failed = True
    fused = None
    if args.fused:
        from importlib.util import find_spec

        if find_spec("onnx") is None or find_spec("onnxruntime") is None:
            log.warning("(d) skipped: onnx and onnxruntime are needed")
        else:
            fused = fused_check(blobs, gpu_id, args, threads)
            failed = failed or fused["check"] != "ok"
    pixels = variants[best]["pixels_vs_pillow"]
    routes, invalid = variants[best]["routes"], variants[best]["invalid"]
    results = {
        "device": "cpu" if gpu_id is None else f"cuda:{gpu_id}",
        "engine": engine.name,
        "count": len(blobs),
        "batch_size": args.batch_size,
        "resize": args.resize,
        "hw_decoder_load": args.hw_decoder_load,
        "fancy_upsampling": args.fancy_upsampling,
        "threads": threads,
        "best_host_copy": best,
        "img_per_s": {"bare_dali": rate_a, "gpuimages_dali": rate_b, "pillow_1core": rate_c},
        "ratio_b_over_a": rate_b / rate_a,
        "ratio_b_over_c": rate_b / rate_c,
        "variants": variants,
        "fused": fused,
        "pixel_check": "FAILED" if failed else "ok",
    }

    print(f"device {results['device']}  engine {engine.name}  {len(blobs)} JPEGs  batch {args.batch_size}  "
          f"resize {args.resize}  threads {threads}  hw_decoder_load {args.hw_decoder_load}")
    print(f"(a) bare DALI        {rate_a:10.1f} img/s")
    for name, variant in variants.items():
        print(f"(b) gpuimages DALI   {variant['img_per_s']:10.1f} img/s   host copy {name}  "
              f"pixels {variant['pixel_check']}")
    print(f"    best ({best}): b/a = {rate_b / rate_a:.2f} (goal >= 0.9)")
    print(f"(c) Pillow, 1 core   {rate_c:10.1f} img/s   b/c = {rate_b / rate_c:.1f} (goal >= 20)")
    print(f"routes: {routes}  invalid: {invalid}")
    print(f"pixels (b) vs Pillow: max {pixels['max_abs_diff']}, mean {pixels['mean_abs_diff']:.3f}, "
          f"worst image mean {pixels['worst_image_mean_abs_diff']:.3f}, "
          f"shape mismatches {pixels['shape_mismatches']} -> {results['pixel_check']}")
    if fused is not None:
        print(f"(d) fused DALI->ONNX {fused['img_per_s']:10.1f} img/s   device batch {fused['device_batch']}  "
              f"model on CUDA {fused['model_on_cuda']}  batches {fused['batches']}  cosine median "
              f"{fused['cosine_median']:.6f} min {fused['cosine_min']:.6f} -> {fused['check']}")
    if args.json_out:
        Path(args.json_out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json_out).write_text(json.dumps(results, indent=2) + "\n")
    if failed:
        print(f"PIXEL CHECK FAILED: mean diff must be <= {MAX_MEAN_DIFF} and every image's mean <= "
              f"{MAX_IMAGE_MEAN_DIFF}, with no shape mismatches", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

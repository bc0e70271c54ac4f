"""Read throughput of gpuimages against Spark's image source, the hand-written recipe and Pillow/DALI ceilings.

    python -m benchmarks.read            # 2000 JPEGs + 300 PNGs, best of 3, scaling over 1..cores workers
    python -m benchmarks.read --quick    # about a minute

One local Spark session (``local[cores]``) runs every Spark reader. Each reader first makes one untimed
pass (which also counts its rows and pixel bytes), then the timed passes run round-robin over all
readers, each forced with a ``noop`` write so every row and column is materialised. Ceilings decode the
same files outside Spark. The scaling section starts a fresh ``local[N]`` session per worker count.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import baselines
from benchmarks.baselines import TUNED_ARROW_BATCH, Case, DaliDecoder, PillowPool
from benchmarks.data import DEFAULT_ROOT, DataSet, jpeg_set, png_set
from benchmarks.report import (
    Result,
    add_ratios,
    check_goals,
    decode_bounds,
    format_bounds,
    format_goals,
    format_scaling,
    format_table,
    machine_info,
    write_chart,
    write_json,
)

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger("benchmarks.read")

RESIZE = (224, 224)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"  # git-ignored
SESSION_CONF = {"spark.ui.showConsoleProgress": "false"}


def _folder(data: DataSet) -> str:
    return str(data.folder)


def gpuimages_cases(spark: SparkSession, jpeg: DataSet, *, gpu: bool, resize: tuple[int, int] = RESIZE) -> list[Case]:
    """read_images on CPU (full decode and resize), on GPU when available, and decode_images on binaryFile."""
    from gpuimages import decode_images, read_images

    folder = _folder(jpeg)
    cases = [
        baselines.spark_case(
            spark, "gpuimages_cpu", "gpuimages read_images(device='cpu')", jpeg,
            lambda: read_images(spark, folder, device="cpu"),
            expect_pixels=jpeg.decoded_bytes, ceiling="pillow", spark_ref="spark_image",
        ),
        baselines.spark_case(
            spark, "gpuimages_cpu_resize", f"gpuimages read_images(cpu, resize={resize[0]}x{resize[1]})", jpeg,
            lambda: read_images(spark, folder, device="cpu", resize=resize),
            expect_pixels=jpeg.resized_bytes(resize), ceiling="pillow_resize", spark_ref="spark_image",
        ),
    ]
    if gpu:
        cases += [
            baselines.spark_case(
                spark, "gpuimages_gpu", "gpuimages read_images(device='gpu')", jpeg,
                lambda: read_images(spark, folder, device="gpu"),
                expect_pixels=jpeg.decoded_bytes, ceiling="dali_gpu", spark_ref="spark_image",
            ),
            baselines.spark_case(
                spark, "gpuimages_gpu_resize", f"gpuimages read_images(gpu, resize={resize[0]}x{resize[1]})", jpeg,
                lambda: read_images(spark, folder, device="gpu", resize=resize),
                expect_pixels=jpeg.resized_bytes(resize), spark_ref="spark_image",
            ),
        ]
    cases.append(
        baselines.spark_case(
            spark, "decode_images", "binaryFile (defaults) + gpuimages decode_images", jpeg,
            lambda: decode_images(spark.read.format("binaryFile").load(folder), "content", origin_col="path",
                                  device="cpu"),
            expect_pixels=jpeg.decoded_bytes, ceiling="pillow", spark_ref="spark_image",
        )
    )
    return cases


def recipe_cases(spark: SparkSession, jpeg: DataSet, cores: int) -> list[Case]:
    """The binaryFile + pandas UDF recipe as users write it, and hand-tuned (coalesced, 64-row Arrow batches)."""
    folder = _folder(jpeg)
    return [
        baselines.spark_case(
            spark, "recipe", "recipe as written: binaryFile + pandas UDF (Pillow)", jpeg,
            lambda: baselines.recipe_frame(spark, folder),
            expect_pixels=jpeg.decoded_bytes, ceiling="pillow", spark_ref="spark_image",
        ),
        baselines.spark_case(
            spark, "recipe_tuned", f"recipe hand-tuned: coalesce({cores}), {TUNED_ARROW_BATCH}-row Arrow", jpeg,
            lambda: baselines.recipe_frame(spark, folder, partitions=cores),
            expect_pixels=jpeg.decoded_bytes, conf={baselines.ARROW_BATCH_KEY: str(TUNED_ARROW_BATCH)},
            ceiling="pillow", spark_ref="spark_image",
        ),
    ]


def build_cases(
    spark: SparkSession,
    jpeg: DataSet,
    png: DataSet | None,
    *,
    pool: PillowPool,
    gpu: bool = False,
    dali_cpu: DaliDecoder | None = None,
    dali_gpu: DaliDecoder | None = None,
    resize: tuple[int, int] = RESIZE,
) -> list[Case]:
    """Every row of the main table, in display order."""
    n = pool.processes
    ref = "spark_image"
    cases = [
        baselines.spark_case(
            spark, ref, "Spark image source (format 'image')", jpeg,
            lambda: baselines.spark_image_source(spark, _folder(jpeg)), expect_pixels=jpeg.decoded_bytes,
            ceiling="pillow", spark_ref=ref,
        ),
        *gpuimages_cases(spark, jpeg, gpu=gpu, resize=resize),
        *recipe_cases(spark, jpeg, n),
        baselines.spark_case(
            spark, "spark_floor", "floor: Spark moving files in, pixels out; no decode", jpeg,
            lambda: baselines.floor_frame(spark, _folder(jpeg), n), expect_pixels=jpeg.decoded_bytes, spark_ref=ref,
        ),
        baselines.pillow_case(pool, "pillow", f"ceiling: Pillow alone, {n} processes", jpeg, None, ref),
        baselines.pillow_case(pool, "pillow_resize", f"ceiling: Pillow draft+resize {resize[0]}, {n} proc.",
                              jpeg, resize, ref),
    ]
    if dali_cpu is not None:
        cases.append(baselines.dali_case(dali_cpu, "dali_cpu", "reference: bare DALI pipeline, CPU", jpeg, ref))
    if dali_gpu is not None:
        cases.append(baselines.dali_case(dali_gpu, "dali_gpu", "reference: bare DALI pipeline, mixed (GPU)", jpeg,
                                         ref))
    if png is not None:
        cases += png_cases(spark, png, pool)
    return cases


def png_cases(spark: SparkSession, png: DataSet, pool: PillowPool) -> list[Case]:
    """Spark's image source, gpuimages on CPU and the Pillow ceiling on the PNG set."""
    from gpuimages import read_images

    ref = "spark_image_png"
    return [
        baselines.spark_case(
            spark, ref, "PNG: Spark image source", png, lambda: baselines.spark_image_source(spark, _folder(png)),
            expect_pixels=png.decoded_bytes, ceiling="pillow_png", spark_ref=ref,
        ),
        baselines.spark_case(
            spark, "gpuimages_cpu_png", "PNG: gpuimages read_images(device='cpu')", png,
            lambda: read_images(spark, _folder(png), device="cpu"), expect_pixels=png.decoded_bytes,
            ceiling="pillow_png", spark_ref=ref,
        ),
        baselines.pillow_case(pool, "pillow_png", f"PNG ceiling: Pillow alone, {pool.processes} processes", png,
                              None, ref),
    ]


def measure(cases: Sequence[Case], repeats: int) -> list[Result]:
    """One untimed pass of every case, then ``repeats`` timed passes round-robin; best pass kept."""
    counted = {}
    for case in cases:
        start = time.perf_counter()
        counted[case.key] = case.warm()
        log.info("warm-up %-22s %6.2f s  rows=%d", case.key, time.perf_counter() - start, counted[case.key][0])
    seconds: dict[str, list[float]] = {c.key: [] for c in cases}
    cpu: dict[str, list[float]] = {c.key: [] for c in cases}
    for rep in range(repeats):
        for case in cases:
            wall, used = baselines.timed_call(case.timed)
            seconds[case.key].append(wall)
            if used is not None:
                cpu[case.key].append(used)
            log.info("pass %d/%d %-22s %6.2f s  %7.0f img/s  CPU %s s", rep + 1, repeats, case.key, wall,
                     case.images / wall, "-" if used is None else f"{used:.2f}")
    return [
        Result(c.key, c.label, c.kind, c.images, c.encoded_bytes, seconds[c.key], counted[c.key][0],
               counted[c.key][1], c.expect_rows, c.expect_pixels, c.ceiling, c.spark_ref, cpu_seconds=cpu[c.key])
        for c in cases
    ]


def check_equal(spark: SparkSession, jpeg: DataSet, cores: int, sample: int = 16) -> dict:
    """Byte-compare sampled images from decode_images, read_images and both recipe variants."""
    from pyspark.sql import functions as F

    from gpuimages import decode_images, read_images
    from gpuimages.listing import to_origin

    folder = _folder(jpeg)
    binary = spark.read.format("binaryFile").load(folder)
    paths = sorted(r["path"] for r in binary.select("path").collect())
    keys = paths[:: max(1, len(paths) // sample)][:sample]
    samples = {
        "decode_images": baselines.sample_images(decode_images(binary, "content", origin_col="path", device="cpu"),
                                                 F.col("path"), keys),
        "recipe": baselines.sample_images(baselines.recipe_frame(spark, folder), F.col("path"), keys),
    }
    with baselines.spark_conf(spark, {baselines.ARROW_BATCH_KEY: str(TUNED_ARROW_BATCH)}):
        samples["recipe_tuned"] = baselines.sample_images(baselines.recipe_frame(spark, folder, partitions=cores),
                                                          F.col("path"), keys)
    origins = {to_origin(p): p for p in keys}
    by_origin = baselines.sample_images(read_images(spark, folder, device="cpu"), F.col("image.origin"), list(origins))
    samples["read_images"] = {origins[k]: v for k, v in by_origin.items()}
    return baselines.compare_samples(samples, keys)


def run_scaling(jpeg: DataSet, workers: Sequence[int], repeats: int) -> list[dict]:
    """gpuimages' CPU read and the Pillow ceiling with 1..N workers, a fresh ``local[N]`` session each."""
    from gpuimages import read_images
    from gpuimages.session import local_session

    rows = []
    for n in workers:
        spark = local_session(f"local[{n}]", f"gpuimages-bench-{n}", **SESSION_CONF)
        spark.sparkContext.setLogLevel("ERROR")
        try:
            with PillowPool(n) as pool:
                cases = [
                    baselines.spark_case(spark, "gpuimages_cpu", "gpuimages", jpeg,
                                         lambda s=spark: read_images(s, _folder(jpeg), device="cpu"),
                                         expect_pixels=jpeg.decoded_bytes),
                    baselines.pillow_case(pool, "pillow", "Pillow", jpeg, None),
                ]
                res = {r.key: r for r in measure(cases, repeats)}
        finally:
            spark.stop()
        rows.append({
            "workers": n,
            "gpuimages_images_per_s": res["gpuimages_cpu"].images_per_s,
            "pillow_images_per_s": res["pillow"].images_per_s,
            "gpuimages_seconds": res["gpuimages_cpu"].seconds,
            "pillow_seconds": res["pillow"].seconds,
            "gpuimages_cpu_ms_per_image": res["gpuimages_cpu"].cpu_ms_per_image,
            "pillow_cpu_ms_per_image": res["pillow"].cpu_ms_per_image,
            "output_ok": res["gpuimages_cpu"].output_ok,
        })
    return rows


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options (``--quick`` changes the defaults of the others)."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.read", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, help="JPEG files (default 2000; --quick 300)")
    p.add_argument("--png-count", type=int, help="PNG files, 0 to skip (default 300; --quick 60)")
    p.add_argument("--repeats", type=int, help="timed passes per reader, best kept (default 3; --quick 1)")
    p.add_argument("--workers", help="comma-separated worker counts for the scaling section, '' to skip "
                   "(default 1,<cores>; --quick: skipped)")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT, help=f"JSON and PNG output (default {DEFAULT_OUT})")
    p.add_argument("--data-root", type=Path, default=DEFAULT_ROOT, help=f"data-set cache (default {DEFAULT_ROOT})")
    p.add_argument("--no-dali", action="store_true", help="skip the bare DALI reference rows")
    p.add_argument("--quick", action="store_true", help="small sets, one pass, no scaling (about a minute)")
    args = p.parse_args(argv)
    cores = os.cpu_count() or 1
    quick = args.quick
    args.count = args.count if args.count is not None else (300 if quick else 2000)
    args.png_count = args.png_count if args.png_count is not None else (60 if quick else 300)
    args.repeats = args.repeats if args.repeats is not None else (1 if quick else 3)
    if args.workers is None:
        args.workers = "" if quick else ",".join(str(n) for n in sorted({1, cores}))
    args.workers = [int(w) for w in args.workers.split(",") if w.strip()]
    if args.count < 1 or args.repeats < 1 or args.png_count < 0 or any(w < 1 for w in args.workers):
        p.error("--count and --repeats must be >= 1, --png-count >= 0, --workers >= 1")
    return args


def _java_version(spark: SparkSession) -> str | None:
    try:
        return spark.sparkContext._jvm.System.getProperty("java.version")
    except Exception:  # noqa: BLE001 - Connect sessions have no JVM handle
        return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; print the tables and goal checks; write JSON and a chart to ``--out-dir``."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    started, load_start = time.perf_counter(), os.getloadavg()
    cores = os.cpu_count() or 1
    jpeg = jpeg_set(args.count, root=args.data_root)
    png = png_set(args.png_count, root=args.data_root) if args.png_count else None
    gpus = baselines.cuda_gpus()
    dali = baselines.dali_installed() and not args.no_dali
    use_gpu = bool(gpus) and baselines.dali_installed()
    log.info("JPEG set: %s", jpeg.summary())
    log.info("GPUs: %s; DALI: %s", gpus or "none", baselines.dali_installed())

    from gpuimages.session import local_session

    spark = local_session(f"local[{cores}]", "gpuimages-bench", **SESSION_CONF)
    spark.sparkContext.setLogLevel("ERROR")
    java = _java_version(spark)
    try:
        with PillowPool(cores) as pool:
            dali_cpu = DaliDecoder("cpu", cores) if dali else None
            dali_gpu = DaliDecoder("mixed", cores) if dali and gpus else None
            cases = build_cases(spark, jpeg, png, pool=pool, gpu=use_gpu, dali_cpu=dali_cpu, dali_gpu=dali_gpu)
            results = measure(cases, args.repeats)
        equality = check_equal(spark, jpeg, cores)
    finally:
        spark.stop()
    scaling = run_scaling(jpeg, args.workers, args.repeats) if args.workers else []

    add_ratios(results)
    goals = check_goals(results)
    bounds = decode_bounds(results)
    load_end = os.getloadavg()
    info = machine_info(java, gpus)
    title = (f"{jpeg.count} JPEGs ({jpeg.mean_kb:.1f} KB mean), best of {args.repeats}, local[{cores}], "
             f"{info['cpu_model']}")
    print()
    print(format_table(results, title))
    print()
    print(f"Output bytes equal (decode_images, recipes, read_images; {equality['sampled']} sampled files): "
          f"{'yes' if equality['equal'] else 'NO ' + str(equality['mismatched'])}")
    print(format_goals(goals))
    print(format_bounds(bounds))
    if scaling:
        print()
        print(format_scaling(scaling))
    elapsed = time.perf_counter() - started
    print(f"\nLoad average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} (1 min; >0.5 at start means other "
          f"processes were busy); total {elapsed:.0f} s")

    payload = {
        "machine": info,
        "settings": {"repeats": args.repeats, "workers": args.workers, "local_cores": cores, "resize": RESIZE,
                     "quick": args.quick, "tuned_arrow_batch": TUNED_ARROW_BATCH},
        "data": {"jpeg": jpeg.summary(), "png": png.summary() if png else None},
        "results": [r.to_dict() for r in results],
        "goals": [g.to_dict() for g in goals],
        "bounds": bounds,
        "equality": equality,
        "scaling": scaling,
        "load_average": {"start": load_start, "end": load_end},
        "elapsed_s": round(elapsed, 1),
    }
    json_path = write_json(args.out_dir / "read.json", payload)
    chart = write_chart(args.out_dir / "read.png", results, title)
    log.info("wrote %s%s", json_path, f" and {chart}" if chart else "")
    ok = equality["equal"] and all(r.output_ok for r in results)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

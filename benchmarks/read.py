"""Read throughput of gpuimages against Spark's image source, the hand-written recipe and Pillow/DALI ceilings.

    python -m benchmarks.read            # 2000 photo JPEGs + 300 PNGs, best of 3, scaling over 1..cores workers
    python -m benchmarks.read --quick    # about a minute
    python -m benchmarks.read --count 1000 --repeats 2 --png-count 0 --workers '' --no-dali

One local Spark session (``local[cores]``) runs every Spark reader. Each reader first makes one untimed
pass (which also counts its rows and pixel bytes), then the timed passes run round-robin over all
readers, each forced with a ``noop`` write so every row and column is materialised. Ceilings decode the
same files outside Spark. The scaling section starts a fresh ``local[N]`` session per worker count.

The JPEGs are crops of real photographs (:func:`benchmarks.data.photo_set`; ``--synthetic`` for the
smoother generated set, which decodes about twice as fast). Beside the Pillow ceiling runs a libjpeg-turbo
ceiling (simplejpeg in the same processes, same files), and gpuimages' CPU reads run a second time with
``GPUIMAGES_JPEG_DECODER=pillow`` in the same session (the Pillow path as before the libjpeg-turbo path).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from benchmarks import baselines
from benchmarks.baselines import TUNED_ARROW_BATCH, Case, DaliDecoder, PillowPool
from benchmarks.data import DEFAULT_ROOT, DataSet, jpeg_set, photo_set, png_set
from benchmarks.report import (
    Goal,
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
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger("benchmarks.read")

RESIZE = (224, 224)
DEFAULT_OUT = Path(__file__).resolve().parent / "results"  # git-ignored
SESSION_CONF = {"spark.ui.showConsoleProgress": "false"}


#: The environment that makes gpuimages' Python workers decode (and encode) JPEGs with Pillow only.
PILLOW_ONLY = {"GPUIMAGES_JPEG_DECODER": "pillow", "GPUIMAGES_JPEG_ENCODER": "pillow"}

#: Goals of the libjpeg-turbo path (the bound goal is checked by :func:`turbo_bound`).
TURBO_GOALS = (
    Goal("full decode >= 3.5x Spark's image source", "gpuimages_cpu", "spark_image", 3.5),
    Goal("resize 224 >= 3x Spark's image source", "gpuimages_cpu_resize", "spark_image", 3.0),
    Goal("full decode >= 1.0x the Pillow path, same run", "gpuimages_cpu", "gpuimages_cpu_pillow", 1.0),
    Goal("resize 224 >= 1.0x the Pillow path, same run", "gpuimages_cpu_resize", "gpuimages_cpu_resize_pillow", 1.0),
)
#: gpuimages' full decode against the bound from the libjpeg-turbo ceiling and the Spark floor.
TURBO_BOUND_GOAL = 0.9


@contextmanager
def worker_env(spark: SparkSession, env: dict[str, str] | None) -> Iterator[None]:
    """Environment variables for the Python workers of the DataFrames built inside the block.

    PySpark ships ``SparkContext.environment`` with every Python function it creates and Spark keeps one
    worker pool per environment, so one classic session can run the same reader with and without the
    variables, interleaved. Build (and run) the DataFrame inside the block.
    """
    environment = spark.sparkContext.environment
    previous = {k: environment.get(k) for k in env or {}}
    environment.update(env or {})
    try:
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                environment.pop(k, None)
            else:
                environment[k] = v


def tree_cpu(root: int | None = None) -> dict[tuple[int, int], float] | None:
    """CPU seconds (user + system, reaped children included) of each process in ``root``'s tree, keyed by
    (pid, start time); None where ``/proc`` is missing."""
    root = os.getpid() if root is None else root
    tick = os.sysconf("SC_CLK_TCK")
    children: dict[int, list[int]] = {}
    stats: dict[int, tuple[int, float]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return None
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as fh:
                stat = fh.read()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(name))
        stats[int(name)] = (int(fields[19]), sum(int(x) for x in fields[11:15]) / tick)  # starttime; utime..cstime
    if root not in stats:
        return None
    out, stack = {}, [root]
    while stack:
        pid = stack.pop()
        if pid in stats:
            start, cpu = stats[pid]
            out[(pid, start)] = cpu
        stack.extend(children.get(pid, []))
    return out


def timed_call(func: Callable[[], object]) -> tuple[float, float | None]:
    """Wall seconds and process-tree CPU seconds taken by ``func()``.

    Unlike a difference of tree totals, a process that ends during the call does not subtract its whole
    CPU time: PySpark's worker daemon ignores SIGCHLD, so the CPU of a Python worker Spark ends (after a
    minute idle) is not added to any parent and simply leaves the tree. Each process still running at the
    end counts what it used since the start (or since it began).
    """
    before = tree_cpu()
    start = time.perf_counter()
    func()
    wall = time.perf_counter() - start
    after = tree_cpu()
    if before is None or after is None:
        return wall, None
    return wall, sum(cpu - before.get(key, 0.0) for key, cpu in after.items())


def warm_workers(spark: SparkSession, paths: Sequence[str], env: dict[str, str] | None,
                 stage: Callable[[DataFrame], DataFrame]) -> None:
    """Run ``stage`` over a few of ``paths`` (``path``, ``content`` columns), ``env`` in the workers' environment.

    Untimed, before a timed pass: Spark ends a Python worker that stays idle for a minute, so a row whose
    environment no neighbouring row shares would pay its workers' start-up (fork, imports) inside the timed
    pass. This keeps that environment's workers up and their modules imported, as in a long job.
    """
    rows = [(p, Path(p).read_bytes()) for p in paths[:4]]
    with worker_env(spark, env):
        baselines.noop_write(stage(spark.createDataFrame(rows, "path string, content binary")))


def warm_decoders(spark: SparkSession, jpeg: DataSet) -> dict[str, Callable[[], None]]:
    """The :func:`warm_workers` step of each gpuimages CPU row, for :func:`measure` (default and Pillow-only
    environments alike, so both sides of the same-run comparison start warm)."""
    from gpuimages import decode_images

    def stage(df: DataFrame) -> DataFrame:
        return decode_images(df, "content", origin_col="path", device="cpu", num_partitions=2)

    paths = jpeg.paths()

    def default() -> None:
        warm_workers(spark, paths, None, stage)

    def pillow_only() -> None:
        warm_workers(spark, paths, PILLOW_ONLY, stage)

    return {"gpuimages_cpu": default, "gpuimages_cpu_resize": default, "decode_images": default,
            "gpuimages_cpu_pillow": pillow_only, "gpuimages_cpu_resize_pillow": pillow_only}


def _folder(data: DataSet) -> str:
    return str(data.folder)


def on_pillow(spark: SparkSession, make_df):
    """``make_df`` built with :data:`PILLOW_ONLY` in its workers' environment (see :func:`worker_env`)."""

    def build():
        with worker_env(spark, PILLOW_ONLY):
            return make_df()

    return build


def gpuimages_cases(spark: SparkSession, jpeg: DataSet, *, gpu: bool, resize: tuple[int, int] = RESIZE,
                    pillow_baseline: bool = False) -> list[Case]:
    """read_images on CPU (full decode and resize), on GPU when available, and decode_images on binaryFile.

    ``pillow_baseline``: also the two CPU reads with ``GPUIMAGES_JPEG_DECODER=pillow`` (same session).
    """
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
    if pillow_baseline:
        cases += [
            baselines.spark_case(
                spark, "gpuimages_cpu_pillow", "  the same, JPEG decoder forced to Pillow", jpeg,
                on_pillow(spark, lambda: read_images(spark, folder, device="cpu")),
                expect_pixels=jpeg.decoded_bytes, ceiling="pillow", spark_ref="spark_image",
            ),
            baselines.spark_case(
                spark, "gpuimages_cpu_resize_pillow", f"  resize {resize[0]}, JPEG decoder forced to Pillow", jpeg,
                on_pillow(spark, lambda: read_images(spark, folder, device="cpu", resize=resize)),
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
    """Every row of the main table, in display order.

    With a :class:`TurboPool` as ``pool``, the libjpeg-turbo ceilings and the same-run Pillow-path reads
    are added too.
    """
    n = pool.processes
    ref = "spark_image"
    turbo = isinstance(pool, TurboPool)
    cases = [
        baselines.spark_case(
            spark, ref, "Spark image source (format 'image')", jpeg,
            lambda: baselines.spark_image_source(spark, _folder(jpeg)), expect_pixels=jpeg.decoded_bytes,
            ceiling="pillow", spark_ref=ref,
        ),
        *gpuimages_cases(spark, jpeg, gpu=gpu, resize=resize, pillow_baseline=turbo),
        *recipe_cases(spark, jpeg, n),
        baselines.spark_case(
            spark, "spark_floor", "floor: Spark moving files in, pixels out; no decode", jpeg,
            lambda: baselines.floor_frame(spark, _folder(jpeg), n), expect_pixels=jpeg.decoded_bytes, spark_ref=ref,
        ),
        baselines.pillow_case(pool, "pillow", f"ceiling: Pillow alone, {n} processes", jpeg, None, ref),
        baselines.pillow_case(pool, "pillow_resize", f"ceiling: Pillow draft+resize {resize[0]}, {n} proc.",
                              jpeg, resize, ref),
    ]
    if turbo:
        cases += [
            turbo_case(pool, "turbo", f"ceiling: libjpeg-turbo direct, {n} processes", jpeg, None, ref),
            turbo_case(pool, "turbo_resize", f"ceiling: libjpeg-turbo + resize {resize[0]}, {n} proc.",
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


def turbo_decode_file(path: str, resize: tuple[int, int] | None = None) -> int:
    """Read ``path`` and decode it with libjpeg-turbo directly; return the pixel byte count.

    Full size: simplejpeg straight to BGR. With ``resize`` (height, width): gpuimages' own JPEG path
    (``decode_one``: DCT-scaled decode as Pillow's draft, then Pillow's bilinear resize), the fastest
    way to Pillow's resized pixels.
    """
    with open(path, "rb") as fh:
        blob = fh.read()
    if resize is None:
        import simplejpeg

        return simplejpeg.decode_jpeg(blob, "BGR").nbytes
    from gpuimages.engines.pillow import decode_one
    from gpuimages.options import DecodeOptions

    return decode_one(blob, DecodeOptions(resize=resize)).nbytes


def _turbo_chunk(args: tuple[list[str], tuple[int, int] | None]) -> tuple[int, int]:
    paths, resize = args
    return len(paths), sum(turbo_decode_file(p, resize) for p in paths)


class TurboPool(PillowPool):
    """:class:`~benchmarks.baselines.PillowPool` whose processes also decode with libjpeg-turbo directly."""

    def run_turbo(self, paths: Sequence[str], resize: tuple[int, int] | None = None) -> tuple[int, int]:
        """Decode every path with :func:`turbo_decode_file`; return (images, pixel bytes)."""
        jobs = [(list(paths[i : i + self.chunk]), resize) for i in range(0, len(paths), self.chunk)]
        n = b = 0
        for k, size in self._pool.imap_unordered(_turbo_chunk, jobs):
            n += k
            b += size
        return n, b


def turbo_case(pool: TurboPool, key: str, label: str, data: DataSet, resize: tuple[int, int] | None,
               spark_ref: str | None = None) -> Case:
    """The libjpeg-turbo ceiling on ``data`` (optionally resized)."""
    paths = data.paths()
    expect = data.resized_bytes(resize) if resize else data.decoded_bytes

    def run() -> tuple[int, int]:
        return pool.run_turbo(paths, resize)

    return Case(key, label, "ceiling", data.count, data.total_bytes, run, run, data.count, expect, spark_ref=spark_ref)


def turbo_bound(results: list[Result]) -> dict:
    """Full decode in Spark bounded by the libjpeg-turbo ceiling and the Spark floor on the same cores.

    As :func:`benchmarks.report.decode_bounds` with the libjpeg-turbo ceiling: ``1 / (1 / turbo + 1 / floor)``
    images/s, and by CPU cost ``turbo + floor`` ms/img; gpuimages' full decode against both.
    """
    by_key = {r.key: r for r in results}
    turbo, floor, ours = by_key.get("turbo"), by_key.get("spark_floor"), by_key.get("gpuimages_cpu")
    if turbo is None or floor is None or ours is None:
        return {}
    bound = 1 / (1 / turbo.images_per_s + 1 / floor.images_per_s)
    out: dict = {"bound_images_per_s": round(bound, 1), "gpuimages_vs_bound": round(ours.images_per_s / bound, 3),
                 "goal": TURBO_BOUND_GOAL}
    if turbo.cpu_ms_per_image and floor.cpu_ms_per_image and ours.cpu_ms_per_image:
        out["cpu_bound_ms_per_image"] = round(turbo.cpu_ms_per_image + floor.cpu_ms_per_image, 3)
        out["gpuimages_vs_cpu_bound"] = round(out["cpu_bound_ms_per_image"] / ours.cpu_ms_per_image, 3)
    out["met"] = out["gpuimages_vs_bound"] >= TURBO_BOUND_GOAL
    return out


def format_turbo(goals: list, bound: dict) -> str:
    """The libjpeg-turbo path's goals and bound as text."""
    lines = ["libjpeg-turbo path:", *format_goals(goals).splitlines()[1:]]
    if bound:
        by_cpu = bound.get("gpuimages_vs_cpu_bound")
        lines.append(
            f"  [{'PASS' if bound['met'] else 'FAIL'}] full decode >= {TURBO_BOUND_GOAL:.0%} of the in-Spark bound "
            f"(libjpeg-turbo ceiling + Spark floor, {bound['bound_images_per_s']:.0f} img/s): "
            f"{bound['gpuimages_vs_bound']:.2f} (from CPU cost per image: {_fmt_ratio(by_cpu)})")
    return "\n".join(lines)


def _fmt_ratio(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def measure(cases: Sequence[Case], repeats: int, prepare: dict[str, Callable[[], None]] | None = None) -> list[Result]:
    """One untimed pass of every case, then ``repeats`` timed passes round-robin; best pass kept.

    ``prepare``: an untimed step to run right before each timed pass of the case with that key.
    """
    counted = {}
    for case in cases:
        start = time.perf_counter()
        counted[case.key] = case.warm()
        log.info("warm-up %-22s %6.2f s  rows=%d", case.key, time.perf_counter() - start, counted[case.key][0])
    seconds: dict[str, list[float]] = {c.key: [] for c in cases}
    cpu: dict[str, list[float]] = {c.key: [] for c in cases}
    for rep in range(repeats):
        for case in cases:
            if prepare and case.key in prepare:
                prepare[case.key]()
            wall, used = timed_call(case.timed)
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
    from gpuimages.uris import to_origin

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
    p.add_argument("--synthetic", action="store_true",
                   help="the generated JPEG set (smooth gradients, decodes ~2x faster) instead of photographs")
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
    jpeg = jpeg_set(args.count, root=args.data_root) if args.synthetic else photo_set(args.count, root=args.data_root)
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
        with TurboPool(cores) as pool:
            dali_cpu = DaliDecoder("cpu", cores) if dali else None
            dali_gpu = DaliDecoder("mixed", cores) if dali and gpus else None
            cases = build_cases(spark, jpeg, png, pool=pool, gpu=use_gpu, dali_cpu=dali_cpu, dali_gpu=dali_gpu)
            results = measure(cases, args.repeats, prepare=warm_decoders(spark, jpeg))
        equality = check_equal(spark, jpeg, cores)
    finally:
        spark.stop()
    scaling = run_scaling(jpeg, args.workers, args.repeats) if args.workers else []

    add_ratios(results)
    goals = check_goals(results)
    bounds = decode_bounds(results)
    goals_turbo = check_goals(results, TURBO_GOALS)
    bound_turbo = turbo_bound(results)
    load_end = os.getloadavg()
    info = machine_info(java, gpus)
    kind = "synthetic JPEGs" if args.synthetic else "photo JPEGs"
    title = (f"{jpeg.count} {kind} ({jpeg.mean_kb:.1f} KB mean), best of {args.repeats}, local[{cores}], "
             f"{info['cpu_model']}")
    print()
    print(format_table(results, title))
    print()
    print(f"Output bytes equal (decode_images, recipes, read_images; {equality['sampled']} sampled files): "
          f"{'yes' if equality['equal'] else 'NO ' + str(equality['mismatched'])}")
    print(format_goals(goals))
    print(format_bounds(bounds))
    print(format_turbo(goals_turbo, bound_turbo))
    if scaling:
        print()
        print(format_scaling(scaling))
    elapsed = time.perf_counter() - started
    print(f"\nLoad average at start {load_start[0]:.2f}, at end {load_end[0]:.2f} (1 min; >0.5 at start means other "
          f"processes were busy); total {elapsed:.0f} s")

    payload = {
        "machine": info,
        "settings": {"repeats": args.repeats, "workers": args.workers, "local_cores": cores, "resize": RESIZE,
                     "synthetic": args.synthetic,
                     "quick": args.quick, "tuned_arrow_batch": TUNED_ARROW_BATCH},
        "data": {"jpeg": jpeg.summary(), "png": png.summary() if png else None},
        "results": [r.to_dict() for r in results],
        "goals": [g.to_dict() for g in goals],
        "bounds": bounds,
        "turbo_goals": [g.to_dict() for g in goals_turbo],
        "turbo_bound": bound_turbo,
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

"""Encode and transcode throughput: transcode_images against Pillow alone and against read_images -> encode_images.

    python -m benchmarks.encode            # 1000 photographs, best of 3
    python -m benchmarks.encode --quick    # 200 photographs, one pass (about a minute on 2 cores)

On real-looking photographs (``benchmarks.data.photo_set``: JPEG crops of scikit-image's photos, ImageNet
sized), every row resizes to a shorter side of 256 and encodes JPEG at quality 90:

* ``transcode``: ``transcode_files`` (``read_images``' listing + ``transcode_images``): pixels stay in the task.
* ``read_encode``: ``read_images(resize=256)`` -> ``encode_images(format="jpeg")``: pixels go through the JVM.
* ``read_raw``: ``read_images(resize=256)`` alone (the image schema, for reference).
* ``pillow``: Pillow alone in N processes (read file, draft, bilinear resize, JPEG encode): the ceiling.

With ``same_run`` (the command line's default), in the same session:

* ``transcode_pillow_path``: ``transcode`` with ``GPUIMAGES_JPEG_DECODER=pillow`` and
  ``GPUIMAGES_JPEG_ENCODER=pillow`` in the workers: Pillow decodes and encodes, as before the
  libjpeg-turbo path;
* ``transcode_turbo_encode``: ``transcode`` with ``GPUIMAGES_JPEG_ENCODER=turbo``: libjpeg-turbo also
  encodes at quality 90 (its fast DCT; by default it encodes only from quality 96).

Each Spark row first makes one untimed pass, then timed passes run round-robin (a ``noop`` write
materialises every row). Then ``convert --format jpeg`` and ``--format raw`` (the same API calls the
CLI makes) write Parquet, and their sizes are compared. Goals: transcode >= 80% of the Pillow ceiling,
>= 1.5x read -> encode and (same run) >= 1.3x the Pillow path.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from benchmarks.baselines import noop_write
from benchmarks.data import DEFAULT_ROOT, photo_set
from benchmarks.read import timed_call
from benchmarks.report import machine_info, write_json

log = logging.getLogger("benchmarks.encode")

SHORT_SIDE = 256
QUALITY = 90
DEFAULT_OUT = Path(__file__).resolve().parent / "results"  # git-ignored
GOALS = {"transcode_vs_pillow": 0.8, "transcode_vs_read_encode": 1.5}
#: Goal of the libjpeg-turbo path against the Pillow path, measured in the same run.
SAME_RUN_GOALS = {"transcode_vs_pillow_path": 1.3}


def pillow_transcode_file(path: str, short: int = SHORT_SIDE, quality: int = QUALITY) -> int:
    """Pillow alone: read, draft-decode, resize the shorter side to ``short`` (bilinear), JPEG-encode; bytes out."""
    with open(path, "rb") as fh:
        im = Image.open(io.BytesIO(fh.read()))
    w, h = im.size
    scale = short / min(w, h)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    if im.format == "JPEG":
        im.draft("RGB", (size[0] * 2, size[1] * 2))
    im = im.convert("RGB").resize(size, Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, subsampling=2)
    return buf.tell()


def _chunk(paths: list[str]) -> tuple[int, int]:
    return len(paths), sum(pillow_transcode_file(p) for p in paths)


def parquet_bytes(folder: str) -> int:
    """Bytes of the Parquet files under ``folder``."""
    return sum(f.stat().st_size for f in Path(folder).rglob("*.parquet"))


def run(count: int, repeats: int, out_dir: Path, data_root: str, cores: int, spark=None,
        size: tuple[int, int] | None = None, device: str = "cpu", same_run: bool = False) -> dict:
    """Measure every row and the Parquet sizes; write ``encode.json`` under ``out_dir`` and return it.

    ``spark``: a session to use (default: a new ``local[cores]`` one, stopped at the end); ``size``:
    the photographs' nominal (height, width) (default ImageNet-sized); ``device``: the Spark rows'
    device ("gpu": DALI decodes and nvImageCodec encodes JPEG; the Pillow row stays on CPU);
    ``same_run``: also the Pillow-path and libjpeg-turbo-encode transcodes (classic sessions).
    """
    import gpuimages
    from benchmarks.read import PILLOW_ONLY, warm_workers, worker_env
    from gpuimages.session import local_session
    from gpuimages.transcode import transcode_files, transcode_images

    data = photo_set(count, root=data_root, **({"size": size} if size else {}))
    folder = str(data.folder)
    own_session = spark is None
    if own_session:
        spark = local_session(f"local[{cores}]", "gpuimages-bench-encode", **{"spark.ui.showConsoleProgress": "false"})
        spark.sparkContext.setLogLevel("ERROR")

    def transcode():
        return transcode_files(spark, folder, resize=SHORT_SIDE, format="jpeg", quality=QUALITY, device=device)

    def read_encode():
        images = gpuimages.read_images(spark, folder, resize=SHORT_SIDE, device=device)
        return gpuimages.encode_images(images, format="jpeg", quality=QUALITY, device=device)

    def read_raw():
        return gpuimages.read_images(spark, folder, resize=SHORT_SIDE, device=device)

    pool = multiprocessing.get_context("spawn").Pool(cores)
    paths = data.paths()
    jobs = [paths[i : i + 16] for i in range(0, len(paths), 16)]

    def pillow():
        n = sum(k for k, _ in pool.imap_unordered(_chunk, jobs))
        assert n == len(paths)

    def transcode_with(env: dict[str, str]) -> Callable[[], None]:
        def timed() -> None:
            with worker_env(spark, env):
                noop_write(transcode())

        return timed

    rows: dict[str, Callable[[], None]] = {
        "transcode": lambda: noop_write(transcode()),
        "read_encode": lambda: noop_write(read_encode()),
        "read_raw": lambda: noop_write(read_raw()),
        "pillow": pillow,
    }
    prepare: dict[str, Callable[[], None]] = {}
    if same_run:
        turbo_encode = {"GPUIMAGES_JPEG_ENCODER": "turbo"}
        rows["transcode_pillow_path"] = transcode_with(PILLOW_ONLY)
        rows["transcode_turbo_encode"] = transcode_with(turbo_encode)

        def stage(df):
            return transcode_images(df, resize=SHORT_SIDE, format="jpeg", quality=QUALITY, device=device,
                                    num_partitions=2)

        # each environment has its own Python workers: keep them warm before every timed pass alike
        for key, env in (("transcode", None), ("transcode_pillow_path", PILLOW_ONLY),
                         ("transcode_turbo_encode", turbo_encode)):
            prepare[key] = lambda env=env: warm_workers(spark, paths, env, stage)
    checks = {
        "transcode_rows": transcode().filter("error IS NULL").count(),
        "read_encode_rows": read_encode().filter("error IS NULL").count(),
    }
    for key, func in rows.items():  # untimed pass
        start = time.perf_counter()
        func()
        log.info("warm-up %-12s %6.2f s", key, time.perf_counter() - start)
    seconds: dict[str, list[float]] = {k: [] for k in rows}
    cpu: dict[str, list[float]] = {k: [] for k in rows}
    for rep in range(repeats):
        for key, func in rows.items():
            if key in prepare:
                prepare[key]()
            wall, used = timed_call(func)
            seconds[key].append(wall)
            if used is not None:
                cpu[key].append(used)
            log.info("pass %d/%d %-12s %6.2f s %7.0f img/s", rep + 1, repeats, key, wall, count / wall)
    pool.close()
    pool.join()
    rate = {k: count / min(v) for k, v in seconds.items()}

    tmp = tempfile.mkdtemp(prefix="gpuimages-bench-encode-")
    try:
        transcode().write.parquet(f"{tmp}/jpeg")
        read_raw().write.parquet(f"{tmp}/raw")
        sizes = {"jpeg": parquet_bytes(f"{tmp}/jpeg"), "raw": parquet_bytes(f"{tmp}/raw")}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if own_session:
        spark.stop()

    ratios = {
        "transcode_vs_pillow": rate["transcode"] / rate["pillow"],
        "transcode_vs_read_encode": rate["transcode"] / rate["read_encode"],
        "read_encode_vs_read_raw": rate["read_encode"] / rate["read_raw"],
        "raw_parquet_vs_jpeg_parquet": sizes["raw"] / max(sizes["jpeg"], 1),
    }
    # goal name -> (row in the denominator, row in the numerator)
    pairs = {"transcode_vs_pillow": ("pillow", "transcode"), "transcode_vs_read_encode": ("read_encode", "transcode")}
    goal_targets = dict(GOALS)
    if same_run:
        ratios["transcode_vs_pillow_path"] = rate["transcode"] / rate["transcode_pillow_path"]
        ratios["turbo_encode_vs_pillow_path"] = rate["transcode_turbo_encode"] / rate["transcode_pillow_path"]
        pairs["transcode_vs_pillow_path"] = ("transcode_pillow_path", "transcode")
        goal_targets.update(SAME_RUN_GOALS)
    per_img = {k: min(v) / count for k, v in cpu.items() if v}
    # the same ratios from CPU cost per image (steadier on a busy machine)
    cpu_ratios = {k: per_img[den] / per_img[num] for k, (den, num) in pairs.items()
                  if den in per_img and num in per_img}
    goals = {
        k: {"goal": g, "ratio": round(ratios[k], 3), "met": ratios[k] >= g,
            "cpu_ratio": round(cpu_ratios[k], 3) if k in cpu_ratios else None}
        for k, g in goal_targets.items()
    }
    payload = {
        "machine": machine_info(),
        "load_average": os.getloadavg(),
        "data": data.summary(),
        "cores": cores,
        "device": device,
        "repeats": repeats,
        "same_run": same_run,
        "img_per_s": {k: round(v, 1) for k, v in rate.items()},
        "cpu_ms_per_img": {k: round(min(v) / count * 1e3, 2) for k, v in cpu.items() if v},
        "seconds": seconds,
        "valid_rows": checks,
        "parquet_bytes": sizes,
        "parquet_kb_per_image": {k: round(v / count / 1e3, 1) for k, v in sizes.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "goals": goals,
    }
    write_json(out_dir / "encode.json", payload)
    return payload


def format_report(p: dict) -> str:
    lines = [
        f"{p['data']['count']} photographs ({p['data']['mean_kb']} KB mean), resize shorter side {SHORT_SIDE}, "
        f"JPEG q{QUALITY}, device {p.get('device', 'cpu')}, {p['cores']} cores, "
        f"load average {tuple(round(x, 1) for x in p['load_average'])}",
        f"{'row':<24}{'img/s':>9}{'CPU ms/img':>12}",
    ]
    for key, value in p["img_per_s"].items():
        lines.append(f"{key:<24}{value:>9.0f}{p['cpu_ms_per_img'].get(key, float('nan')):>12.2f}")
    kb = p["parquet_kb_per_image"]
    lines.append(f"convert parquet: jpeg {kb['jpeg']} KB/image, raw {kb['raw']} KB/image "
                 f"({p['ratios']['raw_parquet_vs_jpeg_parquet']:.1f}x smaller)")
    for key, goal in p["goals"].items():
        by_cpu = "" if goal.get("cpu_ratio") is None else f"; from CPU cost per image: {goal['cpu_ratio']:.2f}"
        lines.append(f"goal {key}: {goal['ratio']:.2f} (>= {goal['goal']}) {'met' if goal['met'] else 'MISSED'}"
                     f"{by_cpu}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.encode", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 photographs, one timed pass")
    parser.add_argument("--count", type=int, help="photographs (default 1000; quick: 200)")
    parser.add_argument("--repeats", type=int, help="timed passes per row, best kept (default 3; quick: 1)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="local[N] and Pillow processes")
    parser.add_argument("--device", default="cpu", choices=["cpu", "gpu", "auto"],
                        help="device of the Spark rows (gpu: DALI decode, nvImageCodec JPEG encode)")
    parser.add_argument("--no-same-run", action="store_true",
                        help="skip the Pillow-path and libjpeg-turbo-encode transcode rows")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data-root", default=str(DEFAULT_ROOT))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    count = args.count or (200 if args.quick else 1000)
    repeats = args.repeats or (1 if args.quick else 3)
    payload = run(count, repeats, args.out_dir, args.data_root, args.cores, device=args.device,
                  same_run=not args.no_same_run)
    print(format_report(payload))
    print(json.dumps(payload["ratios"]))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

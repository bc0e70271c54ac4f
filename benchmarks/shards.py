"""Datasets in shards: reading WebDataset shards against the same images as loose files, writing shards
against transcoding alone, and the round trip.

    python -m benchmarks.shards            # 600 photographs, best of 5
    python -m benchmarks.shards --quick    # 200 photographs, one timed pass

On real-looking photographs (``benchmarks.data.photo_set``, ImageNet-sized JPEGs), in one local session:

* ``read_loose``: ``read_images(folder)``, full decode, archives on (the default).
* ``read_loose_plain``: the same with ``archives=False`` (what reading loose files cost before archives).
* ``read_shards``: ``read_images(shards)``: the same files in WebDataset tars (``key.jpg`` + ``key.cls``,
  written by the standard library's ``tarfile``), streamed member by member in the tasks.
* ``transcode_images``: ``transcode_images(binaryFile(folder), resize=256)``, JPEG q90: transcoding alone.
* ``transcode_files``: ``transcode_files(folder, resize=256)``, the same through ``read_images``' listing.
* ``write_shards``: ``write_webdataset(transcode_files(folder, resize=256), dest)``: the img2dataset job.
* ``write_shards_images``: ``write_webdataset(transcode_images(binaryFile(folder), resize=256), dest)``: the
  cost of writing alone, against ``transcode_images``.

Every Spark row makes one untimed pass, then timed passes run round-robin (a ``noop`` write materialises
every row; the shard row writes its shards, removed before each pass); the best pass counts. Goals:
``read_shards >= 0.9 x read_loose`` and ``write_shards >= 0.9 x transcode_images``. The round trip writes
a sample of the decoded photographs as JPEG (q95) and PNG shards with integer labels, reads them back,
and compares sizes, pixels and labels.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import shutil
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.baselines import noop_write, timed_call
from benchmarks.data import DEFAULT_ROOT, DataSet, photo_set
from benchmarks.report import machine_info, write_json

log = logging.getLogger("benchmarks.shards")

SHORT_SIDE = 256
QUALITY = 90
DEFAULT_OUT = Path(__file__).resolve().parent / "results"  # git-ignored
GOALS = {"read_shards_vs_read_loose": 0.9, "write_shards_vs_transcode_images": 0.9}
#: Classes of the labels written with the shards (``index % CLASSES``).
CLASSES = 10


def write_shards_stdlib(data: DataSet, folder: Path, shards: int) -> list[Path]:
    """The set's files as ``shards`` WebDataset tars (``key.jpg``, ``key.cls``), with the standard library."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    names = data.files
    per = -(-len(names) // shards)
    for s in range(shards):
        path = folder / f"shard-{s:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for i in range(s * per, min(len(names), (s + 1) * per)):
                key = Path(names[i]).stem
                for ext, blob in (("jpg", (data.folder / names[i]).read_bytes()), ("cls", str(i % CLASSES).encode())):
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(blob)
                    tar.addfile(info, io.BytesIO(blob))
        paths.append(path)
    return paths


def round_trip(spark, folder: str, work: Path, sample: int) -> dict:
    """Photographs written to JPEG (q95) and PNG shards with labels and read back: sizes, pixels, labels."""
    from pyspark.sql import functions as F

    import gpuimages

    source = gpuimages.read_images(spark, folder, device="cpu", drop_invalid=True).limit(sample)
    source = source.withColumn("label", (F.abs(F.hash("image.origin")) % CLASSES).cast("int")) \
        .withColumn("src", F.col("image.origin")).localCheckpoint()
    originals = {r.src: r for r in source.collect()}
    out = {}
    for fmt, quality in (("jpeg", 95), ("png", None)):
        dest = work / f"round-{fmt}"
        shutil.rmtree(dest, ignore_errors=True)
        kwargs = {"quality": quality} if quality else {}
        report = gpuimages.write_webdataset(source, str(dest), label_col="label", json_cols=["src"], format=fmt,
                                            max_samples=max(1, sample // 4), **kwargs)
        shards = report.filter("status = 'written'").count()
        back = gpuimages.read_images(spark, str(dest), device="cpu", webdataset={"cls": "long", "json": "string"})
        sizes_equal = labels_equal = 0
        mean_diffs, max_diffs = [], []
        rows = back.collect()
        for r in rows:
            o = originals[json.loads(r.json)["src"]]
            sizes_equal += (r.image.height, r.image.width) == (o.image.height, o.image.width)
            labels_equal += r.cls == o.label
            a = np.frombuffer(r.image.data, np.uint8).astype(np.int16)
            b = np.frombuffer(o.image.data, np.uint8).astype(np.int16)
            if a.shape == b.shape:
                diff = np.abs(a - b)
                mean_diffs.append(float(diff.mean()))
                max_diffs.append(int(diff.max()))
        out[fmt] = {
            "rows": len(rows), "shards": shards, "sizes_equal": sizes_equal, "labels_equal": labels_equal,
            "mean_abs_diff": round(float(np.mean(mean_diffs)), 3) if mean_diffs else None,
            "max_abs_diff": max(max_diffs) if max_diffs else None,
            "ok": len(rows) == len(originals) == sizes_equal == labels_equal
            and (fmt != "png" or max(max_diffs, default=0) == 0),
        }
    return out


def run(count: int, repeats: int, out_dir: Path, data_root: str, cores: int, shards: int, spark=None) -> dict:
    """Measure every row and the round trip; write ``shards.json`` under ``out_dir`` and return it."""
    import gpuimages
    from gpuimages.session import local_session
    from gpuimages.transcode import transcode_files

    data = photo_set(count, root=data_root)
    folder = str(data.folder)
    work = Path(tempfile.mkdtemp(prefix="gpuimages-bench-shards-"))
    shard_folder = work / "shards"
    write_shards_stdlib(data, shard_folder, shards)
    own_session = spark is None
    if own_session:
        spark = local_session(f"local[{cores}]", "gpuimages-bench-shards", **{"spark.ui.showConsoleProgress": "false"})
        spark.sparkContext.setLogLevel("ERROR")
    dest = work / "written"

    def binary():
        return spark.read.format("binaryFile").load(folder)

    def write_shards(from_files: bool = True):
        shutil.rmtree(dest, ignore_errors=True)
        if from_files:
            jobs = transcode_files(spark, folder, resize=SHORT_SIDE, format="jpeg", quality=QUALITY, device="cpu")
        else:
            jobs = gpuimages.transcode_images(binary(), resize=SHORT_SIDE, format="jpeg", quality=QUALITY,
                                              device="cpu")
        return gpuimages.write_webdataset(jobs, str(dest))

    rows: dict[str, Callable[[], object]] = {
        "read_loose": lambda: noop_write(gpuimages.read_images(spark, folder, device="cpu")),
        "read_loose_plain": lambda: noop_write(gpuimages.read_images(spark, folder, device="cpu", archives=False)),
        "read_shards": lambda: noop_write(gpuimages.read_images(spark, str(shard_folder), device="cpu")),
        "transcode_images": lambda: noop_write(gpuimages.transcode_images(
            binary(), resize=SHORT_SIDE, format="jpeg", quality=QUALITY, device="cpu")),
        "transcode_files": lambda: noop_write(transcode_files(
            spark, folder, resize=SHORT_SIDE, format="jpeg", quality=QUALITY, device="cpu")),
        "write_shards": write_shards,
        "write_shards_images": lambda: write_shards(from_files=False),
    }
    checks = {
        "read_loose_valid": gpuimages.read_images(spark, folder, device="cpu").filter("error IS NULL").count(),
        "read_shards_valid": gpuimages.read_images(spark, str(shard_folder), device="cpu")
        .filter("error IS NULL").count(),
    }
    for key, func in rows.items():  # untimed pass
        wall, _ = timed_call(func)
        log.info("warm-up %-19s %6.2f s", key, wall)
    report = write_shards()
    written = report.groupBy().sum("samples", "skipped").first()
    checks["shards_written_samples"] = int(written[0] or 0)
    checks["shards_written"] = report.filter("status = 'written'").count()
    seconds: dict[str, list[float]] = {k: [] for k in rows}
    cpu: dict[str, list[float]] = {k: [] for k in rows}
    for rep in range(repeats):
        for key, func in rows.items():
            wall, used = timed_call(func)
            seconds[key].append(wall)
            if used is not None:
                cpu[key].append(used)
            log.info("pass %d/%d %-19s %6.2f s %7.0f img/s", rep + 1, repeats, key, wall, count / wall)
    rate = {k: count / min(v) for k, v in seconds.items()}
    trip = round_trip(spark, folder, work, min(count, 96))
    if own_session:
        spark.stop()
    shutil.rmtree(work, ignore_errors=True)

    ratios = {
        "read_shards_vs_read_loose": rate["read_shards"] / rate["read_loose"],
        "write_shards_vs_transcode_images": rate["write_shards"] / rate["transcode_images"],
        "read_loose_vs_read_loose_plain": rate["read_loose"] / rate["read_loose_plain"],
        "write_shards_vs_transcode_files": rate["write_shards"] / rate["transcode_files"],
        "write_shards_images_vs_transcode_images": rate["write_shards_images"] / rate["transcode_images"],
        "transcode_files_vs_transcode_images": rate["transcode_files"] / rate["transcode_images"],
    }
    per_img = {k: min(v) / count for k, v in cpu.items() if v}
    cpu_ratios = {}
    if len(per_img) == len(rows):  # the same ratios from CPU cost per image (steadier on a busy machine)
        cpu_ratios = {
            "read_shards_vs_read_loose": per_img["read_loose"] / per_img["read_shards"],
            "write_shards_vs_transcode_images": per_img["transcode_images"] / per_img["write_shards"],
        }
    goals = {
        k: {"goal": g, "ratio": round(ratios[k], 3), "met": ratios[k] >= g,
            "cpu_ratio": round(cpu_ratios[k], 3) if k in cpu_ratios else None}
        for k, g in GOALS.items()
    }
    payload = {
        "machine": machine_info(),
        "load_average": os.getloadavg(),
        "data": data.summary(),
        "cores": cores,
        "shards": shards,
        "repeats": repeats,
        "img_per_s": {k: round(v, 1) for k, v in rate.items()},
        "cpu_ms_per_img": {k: round(min(v) / count * 1e3, 2) for k, v in cpu.items() if v},
        "seconds": seconds,
        "checks": checks,
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
        "goals": goals,
        "round_trip": trip,
    }
    write_json(out_dir / "shards.json", payload)
    return payload


def format_report(p: dict) -> str:
    lines = [
        f"{p['data']['count']} photographs ({p['data']['mean_kb']} KB mean) in {p['shards']} shards, "
        f"{p['cores']} cores, load average {tuple(round(x, 1) for x in p['load_average'])}",
        f"{'row':<20}{'img/s':>9}{'CPU ms/img':>12}",
    ]
    for key, value in p["img_per_s"].items():
        lines.append(f"{key:<20}{value:>9.0f}{p['cpu_ms_per_img'].get(key, float('nan')):>12.2f}")
    lines.append(f"checks: {p['checks']}")
    for fmt, trip in p["round_trip"].items():
        lines.append(f"round trip {fmt}: {trip}")
    for key, goal in p["goals"].items():
        by_cpu = "" if goal.get("cpu_ratio") is None else f"; from CPU cost per image: {goal['cpu_ratio']:.2f}"
        lines.append(f"goal {key}: {goal['ratio']:.2f} (>= {goal['goal']}) {'met' if goal['met'] else 'MISSED'}"
                     f"{by_cpu}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.shards", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 photographs, one timed pass")
    parser.add_argument("--count", type=int, help="photographs (default 600; quick: 200)")
    parser.add_argument("--repeats", type=int, help="timed passes per row, best kept (default 5; quick: 1)")
    parser.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="local[N]")
    parser.add_argument("--shards", type=int, help="shards the photographs are packed in (default 2 per core)")
    parser.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--data-root", default=str(DEFAULT_ROOT))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    count = args.count or (200 if args.quick else 600)
    repeats = args.repeats or (1 if args.quick else 5)
    payload = run(count, repeats, args.out_dir, args.data_root, args.cores, args.shards or 2 * args.cores)
    print(format_report(payload))
    print(json.dumps(payload["ratios"]))
    trips_ok = all(t["ok"] for t in payload["round_trip"].values())
    return 0 if trips_ok and payload["checks"]["read_loose_valid"] == payload["checks"]["read_shards_valid"] else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

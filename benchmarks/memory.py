"""Peak memory of the Python workers while ``read_images`` decodes camera-sized photographs at full size.

    python -m benchmarks.memory             # 40 photos of 6000x4000 (69 MB of BGR each), local[2]
    python -m benchmarks.memory --quick     # 8 photos
    python -m benchmarks.memory --count 40 --budgets 0,128,64   # max_batch_bytes in MiB (0: unbounded)

Each configuration runs in a fresh ``local[N]`` session (Python workers are reused within a session,
so their peak would carry over), decodes every file with ``read_images(..., device="cpu")`` and forces
the result with a ``noop`` write. While the job runs, a thread samples the resident memory (``VmRSS``)
of every Python process the JVM started (the pyspark daemon and its workers) from ``/proc`` every
few milliseconds; at the end each live worker's own high-water mark (``VmHWM``) is read too. The
figure reported is the largest worker's peak. The first configuration is the baseline
(``max_batch_bytes`` unbounded: count-bounded 16-image batches only), so the ratio shows what the
byte bound saves on the same files in the same run; a checksum of the decoded pixels shows the
result is unchanged.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.data import DEFAULT_ROOT, photo_set

log = logging.getLogger("benchmarks.memory")

CAMERA_SIZE = (4000, 6000)
#: The memory goal for the largest Python worker with default options (bytes).
GOAL_BYTES = 800 * 1024 * 1024
#: max_batch_bytes that stands for "no byte bound" (the count bound alone decides).
UNBOUNDED = (1 << 31) - 1
DEFAULT_OUT = Path(__file__).resolve().parent / "results"  # git-ignored


def _status(pid: int) -> dict[str, int]:
    """VmRSS / VmHWM of a process in bytes (empty when it is gone)."""
    out: dict[str, int] = {}
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as fh:
            for line in fh:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    key, value = line.split(":", 1)
                    out[key] = int(value.split()[0]) * 1024
    except OSError:
        pass
    return out


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as fh:
                ppid = int(fh.read().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        tree.setdefault(ppid, []).append(int(entry))
    return tree


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            return fh.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def python_workers(root: int | None = None) -> list[int]:
    """Python processes below ``root`` (default: this process), not counting it: the pyspark daemon and
    workers the JVM started."""
    root = os.getpid() if root is None else root
    tree, found, todo = _children(), [], [root]
    while todo:
        pid = todo.pop()
        for child in tree.get(pid, []):
            todo.append(child)
            program = os.path.basename(_cmdline(child).split(" ", 1)[0])
            if program.startswith("python"):  # not the JVM (whose class path also names pyspark)
                found.append(child)
    return found


class PeakSampler:
    """Samples the RSS of the Python workers in a thread; ``peak`` is the largest single worker's."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self.peak_total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._workers: list[int] = []
        self._last_scan = 0.0

    def _run(self) -> None:
        while not self._stop.is_set():
            now = time.monotonic()
            if now - self._last_scan > 0.2:  # new workers appear rarely; rescan the tree now and then
                self._workers, self._last_scan = python_workers(), now
            sizes = [_status(pid).get("VmRSS", 0) for pid in self._workers]
            if sizes:
                self.peak = max(self.peak, *sizes)
                self.peak_total = max(self.peak_total, sum(sizes))
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        for pid in python_workers():  # the kernel's own high-water mark catches spikes between samples
            self.peak = max(self.peak, _status(pid).get("VmHWM", 0))
        self._stop.set()
        self._thread.join()


@dataclass
class Run:
    """One configuration's figures."""

    label: str
    max_batch_bytes: int
    seconds: float
    rows: int
    valid: int
    pixel_bytes: int
    checksum: int
    worker_peak: int
    workers_total_peak: int

    @property
    def worker_peak_mb(self) -> float:
        return self.worker_peak / 2**20


def run_one(folder: str, max_batch_bytes: int, label: str, cores: int, batch_size: int) -> Run:
    """Decode ``folder`` in a fresh session and measure the Python workers' peak memory."""
    from pyspark.sql import functions as F

    import gpuimages
    from gpuimages.session import local_session

    spark = local_session(f"local[{cores}]", "gpuimages-memory", **{"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    try:
        df = gpuimages.read_images(spark, folder, device="cpu", max_batch_bytes=max_batch_bytes,
                                   batch_size=batch_size)
        with PeakSampler() as sampler:
            start = time.perf_counter()
            stats = df.select(
                F.count("*").alias("rows"),
                F.sum((F.col("image.nChannels") > 0).cast("int")).alias("valid"),
                F.sum(F.length("image.data")).alias("bytes"),
                F.sum(F.crc32("image.data")).alias("checksum"),
            ).collect()[0]
            seconds = time.perf_counter() - start
    finally:
        spark.stop()
    return Run(label, max_batch_bytes, seconds, stats["rows"], stats["valid"] or 0, stats["bytes"] or 0,
               stats["checksum"] or 0, sampler.peak, sampler.peak_total)


def format_runs(runs: list[Run], image_bytes: int) -> str:
    base = runs[0]
    lines = [
        f"one decoded image: {image_bytes / 2**20:.0f} MiB of BGR",
        f"{'configuration':34s} {'worker peak':>12s} {'vs base':>8s} {'x image':>8s} {'all workers':>12s} "
        f"{'seconds':>8s} {'same result':>11s}",
    ]
    for r in runs:
        same = (r.rows, r.pixel_bytes, r.checksum) == (base.rows, base.pixel_bytes, base.checksum)
        lines.append(
            f"{r.label:34s} {r.worker_peak_mb:9.0f} MB {r.worker_peak / base.worker_peak:8.2f} "
            f"{r.worker_peak / image_bytes:8.1f} {r.workers_total_peak / 2**20:9.0f} MB {r.seconds:8.1f} "
            f"{'yes' if same else 'NO':>11s}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=None, help="photos (default 40, quick: 8)")
    parser.add_argument("--quick", action="store_true", help="8 photos")
    parser.add_argument("--size", default="4000x6000", help="photo size HEIGHTxWIDTH (default 4000x6000)")
    parser.add_argument("--budgets", default="0,128", help="max_batch_bytes in MiB, comma-separated; 0 = unbounded "
                        "(the first is the baseline; default 0,128 = unbounded vs the default)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--data-root", default=str(DEFAULT_ROOT))
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)

    count = args.count or (8 if args.quick else 40)
    height, width = (int(v) for v in args.size.lower().split("x"))
    data = photo_set(count, size=(height, width), root=args.data_root)
    budgets = [int(b) for b in args.budgets.split(",") if b.strip()]
    runs = []
    for mib in budgets:
        value = UNBOUNDED if mib == 0 else mib * 2**20
        label = "max_batch_bytes unbounded" if mib == 0 else f"max_batch_bytes={mib} MiB"
        if mib * 2**20 == 128 * 2**20:
            label += " (default)"
        log.info("running %s on %d photos of %dx%d", label, count, height, width)
        runs.append(run_one(str(data.folder), value, label, args.cores, args.batch_size))
    image_bytes = height * width * 3
    print(format_runs(runs, image_bytes))
    default = [r for r in runs if r.max_batch_bytes == 128 * 2**20]
    failed = any(r.rows != count or r.valid != count for r in runs)
    failed |= any((r.pixel_bytes, r.checksum) != (runs[0].pixel_bytes, runs[0].checksum) for r in runs)
    if default:
        met = default[0].worker_peak < GOAL_BYTES
        print(f"goal: largest Python worker under {GOAL_BYTES / 2**20:.0f} MB with default options: "
              f"{'met' if met else 'MISSED'} ({default[0].worker_peak_mb:.0f} MB)")
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "memory.json").write_text(json.dumps(
        {"count": count, "size": [height, width], "cores": args.cores, "runs": [asdict(r) for r in runs]}, indent=2))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""read_images at many files: listing, planning, sampling and driver memory against Spark's own listing.

    python -m benchmarks.scale                 # 100k tiny JPEGs in 200 folders + 5 empty + 5 unreadable files
    python -m benchmarks.scale --quick         # 2000 files: a smoke run
    python -m benchmarks.scale --full          # also time the full read (every file decoded)
    python -m benchmarks.scale --count 1000000 --connect-limit 1048576

One classic ``local[cores]`` session measures, on the same tree: Spark's image source building its
DataFrame (which lists the tree), ``read_images`` building its DataFrame (the plan), a 1% sample
built and counted, optionally the full read counted, the driver's peak Python allocation
(``tracemalloc``) while planning, and the row counts: every file a row, the empty and unreadable ones
(names with ``:``, which Hadoop's local filesystem cannot open) with their reasons. A Spark Connect
leg runs in a child process whose client gRPC message limit is lowered (``ChannelBuilder.GRPC_DEFAULT_OPTIONS``
set before ``remote()``), standing for a listing of 10M+ files that cannot come back to the client in
one message: every readable file must still be read.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import subprocess
import sys
import time
import tracemalloc
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger("benchmarks.scale")

DEFAULT_ROOT = Path("/tmp/gpuimages-bench")
DEFAULT_OUT = Path(__file__).resolve().parent / "results"  # git-ignored
#: The Connect leg's client message limit: 1 MiB is what 100k local paths need, so a 100k tree stands
#: for ~13M paths against the default 128 MiB limit.
DEFAULT_CONNECT_LIMIT = 1 << 20
SAMPLE_RATIO = 0.01
#: Goals (ratios against Spark's image-source listing measured in the same run) and the memory bound.
PLAN_GOAL = 1.5
SAMPLE_GOAL = 2.0
PEAK_GOAL_MB = 32.0
SESSION_CONF = {"spark.ui.showConsoleProgress": "false"}


@dataclass(frozen=True)
class Tree:
    """A generated tree: ``folder`` holds ``folders`` sub-folders of tiny JPEGs, ``empty`` zero-byte files
    and ``unreadable`` JPEGs whose names contain ``:`` (Spark's binary read cannot open them)."""

    folder: Path
    count: int
    folders: int
    empty: int
    unreadable: int = 0

    @property
    def files(self) -> int:
        return self.count + self.empty + self.unreadable


def _variants(n: int = 8) -> list[bytes]:
    from PIL import Image

    out = []
    for i in range(n):
        buf = io.BytesIO()
        Image.new("RGB", (8 + i, 8), (i * 30 % 256, 100, 200)).save(buf, "JPEG", quality=80)
        out.append(buf.getvalue())
    return out


def make_tree(root: str | os.PathLike, count: int, folders: int = 200, empty: int = 5, unreadable: int = 0) -> Tree:
    """Write (once; reused when complete) ``count`` tiny JPEGs round-robin into ``folders`` folders plus
    ``empty`` zero-byte files and ``unreadable`` JPEGs named with ``:``, under
    ``root/scale-n<count>-f<folders>-e<empty>[-u<unreadable>]/images``."""
    base = Path(root) / (f"scale-n{count}-f{folders}-e{empty}" + (f"-u{unreadable}" if unreadable else ""))
    folder = base / "images"
    done = base / "complete.json"
    tree = Tree(folder, count, folders, empty, unreadable)
    if done.exists():
        return tree
    variants = _variants()
    for f in range(folders):
        (folder / f"c{f:03d}").mkdir(parents=True, exist_ok=True)
    for i in range(count):
        (folder / f"c{i % folders:03d}" / f"img{i:08d}.jpg").write_bytes(variants[i % len(variants)])
    for j in range(empty):
        (folder / f"c{j % folders:03d}" / f"empty{j:03d}.jpg").write_bytes(b"")
    for k in range(unreadable):
        (folder / f"c{k % folders:03d}" / f"colon:{k:03d}.jpg").write_bytes(variants[k % len(variants)])
    done.write_text(json.dumps({"count": count, "folders": folders, "empty": empty, "unreadable": unreadable}))
    return tree


@dataclass
class ClassicResult:
    spark_listing_s: float
    plan_s: float
    sample_s: float
    peak_mb: float
    rows: int
    valid_rows: int
    sample_rows: int
    expect_rows: int
    plan_ratio: float = 0.0
    sample_ratio: float = 0.0
    unread_rows: int = 0
    expect_unread: int = 0
    full_s: float | None = None
    full_ratio: float | None = None
    notes: list[str] = field(default_factory=list)


def _timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def measure_classic(spark: SparkSession, tree: Tree, repeats: int = 1, full: bool = False) -> ClassicResult:
    """Best-of-``repeats`` timings on one session; rows counted once. ``full``: also time the full read
    counted (once, after the timed passes)."""
    import gpuimages

    folder = str(tree.folder)

    def spark_listing():
        return spark.read.format("image").option("recursiveFileLookup", "true").load(folder)

    def plan():
        return gpuimages.read_images(spark, folder, recursive=True, device="cpu")

    def sample():
        return gpuimages.read_images(
            spark, folder, recursive=True, device="cpu", sample_ratio=SAMPLE_RATIO, seed=1
        ).count()

    listing_s, plan_s, sample_s = [], [], []
    sample_rows = 0
    for _ in range(repeats):  # round-robin, so a slow period on a shared machine hits every row alike
        listing_s.append(_timed(spark_listing)[1])
        plan_s.append(_timed(plan)[1])
        sample_rows, seconds = _timed(sample)
        sample_s.append(seconds)
    tracemalloc.start()
    try:
        df = plan()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    from pyspark.sql import functions as F

    counts = df.agg(
        F.count("*").alias("n"),
        F.count(F.when(F.col("error").isNull(), 1)).alias("valid"),
        F.count(F.when(F.col("error").startswith("no bytes read"), 1)).alias("unread"),
    ).first()
    result = ClassicResult(
        spark_listing_s=min(listing_s), plan_s=min(plan_s), sample_s=min(sample_s), peak_mb=peak / 2**20,
        rows=int(counts["n"]), valid_rows=int(counts["valid"]), sample_rows=int(sample_rows), expect_rows=tree.files,
        unread_rows=int(counts["unread"]), expect_unread=tree.empty + tree.unreadable,
    )
    result.plan_ratio = result.plan_s / result.spark_listing_s
    result.sample_ratio = result.sample_s / result.spark_listing_s
    if full:
        _, result.full_s = _timed(lambda: plan().count())
        result.full_ratio = result.full_s / result.spark_listing_s
    return result


def connect_leg(folder: str, limit: int, master: str = "local[2]") -> dict:
    """In this process: a Connect session with the client message limit set to ``limit`` bytes, then
    ``read_images`` over ``folder``; returns rows, valid rows, seconds and the gpuimages warnings."""
    from pyspark.sql.connect.client.core import ChannelBuilder

    from gpuimages.java import ensure_java

    ensure_java()
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    ChannelBuilder.GRPC_DEFAULT_OPTIONS = [
        ("grpc.max_send_message_length", limit),
        ("grpc.max_receive_message_length", limit),
    ]
    messages: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            messages.append(record.getMessage())

    logger = logging.getLogger("gpuimages")
    logger.addHandler(Keep(logging.WARNING))
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    import gpuimages

    spark = SparkSession.builder.remote(master).getOrCreate()
    out: dict = {"limit": limit, "session": f"{type(spark).__module__}.{type(spark).__name__}"}
    try:
        t0 = time.perf_counter()
        df = gpuimages.read_images(spark, folder, recursive=True, device="cpu")
        out["plan_s"] = time.perf_counter() - t0
        counts = df.agg(F.count("*").alias("n"), F.count(F.when(F.col("error").isNull(), 1)).alias("valid")).first()
        out.update(rows=int(counts["n"]), valid_rows=int(counts["valid"]), seconds=time.perf_counter() - t0)
        try:
            spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(folder).inputFiles()
            out["input_files_fit"] = True
        except Exception as exc:  # noqa: BLE001 - the point of the leg
            out["input_files_fit"] = False
            out["input_files_error"] = str(exc).splitlines()[0][:200]
    except Exception as exc:  # noqa: BLE001 - reported, the goal check fails on it
        out["error"] = f"{type(exc).__name__}: {str(exc)[:2000]}"
    finally:
        spark.stop()
    out["warnings"] = messages
    return out


def run_connect_child(tree: Tree, limit: int, timeout_s: int = 900) -> dict:
    """Run :func:`connect_leg` in a child process (a classic session holds this one) and parse its JSON."""
    repo = Path(__file__).resolve().parent.parent
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    env["PYTHONPATH"] = os.pathsep.join([str(repo), *filter(None, [env.get("PYTHONPATH")])])
    env["PYSPARK_PYTHON"] = sys.executable
    env["SPARK_TESTING"] = "1"  # pyspark's local Connect server then listens on a free port, not the fixed 15002
    cmd = [sys.executable, "-m", "benchmarks.scale", "--connect-leg", str(tree.folder), "--connect-limit", str(limit)]
    proc = subprocess.run(cmd, cwd=repo, env=env, capture_output=True, text=True, timeout=timeout_s, check=False)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": f"child exited {proc.returncode}: {proc.stderr[-3000:]}"}
    result = json.loads(lines[-1])
    result["expect_valid"] = tree.count
    return result


def check_goals(classic: ClassicResult, connect: dict | None) -> list[tuple[str, bool, str]]:
    """(goal, met, figure) for each goal of the scale benchmark."""
    goals = [
        (f"plan <= {PLAN_GOAL}x Spark's listing", classic.plan_ratio <= PLAN_GOAL, f"{classic.plan_ratio:.2f}x"),
        (f"1% sample <= {SAMPLE_GOAL}x Spark's listing", classic.sample_ratio <= SAMPLE_GOAL,
         f"{classic.sample_ratio:.2f}x"),
        (f"driver Python peak <= {PEAK_GOAL_MB:g} MB", classic.peak_mb <= PEAK_GOAL_MB, f"{classic.peak_mb:.1f} MB"),
        ("every file a row (classic)", classic.rows == classic.expect_rows, f"{classic.rows}/{classic.expect_rows}"),
        ("empty and unreadable files have their reason", classic.unread_rows == classic.expect_unread,
         f"{classic.unread_rows}/{classic.expect_unread}"),
    ]
    if connect is not None:
        ok = "error" not in connect and connect.get("valid_rows") == connect.get("expect_valid")
        figure = connect.get("error", f"{connect.get('valid_rows')}/{connect.get('expect_valid')} non-empty files read")
        goals.append(("Connect (limited messages) reads every non-empty file", ok, figure[:200]))
    return goals


def format_report(tree: Tree, classic: ClassicResult, connect: dict | None) -> str:
    lines = [
        f"Scale: {tree.count} tiny JPEGs in {tree.folders} folders + {tree.empty} empty + {tree.unreadable} "
        f"unreadable files ({tree.folder})",
        f"  Spark image-source listing   {classic.spark_listing_s:8.2f} s",
        f"  read_images plan             {classic.plan_s:8.2f} s   ({classic.plan_ratio:.2f}x)",
        f"  1% sample, built + counted   {classic.sample_s:8.2f} s   ({classic.sample_ratio:.2f}x), "
        f"{classic.sample_rows} rows",
        *([f"  full read, built + counted   {classic.full_s:8.2f} s   ({classic.full_ratio:.2f}x)"]
          if classic.full_s is not None else []),
        f"  driver Python peak (plan)    {classic.peak_mb:8.2f} MB",
        f"  rows {classic.rows} (valid {classic.valid_rows}), expected {classic.expect_rows}",
    ]
    if connect is not None:
        if "error" in connect:
            lines.append(f"  Connect leg: FAILED {connect['error'][:500]}")
        else:
            lines.append(
                f"  Connect leg (client limit {connect['limit']} B): {connect['rows']} rows, {connect['valid_rows']} "
                f"valid of {connect['expect_valid']} non-empty, {connect['seconds']:.1f} s; inputFiles fits: "
                f"{connect.get('input_files_fit')}; warnings: {len(connect['warnings'])}"
            )
    lines.append("Goals:")
    for goal, met, figure in check_goals(classic, connect):
        lines.append(f"  [{'met' if met else 'MISSED'}] {goal}: {figure}")
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=None, help="tiny JPEGs (default 100000; --quick 2000)")
    parser.add_argument("--folders", type=int, default=200)
    parser.add_argument("--empty", type=int, default=5, help="zero-byte files in the tree")
    parser.add_argument("--unreadable", type=int, default=5, help="files named with ':' (Spark cannot open them)")
    parser.add_argument("--full", action="store_true", help="also time the full read (every file decoded)")
    parser.add_argument("--repeats", type=int, default=None, help="timed passes, best kept (default 2; quick 1)")
    parser.add_argument("--quick", action="store_true", help="2000 files, one pass")
    parser.add_argument("--connect-limit", type=int, default=DEFAULT_CONNECT_LIMIT, help="client gRPC limit, bytes")
    parser.add_argument("--no-connect", action="store_true", help="skip the Spark Connect leg")
    parser.add_argument("--data-root", default=str(DEFAULT_ROOT))
    parser.add_argument("--out-dir", default=str(DEFAULT_OUT))
    parser.add_argument("--connect-leg", metavar="FOLDER", help=argparse.SUPPRESS)  # the child's entry point
    args = parser.parse_args(argv)
    if args.count is None:
        args.count = 2000 if args.quick else 100_000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 2
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    if args.connect_leg:
        print(json.dumps(connect_leg(args.connect_leg, args.connect_limit)))
        return 0
    from gpuimages.session import local_session

    tree = make_tree(args.data_root, args.count, args.folders, args.empty, args.unreadable)
    cores = os.cpu_count() or 2
    spark = local_session(f"local[{cores}]", "gpuimages-scale", **SESSION_CONF)
    spark.sparkContext.setLogLevel("ERROR")
    try:
        classic = measure_classic(spark, tree, repeats=args.repeats, full=args.full)
    finally:
        spark.stop()
    connect = None if args.no_connect else run_connect_child(tree, args.connect_limit)
    print(format_report(tree, classic, connect))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"tree": {**asdict(tree), "folder": str(tree.folder)}, "classic": asdict(classic), "connect": connect,
               "goals": check_goals(classic, connect)}
    (out / "scale.json").write_text(json.dumps(payload, indent=2))
    ok = classic.rows == classic.expect_rows and classic.unread_rows == classic.expect_unread
    return 0 if ok and (connect is None or "error" not in connect) else 1


if __name__ == "__main__":
    sys.exit(main())

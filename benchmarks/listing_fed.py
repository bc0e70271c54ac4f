"""A stage fed by the listing alone, files read in the task, against ``transcode_files`` and ``transcode_images``.

    python -m benchmarks.listing_fed --count 300 --repeats 2
    python -m benchmarks.listing_fed --count 12 --large --repeats 3

``transcode_files`` (and ``read_images``) read local files through Spark's ``binaryFile`` scan, then join
the scan with the listing and a probe stage to keep a row for every file the scan returns nothing for.
``listing_fed`` builds the same stage on the listing's origins only (null content) with
:class:`gpuimages.task.steps.ReadLocal` first: the task reads each file and finds the same reasons in the
same open. Same options (shorter side 256, JPEG q90, CPU), one ``local[N]`` session, round-robin passes,
best kept, process-tree CPU; before timing, the outputs of ``transcode_files`` and ``listing_fed`` are
compared (rows, reasons, encoded bytes, sizes).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from benchmarks.baselines import noop_write
from benchmarks.data import DEFAULT_ROOT, photo_set
from benchmarks.peers import LARGE_SIZE, QUALITY, SHORT_SIDE
from benchmarks.read import timed_call
from gpuimages.sources.columns import CONTENT_COL, ORIGIN_COL, REASON_COL
from gpuimages.sources.scan import list_files, normalize_paths

log = logging.getLogger("benchmarks.listing_fed")


def listing_fed_transcode(spark: Any, folder: str, partitions: int) -> Any:
    """The transcode stage on ``folder``'s listing (origins, null content), ReadLocal before the decode."""
    from pyspark.sql import functions as F

    from gpuimages.encode import encode_columns
    from gpuimages.encoders import make_encode_options
    from gpuimages.options import make_decode_options
    from gpuimages.stage import session_conf
    from gpuimages.task.steps import ReadLocal
    from gpuimages.transcode import transcode_frame

    found = list_files(spark, normalize_paths(folder), recursive=False, path_glob_filter=None,
                               sample_ratio=1.0, seed=0, keep_listing=True)
    frame = found.listed.select(
        F.col("origin").alias(ORIGIN_COL), F.lit(None).cast("binary").alias(CONTENT_COL),
        F.lit(None).cast("string").alias(REASON_COL),
    ).coalesce(partitions)
    columns = encode_columns(frame, CONTENT_COL, "encoded", "error", keep_input=False)
    decode = make_decode_options(resize=SHORT_SIDE, device="cpu")
    encode = make_encode_options(format="jpeg", quality=QUALITY, device="cpu", batch_size=decode.batch_size)
    return transcode_frame(frame, decode, encode, columns, origin_col=ORIGIN_COL,
                           prior_error_col=REASON_COL, conf=session_conf(spark),
                           unpack=lambda _decode, _budget: ReadLocal())


def summary(df: Any) -> tuple:
    """Rows, rows with a reason, encoded bytes, summed heights and widths."""
    from pyspark.sql import functions as F

    return tuple(df.agg(F.count(F.lit(1)), F.count("error"), F.sum(F.length("encoded")), F.sum("height"),
                        F.sum("width")).first())


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.listing_fed", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=300)
    p.add_argument("--large", action="store_true", help="photographs of about 2300x1700 instead of crops")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1)
    p.add_argument("--data-root", default=str(DEFAULT_ROOT))
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    import gpuimages
    from gpuimages.session import local_session
    from gpuimages.transcode import transcode_files

    data = photo_set(args.count, root=args.data_root, **({"size": LARGE_SIZE} if args.large else {}))
    folder = str(data.folder)
    spark = local_session(f"local[{args.cores}]", "gpuimages-bench-listing-fed",
                          **{"spark.ui.showConsoleProgress": "false"})
    spark.sparkContext.setLogLevel("ERROR")
    load_start = os.getloadavg()

    def files() -> Any:
        return transcode_files(spark, folder, resize=SHORT_SIDE, format="jpeg", quality=QUALITY, device="cpu")

    def images() -> Any:
        return gpuimages.transcode_images(spark.read.format("binaryFile").load(folder), resize=SHORT_SIDE,
                                          format="jpeg", quality=QUALITY, device="cpu")

    rows: dict[str, Callable[[], Any]] = {
        "transcode_files": files, "transcode_images(binaryFile)": images,
        "listing_fed": lambda: listing_fed_transcode(spark, folder, args.cores),
    }
    same = summary(files()) == summary(rows["listing_fed"]())
    seconds: dict[str, list[tuple[float, float | None]]] = {k: [] for k in rows}
    for _ in range(args.repeats):
        for key, make in rows.items():
            seconds[key].append(timed_call(lambda make=make: noop_write(make())))
    spark.stop()
    print(f"{data.count} {'large photographs' if args.large else 'photo crops'} ({data.mean_kb:.1f} KB mean), "
          f"local[{args.cores}], best of {args.repeats}, load {load_start} -> {os.getloadavg()}")
    print(f"listing_fed output equal to transcode_files' (rows, reasons, bytes, sizes): {same}")
    for key, passes in seconds.items():
        wall = min(w for w, _ in passes)
        cpus = [c for _, c in passes if c is not None]
        cpu = f"{min(cpus) / data.count * 1e3:8.2f}" if cpus else "       -"
        print(f"{key:<30} {data.count / wall:8.1f} img/s {cpu} CPU ms/img")
    return 0 if same else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Command line: ``gpuimages convert``, ``gpuimages info`` and ``gpuimages demo``."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import threading
import time
from collections.abc import Sequence

log = logging.getLogger("gpuimages.cli")


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recursive", action="store_true", help="look into sub-folders")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--master", default="local[*]", help="Spark master (default: local[*])")


class _Progress:
    """Prints finished/total decode tasks of the running job to stderr while it runs."""

    def __init__(self, spark, interval: float = 1.0) -> None:
        self._tracker = spark.sparkContext.statusTracker()
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        last = ""
        while not self._stop.wait(self._interval):
            done = total = 0
            for stage_id in self._tracker.getActiveStageIds():
                info = self._tracker.getStageInfo(stage_id)
                if info:
                    done += info.numCompletedTasks
                    total += info.numTasks
            line = f"progress: {done}/{total} tasks" if total else ""
            if line and line != last:
                print(line, file=sys.stderr, flush=True)
                last = line

    def __enter__(self) -> _Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def _convert(args: argparse.Namespace) -> int:
    import gpuimages
    from gpuimages.session import local_session

    spark = local_session(args.master, "gpuimages-convert")
    resize = tuple(args.resize) if args.resize else None
    df = gpuimages.read_images(
        spark,
        args.src,
        recursive=args.recursive,
        device=args.device,
        resize=resize,
        drop_invalid=args.drop_invalid,
        label_from_folder=args.label_from_folder,
        num_partitions=args.num_partitions,
    )
    start = time.perf_counter()
    with _Progress(spark):
        df.write.mode("overwrite" if args.overwrite else "errorifexists").parquet(args.dest)
    written = spark.read.parquet(args.dest)
    total = written.count()
    failed = written.filter("error IS NOT NULL").count()
    seconds = time.perf_counter() - start
    print(f"wrote {total} images ({failed} invalid) to {args.dest} in {seconds:.1f} s ({total / seconds:.0f} images/s)")
    return 0


def _info(args: argparse.Namespace) -> int:
    from gpuimages.inspect import summarize
    from gpuimages.session import local_session

    spark = local_session(args.master, "gpuimages-info")
    print(json.dumps(summarize(spark, args.path, recursive=args.recursive, device=args.device), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``gpuimages`` argument parser."""
    parser = argparse.ArgumentParser(
        prog="gpuimages", description="Images into Spark DataFrames, decoded on GPU or CPU."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what gpuimages decides")
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser("convert", help="read images and write them in Spark's image schema to Parquet")
    convert.add_argument("src", help="file, folder or glob (any filesystem Spark reads)")
    convert.add_argument("dest", help="output Parquet path")
    _add_read_options(convert)
    convert.add_argument("--resize", nargs=2, type=int, metavar=("H", "W"))
    convert.add_argument("--drop-invalid", action="store_true")
    convert.add_argument("--label-from-folder", action="store_true")
    convert.add_argument("--num-partitions", type=int)
    convert.add_argument("--overwrite", action="store_true")
    convert.set_defaults(func=_convert)

    info = sub.add_parser("info", help="count files, formats, sizes and failures")
    info.add_argument("path")
    _add_read_options(info)
    info.set_defaults(func=_info, device="cpu")

    sub.add_parser("demo", help="train a RandomForest on a small generated image set (see `gpuimages demo --help`)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gpuimages`` command."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":  # the demo parses its own options (see `gpuimages demo --help`)
        from gpuimages import demo

        return int(demo.main(argv[1:]) or 0)
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

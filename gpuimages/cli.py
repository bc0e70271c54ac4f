"""Command line: ``gpuimages convert``, ``gpuimages write``, ``gpuimages info`` and ``gpuimages demo``."""

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


def _add_image_options(p: argparse.ArgumentParser, default_format: str) -> None:
    formats = ["raw", "jpeg", "png"] if default_format == "raw" else ["jpeg", "png"]
    p.add_argument("--resize", nargs="+", type=int, metavar="SIZE",
                   help="one size (the shorter side, aspect kept) or H W (exact)")
    p.add_argument("--format", default=default_format, choices=formats,
                   help="raw: Spark's image schema (pixels); jpeg/png: encoded bytes with origin, height, width"
                   if default_format == "raw" else "file format")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100 (default 90)")
    p.add_argument("--label-from-folder", action="store_true",
                   help="add the parent folder name as label" + ("" if default_format == "raw" else
                                                                " and write one sub-folder per label"))
    p.add_argument("--num-partitions", type=int)


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


def _resize(args: argparse.Namespace) -> int | tuple[int, int] | None:
    """``--resize S`` (shorter side) or ``--resize H W``."""
    if not args.resize:
        return None
    if len(args.resize) == 1:
        return args.resize[0]
    if len(args.resize) == 2:
        return tuple(args.resize)
    raise SystemExit(f"gpuimages: --resize: expected one size (shorter side) or H W, got {len(args.resize)} values")


def _transcoded(spark, args: argparse.Namespace):
    from gpuimages.transcode import transcode_files

    return transcode_files(
        spark,
        args.src,
        recursive=args.recursive,
        label_from_folder=args.label_from_folder,
        device=args.device,
        resize=_resize(args),
        format=args.format,
        quality=args.quality,
        num_partitions=args.num_partitions,
    )


def _convert(args: argparse.Namespace) -> int:
    import gpuimages
    from gpuimages.session import local_session

    spark = local_session(args.master, "gpuimages-convert")
    if args.format == "raw":
        df = gpuimages.read_images(
            spark,
            args.src,
            recursive=args.recursive,
            device=args.device,
            resize=_resize(args),
            drop_invalid=args.drop_invalid,
            label_from_folder=args.label_from_folder,
            num_partitions=args.num_partitions,
        )
    else:
        df = _transcoded(spark, args)
        if args.drop_invalid:
            df = df.filter("error IS NULL")
    start = time.perf_counter()
    with _Progress(spark):
        df.write.mode("overwrite" if args.overwrite else "errorifexists").parquet(args.dest)
    written = spark.read.parquet(args.dest)
    total = written.count()
    failed = written.filter("error IS NOT NULL").count()
    seconds = time.perf_counter() - start
    what = "images" if args.format == "raw" else f"{args.format.upper()} images"
    print(f"wrote {total} {what} ({failed} invalid) to {args.dest} in {seconds:.1f} s ({total / seconds:.0f} images/s)")
    return 0


def _write(args: argparse.Namespace) -> int:
    import gpuimages
    from gpuimages.session import local_session

    spark = local_session(args.master, "gpuimages-write")
    df = _transcoded(spark, args)
    start = time.perf_counter()
    with _Progress(spark):
        report = gpuimages.write_images(
            df, args.dest, "encoded", partition_by="label" if args.label_from_folder else None, mode=args.mode
        )
    counts = {r["status"]: r["count"] for r in report.groupBy("status").count().collect()}
    seconds = time.perf_counter() - start
    for row in report.filter("status = 'failed'").limit(args.show_failures).collect():
        print(f"failed: {row.origin}: {row.reason}", file=sys.stderr)
    written = counts.get("written", 0)
    print(
        f"wrote {written} files ({counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped) "
        f"to {args.dest} in {seconds:.1f} s ({written / seconds:.0f} files/s)"
    )
    return 0


def _info(args: argparse.Namespace) -> int:
    from gpuimages.info import summarize
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

    convert = sub.add_parser(
        "convert", help="read images and write them to Parquet: Spark's image schema (raw) or JPEG/PNG bytes"
    )
    convert.add_argument("src", help="file, folder or glob (any filesystem Spark reads)")
    convert.add_argument("dest", help="output Parquet path")
    _add_read_options(convert)
    _add_image_options(convert, default_format="raw")
    convert.add_argument("--drop-invalid", action="store_true")
    convert.add_argument("--overwrite", action="store_true")
    convert.set_defaults(func=_convert)

    write = sub.add_parser("write", help="read images and write them as JPEG/PNG files (ImageFolder layout by label)")
    write.add_argument("src", help="file, folder or glob (any filesystem Spark reads)")
    write.add_argument("dest", help="output folder (local, /dbfs, /Volumes, or a URI fsspec writes)")
    _add_read_options(write)
    _add_image_options(write, default_format="jpeg")
    write.add_argument("--mode", default="error", choices=["error", "overwrite", "skip"],
                       help="files that exist already: refuse a non-empty folder, replace them, or keep them")
    write.add_argument("--show-failures", type=int, default=20, metavar="N", help="print up to N failed files")
    write.set_defaults(func=_write)

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
    if getattr(args, "resize", None):
        _resize(args)  # a usage error before any Spark session starts
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    return int(args.func(args) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""Command line: ``gpuimages convert``, ``gpuimages write``, ``gpuimages info`` and ``gpuimages demo``.

``convert --format webdataset`` is the img2dataset job: files (or archives) in, resized JPEGs in
WebDataset shards out (``transcode_files`` into ``write_webdataset``).

Every option is checked with the library's own checks before a Spark session starts; a bad option is
a one-line usage error with exit status 2. ``convert`` and ``write`` exit with 1 when rows failed (and
print them), 0 when every row was written (or skipped).
"""

from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from typing import NoReturn

log = logging.getLogger("gpuimages.cli")

#: Exit statuses.
EXIT_OK, EXIT_FAILED_ROWS, EXIT_USAGE = 0, 1, 2

EXIT_HELP = (
    "exit status: 0 when every row was written (or skipped), 1 when rows failed (they are printed), "
    "2 for a usage error (reported before Spark starts)"
)


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr (exit status 2), without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--recursive", action="store_true", help="look into sub-folders")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "gpu"])
    p.add_argument("--master", default="local[*]", help="Spark master (default: local[*])")


def _add_image_options(p: argparse.ArgumentParser, default_format: str) -> None:
    formats = ["raw", "jpeg", "png", "webdataset"] if default_format == "raw" else ["jpeg", "png"]
    p.add_argument("--resize", nargs="+", type=int, metavar="SIZE",
                   help="one size (the shorter side, aspect kept) or H W (exact)")
    p.add_argument("--format", default=default_format, choices=formats,
                   help="raw: Spark's image schema (pixels); jpeg/png: encoded bytes with origin, height, width; "
                   "webdataset: JPEG shards (tar files) in the folder dest"
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
    """``--resize S`` (shorter side) or ``--resize H W``, checked as ``read_images`` checks ``resize``."""
    from gpuimages.options import check_size_pair

    if not args.resize:
        return None
    if len(args.resize) > 2:
        raise ValueError(f"--resize: expected one size (shorter side) or H W, got {len(args.resize)} values")
    value = args.resize[0] if len(args.resize) == 1 else tuple(args.resize)
    return check_size_pair("--resize", value, allow_int=True)


def _check_source(src: str, name: str = "src") -> None:
    """A local source (plain path or ``file:`` URI) must exist or, as a glob, match something."""
    from gpuimages.files import is_local, local_path

    if not is_local(src):
        return  # another filesystem: Spark lists it
    local = local_path(src)
    found = glob.glob(local) if glob.has_magic(local) else os.path.exists(local)
    if not found:
        what = "glob matching nothing" if glob.has_magic(local) else "nothing there"
        raise ValueError(f"{name}: expected an existing file, folder or glob, got {src!r} ({what})")


def _check_args(args: argparse.Namespace) -> None:
    """Every option of ``args``, with the checks the library runs (raises ValueError, TypeError, ...)."""
    from gpuimages.encoders import make_encode_options
    from gpuimages.options import check_num_partitions
    from gpuimages.scheduling import require_gpu_extra

    _check_source(*((args.path, "path") if args.command == "info" else (args.src, "src")))
    if args.device == "gpu":
        require_gpu_extra()
    if args.command == "info":
        return
    _resize(args)
    make_encode_options(format=args.format if args.format in ("jpeg", "png") else "jpeg", quality=args.quality)
    check_num_partitions(args.num_partitions)
    if args.show_failures < 0:
        raise ValueError(f"--show-failures: expected a count of 0 or more, got {args.show_failures}")
    from gpuimages.files import is_local

    # a store URI is checked once Spark has started: its settings (endpoint, keys) are Spark's
    if args.command == "write":
        from gpuimages.write import check_destination

        if is_local(args.dest):
            check_destination(args.dest, args.mode)
    elif args.format == "webdataset":
        from gpuimages.write import check_destination

        for name in ("shard_samples", "shard_mb"):
            if getattr(args, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
        if is_local(args.dest):
            check_destination(args.dest, "overwrite" if args.overwrite else "error")
    elif not args.overwrite:
        from gpuimages.files import local_path

        if is_local(args.dest) and os.path.lexists(local_path(args.dest)):
            raise FileExistsError(f"dest: expected a path that does not exist (or --overwrite), got {args.dest!r}")


def _transcoded(spark, args: argparse.Namespace):
    from gpuimages.transcode import transcode_files

    return transcode_files(
        spark,
        args.src,
        recursive=args.recursive,
        label_from_folder=args.label_from_folder,
        device=args.device,
        resize=_resize(args),
        format="jpeg" if args.format == "webdataset" else args.format,
        quality=args.quality,
        num_partitions=args.num_partitions,
    )


def _convert(args: argparse.Namespace) -> int:
    import gpuimages
    from gpuimages.session import local_session

    spark = local_session(args.master, "gpuimages-convert")
    if args.format == "webdataset":
        return _convert_shards(spark, args)
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
    invalid = written.filter("error IS NOT NULL")
    failed = invalid.count()
    seconds = time.perf_counter() - start
    origin = "image.origin" if args.format == "raw" else "origin"
    for row in invalid.selectExpr(f"{origin} AS origin", "error").limit(args.show_failures).collect():
        print(f"failed: {row.origin}: {row.error}", file=sys.stderr)
    what = "images" if args.format == "raw" else f"{args.format.upper()} images"
    print(f"wrote {total} {what} ({failed} invalid) to {args.dest} in {seconds:.1f} s ({total / seconds:.0f} images/s)")
    return EXIT_FAILED_ROWS if failed else EXIT_OK


def _convert_shards(spark, args: argparse.Namespace) -> int:
    """``convert --format webdataset``: transcode into JPEG samples and write them as shards."""
    from gpuimages.webdataset import write_webdataset

    df = _transcoded(spark, args)
    start = time.perf_counter()
    log.info("converting %s into WebDataset shards under %s", args.src, args.dest)
    with _Progress(spark):
        report = write_webdataset(
            df, args.dest, "encoded", label_col="label" if args.label_from_folder else None,
            json_cols=["origin", "height", "width"], max_samples=args.shard_samples,
            max_bytes=args.shard_mb * 1024 * 1024, mode="overwrite" if args.overwrite else "error",
        )
    rows = report.orderBy("partition", "shard").collect()
    seconds = time.perf_counter() - start
    shown = 0
    for row in rows:
        if row.status == "written":
            log.info("shard %s: %d samples, %d bytes", row.shard, row.samples, row.bytes)
        if row.reason and shown < args.show_failures:
            shown += 1
            print(f"{row.status}: {row.shard or f'partition {row.partition}'}: {row.reason}", file=sys.stderr)
    written = [r for r in rows if r.status == "written"]
    samples = sum(r.samples for r in written)
    invalid = sum(r.skipped for r in rows)
    failed = [r for r in rows if r.status == "failed"]
    print(f"wrote {samples} samples in {len(written)} shards ({invalid} invalid) to {args.dest} in {seconds:.1f} s "
          f"({samples / seconds:.0f} images/s)")
    if failed:
        print(f"{len(failed)} shard(s) could not be written", file=sys.stderr)
    return EXIT_FAILED_ROWS if failed or (invalid and not args.drop_invalid) else EXIT_OK


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
        print(f"failed: {row.origin or row.path}: {row.reason}", file=sys.stderr)
    written = counts.get("written", 0)
    print(
        f"wrote {written} files ({counts.get('failed', 0)} failed, {counts.get('skipped', 0)} skipped) "
        f"to {args.dest} in {seconds:.1f} s ({written / seconds:.0f} files/s)"
    )
    return EXIT_FAILED_ROWS if counts.get("failed", 0) else EXIT_OK


def _info(args: argparse.Namespace) -> int:
    from gpuimages.info import summarize
    from gpuimages.session import local_session

    spark = local_session(args.master, "gpuimages-info")
    print(json.dumps(summarize(spark, args.path, recursive=args.recursive, device=args.device), indent=2))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The ``gpuimages`` argument parser."""
    parser = _Parser(
        prog="gpuimages", description="Images into Spark DataFrames, decoded on GPU or CPU.", epilog=EXIT_HELP
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what gpuimages decides")
    sub = parser.add_subparsers(dest="command", required=True)

    convert = sub.add_parser(
        "convert", help="read images and write them to Parquet: Spark's image schema (raw) or JPEG/PNG bytes",
        epilog=EXIT_HELP.replace("rows failed", "images were invalid").replace("written (or skipped)", "valid")
        + "; with --drop-invalid invalid images are dropped, not failures",
    )
    convert.add_argument("src", help="file, folder or glob (any filesystem Spark reads)")
    convert.add_argument("dest", help="output Parquet path")
    _add_read_options(convert)
    _add_image_options(convert, default_format="raw")
    convert.add_argument("--drop-invalid", action="store_true", help="leave images that cannot be decoded out")
    convert.add_argument("--overwrite", action="store_true", help="replace dest if it exists")
    convert.add_argument("--show-failures", type=int, default=20, metavar="N", help="print up to N invalid images")
    convert.add_argument("--shard-samples", type=int, default=10_000, metavar="N",
                         help="webdataset: samples per shard (default 10000)")
    convert.add_argument("--shard-mb", type=int, default=1024, metavar="MB",
                         help="webdataset: largest shard in MiB (default 1024)")
    convert.set_defaults(func=_convert)

    write = sub.add_parser("write", help="read images and write them as JPEG/PNG files (ImageFolder layout by label)",
                           epilog=EXIT_HELP)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        _check_args(args)  # before any Spark session starts
    except (ValueError, TypeError, FileExistsError, ImportError) as exc:
        _usage_error(args.command, exc)
    try:
        return int(args.func(args) or 0)
    except (ValueError, TypeError, FileExistsError, FileNotFoundError, ImportError) as exc:
        if args.verbose:
            raise
        _usage_error(args.command, exc)  # an option the library refused once Spark was up


#: The library's names for what the command line calls these.
_OPTION_NAMES = {"path": "dest", "quality": "--quality", "format": "--format", "mode": "--mode",
                 "num_partitions": "--num-partitions", "device": "--device"}


def _usage_error(command: str, exc: BaseException) -> NoReturn:
    message = " ".join(str(exc).split())  # one line
    name, colon, rest = message.partition(": ")
    if colon and name in _OPTION_NAMES and (name != "path" or command == "write"):
        message = f"{_OPTION_NAMES[name]}: {rest}"
    print(f"gpuimages {command}: error: {message} (see gpuimages {command} --help)", file=sys.stderr)
    raise SystemExit(EXIT_USAGE)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

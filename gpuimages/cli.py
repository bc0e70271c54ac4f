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
import textwrap
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
    """An argument parser whose errors are one line on stderr (exit status 2), without the usage block; its
    epilog (examples, exit status) keeps its lines."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", argparse.RawDescriptionHelpFormatter)
        if kwargs.get("description"):
            kwargs["description"] = textwrap.fill(kwargs["description"], 79)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_read_options(p: argparse.ArgumentParser, device: str = "auto") -> None:
    p.add_argument("--recursive", action="store_true", help="look into sub-folders too")
    p.add_argument("--device", default=device, choices=["auto", "cpu", "gpu"],
                   help=f"where images are decoded: auto (the GPU where Spark gives the tasks one), cpu or gpu "
                   f"(default {device})")
    p.add_argument("--master", default="local[*]",
                   help="Spark master of the session started (default local[*]; a running session is used as it is)")
    p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,  # else it hides `gpuimages -v`
                   help="-v: log what gpuimages decides; -vv: Spark's warnings too")


def _add_image_options(p: argparse.ArgumentParser, default_format: str) -> None:
    formats = ["raw", "jpeg", "png", "webdataset"] if default_format == "raw" else ["jpeg", "png"]
    p.add_argument("--resize", nargs="+", type=int, metavar="SIZE",
                   help="one size (the shorter side, aspect kept) or H W (exact)")
    p.add_argument("--format", default=default_format, choices=formats,
                   help="raw: Spark's image schema (pixels); jpeg/png: encoded bytes with origin, height, width; "
                   "webdataset: JPEG shards (tar files) in the folder dest (default raw)"
                   if default_format == "raw" else "file format (default jpeg)")
    p.add_argument("--quality", type=int, default=90, help="JPEG quality 1..100 (default 90)")
    p.add_argument("--label-from-folder", action="store_true",
                   help="add the parent folder name as label" + ("" if default_format == "raw" else
                                                                " and write one sub-folder per label"))
    p.add_argument("--num-partitions", type=int, metavar="N",
                   help="decode in N tasks (default: planned from the cores or GPUs Spark has)")


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
    from gpuimages.uris import is_local, local_root_path

    if not is_local(src):
        return  # another filesystem: Spark lists it
    local = local_root_path(src)
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
    from gpuimages.uris import is_local, local_root_path

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
        if is_local(args.dest) and os.path.lexists(local_root_path(args.dest)):
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


def _rate(count: int, seconds: float) -> str:
    rate = count / seconds if seconds > 0 else 0.0
    return f"{rate:.1f}" if rate < 10 else f"{rate:.0f}"


def _progress(spark, args: argparse.Namespace):
    from gpuimages.progress import Progress

    return Progress(spark, f"gpuimages {args.command}")


def _convert(spark, args: argparse.Namespace) -> int:
    import gpuimages

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
    log.info("gpuimages: converting %s into Parquet (%s) at %s", args.src, args.format, args.dest)
    with _progress(spark, args):
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
    print(f"wrote {total} {what} ({failed} invalid) to {args.dest} in {seconds:.1f} s "
          f"({_rate(total, seconds)} images/s)")
    return EXIT_FAILED_ROWS if failed else EXIT_OK


def _convert_shards(spark, args: argparse.Namespace) -> int:
    """``convert --format webdataset``: transcode into JPEG samples and write them as shards."""
    from gpuimages.webdataset import write_webdataset

    df = _transcoded(spark, args)
    start = time.perf_counter()
    log.info("gpuimages: converting %s into WebDataset shards under %s", args.src, args.dest)
    with _progress(spark, args):
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
            log.info("gpuimages: shard %s: %d samples, %d bytes", row.shard, row.samples, row.bytes)
        if row.reason and shown < args.show_failures:
            shown += 1
            print(f"{row.status}: {row.shard or f'partition {row.partition}'}: {row.reason}", file=sys.stderr)
    written = [r for r in rows if r.status == "written"]
    samples = sum(r.samples for r in written)
    invalid = sum(r.skipped for r in rows)
    failed = [r for r in rows if r.status == "failed"]
    print(f"wrote {samples} samples in {len(written)} shards ({invalid} invalid) to {args.dest} in {seconds:.1f} s "
          f"({_rate(samples, seconds)} images/s)")
    if failed:
        print(f"{len(failed)} shard(s) could not be written", file=sys.stderr)
    if args.label_from_folder:  # .cls holds the folder's index in sorted order; the names are listed beside
        from gpuimages.classes import classes_file_name

        print(f"labels: .cls is the index of the folder name in {os.path.join(args.dest, classes_file_name('shard'))}",
              file=sys.stderr)
    return EXIT_FAILED_ROWS if failed or (invalid and not args.drop_invalid) else EXIT_OK


def _write(spark, args: argparse.Namespace) -> int:
    import gpuimages

    df = _transcoded(spark, args)
    start = time.perf_counter()
    log.info("gpuimages: writing %s as %s files under %s", args.src, args.format.upper(), args.dest)
    with _progress(spark, args):
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
        f"to {args.dest} in {seconds:.1f} s ({_rate(written, seconds)} files/s)"
    )
    return EXIT_FAILED_ROWS if counts.get("failed", 0) else EXIT_OK


def _info(spark, args: argparse.Namespace) -> int:
    from gpuimages.info import render, summarize

    with _progress(spark, args):
        summary = summarize(spark, args.path, recursive=args.recursive, device=args.device, kind=args.kind)
    print(json.dumps(summary, indent=2) if args.json else render(summary))
    return EXIT_OK


_CONVERT_EXAMPLES = """\
examples:
  gpuimages convert photos/ photos.parquet --recursive --resize 224
  gpuimages convert photos/ jpeg.parquet --format jpeg --resize 256 --quality 85 --drop-invalid
  gpuimages convert train/ shards/ --format webdataset --recursive --label-from-folder --resize 256
"""
_WRITE_EXAMPLES = """\
examples:
  gpuimages write photos/ small/ --recursive --resize 256 --quality 85
  gpuimages write train/ train-png/ --recursive --label-from-folder --format png --mode skip
"""
_INFO_EXAMPLES = """\
examples:
  gpuimages info photos/ --recursive          a folder of images (labels: the sub-folders)
  gpuimages info shards/                      WebDataset shards or other .tar/.tgz/.zip archives
  gpuimages info photos.parquet --json        a table gpuimages convert wrote, as JSON for scripts
"""
_PATH_HELP = (
    "what to describe: an image file, a folder or glob of images, .tar/.tar.gz/.zip archives or WebDataset "
    "shards (read member by member), or a Parquet table gpuimages convert wrote (a .parquet path or a folder "
    "of .parquet files); any filesystem Spark reads"
)


def build_parser() -> argparse.ArgumentParser:
    """The ``gpuimages`` argument parser."""
    parser = _Parser(
        prog="gpuimages", description="Images into Spark DataFrames, decoded on GPU or CPU.", epilog=EXIT_HELP
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: log what gpuimages decides; -vv: Spark's warnings too")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{convert,write,info,demo}")

    convert = sub.add_parser(
        "convert", help="read images and write them to Parquet (Spark's image schema or JPEG/PNG bytes) or "
        "WebDataset shards",
        description="Read images (files, folders, globs, archives) and write them to Parquet: Spark's image "
        "schema (raw pixels) or JPEG/PNG bytes with origin, height and width; or JPEG WebDataset shards.",
        epilog=_CONVERT_EXAMPLES + "\n"
        + EXIT_HELP.replace("rows failed", "images were invalid").replace("written (or skipped)", "valid")
        + "; with --drop-invalid invalid images are dropped, not failures",
    )
    convert.add_argument("src", help="images to read: a file, folder or glob, archives included (any filesystem "
                         "Spark reads)")
    convert.add_argument("dest", help="where to write: a Parquet path (a folder for --format webdataset)")
    _add_read_options(convert)
    _add_image_options(convert, default_format="raw")
    convert.add_argument("--drop-invalid", action="store_true", help="leave images that cannot be decoded out")
    convert.add_argument("--overwrite", action="store_true", help="replace dest if it exists")
    convert.add_argument("--show-failures", type=int, default=20, metavar="N",
                         help="print up to N invalid images (default 20)")
    convert.add_argument("--shard-samples", type=int, default=10_000, metavar="N",
                         help="webdataset: samples per shard (default 10000)")
    convert.add_argument("--shard-mb", type=int, default=1024, metavar="MB",
                         help="webdataset: largest shard in MiB (default 1024)")
    convert.set_defaults(func=_convert)

    write = sub.add_parser(
        "write", help="read images and write them as JPEG/PNG files (ImageFolder layout by label)",
        description="Read images (files, folders, globs, archives) and write each as a JPEG or PNG file; with "
        "--label-from-folder one sub-folder per label (the ImageFolder layout).",
        epilog=_WRITE_EXAMPLES + "\n" + EXIT_HELP,
    )
    write.add_argument("src", help="images to read: a file, folder or glob, archives included (any filesystem "
                       "Spark reads)")
    write.add_argument("dest", help="output folder (local, /dbfs, /Volumes, or a URI fsspec writes)")
    _add_read_options(write)
    _add_image_options(write, default_format="jpeg")
    write.add_argument("--mode", default="error", choices=["error", "overwrite", "skip"],
                       help="files that exist already: refuse a non-empty folder, replace them, or keep them "
                       "(default error)")
    write.add_argument("--show-failures", type=int, default=20, metavar="N",
                       help="print up to N failed files (default 20)")
    write.set_defaults(func=_write)

    info = sub.add_parser(
        "info", help="describe images, archives, WebDataset shards or a Parquet table: counts, formats, sizes, "
        "labels, invalid rows",
        description="Describe what a path holds: rows, formats, channels, sizes in pixels and bytes, labels and "
        "invalid rows with their reasons. Images are decoded to find the invalid ones (nothing is written).",
        epilog=_INFO_EXAMPLES + "\nexit status: 0, or 2 for a usage error (reported before Spark starts)",
    )
    info.add_argument("path", help=_PATH_HELP)
    _add_read_options(info, device="cpu")
    info.add_argument("--kind", default="auto", choices=["auto", "images", "parquet"],
                      help="read path as images or as a Parquet table (default auto: Parquet for a .parquet path "
                      "or a folder of .parquet files)")
    info.add_argument("--json", action="store_true", help="print the summary as JSON (for scripts)")
    info.set_defaults(func=_info)

    sub.add_parser("demo", help="train a RandomForest on a small generated image set (see `gpuimages demo --help`)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``gpuimages`` command (also called in-process: it uses a running Spark session and
    stops only a session it started)."""
    from gpuimages.console import command_logging, command_session

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "demo":  # the demo parses its own options (see `gpuimages demo --help`)
        from gpuimages import demo

        return int(demo.main(argv[1:]) or 0)
    parser = build_parser()
    args = parser.parse_args(argv)
    args.verbose = args.verbose or 0
    with command_logging(args.verbose):
        try:
            _check_args(args)  # before any Spark session starts
        except (ValueError, TypeError, FileExistsError, ImportError) as exc:
            _usage_error(args.command, exc)
        try:
            with command_session(args.master, f"gpuimages-{args.command}", args.verbose) as spark:
                return int(args.func(spark, args) or 0)
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

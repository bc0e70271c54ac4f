"""Object stores on a local S3 server: listing, sampling, reading and writing on ``s3a://``, in requests and seconds.

Starts moto's S3 server on 127.0.0.1 (tests/s3.py, the test suite's server, which counts every request it
serves) and a local Spark session with hadoop-aws (tests/s3_jars.py), puts ``--count`` small JPEGs in a
bucket (``--folders`` prefixes) and the same files on local disk, and measures:

- **listing**: building ``read_images``' DataFrame against Spark's own listing of the bucket
  (``binaryFile``'s ``inputFiles()``), and a 1% sample counted;
- **read**: ``read_images(...)`` decoded and counted, on ``s3a://`` against the same files on local disk;
- **write**: ``write_images`` of the files' bytes to the bucket, S3 requests per written row (and the
  same for the task-side writer alone, one row after another, which is what a row costs in a task).

Requests are counted from the server's log, by kind (LIST, HEAD, GET, PUT, DELETE, POST). The server runs
in this process: its own CPU time is part of every figure (a real store's is not), so the request counts
are the portable figures, the seconds a comparison on one machine.

    python -m benchmarks.objectstore                 # 2000 files in 20 prefixes, ~3 min on 2 busy cores
    python -m benchmarks.objectstore --count 500     # quicker
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

log = logging.getLogger("benchmarks.objectstore")


def kinds(requests) -> dict[str, int]:
    """Requests by kind: LIST (a GET with ``list-type``/``prefix``/``delimiter``), HEAD, GET, PUT, DELETE, POST."""
    counts: collections.Counter[str] = collections.Counter()
    for r in requests:
        listing = r.method == "GET" and any(k in r.query for k in ("list-type", "prefix=", "delimiter="))
        counts["LIST" if listing else r.method] += 1
    return dict(sorted(counts.items()))


def timed(server, fn):
    mark, start = server.mark(), time.perf_counter()
    value = fn()
    return value, time.perf_counter() - start, kinds(server.since(mark))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--folders", type=int, default=20)
    parser.add_argument("--write-rows", type=int, default=200)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "objectstore.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("gpuimages").setLevel(logging.WARNING)

    import s3
    from images import encode, rgb_array

    conf = s3.spark_conf()
    if not conf:
        print(f"object-store benchmark unavailable: {s3.UNAVAILABLE}", file=sys.stderr)
        return 2
    server = s3.server()
    import gpuimages
    from gpuimages.session import local_session

    spark = local_session("local[2]", "gpuimages-objectstore", **conf)
    spark.sparkContext.setLogLevel("ERROR")
    files = {f"d{i % args.folders:03d}/img{i:06d}.jpg": encode(rgb_array(32, 48, seed=i), "JPEG", quality=90)
             for i in range(args.count)}
    s3.make_bucket("bench", {f"images/{k}": v for k, v in files.items()})
    local = Path(tempfile.mkdtemp(prefix="gpuimages-objectstore-"))
    for key, data in files.items():
        (local / key).parent.mkdir(parents=True, exist_ok=True)
        (local / key).write_bytes(data)
    results: dict[str, dict] = {}

    def record(name: str, seconds: float, requests: dict[str, int], **extra) -> None:
        results[name] = {"seconds": round(seconds, 3), "requests": requests, **extra}
        log.info("%-34s %7.2f s  %s %s", name, seconds, requests, extra or "")

    uri = "s3a://bench/images/"
    spark.read.format("binaryFile").load(uri).inputFiles()  # warm the S3A client and the JVM
    listed, sec, req = timed(server, lambda: spark.read.format("binaryFile").option("recursiveFileLookup", "true")
                             .load(uri).inputFiles())
    record("spark binaryFile listing", sec, req, files=len(listed))
    _, sec, req = timed(server, lambda: gpuimages.read_images(spark, uri, recursive=True))
    record("read_images plan (listing)", sec, req)
    n, sec, req = timed(server, lambda: gpuimages.read_images(spark, uri, recursive=True, sample_ratio=0.01).count())
    record("read_images 1% sample, counted", sec, req, rows=n)
    n, sec, req = timed(server, lambda: gpuimages.read_images(spark, uri, recursive=True)
                        .filter("error IS NULL").count())
    record("read_images s3a, decoded", sec, req, rows=n, images_per_s=round(n / sec))
    n, sec, _ = timed(server, lambda: gpuimages.read_images(spark, str(local), recursive=True)
                      .filter("error IS NULL").count())
    record("read_images local disk, decoded", sec, {}, rows=n, images_per_s=round(n / sec))

    # writes: one row's requests through the task-side writer, then a whole write_images job
    from gpuimages.sources.stores import store_settings
    from gpuimages.task.claims import WritePlan, Writer
    from gpuimages.task.stores import FsspecStore

    settings = store_settings(spark)
    s3.make_bucket("bench-out")
    plan = WritePlan(root="s3a://bench-out/direct", input_col="content", input_is_struct=False, origin_col="origin",
                     name_col=None, partition_by=None, mode="error", extension=None, store_settings=settings)
    writer = Writer(plan, FsspecStore(plan.root, settings), 0)
    rows = list(files.items())[: args.write_rows]
    _, sec, req = timed(server, lambda: [writer.write(i, f"s3a://x/{k}", None, None, v)
                                         for i, (k, v) in enumerate(rows)])
    record("task writer, one row at a time", sec, req, rows=len(rows),
           requests_per_row=round(sum(req.values()) / len(rows), 2))
    frame = spark.createDataFrame([(k, v) for k, v in rows], "origin string, content binary").repartition(2)
    frame.cache().count()
    report, sec, req = timed(server, lambda: gpuimages.write_images(frame, "s3a://bench-out/job/", "content"))
    written = report.filter("status = 'written'").count()
    record("write_images job", sec, req, rows=written, requests_per_row=round(sum(req.values()) / written, 2),
           rows_per_s=round(written / sec))

    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"count": args.count, "folders": args.folders, "results": results}, indent=1))
    log.info("wrote %s", args.out)
    spark.stop()
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

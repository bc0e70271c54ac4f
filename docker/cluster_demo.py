"""Run the gpuimages demo on the cluster this script is submitted to.

``gpuimages demo`` starts its own local session; submitted with ``spark-submit``, this script
uses the session spark-submit configures (master, resources) instead:

    spark-submit --master spark://master:7077 \
        --conf spark.executor.resource.gpu.amount=1 --conf spark.task.resource.gpu.amount=0.25 \
        /opt/gpuimages/cluster_demo.py --data-dir /data/demo --device gpu

``--data-dir`` must be a path the executors can read too (a shared volume or a cluster
filesystem): the driver writes the generated images there and the executors decode them.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="generated images go here; executors must see it")
    parser.add_argument("--device", default="gpu", choices=["auto", "cpu", "gpu"])
    parser.add_argument("--per-class", type=int, default=60, help="images per class (default 60)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("gpuimages").setLevel(logging.INFO)  # device, plan and resource-profile decisions

    from pyspark.sql import SparkSession

    from gpuimages.demo import run_demo

    spark = SparkSession.builder.appName("gpuimages-cluster-demo").getOrCreate()
    try:
        result = run_demo(spark, data_dir=args.data_dir, device=args.device, per_class=args.per_class, seed=args.seed)
    finally:
        spark.stop()
    return 0 if not math.isnan(result["accuracy"]) else 1


if __name__ == "__main__":
    sys.exit(main())

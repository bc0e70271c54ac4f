"""Stage-level scheduling on a real cluster manager: ``local-cluster`` with fake GPUs.

Two workers, each discovering GPUs "0" and "1" through a discovery script. The default profile
gives tasks no GPU; the decode stage, run with ``device="gpu"``, asks for one GPU per task through
a task resource profile, so each decode task sees a GPU address. No CUDA device exists here, so
each such task fails, naming the address Spark assigned and that CUDA sees no device: a GPU stage
never runs on CPU unasked. The CPU read, under the default profile, gets no address.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pyspark
import pytest
from children import JVM_OPTIONS, spark_child_env

pytest.importorskip("nvidia.dali")
pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SCRIPT = textwrap.dedent(
    """
    import json, logging, os, sys
    from pyspark.sql import SparkSession
    import gpuimages

    logging.basicConfig(level=logging.INFO)
    data, discovery, tasklog, out = sys.argv[1:5]
    spark = (
        SparkSession.builder.master("local-cluster[2,1,1024]")
        .config("spark.worker.resource.gpu.amount", "2")
        .config("spark.worker.resource.gpu.discoveryScript", discovery)
        .config("spark.executor.resource.gpu.amount", "2")
        .config("spark.executor.resource.gpu.discoveryScript", discovery)
        .config("spark.executorEnv.GPUIMAGES_TASK_LOG", tasklog)
        .config("spark.task.maxFailures", "1")
        .config("spark.executor.extraJavaOptions", os.environ["TEST_JVM_OPTIONS"])
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    def failure(run):
        try:
            run()
        except Exception as exc:  # the task's error comes back through Py4J
            return str(exc)
        return None

    gpu = failure(lambda: gpuimages.read_images(spark, data, recursive=True, device="gpu", task_gpu_amount=1).collect())
    cpu = gpuimages.read_images(spark, data, recursive=True, device="cpu").collect()
    from gpuimages.ml import ImageFeaturizer

    def mean_colour(images):
        return images.mean(axis=(1, 2))

    content = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(data)
    featurizer = ImageFeaturizer(inputCol="content", fn=mean_colour, imageSize=[8, 8], device="gpu")
    features = failure(lambda: featurizer.transform(content).collect())
    json.dump(
        {
            "gpu": gpu,
            "cpu": sorted([r.image.origin, r.image.height, r.image.width, r.image.nChannels, r.error] for r in cpu),
            "features": features,
        },
        open(out, "w"),
    )
    spark.stop()
    """
)


def test_decode_stage_runs_under_gpu_profile(class_dir, tmp_path):
    discovery = tmp_path / "gpus.sh"
    discovery.write_text('#!/usr/bin/env bash\necho \'{"name":"gpu","addresses":["0","1"]}\'\n')
    discovery.chmod(0o755)
    tasklog, out = tmp_path / "tasklog", tmp_path / "out.json"
    script = tmp_path / "job.py"
    script.write_text(SCRIPT)
    env = spark_child_env(PYSPARK_DRIVER_PYTHON=sys.executable, TEST_JVM_OPTIONS=JVM_OPTIONS)  # executors too
    proc = subprocess.run(
        [sys.executable, str(script), str(class_dir), str(discovery), str(tasklog), str(out)],
        env=env, capture_output=True, text=True, timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert len(result["cpu"]) == 12 and all(r[4] is None for r in result["cpu"])
    if int(pyspark.__version__.split(".")[0]) < 4:  # profiles go on mapInArrow, which pyspark 4 added
        assert "GPU resource profiles need pyspark >= 4" in proc.stderr
        assert "runs with a GPU resource profile" not in proc.stderr
        return
    assert "decode stage runs with a GPU resource profile" in proc.stderr
    assert "featurize stage runs with a GPU resource profile" in proc.stderr
    # Every GPU task got an address from its profile, and failed saying CUDA sees no device there
    for failed in (result["gpu"], result["features"]):
        assert failed is not None
        assert re.search(r"device='gpu': Spark assigned GPU [01] to this task but this process sees no CUDA device",
                         failed), failed[-2000:]

    records = [json.loads(line) for f in Path(tasklog).glob("*.jsonl") for line in f.read_text().splitlines()]
    cpu_tasks = [r for r in records if r["stage"] == "decode" and r["engine"] == "pillow"]
    assert cpu_tasks and all(r["gpu_addresses"] == [] for r in cpu_tasks)  # the default profile: no GPU
    assert sum(r["rows"] for r in cpu_tasks) == 12
    assert not [r for r in records if r["gpu_addresses"]]  # no GPU task finished (on CPU or otherwise)

"""Stage-level scheduling on a real cluster manager: ``local-cluster`` with fake GPUs.

Two workers, each discovering GPUs "0" and "1" through a discovery script. The default profile
gives tasks no GPU; the decode stage, run with ``device="gpu"``, asks for one GPU per task through
a task resource profile, so each decode task sees a GPU address. No CUDA device exists here, so
the DALI engine runs its CPU operators, which is what the task log shows.
"""

from __future__ import annotations

import json
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
        .config("spark.executor.extraJavaOptions", os.environ["TEST_JVM_OPTIONS"])
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    df = gpuimages.read_images(spark, data, recursive=True, device="gpu", task_gpu_amount=1)
    rows = df.collect()
    cpu = gpuimages.read_images(spark, data, recursive=True, device="cpu").collect()
    from gpuimages.ml import ImageFeaturizer

    def mean_colour(images):
        return images.mean(axis=(1, 2))

    content = spark.read.format("binaryFile").option("recursiveFileLookup", "true").load(data)
    featurized = ImageFeaturizer(inputCol="content", fn=mean_colour, imageSize=[8, 8], device="gpu").transform(content)
    features = featurized.collect()
    json.dump(
        {
            "gpu": sorted([r.image.origin, r.image.height, r.image.width, r.image.nChannels, r.error] for r in rows),
            "cpu": sorted([r.image.origin, r.image.height, r.image.width, r.image.nChannels, r.error] for r in cpu),
            "features": sorted([r.path, None if r.features is None else len(r.features), r.error] for r in features),
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
        env=env, capture_output=True, text=True, timeout=400,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert len(result["gpu"]) == 12
    assert [r[:4] for r in result["gpu"]] == [r[:4] for r in result["cpu"]]
    assert [f[1:] for f in result["features"]] == [[3, None]] * 12
    if int(pyspark.__version__.split(".")[0]) < 4:  # profiles go on mapInArrow, which pyspark 4 added
        assert "GPU resource profiles need pyspark >= 4" in proc.stderr
        assert "runs with a GPU resource profile" not in proc.stderr
        return
    assert "decode stage runs with a GPU resource profile" in proc.stderr
    assert "featurize stage runs with a GPU resource profile" in proc.stderr

    records = [json.loads(line) for f in Path(tasklog).glob("*.jsonl") for line in f.read_text().splitlines()]
    featurize = [r for r in records if r["stage"] == "featurize"]
    records = [r for r in records if r["stage"] == "decode"]
    gpu_tasks = [r for r in records if r["engine"].startswith("dali")]
    cpu_tasks = [r for r in records if r["engine"] == "pillow"]
    assert gpu_tasks and cpu_tasks
    # Every decode task of the GPU read saw exactly one GPU address from the profile ...
    assert all(len(r["gpu_addresses"]) == 1 and r["gpu_addresses"][0] in ("0", "1") for r in gpu_tasks)
    # ... while the CPU read, under the default profile, got none.
    assert all(r["gpu_addresses"] == [] for r in cpu_tasks)
    assert sum(r["rows"] for r in gpu_tasks) == 12

    # The ML stage got the same profile: one GPU address per task, DALI decoding in the task
    assert featurize and all(len(r["gpu_addresses"]) == 1 for r in featurize)
    assert all(r["engine"].startswith("dali") for r in featurize)
    assert sum(r["rows"] for r in featurize) == 12

    result = json.loads(out.read_text())
    assert [f[1:] for f in result["features"]] == [[3, None]] * 12
    assert len(result["gpu"]) == 12
    assert [r[:4] for r in result["gpu"]] == [r[:4] for r in result["cpu"]]

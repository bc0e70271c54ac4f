"""encode_images, transcode_images and write_images on a local Spark Connect session (in a child process).

A process holding the classic test session cannot start a local Connect session (see
``tests/test_connect.py``), so the Connect side runs the script below in a child process: a Connect
server on a free port (as ``tests/test_ml_connect.py`` starts it) and a client, reporting what it got
as JSON.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from images import encode, rgb_array, write_files

pytestmark = pytest.mark.connect

REPO = Path(__file__).resolve().parent.parent

CHILD = textwrap.dedent(
    """
    import io, json, os, socket, sys
    from PIL import Image
    from pyspark.sql import SparkSession
    import gpuimages

    src, dest, out = sys.argv[1:4]
    with socket.socket() as s:  # a free port: the default 15002 may be held by another run
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    server = (
        SparkSession.builder.master("local[2]")
        .config("spark.ui.enabled", "false")
        .config("spark.plugins", "org.apache.spark.sql.connect.SparkConnectPlugin")
        .config("spark.connect.grpc.binding.port", str(port))
        .getOrCreate()
    )
    server.sparkContext.setLogLevel("ERROR")
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    from pyspark.sql.connect.session import SparkSession as ConnectSession

    spark = ConnectSession.builder.remote(f"sc://localhost:{port}").getOrCreate()
    result = {"connect": type(spark).__module__}
    binary = spark.read.format("binaryFile").load(src)
    rows = gpuimages.transcode_images(binary, resize=(8, 10), format="png", device="cpu").collect()
    result["transcode"] = sorted([r.origin.rsplit("/", 1)[-1], r.height, r.width, r.error is None] for r in rows)
    images = gpuimages.read_images(spark, src, device="cpu")
    enc = gpuimages.encode_images(images, format="jpeg", device="cpu").collect()
    result["encode"] = sorted(
        [r.origin.rsplit("/", 1)[-1], None if r.encoded is None else Image.open(io.BytesIO(r.encoded)).size]
        for r in enc
    )
    report = gpuimages.write_images(images, dest, format="jpeg", device="cpu").collect()
    result["write"] = sorted([r.status, r.path and os.path.basename(r.path)] for r in report)
    spark.stop()
    server.stop()
    with open(out, "w") as fh:
        json.dump(result, fh)
    """
)


def test_encode_transcode_write_on_connect(tmp_path):
    try:
        from pyspark.sql.connect.utils import check_dependencies

        check_dependencies()
    except ImportError as exc:
        pytest.skip(f"Spark Connect client dependencies are missing: {exc}")
    src = tmp_path / "src"
    write_files(src, {"a.png": encode(rgb_array(12, 16), "PNG"), "b.jpg": encode(rgb_array(20, 30), "JPEG"),
                      "bad.jpg": b"nope"})
    env = {k: v for k, v in os.environ.items() if k not in ("SPARK_REMOTE", "SPARK_CONNECT_MODE_ENABLED")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env["PYSPARK_PYTHON"] = sys.executable
    out = tmp_path / "result.json"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(src), str(tmp_path / "dest"), str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert "connect" in result["connect"]
    assert result["transcode"] == [["a.png", 8, 10, True], ["b.jpg", 8, 10, True], ["bad.jpg", None, None, False]]
    assert result["encode"] == [["a.png", [16, 12]], ["b.jpg", [30, 20]], ["bad.jpg", None]]
    assert result["write"] == [["failed", None], ["written", "a.jpg"], ["written", "b.jpg"]]
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["a.jpg", "b.jpg"]

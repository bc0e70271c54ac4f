"""encode_images, transcode_images and write_images on Spark Connect (a client on the run's Connect server)."""

from __future__ import annotations

import io
import os

import pytest
from connect_server import connect_session
from images import encode, rgb_array, write_files
from PIL import Image

pytestmark = pytest.mark.connect


def test_encode_transcode_write_on_connect(connect_server, tmp_path):
    import gpuimages

    src = tmp_path / "src"
    write_files(src, {"a.png": encode(rgb_array(12, 16), "PNG"), "b.jpg": encode(rgb_array(20, 30), "JPEG"),
                      "bad.jpg": b"nope"})
    with connect_session(connect_server) as spark:
        binary = spark.read.format("binaryFile").load(str(src))
        transcoded = gpuimages.transcode_images(binary, resize=(8, 10), format="png", device="cpu")
        assert type(transcoded).__module__ == "pyspark.sql.connect.dataframe"
        rows = transcoded.collect()
        images = gpuimages.read_images(spark, str(src), device="cpu")
        enc = gpuimages.encode_images(images, format="jpeg", device="cpu").collect()
        report = gpuimages.write_images(images, str(tmp_path / "dest"), format="jpeg", device="cpu").collect()
    assert sorted((r.origin.rsplit("/", 1)[-1], r.height, r.width, r.error is None) for r in rows) == [
        ("a.png", 8, 10, True), ("b.jpg", 8, 10, True), ("bad.jpg", None, None, False)
    ]
    assert sorted(
        (r.origin.rsplit("/", 1)[-1], None if r.encoded is None else Image.open(io.BytesIO(r.encoded)).size)
        for r in enc
    ) == [("a.png", (16, 12)), ("b.jpg", (30, 20)), ("bad.jpg", None)]
    assert sorted((r.status, r.path and os.path.basename(r.path)) for r in report) == [
        ("failed", None), ("written", "a.jpg"), ("written", "b.jpg")
    ]
    assert sorted(p.name for p in (tmp_path / "dest").iterdir()) == ["a.jpg", "b.jpg"]

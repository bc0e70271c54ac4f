"""decode_images on Structured Streaming: binaryFile stream -> decode -> parquet sink, run incrementally."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pyspark.sql.types import BinaryType, LongType, StringType, StructField, StructType, TimestampType
from streams import write_available_now

import gpuimages
from gpuimages.engines.pillow import decode_one
from gpuimages.options import make_decode_options
from gpuimages.uris import to_origin

#: The schema Spark's binaryFile source produces; a file stream needs it up front.
BINARY_FILE_SCHEMA = StructType(
    [
        StructField("path", StringType(), False),
        StructField("modificationTime", TimestampType(), False),
        StructField("length", LongType(), False),
        StructField("content", BinaryType(), True),
    ]
)

FIRST = ["rgb.jpg", "rgb.png", "gray.png", "rgba.png", "palette_trns.png"]
SECOND = ["with space.jpg", "gray.jpg", "progressive.jpg", "cmyk.jpg", "la.png", "gray16.png", "text.jpg", "empty.jpg"]
#: Plain 8-bit RGB files: Pillow's own RGB decode, reversed to BGR, is an independent reference.
PLAIN_RGB = {"rgb.jpg", "rgb.png", "with space.jpg", "progressive.jpg"}


@pytest.fixture(scope="module")
def odd_bytes(odd_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in odd_dir.iterdir()}


def land(files: dict[str, bytes], names: list[str], landing: Path, staging: Path) -> None:
    """Write files next to the landing folder, then rename them in (a stream never sees half a file)."""
    staging.mkdir(exist_ok=True)
    for name in names:
        tmp = staging / name
        tmp.write_bytes(files[name])
        os.replace(tmp, landing / name)


def run_available_now(spark, landing: Path, out: Path, checkpoint: Path, **options) -> list[dict]:
    """One availableNow run of binaryFile stream -> decode_images -> parquet; returns its progress reports."""
    stream = spark.readStream.format("binaryFile").schema(BINARY_FILE_SCHEMA).load(str(landing))
    assert stream.isStreaming
    decoded = gpuimages.decode_images(stream, device="cpu", **options)
    return list(write_available_now(decoded, out, checkpoint).recentProgress)


def input_rows(progress: list[dict]) -> int:
    return sum(p["numInputRows"] for p in progress)


def bgr_from_pillow(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))[:, :, ::-1]


def test_stream_decodes_every_file_exactly_once(spark, tmp_path, odd_bytes):
    """Two incremental runs (plus an idle one) over a landing folder: each file decoded exactly once.

    Spark's streaming file source itself skips zero-byte files (as the batch binaryFile source
    does), so ``empty.jpg`` never reaches decode_images and has no row in the output. A stream
    cannot list files separately the way read_images does; the undecodable ``text.jpg`` does reach
    it and becomes an invalid row with a reason.
    """
    landing, out, checkpoint = tmp_path / "landing", tmp_path / "out", tmp_path / "checkpoint"
    landing.mkdir()
    staging = tmp_path / "staging"

    land(odd_bytes, FIRST, landing, staging)
    first = run_available_now(spark, landing, out, checkpoint)
    assert input_rows(first) == len(FIRST)
    assert spark.read.parquet(str(out)).count() == len(FIRST)

    land(odd_bytes, SECOND, landing, staging)
    second = run_available_now(spark, landing, out, checkpoint)
    assert input_rows(second) == len(SECOND) - 1  # empty.jpg is skipped by the file source

    idle = run_available_now(spark, landing, out, checkpoint)  # nothing new: nothing decoded again
    assert input_rows(idle) == 0
    assert not spark.streams.active

    result = spark.read.parquet(str(out))
    assert result.columns == ["path", "modificationTime", "length", "image", "error"]
    rows = result.collect()
    names = sorted(Path(r.path).name for r in rows)
    landed = sorted(n for n in FIRST + SECOND if n != "empty.jpg")
    assert names == landed  # no duplicates, none lost (other than the zero-byte file)

    options = make_decode_options(device="cpu")
    for row in rows:
        name = Path(row.path).name
        data = odd_bytes[name]
        assert row.length == len(data)
        assert row.image.origin == row.path  # origin_col="path" is copied verbatim
        assert (landing / name).as_uri() == to_origin(row.path)
        if name == "text.jpg":
            assert (row.image.height, row.image.width, row.image.nChannels, row.image.mode) == (-1, -1, -1, -1)
            assert bytes(row.image.data) == b""
            assert isinstance(row.error, str) and row.error.strip()
            continue
        assert row.error is None
        pixels = np.frombuffer(row.image.data, np.uint8).reshape(row.image.height, row.image.width, -1)
        np.testing.assert_array_equal(pixels, decode_one(data, options))
        if name in PLAIN_RGB:
            np.testing.assert_array_equal(pixels, bgr_from_pillow(data))


def test_stream_with_resize_and_drop_invalid(spark, tmp_path, odd_bytes):
    landing, out, checkpoint = tmp_path / "landing", tmp_path / "out", tmp_path / "checkpoint"
    landing.mkdir()
    names = ["rgb.jpg", "rgba.png", "text.jpg", "truncated.jpg"]
    land(odd_bytes, names, landing, tmp_path / "staging")
    progress = run_available_now(spark, landing, out, checkpoint, resize=(8, 6), drop_invalid=True)
    assert input_rows(progress) == len(names)

    rows = {Path(r.path).name: r for r in spark.read.parquet(str(out)).collect()}
    assert sorted(rows) == ["rgb.jpg", "rgba.png"]  # the two undecodable files are dropped
    options = make_decode_options(device="cpu", resize=(8, 6))
    for name, row in rows.items():
        assert (row.image.height, row.image.width) == (8, 6) and row.error is None
        expected = decode_one(odd_bytes[name], options)
        assert row.image.nChannels == expected.shape[2]
        assert bytes(row.image.data) == expected.tobytes()

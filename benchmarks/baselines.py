"""What gpuimages is measured against, and the shared timing plumbing.

* :class:`Case`: one benchmark row: an untimed pass that counts rows and pixel bytes, and a timed pass.
* :func:`spark_case`: a DataFrame-producing reader, timed with a ``noop`` write (every row and column
  materialised) and checked with ``count`` + ``sum(length(image.data))``.
* Spark's own image source, the hand-written ``binaryFile`` + pandas UDF recipe (as users write it,
  and hand-tuned), the Pillow-alone ceiling in N processes, and a bare DALI pipeline.
"""

from __future__ import annotations

import io
import logging
import multiprocessing
import os
import shutil
import subprocess
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from importlib.util import find_spec
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import pyarrow as pa
from PIL import Image

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column, DataFrame, SparkSession

    from benchmarks.data import DataSet

log = logging.getLogger(__name__)

#: Arrow rows per batch for the hand-tuned recipe (Spark's default is 10,000).
TUNED_ARROW_BATCH = 64
ARROW_BATCH_KEY = "spark.sql.execution.arrow.maxRecordsPerBatch"


@dataclass
class Case:
    """One benchmark row.

    ``warm`` runs one untimed pass and returns ``(rows, pixel_bytes)`` it produced; ``timed`` is the
    pass that is timed. ``expect_rows``/``expect_pixels`` are what a correct reader must produce.
    ``ceiling`` names the case this row is compared with (a Pillow or DALI ceiling), ``spark_ref``
    the Spark image-source row for the same files.
    """

    key: str
    label: str
    kind: str  # "spark" (a Spark reader) or "ceiling" (no Spark)
    images: int
    encoded_bytes: int
    warm: Callable[[], tuple[int, int]]
    timed: Callable[[], None]
    expect_rows: int
    expect_pixels: int | None = None
    ceiling: str | None = None
    spark_ref: str | None = None


@contextmanager
def spark_conf(spark: SparkSession, conf: dict[str, str] | None) -> Iterator[None]:
    """Set runtime SQL conf entries for the duration of the block, then restore the previous values."""
    conf = conf or {}
    previous = {k: spark.conf.get(k, None) for k in conf}
    try:
        for k, v in conf.items():
            spark.conf.set(k, v)
        yield
    finally:
        for k, v in previous.items():
            if v is None:
                spark.conf.unset(k)
            else:
                spark.conf.set(k, v)


def noop_write(df: DataFrame) -> None:
    """Materialise every row and column of ``df`` and throw the result away."""
    df.write.format("noop").mode("overwrite").save()


def count_pixels(df: DataFrame, image_col: str = "image") -> tuple[int, int]:
    """Rows and total ``image.data`` bytes of ``df`` (forces the decode)."""
    from pyspark.sql import functions as F

    row = df.agg(F.count(F.lit(1)).alias("n"), F.sum(F.length(F.col(f"{image_col}.data"))).alias("b")).first()
    return int(row["n"]), int(row["b"] or 0)


def spark_case(
    spark: SparkSession,
    key: str,
    label: str,
    data: DataSet,
    make_df: Callable[[], DataFrame],
    *,
    expect_pixels: int | None,
    conf: dict[str, str] | None = None,
    ceiling: str | None = None,
    spark_ref: str | None = None,
) -> Case:
    """A Spark reader: ``make_df`` builds the DataFrame (listing included in the timing)."""

    def warm() -> tuple[int, int]:
        with spark_conf(spark, conf):
            return count_pixels(make_df())

    def timed() -> None:
        with spark_conf(spark, conf):
            noop_write(make_df())

    return Case(key, label, "spark", data.count, data.total_bytes, warm, timed, data.count, expect_pixels,
                ceiling, spark_ref)


# --- Spark's own image source ------------------------------------------------------------------


def spark_image_source(spark: SparkSession, folder: str) -> DataFrame:
    """``spark.read.format("image")`` with its defaults (Java ImageIO decode, BGR(A) bytes)."""
    return spark.read.format("image").load(folder)


# --- the hand-written recipe ---------------------------------------------------------------------


def recipe_udf():
    """The pandas UDF users write: Pillow decode of each file to RGB, flipped to BGR, as the image struct.

    Built inside a function so the UDF is shipped to workers by value (no import of this package there).
    ``pd`` is a module global because pandas UDF type hints are resolved against the module.
    """
    from pyspark.sql.functions import pandas_udf

    ddl = "origin string, height int, width int, nChannels int, mode int, data binary"

    @pandas_udf(ddl)
    def decode_image(content: pd.Series, path: pd.Series) -> pd.DataFrame:
        rows = []
        for blob, origin in zip(content, path, strict=True):
            img = Image.open(io.BytesIO(blob)).convert("RGB")
            arr = np.asarray(img)[:, :, ::-1]
            rows.append((origin, arr.shape[0], arr.shape[1], 3, 16, arr.tobytes()))
        return pd.DataFrame(rows, columns=["origin", "height", "width", "nChannels", "mode", "data"])

    return decode_image


def recipe_frame(spark: SparkSession, folder: str, *, partitions: int | None = None) -> DataFrame:
    """``binaryFile`` + :func:`recipe_udf`; ``partitions`` coalesces the read first (the hand-tuned variant)."""
    df = spark.read.format("binaryFile").load(folder)
    if partitions:
        df = df.coalesce(partitions)
    return df.select("path", recipe_udf()("content", "path").alias("image"))


# --- Spark's own cost of returning the pixels -----------------------------------------------------


def floor_frame(spark: SparkSession, folder: str, partitions: int, batch_size: int = 16) -> DataFrame:
    """``binaryFile`` coalesced to ``partitions`` -> ``mapInArrow`` returning zero-filled image structs.

    Each struct has the size a full decode gives (read from the header; nothing is decoded), in
    ``batch_size``-row Arrow batches: what Spark alone costs to move the files in and the pixels out.
    Built inside a function so the task code is shipped by value.
    """
    from pyspark.sql.types import StringType, StructField, StructType

    from gpuimages.schema import ARROW_IMAGE_TYPE, image_struct_type

    def zero_struct(origins: list, blobs: list) -> pa.StructArray:
        shapes = []
        for blob in blobs:
            im = Image.open(io.BytesIO(blob))  # header only
            shapes.append((im.height, im.width, 4 if im.mode in ("RGBA", "LA", "PA") else 3))
        h, w, c = (np.array(v, dtype=np.int32) for v in zip(*shapes, strict=True))
        offsets = np.zeros(len(shapes) + 1, dtype=np.int32)
        np.cumsum(h * w * c, out=offsets[1:])
        pixels = np.zeros(int(offsets[-1]), dtype=np.uint8)
        data = pa.Array.from_buffers(pa.binary(), len(shapes), [None, pa.py_buffer(offsets), pa.py_buffer(pixels)])
        modes = np.where(c == 4, 24, 16).astype(np.int32)
        columns = [pa.array(origins, pa.string()), pa.array(h), pa.array(w), pa.array(c), pa.array(modes), data]
        return pa.StructArray.from_arrays(columns, fields=list(ARROW_IMAGE_TYPE))

    def zero_images(batches):
        for batch in batches:
            for start in range(0, batch.num_rows, batch_size):
                chunk = batch.slice(start, batch_size)
                image = zero_struct(chunk.column("path").to_pylist(), chunk.column("content").to_pylist())
                yield pa.RecordBatch.from_arrays([chunk.column("path"), image], names=["path", "image"])

    schema = StructType([StructField("path", StringType()), StructField("image", image_struct_type())])
    df = spark.read.format("binaryFile").load(folder).select("path", "content").coalesce(partitions)
    return df.mapInArrow(zero_images, schema)


# --- Pillow alone, in N processes ----------------------------------------------------------------


def pillow_decode_file(path: str, resize: tuple[int, int] | None = None) -> int:
    """Read ``path`` and decode it to BGR(A) bytes with Pillow (Spark's channel rules); return the byte count.

    With ``resize`` (height, width), JPEGs are decoded in draft mode (DCT scaling) then resized bilinearly.
    """
    with open(path, "rb") as fh:
        blob = fh.read()
    im = Image.open(io.BytesIO(blob))
    if resize is not None and im.format == "JPEG":
        im.draft(im.mode, (resize[1], resize[0]))
    im.load()
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im, raw = (im if im.mode == "RGBA" else im.convert("RGBA")), "BGRA"
    elif im.mode == "L":
        raw = "L"
    else:
        im, raw = (im if im.mode == "RGB" else im.convert("RGB")), "BGR"
    if resize is not None and im.size != (resize[1], resize[0]):
        im = im.resize((resize[1], resize[0]), Image.BILINEAR)
    return len(im.tobytes("raw", raw))


def _decode_chunk(args: tuple[list[str], tuple[int, int] | None]) -> tuple[int, int]:
    paths, resize = args
    return len(paths), sum(pillow_decode_file(p, resize) for p in paths)


class PillowPool:
    """Pillow decoding files from disk in ``processes`` worker processes (spawned once, reused)."""

    def __init__(self, processes: int, chunk: int = 16) -> None:
        self.processes = processes
        self.chunk = chunk
        self._pool = multiprocessing.get_context("spawn").Pool(processes)

    def run(self, paths: Sequence[str], resize: tuple[int, int] | None = None) -> tuple[int, int]:
        """Decode every path; return (images, pixel bytes)."""
        jobs = [(list(paths[i : i + self.chunk]), resize) for i in range(0, len(paths), self.chunk)]
        n = b = 0
        for k, size in self._pool.imap_unordered(_decode_chunk, jobs):
            n += k
            b += size
        return n, b

    def close(self) -> None:
        """Stop the worker processes."""
        self._pool.close()
        self._pool.join()

    def __enter__(self) -> PillowPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def pillow_case(pool: PillowPool, key: str, label: str, data: DataSet, resize: tuple[int, int] | None,
                spark_ref: str | None = None) -> Case:
    """The Pillow-alone ceiling on ``data`` (optionally draft + resize)."""
    paths = data.paths()
    expect = data.resized_bytes(resize) if resize else data.decoded_bytes

    def run() -> tuple[int, int]:
        return pool.run(paths, resize)

    return Case(key, label, "ceiling", data.count, data.total_bytes, run, run, data.count, expect, spark_ref=spark_ref)


# --- bare DALI -----------------------------------------------------------------------------------


def dali_installed() -> bool:
    """True when NVIDIA DALI can be imported (checked without importing it)."""
    try:
        return find_spec("nvidia.dali") is not None
    except (ImportError, ValueError):
        return False


def cuda_gpus() -> list[str]:
    """Names of the CUDA GPUs ``nvidia-smi`` lists (empty without a driver or GPU)."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return []
    try:
        out = subprocess.run([exe, "-L"], capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.startswith("GPU ")]


class DaliDecoder:
    """A bare DALI pipeline: external source of encoded bytes -> ``decoders.image`` (BGR) on CPU or GPU."""

    def __init__(self, device: str = "cpu", threads: int | None = None, batch_size: int = 64) -> None:
        from nvidia.dali import fn, pipeline_def, types

        self.device = device
        self.batch_size = batch_size
        gpu = device == "mixed"

        @pipeline_def(batch_size=batch_size, num_threads=threads or os.cpu_count() or 1,
                      device_id=0 if gpu else None, exec_dynamic=True, prefetch_queue_depth=1)
        def pipe():
            encoded = fn.external_source(name="encoded", dtype=types.UINT8)
            return fn.decoders.image(encoded, device=device, output_type=types.BGR, adjust_orientation=False)

        self._pipe = pipe()
        self._pipe.build()

    def run(self, paths: Sequence[str]) -> tuple[int, int]:
        """Decode every file (read from disk here); return (images, pixel bytes) with pixels on the host."""
        n = b = 0
        for start in range(0, len(paths), self.batch_size):
            batch = []
            for p in paths[start : start + self.batch_size]:
                with open(p, "rb") as fh:
                    batch.append(np.frombuffer(fh.read(), dtype=np.uint8))
            self._pipe.feed_input("encoded", batch)
            (out,) = self._pipe.run()
            if self.device == "mixed":
                out = out.as_cpu()
            for shape in out.shape():
                n += 1
                b += int(np.prod(shape))
        return n, b


def dali_case(decoder: DaliDecoder, key: str, label: str, data: DataSet, spark_ref: str | None = None) -> Case:
    """The bare DALI pipeline on ``data`` (full decode, 3 channels)."""
    paths = data.paths()

    def run() -> tuple[int, int]:
        return decoder.run(paths)

    expect = sum(h * w * 3 for h, w, _ in data.shapes)
    return Case(key, label, "ceiling", data.count, data.total_bytes, run, run, data.count, expect, spark_ref=spark_ref)


# --- checks --------------------------------------------------------------------------------------


def sample_images(df: DataFrame, key: Column, keys: Sequence[str]) -> dict[str, tuple]:
    """``{key: (height, width, nChannels, mode, data)}`` for the rows of ``df`` whose ``key`` is in ``keys``."""
    rows = df.where(key.isin(list(keys))).select(key.alias("_key"), "image").collect()
    out = {}
    for r in rows:
        im = r["image"]
        out[r["_key"]] = (im["height"], im["width"], im["nChannels"], im["mode"], bytes(im["data"]))
    return out


def compare_samples(samples: dict[str, dict[str, tuple]], keys: Sequence[str]) -> dict:
    """Compare readers' sampled images key by key; ``equal`` is True when all agree on every key."""
    names = list(samples)
    mismatches = []
    for k in keys:
        values = [samples[name].get(k) for name in names]
        if any(v is None for v in values) or any(v != values[0] for v in values[1:]):
            mismatches.append(k)
    return {"readers": names, "sampled": len(keys), "mismatched": mismatches[:10], "equal": not mismatches}



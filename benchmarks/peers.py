"""The engines users pick instead of Spark: Daft and Ray Data beside Spark's image source, the recipes and gpuimages.

    python -m benchmarks.peers                 # 1000 photo crops + 40 large photographs, best of 3
    python -m benchmarks.peers --quick         # 300 crops + 12 large photographs, best of 2
    python -m benchmarks.peers --sections decode,resize --count 2000 --repeats 6

On the same files and the same cores, in one process (one ``local[N]`` Spark session, Ray started with
``num_cpus=N`` as a child of this process, Daft's native runner in it), four jobs:

* ``decode``: every file to full-size pixels. Spark's image source, ``read_images(device="cpu")``,
  ``decode_images`` on ``binaryFile`` (the same decode stage without ``read_images``' listing), Daft
  (``from_glob_path`` -> ``download`` -> ``decode_image``), Ray Data (``read_images`` -> ``iter_batches``),
  and the in-Spark bound (libjpeg-turbo in N processes + Spark's floor, as in :mod:`benchmarks.read`).
* ``resize``: the same to 224x224 (Daft's ``resize`` after its decode; Ray's ``read_images(size=)``).
* ``thumbs``: shorter side 256, JPEG q90, written out: gpuimages ``write_webdataset(transcode_files(...))``
  (and ``transcode_files`` alone against Pillow in N processes, its no-Spark ceiling); Daft's decode + a
  Pillow resize/encode batch function -> Parquet; Ray Data ``read_images`` + the same function in
  ``map_batches`` -> ``write_webdataset``. On the crops and on large photographs (2000 px and up).
* ``features``: encoded bytes -> vectors of the same small ONNX CNN (224x224, 1 onnxruntime thread per
  worker): gpuimages' ``ImageFeaturizer`` on ``binaryFile`` bytes, the spark-rapids-examples recipe,
  Daft (decode + resize in Rust, a class UDF holding the session), Ray Data (``read_images(size=)`` +
  ``map_batches`` with an actor class), and Pillow + onnxruntime in N processes.

Every engine proves its work in the untimed pass: rows, and the sum of decoded pixel bytes (decode,
resize) or of the thumbnails' pixels read back from what it wrote (thumbs), or vectors compared with
gpuimages' (features). Then timed passes run round-robin over all rows of a section (best kept), with the
CPU time of this process tree (driver, JVM, Python workers, Ray's processes, Daft's threads) per pass.
Daft and Ray Data are the optional ``peers`` extra (``pip install "gpuimages[peers]"``); a missing engine
is reported and its rows skipped.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing
import os
import shutil
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from benchmarks import baselines
from benchmarks.baselines import Case
from benchmarks.data import DEFAULT_ROOT, DataSet, photo_set
from benchmarks.report import Goal, Result, check_goals, format_goals, machine_info, write_json

log = logging.getLogger("benchmarks.peers")

RESIZE = (224, 224)
SHORT_SIDE = 256
QUALITY = 90
#: Large photographs: nominal (height, width); widths vary by about +-12%, so all are over 2000 px wide.
LARGE_SIZE = (1728, 2304)
MODEL_BATCH = 64
DEFAULT_OUT = Path(__file__).resolve().parent / "results"  # git-ignored
SECTIONS = ("decode", "resize", "thumbs", "features")
SESSION_CONF = {"spark.ui.showConsoleProgress": "false"}

#: The goals of the comparison (numerator / denominator img/s in the same run).
GOALS = (
    Goal("read_images full decode >= 3.5x Spark's image source", "gpuimages_cpu", "spark_image", 3.5),
    Goal("read_images full decode >= Daft", "gpuimages_cpu", "daft_decode", 1.0),
    Goal("read_images full decode >= 3x Ray Data", "gpuimages_cpu", "ray_decode", 3.0),
    Goal("read_images resize 224 >= Daft", "gpuimages_cpu_resize", "daft_resize", 1.0),
    Goal("read_images resize 224 >= 3x Ray Data", "gpuimages_cpu_resize", "ray_resize", 3.0),
    Goal("thumbnails -> shards, crops >= 1.2x Daft", "gpuimages_thumbs", "daft_thumbs", 1.2),
    Goal("thumbnails -> shards, crops >= 3x Ray Data", "gpuimages_thumbs", "ray_thumbs", 3.0),
    Goal("transcode, crops >= 80% of Pillow alone (no Spark)", "gpuimages_transcode", "pillow_thumbs", 0.8),
    Goal("thumbnails -> shards, large >= 2x Daft", "gpuimages_thumbs_large", "daft_thumbs_large", 2.0),
    Goal("thumbnails -> shards, large >= 3x Ray Data", "gpuimages_thumbs_large", "ray_thumbs_large", 3.0),
    Goal("transcode, large >= 80% of Pillow alone (no Spark)", "gpuimages_transcode_large", "pillow_thumbs_large",
         0.8),
    Goal("bytes -> features >= 1.3x Daft", "gpuimages_features", "daft_features", 1.3),
    Goal("files -> features (paths read in the task) >= 1.3x Daft", "gpuimages_features_paths", "daft_features", 1.3),
    Goal("files -> features (paths read in the task) >= 3x Ray Data", "gpuimages_features_paths", "ray_features",
         3.0),
    Goal("bytes -> features >= 3x Ray Data", "gpuimages_features", "ray_features", 3.0),
    Goal("bytes -> features >= 1x the Spark recipe", "gpuimages_features", "recipe_features", 1.0),
)
#: read_images' full decode against the in-Spark bound (libjpeg-turbo ceiling + Spark floor).
BOUND_GOAL = 0.9


# --- which engines are here ----------------------------------------------------------------------


def _version(dist: str) -> str | None:
    try:
        from importlib.metadata import PackageNotFoundError, version

        return version(dist)
    except PackageNotFoundError:
        return None


def peer_versions() -> dict[str, str | None]:
    """Versions of Daft and Ray Data (None where the package, or Ray's ``data`` part, cannot be imported)."""
    out: dict[str, str | None] = {}
    try:
        import daft  # noqa: F401

        out["daft"] = _version("daft")
    except ImportError:
        out["daft"] = None
    try:
        import ray.data  # noqa: F401

        out["ray"] = _version("ray")
    except ImportError:
        out["ray"] = None
    for name, ver in out.items():
        if ver is None:
            log.warning("%s is not installed (pip install \"gpuimages[peers]\"): its rows are skipped", name)
    return out


# --- shared per-image work of the peers' user functions ------------------------------------------


def thumbnail_jpeg(rgb: np.ndarray, short: int = SHORT_SIDE, quality: int = QUALITY) -> bytes:
    """An RGB array resized (bilinear) so its shorter side is ``short`` and encoded as JPEG 4:2:0 at ``quality``:
    the function a Daft or Ray user hands the decoded image to. Sizes follow gpuimages' rounding."""
    from gpuimages.transforms.ops import shorter_side_size

    height, width = shorter_side_size(rgb.shape[0], rgb.shape[1], short)
    im = Image.fromarray(rgb).resize((width, height), Image.BILINEAR)
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=quality, subsampling=2)
    return buf.getvalue()


def jpeg_pixels(blob: bytes) -> int:
    """Pixel bytes of an 8-bit JPEG from its header (height x width x channels)."""
    with Image.open(io.BytesIO(blob)) as im:
        return im.height * im.width * len(im.getbands())


def _onnx_session(model_path: str) -> Any:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    return ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])


def _prepare(rgb_batch: np.ndarray) -> np.ndarray:
    from gpuimages.models.base import InputFormat
    from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD

    return InputFormat("NCHW", IMAGENET_MEAN, IMAGENET_STD).prepare(rgb_batch)


# --- Daft ----------------------------------------------------------------------------------------


def arrow_pixel_bytes(array: Any) -> int:
    """uint8 values under an Arrow (extension) array of images: a struct's ``data`` list or a fixed-size list."""
    import pyarrow as pa

    if isinstance(array, pa.ChunkedArray):
        return sum(arrow_pixel_bytes(chunk) for chunk in array.chunks)
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    if pa.types.is_struct(array.type):
        return arrow_pixel_bytes(array.field("data"))
    if pa.types.is_list(array.type) or pa.types.is_large_list(array.type) or pa.types.is_fixed_size_list(array.type):
        return arrow_pixel_bytes(array.flatten())
    return len(array)


def daft_images(folder: str, resize: tuple[int, int] | None = None) -> Any:
    """Daft: list ``folder``'s JPEGs, read each file, decode to RGB (and resize to ``(height, width)``)."""
    import daft
    from daft.functions import decode_image, download
    from daft.functions import resize as daft_resize

    image = decode_image(download(daft.col("path")), mode="RGB")
    if resize is not None:
        image = daft_resize(image, resize[1], resize[0])
    return daft.from_glob_path(f"{folder}/*.jpg").select(daft.col("path"), image.alias("image"))


def daft_decode(folder: str, resize: tuple[int, int] | None = None) -> tuple[int, int]:
    """Rows and pixel bytes of :func:`daft_images`, partition by partition (nothing kept)."""
    rows = pixels = 0
    for part in daft_images(folder, resize).iter_partitions():
        table = part.to_arrow()
        rows += table.num_rows
        pixels += arrow_pixel_bytes(table.column("image"))
    return rows, pixels


def daft_thumbs(folder: str, dest: str) -> None:
    """Daft's decode + :func:`thumbnail_jpeg` in a batch function -> Parquet under ``dest`` (replaced)."""
    import daft

    shutil.rmtree(dest, ignore_errors=True)

    @daft.func.batch(return_dtype=daft.DataType.binary())
    def thumbnails(images: Any) -> list[bytes]:
        return [thumbnail_jpeg(rgb) for rgb in images.to_pylist()]

    daft_images(folder).select(daft.col("path"), thumbnails(daft.col("image")).alias("jpg")).write_parquet(dest)


def parquet_thumb_proof(dest: str, column: str = "jpg") -> tuple[int, int]:
    """Rows and thumbnail pixel bytes (from the JPEG headers) of the Parquet files under ``dest``."""
    import pyarrow.parquet as pq

    rows = pixels = 0
    for path in sorted(Path(dest).rglob("*.parquet")):
        for blob in pq.read_table(path, columns=[column]).column(column).to_pylist():
            rows += 1
            pixels += jpeg_pixels(blob)
    return rows, pixels


def daft_features_frame(folder: str, model_path: str, cores: int) -> Any:
    """Daft: decode + resize to 224x224 in Rust, then a class UDF holding an onnxruntime session (1 thread)."""
    import daft
    import pyarrow as pa

    @daft.cls(max_concurrency=cores)
    class Featurize:
        def __init__(self, path: str) -> None:
            self.session = _onnx_session(path)
            self.name = self.session.get_inputs()[0].name

        @daft.method.batch(return_dtype=daft.DataType.list(daft.DataType.float32()), batch_size=MODEL_BATCH)
        def __call__(self, images: Any) -> Any:
            batch = np.stack(images.to_pylist())
            out = self.session.run(None, {self.name: _prepare(batch)})[0].astype(np.float32)
            return pa.array(list(out), pa.list_(pa.float32()))

    featurize = Featurize(model_path)
    frame = daft_images(folder, RESIZE)
    return frame.select(daft.col("path"), featurize(daft.col("image")).alias("features"))


def daft_features(folder: str, model_path: str, cores: int) -> dict[str, np.ndarray]:
    """``{file name: vector}`` from :func:`daft_features_frame`."""
    out = {}
    for part in daft_features_frame(folder, model_path, cores).iter_partitions():
        table = part.to_arrow()
        for path, vec in zip(table.column("path").to_pylist(), table.column("features").to_pylist(), strict=True):
            out[Path(path).name] = np.asarray(vec, np.float32)
    return out


# --- Ray Data ------------------------------------------------------------------------------------


def start_ray(cores: int) -> None:
    """A local Ray with ``cores`` CPUs, no dashboard, quiet logs (its processes are children of this one)."""
    import ray
    import ray.data

    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
             configure_logging=False)
    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)


def ray_decode(folder: str, resize: tuple[int, int] | None = None) -> tuple[int, int]:
    """Ray Data ``read_images`` (RGB, optionally resized) streamed with ``iter_batches``: rows and pixel bytes."""
    import ray.data

    rows = pixels = 0
    dataset = ray.data.read_images(folder, mode="RGB", size=resize)
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=MODEL_BATCH):
        for rgb in batch["image"]:
            rows += 1
            pixels += rgb.nbytes
    return rows, pixels


def _ray_thumbnails(batch: dict[str, Any]) -> dict[str, Any]:
    keys = [Path(p).stem for p in batch["path"]]
    return {"__key__": np.asarray(keys, dtype=object),
            "jpg": np.asarray([thumbnail_jpeg(rgb) for rgb in batch["image"]], dtype=object)}


def ray_thumbs(folder: str, dest: str) -> None:
    """Ray Data ``read_images`` + :func:`thumbnail_jpeg` in ``map_batches`` -> ``write_webdataset(dest)``."""
    import ray.data

    shutil.rmtree(dest, ignore_errors=True)
    dataset = ray.data.read_images(folder, mode="RGB", include_paths=True)
    # encoder=None: the JPEG bytes are written as they are (Ray's default encoder wants PIL images, saves q75)
    dataset.map_batches(_ray_thumbnails, batch_size=MODEL_BATCH).write_webdataset(dest, encoder=None)


def tar_thumb_proof(dest: str) -> tuple[int, int]:
    """Samples and thumbnail pixel bytes (from the JPEG headers) of the ``.jpg`` members of the tars under ``dest``."""
    rows = pixels = 0
    for path in sorted(Path(dest).rglob("*.tar")):
        with tarfile.open(path) as tar:
            for member in tar:
                if member.isfile() and member.name.endswith(".jpg"):
                    rows += 1
                    pixels += jpeg_pixels(tar.extractfile(member).read())
    return rows, pixels


class RayFeaturizer:
    """Ray Data actor: one onnxruntime session (1 thread), RGB 224x224 batches -> vectors."""

    def __init__(self, model_path: str) -> None:
        self.session = _onnx_session(model_path)
        self.name = self.session.get_inputs()[0].name

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        out = self.session.run(None, {self.name: _prepare(np.stack(list(batch["image"])))})[0]
        return {"path": batch["path"], "features": out.astype(np.float32)}


def ray_features(folder: str, model_path: str, cores: int) -> dict[str, np.ndarray]:
    """Ray Data ``read_images(size=224x224)`` + ``map_batches`` with :class:`RayFeaturizer` on ``cores`` actors
    (half a CPU each, so read tasks still get CPUs): ``{file name: vector}``."""
    import ray.data

    dataset = ray.data.read_images(folder, mode="RGB", size=RESIZE, include_paths=True).map_batches(
        RayFeaturizer, fn_constructor_args=(model_path,), concurrency=cores, num_cpus=0.5, batch_size=MODEL_BATCH)
    out = {}
    for batch in dataset.iter_batches(batch_format="numpy", batch_size=None):
        for path, vec in zip(batch["path"], batch["features"], strict=True):
            out[Path(path).name] = np.asarray(vec)
    return out


# --- no-Spark ceilings ---------------------------------------------------------------------------


def _transcode_chunk(paths: list[str]) -> tuple[int, int]:
    from benchmarks.encode import pillow_transcode_file

    return len(paths), sum(pillow_transcode_file(p) for p in paths)


class TranscodePool:
    """Pillow alone (read, draft, bilinear resize to a shorter side of 256, JPEG q90) in N processes."""

    def __init__(self, processes: int) -> None:
        self._pool = multiprocessing.get_context("spawn").Pool(processes)

    def run(self, paths: Sequence[str]) -> tuple[int, int]:
        chunks = [list(paths[i : i + 16]) for i in range(0, len(paths), 16)]
        n = b = 0
        for k, size in self._pool.imap_unordered(_transcode_chunk, chunks):
            n, b = n + k, b + size
        return n, b

    def close(self) -> None:
        self._pool.close()
        self._pool.join()


# --- gpuimages -----------------------------------------------------------------------------------


def gpuimages_thumbs(spark: Any, folder: str, dest: str) -> None:
    """``write_webdataset(transcode_files(folder, resize=256, JPEG q90), dest)``, ``dest`` replaced."""
    import gpuimages
    from gpuimages.transcode import transcode_files

    shutil.rmtree(dest, ignore_errors=True)
    jobs = transcode_files(spark, folder, resize=SHORT_SIDE, format="jpeg", quality=QUALITY, device="cpu")
    gpuimages.write_webdataset(jobs, dest).collect()


def gpuimages_transcode(spark: Any, folder: str) -> None:
    """``transcode_files(folder, resize=256, JPEG q90)`` materialised with a ``noop`` write."""
    from gpuimages.transcode import transcode_files

    baselines.noop_write(transcode_files(spark, folder, resize=SHORT_SIDE, format="jpeg", quality=QUALITY,
                                         device="cpu"))


def spark_features(df: Any) -> dict[str, np.ndarray]:
    """``{file name: vector}`` of a DataFrame with ``path`` and ``features`` (ML vectors or arrays)."""
    out = {}
    for row in df.collect():
        vec = row["features"]
        out[Path(row["path"]).name] = np.asarray(vec.toArray() if hasattr(vec, "toArray") else vec, np.float32)
    return out


# --- cases ---------------------------------------------------------------------------------------


def _case(key: str, label: str, data: DataSet, warm: Callable[[], tuple[int, int]], timed: Callable[[], object],
          expect_pixels: int | None, kind: str = "peer") -> Case:
    return Case(key, label, kind, data.count, data.total_bytes, warm, lambda: timed(), data.count, expect_pixels)


def decode_cases(spark: Any, data: DataSet, cores: int, peers: dict, pool: Any, resize: bool, full: bool) -> list[Case]:
    """Full decode (and/or resize 224) rows: Spark, gpuimages, the bound's parts, Daft, Ray."""
    from benchmarks.read import turbo_case
    from gpuimages import decode_images, read_images

    folder = str(data.folder)
    cases = [baselines.spark_case(spark, "spark_image", "Spark image source (format 'image')", data,
                                  lambda: baselines.spark_image_source(spark, folder),
                                  expect_pixels=data.decoded_bytes)]
    if full:
        cases += [
            baselines.spark_case(spark, "gpuimages_cpu", "gpuimages read_images(device='cpu')", data,
                                 lambda: read_images(spark, folder, device="cpu"), expect_pixels=data.decoded_bytes),
            baselines.spark_case(spark, "decode_images", "binaryFile + gpuimages decode_images", data,
                                 lambda: decode_images(spark.read.format("binaryFile").load(folder), "content",
                                                       origin_col="path", device="cpu"),
                                 expect_pixels=data.decoded_bytes),
            baselines.spark_case(spark, "spark_floor", "floor: Spark moving files in, pixels out", data,
                                 lambda: baselines.floor_frame(spark, folder, cores), expect_pixels=data.decoded_bytes),
            turbo_case(pool, "turbo", f"ceiling: libjpeg-turbo, {cores} processes, no Spark", data, None),
        ]
        if peers.get("daft"):
            cases.append(_case("daft_decode", f"Daft {peers['daft']} decode_image", data,
                               lambda: daft_decode(folder), lambda: daft_decode(folder), data.decoded_bytes))
        if peers.get("ray"):
            cases.append(_case("ray_decode", f"Ray Data {peers['ray']} read_images", data,
                               lambda: ray_decode(folder), lambda: ray_decode(folder), data.decoded_bytes))
    if resize:
        resized = data.resized_bytes(RESIZE)
        cases.append(baselines.spark_case(spark, "gpuimages_cpu_resize", "gpuimages read_images(cpu, resize=224)",
                                          data, lambda: read_images(spark, folder, device="cpu", resize=RESIZE),
                                          expect_pixels=resized))
        if peers.get("daft"):
            cases.append(_case("daft_resize", "Daft decode_image + resize 224", data,
                               lambda: daft_decode(folder, RESIZE), lambda: daft_decode(folder, RESIZE), resized))
        if peers.get("ray"):
            cases.append(_case("ray_resize", "Ray Data read_images(size=224)", data,
                               lambda: ray_decode(folder, RESIZE), lambda: ray_decode(folder, RESIZE), resized))
    return cases


def thumbs_cases(spark: Any, data: DataSet, peers: dict, pool: TranscodePool, work: Path, suffix: str) -> list[Case]:
    """Thumbnails -> shards rows on ``data``; keys end in ``suffix`` (``""`` or ``"_large"``)."""
    folder = str(data.folder)
    dest = {name: str(work / f"{name}{suffix}") for name in ("gpuimages", "daft", "ray")}
    paths = data.paths()

    def gpuimages_warm() -> tuple[int, int]:
        gpuimages_thumbs(spark, folder, dest["gpuimages"])
        return tar_thumb_proof(dest["gpuimages"])

    cases = [
        _case(f"gpuimages_thumbs{suffix}", "gpuimages write_webdataset(transcode_files)", data, gpuimages_warm,
              lambda: gpuimages_thumbs(spark, folder, dest["gpuimages"]), None, "spark"),
        _case(f"gpuimages_transcode{suffix}", "gpuimages transcode_files (noop write)", data,
              lambda: (gpuimages_transcode(spark, folder), (data.count, 0))[1],
              lambda: gpuimages_transcode(spark, folder), None, "spark"),
        _case(f"pillow_thumbs{suffix}", "ceiling: Pillow draft+resize+encode, no Spark", data,
              lambda: (pool.run(paths)[0], 0), lambda: pool.run(paths), None, "ceiling"),
    ]
    if peers.get("daft"):
        def daft_warm() -> tuple[int, int]:
            daft_thumbs(folder, dest["daft"])
            return parquet_thumb_proof(dest["daft"])

        cases.append(_case(f"daft_thumbs{suffix}", "Daft decode_image + Pillow UDF -> Parquet", data, daft_warm,
                           lambda: daft_thumbs(folder, dest["daft"]), None))
    if peers.get("ray"):
        def ray_warm() -> tuple[int, int]:
            ray_thumbs(folder, dest["ray"])
            return tar_thumb_proof(dest["ray"])

        cases.append(_case(f"ray_thumbs{suffix}", "Ray Data read_images + map_batches -> webdataset", data,
                           ray_warm, lambda: ray_thumbs(folder, dest["ray"]), None))
    return cases


def features_cases(spark: Any, data: DataSet, cores: int, peers: dict, model_path: str,
                   vectors: dict[str, dict[str, np.ndarray]]) -> tuple[list[Case], dict[str, Any]]:
    """Bytes -> features rows; each untimed pass stores its vectors in ``vectors[key]``. The dict returned
    holds the ceiling's process pool (``"pool"``, started on first use) for the caller to close."""
    from benchmarks import features

    folder = str(data.folder)
    paths = data.paths()
    ceiling: dict[str, Any] = {}

    def spark_rows(key: str, make: Callable[[], Any]) -> Case:
        def warm() -> tuple[int, int]:
            vectors[key] = spark_features(make())
            return len(vectors[key]), 0

        return _case(key, "", data, warm, lambda: baselines.noop_write(make()), None, "spark")

    cases = [
        spark_rows("gpuimages_features", lambda: features.bytes_frame(spark, folder, model_path)),
        spark_rows("gpuimages_features_paths", lambda: features.paths_frame(spark, folder, model_path)),
        spark_rows("recipe_features", lambda: features.recipe_frame(spark, folder, model_path)),
    ]
    cases[0].label = "gpuimages ImageFeaturizer(onnx) on binaryFile bytes"
    cases[1].label = "gpuimages ImageFeaturizer(onnx) on paths (read in the task)"
    cases[2].label = "recipe: pandas UDF (Pillow) + predict_batch_udf"

    def ceiling_run() -> tuple[int, int]:
        if "pool" not in ceiling:
            ceiling["pool"] = features.CeilingPool(cores, model_path)
        return ceiling["pool"].run(paths), 0

    cases.append(_case("ceiling_features", f"ceiling: Pillow + onnxruntime, {cores} processes", data, ceiling_run,
                       ceiling_run, None, "ceiling"))
    if peers.get("daft"):
        def daft_warm() -> tuple[int, int]:
            vectors["daft_features"] = daft_features(folder, model_path, cores)
            return len(vectors["daft_features"]), 0

        cases.append(_case("daft_features", "Daft decode + resize + class UDF (onnxruntime)", data, daft_warm,
                           lambda: daft_features(folder, model_path, cores), None))
    if peers.get("ray"):
        def ray_warm() -> tuple[int, int]:
            vectors["ray_features"] = ray_features(folder, model_path, cores)
            return len(vectors["ray_features"]), 0

        cases.append(_case("ray_features", "Ray Data read_images(size) + map_batches actors", data, ray_warm,
                           lambda: ray_features(folder, model_path, cores), None))
    return cases, ceiling


# --- checks --------------------------------------------------------------------------------------


def vector_agreement(vectors: dict[str, dict[str, np.ndarray]], reference: str = "gpuimages_features") -> dict:
    """Per engine: files in common with ``reference`` and the median/min cosine of their vectors."""
    ref = vectors.get(reference, {})
    out = {}
    for key, vecs in vectors.items():
        common = sorted(set(vecs) & set(ref))
        if not common:
            out[key] = {"files": len(vecs), "common": 0}
            continue
        a = np.stack([vecs[k] for k in common]).astype(np.float64)
        b = np.stack([ref[k] for k in common]).astype(np.float64)
        cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1) + 1e-12)
        out[key] = {"files": len(vecs), "common": len(common), "median_cosine": round(float(np.median(cos)), 5),
                    "min_cosine": round(float(cos.min()), 5)}
    return out


def in_spark_bound(results: list[Result]) -> dict:
    """read_images' and decode_images' full decode against ``1 / (1/turbo + 1/floor)`` (and by CPU cost)."""
    by_key = {r.key: r for r in results}
    turbo, floor = by_key.get("turbo"), by_key.get("spark_floor")
    if turbo is None or floor is None:
        return {}
    bound = 1 / (1 / turbo.images_per_s + 1 / floor.images_per_s)
    out: dict = {"bound_images_per_s": round(bound, 1), "goal": BOUND_GOAL}
    cpu_bound = None
    if turbo.cpu_ms_per_image and floor.cpu_ms_per_image:
        cpu_bound = turbo.cpu_ms_per_image + floor.cpu_ms_per_image
        out["cpu_bound_ms_per_image"] = round(cpu_bound, 3)
    for key in ("gpuimages_cpu", "decode_images"):
        row = by_key.get(key)
        if row is None:
            continue
        out[f"{key}_vs_bound"] = round(row.images_per_s / bound, 3)
        if cpu_bound and row.cpu_ms_per_image:
            out[f"{key}_vs_cpu_bound"] = round(cpu_bound / row.cpu_ms_per_image, 3)
    return out


# --- measuring -----------------------------------------------------------------------------------


def measure_section(name: str, cases: list[Case], repeats: int) -> list[Result]:
    """:func:`benchmarks.read.measure` on the section's cases, with the load average logged before and after."""
    from benchmarks.read import measure

    load = os.getloadavg()
    start = time.perf_counter()
    results = measure([c for c in cases if c.images], repeats)
    log.info("section %s: %.0f s, load average %s -> %s", name, time.perf_counter() - start,
             tuple(round(x, 2) for x in load), tuple(round(x, 2) for x in os.getloadavg()))
    for r in results:
        r.spark_ref = "section:" + name
    return results


def format_section(name: str, results: list[Result], load: tuple[tuple[float, ...], tuple[float, ...]]) -> str:
    """Rows of a section: img/s, CPU ms/img, rows and pixel proof."""
    head = f"{'row':<56} {'img/s':>8} {'CPU ms/img':>10} {'rows':>6} {'pixel bytes':>14}  ok"
    lines = [f"[{name}] load average {tuple(round(x, 2) for x in load[0])} -> "
             f"{tuple(round(x, 2) for x in load[1])}", head, "-" * len(head)]
    for r in results:
        cpu = "-" if r.cpu_ms_per_image is None else f"{r.cpu_ms_per_image:.2f}"
        lines.append(f"{r.label[:56]:<56} {r.images_per_s:>8.0f} {cpu:>10} {r.rows:>6} {r.pixel_bytes:>14}  "
                     f"{'yes' if r.output_ok else 'NO'}")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> dict:
    """Every section asked for, in one process; returns the JSON payload (also written to ``--out-dir``)."""
    from benchmarks.read import TurboPool
    from gpuimages.models.onnx_builder import save_small_cnn
    from gpuimages.session import local_session

    cores = args.cores
    sections = args.sections
    peers = peer_versions()
    crops = photo_set(args.count, root=args.data_root)
    large = photo_set(args.large_count, root=args.data_root, size=LARGE_SIZE) if args.large_count else None
    work = Path(tempfile.mkdtemp(prefix="gpuimages-bench-peers-"))
    if peers.get("daft"):
        import daft

        daft.set_runner_native()  # else Daft runs on the Ray started below, as it does once Ray is up
    if peers.get("ray"):
        start_ray(cores)
    spark = local_session(f"local[{cores}]", "gpuimages-bench-peers", **SESSION_CONF)
    spark.sparkContext.setLogLevel("ERROR")
    turbo_pool = TurboPool(cores)
    transcode_pool = TranscodePool(cores)
    payload: dict[str, Any] = {"sections": {}, "load_average": {"start": os.getloadavg()}}
    all_results: list[Result] = []
    texts = []
    vectors: dict[str, dict[str, np.ndarray]] = {}
    ceiling_holder: dict[str, Any] = {}
    try:
        plan: list[tuple[str, list[Case]]] = []
        if "decode" in sections or "resize" in sections:
            plan.append(("decode" if "resize" not in sections else "decode+resize" if "decode" in sections
                         else "resize",
                         decode_cases(spark, crops, cores, peers, turbo_pool, "resize" in sections,
                                      "decode" in sections)))
        if "thumbs" in sections:
            plan.append(("thumbs, crops", thumbs_cases(spark, crops, peers, transcode_pool, work, "")))
            if large is not None:
                plan.append(("thumbs, large photographs", thumbs_cases(spark, large, peers, transcode_pool, work,
                                                                       "_large")))
        if "features" in sections:
            model_path = str(save_small_cnn(Path(args.data_root) / "features-cnn.onnx"))
            cases, ceiling_holder = features_cases(spark, crops, cores, peers, model_path, vectors)
            plan.append(("features", cases))
        for name, cases in plan:
            load_before = os.getloadavg()
            results = measure_section(name, cases, args.repeats)
            load_after = os.getloadavg()
            all_results += results
            texts.append(format_section(name, results, (load_before, load_after)))
            payload["sections"][name] = {"load_average": [load_before, load_after],
                                         "rows": [r.to_dict() for r in results]}
    finally:
        turbo_pool.close()
        transcode_pool.close()
        if ceiling_holder.get("pool") is not None:
            ceiling_holder["pool"].close()
        if peers.get("ray"):
            import ray

            ray.shutdown()
        spark.stop()
        shutil.rmtree(work, ignore_errors=True)
    payload["load_average"]["end"] = os.getloadavg()
    goals = check_goals(all_results, GOALS)
    bound = in_spark_bound(all_results)
    thumbs = {r.key: r.pixel_bytes for r in all_results if "_thumbs" in r.key and not r.key.startswith("pillow")}
    payload.update(
        machine=machine_info(), peers=peers, cores=cores, repeats=args.repeats,
        data={"crops": crops.summary(), "large": large.summary() if large else None},
        goals=[g.to_dict() for g in goals], goals_text=format_goals(goals), bound=bound, thumbnail_pixels=thumbs,
        vectors=vector_agreement(vectors) if vectors else {}, text=texts,
    )
    write_json(args.out_dir / "peers.json", payload)
    return payload


def format_report(p: dict) -> str:
    """Sections, proofs, goals and the bound as text."""
    versions = p["machine"]["versions"]
    lines = [f"{p['data']['crops']['count']} photo crops ({p['data']['crops']['mean_kb']} KB mean)"
             + (f", {p['data']['large']['count']} large photographs ({p['data']['large']['mean_kb']} KB mean, "
                f"{p['data']['large']['mean_width']:.0f}x{p['data']['large']['mean_height']:.0f} mean)"
                if p["data"]["large"] else "")
             + f"; local[{p['cores']}], best of {p['repeats']}; pyspark {versions.get('pyspark')}, "
             f"Daft {p['peers'].get('daft') or 'not installed'}, Ray {p['peers'].get('ray') or 'not installed'}",
             f"load average at start {tuple(round(x, 2) for x in p['load_average']['start'])}, "
             f"at end {tuple(round(x, 2) for x in p['load_average']['end'])}", ""]
    for text in p["text"]:
        lines += [text, ""]
    if p["thumbnail_pixels"]:
        lines.append("thumbnail pixel bytes read back from what each engine wrote: "
                     + ", ".join(f"{k} {v}" for k, v in p["thumbnail_pixels"].items()))
    if p["vectors"]:
        lines.append("feature vectors against gpuimages': " + json.dumps(p["vectors"]))
    b = p["bound"]
    if b:
        lines.append(f"in-Spark bound for full decode (libjpeg-turbo ceiling + Spark floor): "
                     f"{b['bound_images_per_s']:.0f} img/s, {b.get('cpu_bound_ms_per_image', '-')} CPU ms/img; "
                     f"read_images {b.get('gpuimages_cpu_vs_bound', '-')} of it "
                     f"({b.get('gpuimages_cpu_vs_cpu_bound', '-')} by CPU), decode_images "
                     f"{b.get('decode_images_vs_bound', '-')} ({b.get('decode_images_vs_cpu_bound', '-')} by CPU); "
                     f"goal {BOUND_GOAL}")
    lines.append(p["goals_text"])
    missing = [name for name, ver in p["peers"].items() if ver is None]
    if missing:
        lines.append("not installed, rows and goals skipped: " + ", ".join(missing)
                     + ' (pip install "gpuimages[peers]")')
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.peers", description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="300 crops, 12 large photographs, best of 2")
    p.add_argument("--count", type=int, help="photo crops (default 1000; quick 300)")
    p.add_argument("--large-count", type=int, help="large photographs for thumbs (default 40; quick 12; 0 skips)")
    p.add_argument("--repeats", type=int, help="timed passes per row, best kept (default 3; quick 2)")
    p.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated among {', '.join(SECTIONS)}")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="local[N], Ray's CPUs, ceiling processes")
    p.add_argument("--out-dir", type=Path, default=DEFAULT_OUT)
    p.add_argument("--data-root", default=str(DEFAULT_ROOT))
    args = p.parse_args(argv)
    args.count = args.count or (300 if args.quick else 1000)
    args.large_count = args.large_count if args.large_count is not None else (12 if args.quick else 40)
    args.repeats = args.repeats or (2 if args.quick else 3)
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        p.error(f"unknown sections {sorted(unknown)}; choose among {', '.join(SECTIONS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run, print the report; exit status 1 when an engine's rows or pixel bytes were wrong."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("py4j", "tracing", "tracing.span"):  # Daft logs every operator span at INFO
        logging.getLogger(noisy).setLevel(logging.WARNING)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    payload = run(args)
    print(format_report(payload))
    rows_ok = all(r["output_ok"] for s in payload["sections"].values() for r in s["rows"])
    return 0 if rows_ok else 1


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

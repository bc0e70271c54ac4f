#!/usr/bin/env python
"""Encoded bytes to CNN features: gpuimages' fused task against the usual recipe and the no-Spark ceiling.

Same files (JPEG crops of real photographs, :func:`benchmarks.data.photo_set`), the same small CNN
(:func:`gpuimages.models.onnx_builder.small_cnn`: 224x224 input, 8 outputs), one Spark session:

(a) ``recipe``: the spark-rapids-examples way: ``binaryFile`` -> a pandas UDF decoding each file with
    Pillow into a normalised float array -> ``pyspark.ml.functions.predict_batch_udf`` with onnxruntime;
(b) ``structs``: ``read_images(resize=224x224)`` -> ``ImageFeaturizer(backbone="onnx")`` on image structs;
(c) ``bytes``: ``ImageFeaturizer(backbone="onnx")`` on ``binaryFile``'s ``content`` (decode, resize,
    normalise and the model in one task);
ceiling: Pillow decode (draft) + resize + normalise and onnxruntime in N processes, no Spark;
(c') ``bytes_pillow_path`` (with ``--same-run``): (c) with ``GPUIMAGES_JPEG_DECODER=pillow`` in the
    workers, the Pillow path as before the libjpeg-turbo one, in the same session.

Goals on CPU: (c) >= 5x (a) and (c) >= 85% of the ceiling; (c)'s vectors equal the per-file reference
(Pillow full decode -> bilinear resize -> normalise -> onnxruntime) with median cosine >= 0.999.
Spark cases are timed with a ``noop`` write of the vector column (listing included); every case runs once per
round (round-robin, after one warm pass each), best of ``--repeats`` kept; the load average is recorded.

    python -m benchmarks.features --quick          # 200 files, one timed pass
    python -m benchmarks.features --count 1000 --repeats 3 --json out.json
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import multiprocessing
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd  # module level: pandas UDF type hints are resolved from the module's globals

try:
    import gpuimages  # noqa: F401
except ImportError:  # run from a checkout without installing
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.data import DEFAULT_ROOT, photo_set  # noqa: E402
from benchmarks.read import timed_call  # noqa: E402
from gpuimages.models.onnx_builder import IMAGENET_MEAN, IMAGENET_STD, save_small_cnn  # noqa: E402

log = logging.getLogger("benchmarks.features")

SIZE = (224, 224)
#: Images per model call in every case.
MODEL_BATCH = 64
GOAL_VS_RECIPE = 5.0
GOAL_VS_CEILING = 0.85
GOAL_COSINE = 0.999
#: (c) against (c) on the Pillow path, measured in the same run.
GOAL_VS_PILLOW_PATH = 1.1


# --- (a) the spark-rapids-examples recipe --------------------------------------------------------


def recipe_frame(spark: Any, folder: str, model_path: str) -> Any:
    """binaryFile -> pandas UDF (Pillow -> float array) -> predict_batch_udf(onnxruntime), as users write it."""
    from pyspark.ml.functions import predict_batch_udf
    from pyspark.sql import functions as F
    from pyspark.sql.types import ArrayType, FloatType

    mean = np.asarray(IMAGENET_MEAN, np.float32)
    std = np.asarray(IMAGENET_STD, np.float32)
    height, width = SIZE

    @F.pandas_udf(ArrayType(FloatType()))
    def preprocess(content: pd.Series) -> pd.Series:
        from PIL import Image

        def one(blob: bytes) -> np.ndarray:
            im = Image.open(io.BytesIO(blob)).convert("RGB").resize((width, height), Image.BILINEAR)
            x = (np.asarray(im, dtype=np.float32) / 255.0 - mean) / std
            return x.transpose(2, 0, 1).reshape(-1)

        return pd.Series([one(b) for b in content])

    def make_predict_fn():
        import onnxruntime as ort

        session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name

        def predict(inputs: np.ndarray) -> np.ndarray:
            return session.run(None, {name: inputs})[0]

        return predict

    classify = predict_batch_udf(make_predict_fn, return_type=ArrayType(FloatType()), batch_size=MODEL_BATCH,
                                 input_tensor_shapes=[[3, height, width]])
    raw = spark.read.format("binaryFile").load(folder)
    return raw.select("path", classify(preprocess(F.col("content"))).alias("features"))


# --- (b) and (c): gpuimages --------------------------------------------------------------------


def _featurizer(input_col: str, model_path: str) -> Any:
    from gpuimages.ml import ImageFeaturizer

    return ImageFeaturizer(inputCol=input_col, outputCol="features", backbone="onnx", modelPath=model_path,
                           imageSize=list(SIZE), mean=list(IMAGENET_MEAN), std=list(IMAGENET_STD),
                           batchSize=MODEL_BATCH, device="cpu")


def structs_frame(spark: Any, folder: str, model_path: str) -> Any:
    """read_images (resized while decoding) -> ImageFeaturizer on image structs."""
    import gpuimages

    images = gpuimages.read_images(spark, folder, resize=SIZE, device="cpu")
    return _featurizer("image", model_path).transform(images).select("image.origin", "features")


def bytes_frame(spark: Any, folder: str, model_path: str) -> Any:
    """binaryFile -> ImageFeaturizer on the encoded bytes (the fused task)."""
    raw = spark.read.format("binaryFile").load(folder)
    return _featurizer("content", model_path).transform(raw).select("path", "features")


def paths_frame(spark: Any, folder: str, model_path: str) -> Any:
    """binaryFile's ``path`` alone (Spark reads no file) -> ImageFeaturizer, the files read in its task."""
    paths = spark.read.format("binaryFile").load(folder).select("path")
    return _featurizer("path", model_path).transform(paths).select("path", "features")


# --- the ceiling: Pillow + onnxruntime in N processes, no Spark -----------------------------------

_WORKER: dict[str, Any] = {}


def _init_worker(model_path: str) -> None:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    _WORKER["session"] = ort.InferenceSession(model_path, sess_options=options, providers=["CPUExecutionProvider"])


def _ceiling_chunk(paths: list[str]) -> int:
    from PIL import Image

    from gpuimages.models.base import InputFormat

    height, width = SIZE
    fmt = InputFormat("NCHW", IMAGENET_MEAN, IMAGENET_STD)
    images = []
    for path in paths:
        with open(path, "rb") as handle:
            im = Image.open(io.BytesIO(handle.read()))
        if im.format == "JPEG":
            im.draft("RGB", (2 * width, 2 * height))
        images.append(np.asarray(im.convert("RGB").resize((width, height), Image.BILINEAR)))
    session = _WORKER["session"]
    name = session.get_inputs()[0].name
    out = session.run(None, {name: fmt.prepare(np.stack(images))})[0]
    return int(out.shape[0])


class CeilingPool:
    """Pillow + onnxruntime in ``processes`` worker processes (spawned once, one session each)."""

    def __init__(self, processes: int, model_path: str) -> None:
        self._pool = multiprocessing.get_context("spawn").Pool(processes, _init_worker, (model_path,))

    def run(self, paths: Sequence[str]) -> int:
        chunks = [list(paths[i : i + MODEL_BATCH]) for i in range(0, len(paths), MODEL_BATCH)]
        return sum(self._pool.imap_unordered(_ceiling_chunk, chunks))

    def close(self) -> None:
        self._pool.close()
        self._pool.join()


# --- measuring -----------------------------------------------------------------------------------


def time_rounds(
    cases: dict[str, Callable[[], object]], repeats: int, prepare: dict[str, Callable[[], object]] | None = None
) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """One warm pass of each case, then ``repeats`` rounds running every case once (round-robin, so a
    change in the machine's load hits every case alike). Returns wall seconds and process-tree CPU
    seconds (driver, JVM, Python workers, the ceiling's pool) of each pass, per case. ``prepare``: an
    untimed step run right before each timed pass of the case with that key."""
    for key, case in cases.items():
        log.info("warm pass: %s", key)
        case()
    seconds: dict[str, list[float]] = {key: [] for key in cases}
    cpu: dict[str, list[float]] = {key: [] for key in cases}
    for r in range(repeats):
        for key, case in cases.items():
            if prepare and key in prepare:
                prepare[key]()
            wall, used = timed_call(case)
            seconds[key].append(wall)
            if used is not None:
                cpu[key].append(used)
            log.info("round %d: %s %.2f s wall, %s s CPU", r + 1, key, wall, used)
    return seconds, cpu


def noop_write(df: Any) -> None:
    df.write.format("noop").mode("overwrite").save()


def accuracy(spark: Any, folder: str, model_path: str, sample: int) -> dict:
    """Cosine similarity of (c)'s vectors with the per-file reference on ``sample`` files."""
    from benchmarks.reference import cosine, reference_features

    rows = sorted(bytes_frame(spark, folder, model_path).collect(), key=lambda r: r["path"])[:sample]
    blobs = [Path(r["path"][len("file:"):]).read_bytes() for r in rows]
    ref = reference_features(blobs, model_path, SIZE, IMAGENET_MEAN, IMAGENET_STD)
    sims = cosine(np.stack([r["features"].toArray() for r in rows]), ref)
    return {"files": len(rows), "median": float(np.median(sims)), "min": float(sims.min())}


def run(args: argparse.Namespace, spark: Any = None) -> dict:
    """Measure every case on one session (``spark``, or a new ``local[cores]`` one, stopped at the end)."""
    from gpuimages.session import local_session

    cores = args.cores
    load_start = os.getloadavg()
    data = photo_set(args.count, root=args.data_root)
    folder = str(data.folder)
    paths = [str(data.folder / f) for f in data.files]
    model_path = save_small_cnn(Path(args.data_root) / "features-cnn.onnx")
    log.info("%d photo JPEGs (%.1f KB mean) in %s; model %s", data.count, data.mean_kb, folder, model_path)

    own_session = spark is None
    if own_session:
        spark = local_session(f"local[{cores}]", "gpuimages-bench-features",
                              **{"spark.ui.showConsoleProgress": "false"})
        spark.sparkContext.setLogLevel("ERROR")
    pool = CeilingPool(cores, model_path)
    try:
        cases: dict[str, Callable[[], object]] = {
            "recipe": lambda: noop_write(recipe_frame(spark, folder, model_path)),
            "structs": lambda: noop_write(structs_frame(spark, folder, model_path)),
            "bytes": lambda: noop_write(bytes_frame(spark, folder, model_path)),
            "ceiling": lambda: pool.run(paths),
        }
        if args.skip_recipe:
            cases.pop("recipe")
        prepare: dict[str, Callable[[], object]] = {}
        if args.same_run:
            from benchmarks.read import PILLOW_ONLY, warm_workers, worker_env

            def bytes_pillow_path() -> None:
                with worker_env(spark, PILLOW_ONLY):
                    noop_write(bytes_frame(spark, folder, model_path))

            def stage(df: Any) -> Any:
                return _featurizer("content", model_path).transform(df).select("path", "features")

            cases["bytes_pillow_path"] = bytes_pillow_path
            # each environment has its own Python workers: keep both warm before every timed pass alike
            prepare = {"bytes": lambda: warm_workers(spark, paths, None, stage),
                       "bytes_pillow_path": lambda: warm_workers(spark, paths, PILLOW_ONLY, stage)}
        seconds, cpu = time_rounds(cases, args.repeats, prepare)
        check = accuracy(spark, folder, model_path, args.sample)
    finally:
        pool.close()
        if own_session:
            spark.stop()
    best = {key: min(values) for key, values in seconds.items()}

    rates = {k: data.count / v for k, v in best.items()}
    cpu_ms = {k: 1000 * min(v) / data.count for k, v in cpu.items() if v}
    ratios = {
        "bytes_vs_ceiling": rates["bytes"] / rates["ceiling"],
        "structs_vs_ceiling": rates["structs"] / rates["ceiling"],
    }
    if "bytes" in cpu_ms and "ceiling" in cpu_ms and cpu_ms["bytes"] > 0:
        ratios["bytes_vs_ceiling_cpu"] = cpu_ms["ceiling"] / cpu_ms["bytes"]
    if "bytes_pillow_path" in rates:
        ratios["bytes_vs_pillow_path"] = rates["bytes"] / rates["bytes_pillow_path"]
        if "bytes" in cpu_ms and "bytes_pillow_path" in cpu_ms and cpu_ms["bytes"] > 0:
            ratios["bytes_vs_pillow_path_cpu"] = cpu_ms["bytes_pillow_path"] / cpu_ms["bytes"]
    if "recipe" in rates:
        ratios["bytes_vs_recipe"] = rates["bytes"] / rates["recipe"]
        ratios["structs_vs_recipe"] = rates["structs"] / rates["recipe"]
    goals = {
        "bytes >= 85% of ceiling": ratios["bytes_vs_ceiling"] >= GOAL_VS_CEILING,
        "median cosine >= 0.999": check["median"] >= GOAL_COSINE,
    }
    if "bytes_vs_recipe" in ratios:
        goals["bytes >= 5x recipe"] = ratios["bytes_vs_recipe"] >= GOAL_VS_RECIPE
    if "bytes_vs_pillow_path" in ratios:
        met = ratios["bytes_vs_pillow_path"] >= GOAL_VS_PILLOW_PATH
        goals[f"bytes >= {GOAL_VS_PILLOW_PATH}x the Pillow path"] = met
    return {
        "files": data.count, "mean_kb": data.mean_kb, "cores": cores, "repeats": args.repeats,
        "images_per_s": rates, "cpu_ms_per_image": cpu_ms, "seconds": seconds, "ratios": ratios, "cosine": check,
        "goals": goals,
        "load_average": {"start": load_start, "end": os.getloadavg()},
    }


def format_report(report: dict) -> str:
    """The table, ratios and goals as text."""
    labels = {
        "recipe": "(a) binaryFile + pandas UDF (Pillow) + predict_batch_udf",
        "structs": "(b) read_images -> ImageFeaturizer(onnx) on structs",
        "bytes": "(c) ImageFeaturizer(onnx) on bytes (fused)",
        "ceiling": f"ceiling: Pillow + onnxruntime, {report['cores']} processes, no Spark",
        "bytes_pillow_path": "(c') (c) with the JPEG decoder forced to Pillow",
    }
    lines = [f"{report['files']} photo JPEGs ({report['mean_kb']:.1f} KB mean), 224x224 CNN, "
             f"best of {report['repeats']}, local[{report['cores']}]"]
    for key, label in labels.items():
        if key in report["images_per_s"]:
            cpu = report["cpu_ms_per_image"].get(key)
            cpu_text = f"{cpu:7.2f} CPU ms/img" if cpu is not None else ""
            lines.append(f"  {label:<62} {report['images_per_s'][key]:8.1f} img/s {cpu_text}")
    lines.append("  ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in report["ratios"].items()))
    c = report["cosine"]
    lines.append(f"  cosine vs per-file reference ({c['files']} files): median {c['median']:.6f}, min {c['min']:.6f}")
    lines.append("  goals: " + ", ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in report["goals"].items()))
    load = report["load_average"]
    lines.append(f"  load average (1/5/15 min): start {load['start']}, end {tuple(round(x, 2) for x in load['end'])}")
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.features", description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, help="photo JPEGs (default 1000; --quick 200)")
    p.add_argument("--repeats", type=int, help="timed passes, best kept (default 3; --quick 1)")
    p.add_argument("--sample", type=int, default=64, help="files compared with the per-file reference")
    p.add_argument("--cores", type=int, default=os.cpu_count() or 1, help="local[N] and ceiling processes")
    p.add_argument("--data-root", type=Path, default=DEFAULT_ROOT, help=f"data-set cache (default {DEFAULT_ROOT})")
    p.add_argument("--skip-recipe", action="store_true", help="leave out (a), the slowest case")
    p.add_argument("--same-run", action="store_true",
                   help="also (c) with GPUIMAGES_JPEG_DECODER=pillow in its workers (the Pillow path), same session")
    p.add_argument("--json", type=Path, help="write the report here")
    p.add_argument("--quick", action="store_true", help="200 files, one timed pass")
    args = p.parse_args(argv)
    args.count = args.count if args.count is not None else (200 if args.quick else 1000)
    args.repeats = args.repeats if args.repeats is not None else (1 if args.quick else 3)
    if args.count < 1 or args.repeats < 1 or args.sample < 1 or args.cores < 1:
        p.error("--count, --repeats, --sample and --cores must be >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the report; exit status 0 (goals are reported, not enforced)."""
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    report = run(args)
    print(format_report(report))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Smoke test of the benchmark code on a tiny set: structure, row counts, ratios and byte equality (not speed)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root

from benchmarks import baselines, read, report  # noqa: E402
from benchmarks.data import SetSpec, encode_one, jpeg_set, png_set  # noqa: E402

SMALL = (48, 64)


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("bench-data")
    return jpeg_set(20, root=root, size=SMALL), png_set(6, root=root, size=SMALL, rgba_share=0.5)


def test_data_is_seeded_and_cached(tiny_sets, tmp_path_factory):
    jpeg, png = tiny_sets
    spec = SetSpec("jpeg", 20, size=SMALL)
    assert encode_one(spec, 3) == encode_one(spec, 3)
    assert jpeg.count == 20 and png.count == 6
    assert sorted(p.name for p in jpeg.folder.iterdir()) == jpeg.files  # manifest lives outside the images folder
    again = jpeg_set(20, root=jpeg.folder.parent.parent, size=SMALL)
    assert again.meta["reused"] and again.encoded_bytes == jpeg.encoded_bytes
    assert {c for _, _, c in png.shapes} <= {3, 4}


def test_main_table_on_tiny_set(spark, tiny_sets, tmp_path):
    jpeg, png = tiny_sets
    resize = (16, 16)
    with baselines.PillowPool(2) as pool:
        cases = read.build_cases(spark, jpeg, png, pool=pool, resize=resize)
        results = read.measure(cases, repeats=1)
    keys = [r.key for r in results]
    assert keys == [
        "spark_image", "gpuimages_cpu", "gpuimages_cpu_resize", "decode_images", "recipe", "recipe_tuned",
        "spark_floor", "pillow", "pillow_resize", "spark_image_png", "gpuimages_cpu_png", "pillow_png",
    ]
    for r in results:
        assert r.rows == r.expect_rows, r.key
        assert r.output_ok, (r.key, r.pixel_bytes, r.expect_pixels)
        assert len(r.seconds) == 1 and r.images_per_s > 0
        # CPU time is read at clock-tick resolution (10 ms): a tiny pool run can read as 0.
        assert r.cpu_ms_per_image is None or r.cpu_ms_per_image >= 0
    by_key = {r.key: r for r in results}
    assert by_key["gpuimages_cpu_resize"].pixel_bytes == jpeg.resized_bytes(resize)
    assert by_key["spark_image_png"].pixel_bytes == png.decoded_bytes

    report.add_ratios(results)
    assert by_key["spark_image"].vs_spark == pytest.approx(1.0)
    assert by_key["gpuimages_cpu"].vs_ceiling == pytest.approx(
        by_key["gpuimages_cpu"].images_per_s / by_key["pillow"].images_per_s
    )
    assert by_key["gpuimages_cpu_png"].vs_spark is not None
    goals = report.check_goals(results)
    assert len(goals) == 5 and all(g.ratio is not None and g.ratio > 0 for g in goals)
    bounds = report.decode_bounds(results)
    assert 0 < bounds["bound_images_per_s"] < by_key["pillow"].images_per_s
    assert "Spark floor" in report.format_bounds(bounds)

    table = report.format_table(results, "tiny")
    assert "Spark image source" in table and "recipe hand-tuned" in table
    assert "Goals:" in report.format_goals(goals)
    path = report.write_json(tmp_path / "read.json", {"results": [r.to_dict() for r in results]})
    assert len(json.loads(path.read_text())["results"]) == len(results)


def test_recipe_and_decode_images_bytes_equal(spark, tiny_sets):
    jpeg, _ = tiny_sets
    equality = read.check_equal(spark, jpeg, cores=2, sample=8)
    assert equality["readers"] == ["decode_images", "recipe", "recipe_tuned", "read_images"]
    assert equality["sampled"] == 8
    assert equality["equal"], equality["mismatched"]
    assert spark.conf.get(baselines.ARROW_BATCH_KEY) != str(baselines.TUNED_ARROW_BATCH)  # restored


def test_parse_args_quick_defaults():
    quick = read.parse_args(["--quick"])
    assert (quick.count, quick.png_count, quick.repeats, quick.workers) == (300, 60, 1, [])
    full = read.parse_args(["--workers", "1,2", "--repeats", "2"])
    assert (full.count, full.repeats, full.workers) == (2000, 2, [1, 2])


@pytest.mark.dali
def test_dali_reference_decodes_tiny_set(tiny_sets):
    pytest.importorskip("nvidia.dali")
    jpeg, _ = tiny_sets
    decoder = baselines.DaliDecoder("cpu", threads=1, batch_size=8)
    case = baselines.dali_case(decoder, "dali_cpu", "DALI", jpeg)
    assert case.warm() == (jpeg.count, jpeg.decoded_bytes)


def test_features_benchmark_on_tiny_set(spark, tmp_path):
    from benchmarks import features

    args = features.parse_args(["--count", "12", "--repeats", "1", "--sample", "4", "--cores", "2",
                                "--data-root", str(tmp_path)])
    report = features.run(args, spark=spark)
    assert set(report["images_per_s"]) == {"recipe", "structs", "bytes", "ceiling"}
    assert all(len(v) == 1 and v[0] > 0 for v in report["seconds"].values())
    assert report["ratios"]["bytes_vs_recipe"] == pytest.approx(
        report["images_per_s"]["bytes"] / report["images_per_s"]["recipe"])
    assert report["cosine"]["files"] == 4 and report["cosine"]["median"] >= 0.999
    assert report["goals"]["median cosine >= 0.999"]
    text = features.format_report(report)
    assert "(c) ImageFeaturizer(onnx) on bytes" in text and "load average" in text
    assert spark.range(2).count() == 2  # the caller's session is left running


@pytest.mark.dali
def test_gpu_check_cpu_smoke_with_the_fused_path(tmp_path):
    pytest.importorskip("nvidia.dali")
    from benchmarks import gpu_check

    out = tmp_path / "gpu.json"
    code = gpu_check.main(["--cpu-smoke", "--skip", "spark", "--fused-sample", "8", "--out", str(out)])
    result = json.loads(out.read_text())
    rows = result["rows"]
    assert code == 0 and result["failed"] == []
    assert rows["decode"]["status"] == "ok" and rows["decode"]["pipeline_reused"] and rows["decode"]["png_exact"]
    assert rows["exif"]["status"] == "ok"
    fused = rows["fused"]
    if importlib.util.find_spec("onnxruntime") is not None:
        assert fused["status"] == "ok" and fused["cosine_median"] >= 0.999
        assert [c["batch"] for c in fused["calls"]] == [8, 8, 3, 5, 8]
        assert not any(c["on_device"] for c in fused["calls"])  # DALI CPU operators: host tensors
    assert rows["encode"]["status"].startswith(("ok", "skipped"))
    assert rows["throughput"]["img_per_s"]["gpuimages_pinned"] > 0
    assert rows["hw_decoder_load"]["status"].startswith("skipped") and rows["spark"]["status"] == "skipped: --skip"

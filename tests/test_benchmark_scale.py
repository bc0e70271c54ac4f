"""Smoke test of ``benchmarks.scale`` on a tiny tree: structure, row counts, goals (not speed)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root

from benchmarks import scale  # noqa: E402

#: A client message limit the tiny tree's listing (~200 paths of ~90 bytes) does not fit in.
TINY_LIMIT = 8 * 1024


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return scale.make_tree(tmp_path_factory.mktemp("scale"), count=200, folders=10, empty=3)


def test_tree_is_written_once_with_empty_files(tree):
    files = sorted(p for p in tree.folder.rglob("*") if p.is_file())
    assert len(files) == tree.files == 203
    assert sum(1 for p in files if p.stat().st_size == 0) == 3
    assert len({p.parent for p in files}) == 10
    again = scale.make_tree(tree.folder.parent.parent, count=200, folders=10, empty=3)
    assert again == tree


def test_classic_measures_on_tiny_tree(spark, tree):
    result = scale.measure_classic(spark, tree)
    assert result.rows == result.expect_rows == 203  # the zero-byte files have rows
    assert result.valid_rows == 200
    assert 0 <= result.sample_rows < 20
    assert result.spark_listing_s > 0 and result.plan_s > 0 and result.sample_s > 0
    assert 0 < result.peak_mb < scale.PEAK_GOAL_MB
    goals = scale.check_goals(result, None)
    assert [g[0] for g in goals][3] == "every file a row (classic)" and goals[3][1]
    report = scale.format_report(tree, result, None)
    assert "Spark image-source listing" in report and "Goals:" in report


def test_parse_args_defaults():
    assert (scale.parse_args([]).count, scale.parse_args([]).repeats) == (100_000, 2)
    quick = scale.parse_args(["--quick"])
    assert (quick.count, quick.repeats, quick.connect_limit) == (2000, 1, scale.DEFAULT_CONNECT_LIMIT)


@pytest.mark.connect
def test_connect_leg_with_a_listing_over_the_message_limit_reads_every_non_empty_file(tree):
    pytest.importorskip("grpc")
    result = scale.run_connect_child(tree, TINY_LIMIT, timeout_s=600)
    assert "error" not in result, result.get("error")
    assert result["session"] == "pyspark.sql.connect.session.SparkSession"
    assert result["input_files_fit"] is False  # the listing really is over the limit
    assert result["valid_rows"] == result["expect_valid"] == 200
    assert result["rows"] == 200  # the zero-byte files could not be counted ...
    assert any("could not be brought to the driver" in w for w in result["warnings"])  # ... and it says so


def test_unreadable_files_in_the_tree_get_rows_with_their_reason(spark, tmp_path):
    tree = scale.make_tree(tmp_path, count=40, folders=4, empty=2, unreadable=3)
    assert tree.files == 45 and len([p for p in tree.folder.rglob("*:*")]) == 3
    result = scale.measure_classic(spark, tree, full=True)
    assert (result.rows, result.valid_rows) == (45, 40)
    assert result.unread_rows == result.expect_unread == 5
    assert result.full_s and result.full_ratio
    assert all(met for goal, met, _ in scale.check_goals(result, None) if "row" in goal or "reason" in goal)
    assert "full read" in scale.format_report(tree, result, None)

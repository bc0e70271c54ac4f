"""The seed pipeline end to end: generated images -> read -> transform -> featurise -> train -> score."""

from __future__ import annotations

import re

import pytest

from gpuimages.demo import CLASSES, confusion_table, main, make_dataset, run_demo

#: ``main()`` starts the demo's session through ``local_session``, which re-uses the shared one and rewrites its conf.
pytestmark = pytest.mark.usefixtures("restore_session_conf")

#: Three classes: chance is 1/3. The generated set is learnable; the forest reaches about 0.9.
MIN_ACCURACY = 0.75


@pytest.mark.slow
def test_run_demo_learns_the_classes(spark, tmp_path, capsys):
    result = run_demo(spark, data_dir=tmp_path, seed=0)
    assert result["accuracy"] >= MIN_ACCURACY
    assert result["labels"] == sorted(CLASSES)
    assert result["image_count"] == 3 * 60 == result["train_count"] + result["test_count"]
    assert result["test_count"] >= 30
    confusion = result["confusion"]
    assert sum(sum(row.values()) for row in confusion.values()) == result["test_count"]
    correct = sum(confusion[label][label] for label in result["labels"])
    assert correct / result["test_count"] == pytest.approx(result["accuracy"])
    assert result["data_dir"] == str(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(CLASSES)
    printed = capsys.readouterr().out
    assert f"test accuracy: {result['accuracy']:.3f}" in printed
    assert "actual \\ predicted" in printed and all(label in printed for label in CLASSES)


def test_main_runs_the_cli(spark, capsys):
    accuracies = []
    for _ in range(2):  # each run in its own temporary folder, named at random
        assert main(["--per-class", "8", "--seed", "3", "--trees", "5"]) == 0
        printed = capsys.readouterr().out
        match = re.search(r"test accuracy: ([0-9.]+)", printed)
        assert match is not None
        accuracies.append(float(match.group(1)))
    # seeded split and forest: the same result whatever the folder's name; a pipeline that lost the pixels
    # predicts one class (its share of the test images, about 1/3)
    assert accuracies[0] == accuracies[1] >= 0.5
    assert "generated 24 images" in printed
    assert spark.range(3).count() == 3  # the caller's session is left running
    assert spark.conf.get("spark.master") == "local[2]"  # the running session is used as it is, its conf untouched
    with pytest.raises(SystemExit):
        main(["--per-class", "1"])


def test_dataset_is_deterministic(tmp_path):
    counts = make_dataset(tmp_path / "a", per_class=4, seed=5)
    make_dataset(tmp_path / "b", per_class=4, seed=5)
    assert counts == {name: 4 for name in CLASSES}
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*.*"))
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*.*"))
    assert files_a == files_b and len(files_a) == 12
    assert {p.suffix for p in files_a} == {".jpg", ".png"}
    assert all((tmp_path / "a" / p).read_bytes() == (tmp_path / "b" / p).read_bytes() for p in files_a)
    table = confusion_table([("x", "x"), ("x", "y")], ["x", "y"])
    assert table.splitlines()[1].split() == ["x", "1", "1"]


@pytest.mark.slow
def test_onnx_demo_runs_the_pipeline_from_bytes(spark, tmp_path, capsys):
    result = run_demo(spark, data_dir=tmp_path / "data", seed=1, per_class=20, num_trees=20, backbone="onnx")
    assert result["image_count"] == 3 * 20 == result["train_count"] + result["test_count"]
    assert result["labels"] == sorted(CLASSES)
    assert result["accuracy"] >= 0.6  # chance is 1/3; a random 8-output CNN still sees the class colours
    printed = capsys.readouterr().out
    assert "from bytes with an ONNX CNN" in printed and "test accuracy" in printed
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == sorted(CLASSES)  # no model file among images
    assert main(["--per-class", "4", "--trees", "3", "--backbone", "onnx"]) == 0
    assert "from bytes with an ONNX CNN" in capsys.readouterr().out


def test_onnx_backbone_without_onnxruntime_names_the_extra(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else real(name, *a))
    with pytest.raises(SystemExit) as info:
        main(["--backbone", "onnx"])
    assert info.value.code == 2
    assert 'needs onnxruntime: pip install "gpuimages[onnx]"' in capsys.readouterr().err

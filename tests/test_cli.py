"""The command line, run in-process on the test run's session (``gpuimages.cli.main``): convert writes Spark's
image schema or encoded bytes to Parquet, write writes files; option errors are one-line usage errors (exit 2)
before Spark starts, failed rows exit 1; what a person sees (summary lines, no Spark noise) is asserted. One
test runs the real entry point in a child process (its own quiet JVM). ``info`` is in test_info.py."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from cli_run import run_cli
from images import encode, rgb_array
from PIL import Image

from gpuimages.cli import main

#: What Spark prints when it is not kept quiet (log lines, its console progress bar, its start-up notes).
SPARK_NOISE = re.compile(r"\b(WARN|INFO)\b|\[Stage \d+|log4j|Setting default log level|incubator modules")


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    (d / "a.png").write_bytes(encode(rgb_array(6, 8), "PNG"))
    (d / "b.jpg").write_bytes(encode(rgb_array(10, 12), "JPEG"))
    (d / "bad.jpg").write_bytes(b"nope")
    (d / "empty.png").write_bytes(b"")
    return d


def test_convert_writes_image_schema_parquet(spark, folder, tmp_path, capsys):
    dest = tmp_path / "out.parquet"
    code, out, err = run_cli(capsys, "convert", str(folder), str(dest), "--device", "cpu", "--resize", "4", "5")
    assert code == 1, err  # rows failed
    assert re.fullmatch(r"wrote 4 images \(2 invalid\) to \S+ in [\d.]+ s \([\d.]+ images/s\)\n", out), out
    assert "bad.jpg: not a recognised image format" in err and "empty.png: no bytes read" in err
    rows = {r.image.origin.rsplit("/", 1)[-1]: r for r in spark.read.parquet(str(dest)).collect()}
    assert set(rows) == {"a.png", "b.jpg", "bad.jpg", "empty.png"}
    a = rows["a.png"].image
    assert (a.height, a.width, a.nChannels, a.mode, len(a.data)) == (4, 5, 3, 16, 60)
    assert rows["bad.jpg"].image.height == -1 and "not a recognised image format" in rows["bad.jpg"].error
    assert np.frombuffer(a.data, np.uint8).max() > 0


def test_convert_jpeg_writes_encoded_bytes_with_metadata(spark, folder, tmp_path, capsys):
    dest = tmp_path / "jpeg.parquet"
    code, out, err = run_cli(capsys, "convert", str(folder), str(dest), "--device", "cpu", "--resize", "5",
                             "--format", "jpeg", "--quality", "80")
    assert code == 1, err  # two images are invalid
    assert out.startswith("wrote 4 JPEG images (2 invalid)")
    table = spark.read.parquet(str(dest))
    assert table.columns == ["origin", "height", "width", "encoded", "error"]
    rows = {r.origin.rsplit("/", 1)[-1]: r for r in table.collect()}
    assert set(rows) == {"a.png", "b.jpg", "bad.jpg", "empty.png"}
    assert (rows["a.png"].height, rows["a.png"].width) == (5, 7)  # shorter side 5, aspect 6x8 kept
    assert Image.open(io.BytesIO(rows["b.jpg"].encoded)).size == (6, 5)
    assert rows["empty.png"].encoded is None and "no bytes read" in rows["empty.png"].error
    assert rows["bad.jpg"].encoded is None and "not a recognised image format" in rows["bad.jpg"].error


def test_convert_drop_invalid_exits_zero(folder, tmp_path, capsys):
    code, out, err = run_cli(capsys, "convert", str(folder), str(tmp_path / "ok.parquet"), "--device", "cpu",
                             "--format", "png", "--drop-invalid")
    assert code == 0, err
    assert out.startswith("wrote 2 PNG images (0 invalid)") and "failed:" not in err


def test_convert_webdataset_writes_shards(folder, tmp_path, capsys):
    dest = tmp_path / "shards"
    code, out, err = run_cli(capsys, "convert", str(folder), str(dest), "--format", "webdataset", "--device", "cpu",
                             "--drop-invalid", "--shard-samples", "1")
    assert code == 0, err
    assert out.startswith("wrote 2 samples in 2 shards (2 invalid)"), out
    members = []
    for shard in sorted(dest.glob("*.tar")):
        with tarfile.open(shard) as tar:
            members += [m.name.rsplit(".", 1)[-1] for m in tar.getmembers()]
    assert sorted(members) == ["jpg", "jpg", "json", "json"]


def test_write_command_writes_image_folder_layout(tmp_path, capsys):
    src = tmp_path / "src"
    for label, seed in (("cats", 1), ("dogs", 2)):
        (src / label).mkdir(parents=True)
        (src / label / f"{label}.jpg").write_bytes(encode(rgb_array(12, 16, seed=seed), "JPEG"))
    (src / "dogs" / "bad.jpg").write_bytes(b"nope")
    dest = tmp_path / "out"
    code, out, err = run_cli(capsys, "write", str(src), str(dest), "--device", "cpu", "--recursive",
                             "--label-from-folder", "--format", "png", "--resize", "6", "8")
    assert code == 1, err  # a row failed
    assert out.startswith("wrote 2 files (1 failed, 0 skipped)")
    assert "failed: " in err and "bad.jpg: not a recognised image format" in err
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file()) == [
        "cats/cats.png", "dogs/dogs.png"
    ]
    assert Image.open(dest / "cats" / "cats.png").size == (8, 6)
    code, _, err = run_cli(capsys, "write", str(src), str(dest), "--device", "cpu", "--recursive")
    assert code == 2 and "expected a missing or empty folder" in err
    code, out, err = run_cli(capsys, "write", str(src / "cats"), str(dest), "--device", "cpu", "--mode", "skip",
                             "--format", "png", "--resize", "6", "8", "--label-from-folder")
    assert code == 0, err  # nothing failed: the existing file is skipped
    assert out.startswith("wrote 0 files (0 failed, 1 skipped)")


def test_in_process_runs_keep_the_running_session(spark, folder, tmp_path, capsys):
    """The command used the test run's session: still running, same log level, no job group left behind."""
    level = spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel().name()
    code, _, err = run_cli(capsys, "-vv", "convert", str(folder), str(tmp_path / "v.parquet"), "--device", "cpu")
    assert code == 1, err
    assert "INFO gpuimages" in err  # -v and more: gpuimages' decisions
    assert spark.sparkContext._jsc is not None and spark.range(3).count() == 3
    assert spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel().name() == level
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None


def test_entry_point_is_quiet(folder, tmp_path):
    """The one real run of ``python -m gpuimages``: its own JVM, nothing from Spark on stderr."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    dest = tmp_path / "quiet.parquet"
    proc = subprocess.run(
        [sys.executable, "-m", "gpuimages", "convert", str(folder), str(dest), "--master", "local[1]", "--device",
         "cpu", "--format", "jpeg"],
        env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert proc.stdout.startswith("wrote 4 JPEG images (2 invalid)")
    noise = [line for line in proc.stderr.splitlines() if SPARK_NOISE.search(line)]
    assert not noise, proc.stderr[-3000:]
    failed = [line for line in proc.stderr.splitlines() if line.startswith("failed: ")]
    others = [line for line in proc.stderr.splitlines() if not line.startswith(("failed: ", "progress: "))]
    assert len(failed) == 2 and not others, proc.stderr[-3000:]


def _usage_cases(folder, tmp_path):
    a_file = tmp_path / "a_file.jpg"
    a_file.write_bytes(b"x")
    full = tmp_path / "full"
    full.mkdir(exist_ok=True)
    (full / "x.jpg").write_bytes(b"x")
    src, out = str(folder), str(tmp_path / "out")
    return [
        (["convert", "x", "y", "--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
        (["write", src, out, "--quality", "0"], "--quality: expected an integer in 1..100, got 0"),
        (["write", src, out, "--quality", "101"], "--quality: expected an integer in 1..100, got 101"),
        (["write", src, out, "--quality", "high"], "argument --quality: invalid int value: 'high'"),
        (["convert", src, out, "--format", "jpeg", "--quality", "-5"], "--quality: expected an integer in 1..100"),
        (["write", src, out, "--resize", "0"], "--resize: expected a positive integer, got 0"),
        (["write", src, out, "--resize", "8", "-1"], "--resize[1] (width): expected a positive integer, got -1"),
        (["convert", src, out, "--resize", "1", "2", "3"], "--resize: expected one size (shorter side) or H W"),
        (["write", src, out, "--num-partitions", "0"], "--num-partitions: expected a positive integer, got 0"),
        (["write", src, out, "--show-failures", "-1"], "--show-failures: expected a count of 0 or more"),
        (["write", src, out, "--mode", "append"], "argument --mode: invalid choice: 'append'"),
        (["write", str(tmp_path / "missing"), out], "src: expected an existing file, folder or glob, got"),
        (["convert", str(tmp_path / "nothing*.jpg"), out], "(glob matching nothing)"),
        (["info", str(tmp_path / "missing")], "path: expected an existing file, folder or glob"),
        (["info", src, "--kind", "table"], "argument --kind: invalid choice: 'table'"),
        (["write", src, str(a_file), "--mode", "overwrite"], "dest: expected a folder (missing or existing), got"),
        (["write", src, str(a_file / "sub"), "--mode", "skip"], "dest: expected a folder that can be created"),
        (["write", src, str(full)], "dest: expected a missing or empty folder with mode='error'"),
        (["convert", src, str(a_file)], "dest: expected a path that does not exist (or --overwrite)"),
        (["convert", src, out, "--format", "webdataset", "--shard-mb", "0"], "--shard-mb: expected a positive"),
        (["write", src], "the following arguments are required: dest"),
    ]


def test_every_option_error_is_one_line_before_spark_starts(folder, tmp_path, capsys, monkeypatch):
    import gpuimages.console

    def no_session(*args, **kwargs):
        raise AssertionError("a usage error must not reach Spark")

    monkeypatch.setattr(gpuimages.console, "command_session", no_session)
    for args, message in _usage_cases(folder, tmp_path):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            main([*args, "--master", "local[1]"])
        out, err = capsys.readouterr()
        lines = err.strip().splitlines()
        assert exc.value.code == 2, (args, err)
        assert len(lines) == 1 and message in lines[0] and f"gpuimages {args[0]}: error: " in lines[0], (args, lines)
        assert lines[0].endswith(f"(see gpuimages {args[0]} --help)") and not out, (args, lines)
    assert not (tmp_path / "out").exists()  # nothing was written, no Spark warehouse either
    assert sorted(p.name for p in (tmp_path / "full").iterdir()) == ["x.jpg"]


@pytest.mark.parametrize("command", ["convert", "write", "info"])
def test_help_describes_every_argument_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exc:
        main([command, "--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    parser_actions = [a for a in _subparser(command)._actions if a.dest != "help"]
    for action in parser_actions:
        assert action.help and len(action.help.split()) >= 3, action.dest  # a one-line description each
    assert f"examples:\n  gpuimages {command} " in text
    flat = " ".join(text.split())
    assert "exit status: 0" in flat and "2 for a usage error" in flat
    if command != "info":
        assert ", 1 when" in flat
    else:
        assert "WebDataset shards" in flat and "Parquet table gpuimages convert wrote" in flat


def _subparser(command: str):
    from gpuimages.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    return sub.choices[command]


def test_verbose_counts_before_or_after_the_command():
    from gpuimages.cli import build_parser

    parser = build_parser()
    assert parser.parse_args(["-v", "info", "p"]).verbose == 1
    assert parser.parse_args(["info", "p", "-vv"]).verbose == 2
    assert parser.parse_args(["info", "p"]).verbose == 0

"""write_images under hostile conditions: clashing names with identical bytes, retried tasks, links in the
destination, long and odd names, clocks that disagree, concurrent writers, and bad destinations.

The executor-side writer is exercised in-process first (``Writer`` and the runtime's write step,
a partition number standing for a task), then the same cases end to end on Spark.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pyarrow as pa
import pytest
from children import spark_child_env
from images import encode, rgb_array

from gpuimages.task.claims import CLAIMS_PREFIX, WritePlan, Writer, remove_claims
from gpuimages.task.naming import fit_name
from gpuimages.task.stores import TMP_PREFIX, open_store


def _jpeg(seed: int = 0) -> bytes:
    return encode(rgb_array(8, 10, seed=seed), "JPEG", quality=90)


def _plan(root, mode: str = "error", **kwargs) -> WritePlan:
    args = {"input_col": "content", "input_is_struct": False, "origin_col": "path", "name_col": None,
            "partition_by": None, "mode": mode, "extension": None}
    args.update(kwargs)
    return WritePlan(root=str(root), **args)


def _writer(plan: WritePlan, partition: int = 0) -> Writer:
    return Writer(plan, open_store(plan.root), partition)


def _tree(root) -> list[str]:
    """Every entry under ``root`` (files, links, folders), relative, without the claims folders."""
    out = []
    for folder, dirs, names in os.walk(root):
        dirs[:] = [d for d in dirs if not d.startswith(CLAIMS_PREFIX)]
        for name in names + [d for d in dirs if os.path.islink(os.path.join(folder, d))]:
            out.append(os.path.relpath(os.path.join(folder, name), root))
    return sorted(out)


# ---------------------------------------------------------------- one row, one file (in-process)


def test_same_name_and_identical_bytes_in_two_tasks_give_two_files(tmp_path):
    plan = _plan(tmp_path / "out")
    data = _jpeg()
    first = _writer(plan, 0).write(0, "file:///a/cat.jpg", None, None, data)
    second = _writer(plan, 1).write(0, "file:///b/cat.jpg", None, None, data)
    assert first[1] == second[1] == "written"
    assert first[0] != second[0]
    assert Path(first[0]).read_bytes() == data and Path(second[0]).read_bytes() == data
    assert os.path.basename(first[0]) == "cat.jpg" and os.path.basename(second[0]).startswith("cat-")
    assert _tree(tmp_path / "out") == sorted(os.path.basename(p) for p in (first[0], second[0]))


def test_a_retried_task_recognises_its_own_files(tmp_path):
    plan = _plan(tmp_path / "out")
    rows = [("file:///a/cat.jpg", _jpeg(1)), ("file:///b/cat.jpg", _jpeg(1)), ("file:///c/dog.jpg", _jpeg(2))]
    first = [_writer(plan, p).write(0, o, None, None, d) for p, (o, d) in enumerate(rows)]
    again = [_writer(plan, p).write(0, o, None, None, d) for p, (o, d) in enumerate(rows)]  # every task retried
    assert again == first and {s for _, s, _ in again} == {"written"}
    assert len(_tree(tmp_path / "out")) == 3
    # a later job (another id) writing the same rows in mode "error" is not fooled by the identical files
    later = [_writer(_plan(tmp_path / "out"), p).write(0, o, None, None, d) for p, (o, d) in enumerate(rows)]
    assert {p for p, _, _ in later}.isdisjoint({p for p, _, _ in first})


def test_a_task_killed_between_claim_and_file_is_completed_by_its_retry(tmp_path, monkeypatch):
    plan = _plan(tmp_path / "out", mode="skip")
    data = _jpeg(3)
    store = open_store(plan.root)
    real_place = store.place
    calls = []

    def dies_once(staged, name, replace):
        if not name.startswith(TMP_PREFIX) and len(name) != 32 and not calls:  # the image, not a claim
            calls.append(name)
            raise KeyboardInterrupt("worker killed")
        return real_place(staged, name, replace)

    monkeypatch.setattr(store, "place", dies_once)
    with pytest.raises(KeyboardInterrupt):
        Writer(plan, store, 0).write(0, "file:///a/cat.jpg", None, None, data)
    assert calls == ["cat.jpg"] and _tree(tmp_path / "out") == []  # claimed, no file, no temporary file
    path, status, reason = _writer(plan, 0).write(0, "file:///a/cat.jpg", None, None, data)
    assert (status, reason) == ("written", None) and Path(path).read_bytes() == data
    assert _tree(tmp_path / "out") == ["cat.jpg"]


def test_rows_of_one_task_with_one_name_are_numbered(tmp_path):
    writer = _writer(_plan(tmp_path / "out"))
    paths = [writer.write(i, "file:///x/a.png", None, None, _jpeg(i))[0] for i in range(3)]
    assert [os.path.basename(p) for p in paths] == ["a.jpg", "a-1.jpg", "a-2.jpg"]


# ---------------------------------------------------------------- existing files, whatever the clocks


@pytest.mark.parametrize("offset", [-3600.0, 0.0, 3600.0 * 24 * 365])
def test_skip_and_overwrite_do_not_depend_on_timestamps(tmp_path, offset):
    out = tmp_path / "out"
    out.mkdir()
    old = out / "cat.jpg"
    old.write_bytes(b"old")
    stamp = time.time() + offset  # an hour ago, now, a year in the future
    os.utime(old, (stamp, stamp))
    data = _jpeg(4)
    path, status, reason = _writer(_plan(out, "skip")).write(0, "file:///a/cat.jpg", None, None, data)
    assert (path, status) == (str(old), "skipped") and "mode='skip'" in reason
    assert old.read_bytes() == b"old" and _tree(out) == ["cat.jpg"]  # no second copy
    path, status, _ = _writer(_plan(out, "overwrite")).write(0, "file:///a/cat.jpg", None, None, data)
    assert (path, status) == (str(old), "written") and old.read_bytes() == data and _tree(out) == ["cat.jpg"]


def test_overwrite_never_replaces_a_file_of_the_same_job(tmp_path):
    plan = _plan(tmp_path / "out", "overwrite")
    one = _writer(plan, 0).write(0, "file:///a/cat.jpg", None, None, _jpeg(5))
    two = _writer(plan, 1).write(0, "file:///b/cat.jpg", None, None, _jpeg(6))
    assert one[1] == two[1] == "written" and one[0] != two[0]
    assert Path(one[0]).read_bytes() == _jpeg(5) and Path(two[0]).read_bytes() == _jpeg(6)


def test_skip_keeps_a_file_written_by_another_job_meanwhile(tmp_path):
    out = tmp_path / "out"
    first, second = _plan(out, "skip"), _plan(out, "skip")
    a = _writer(first).write(0, "file:///a/cat.jpg", None, None, _jpeg(7))
    b = _writer(second).write(0, "file:///a/cat.jpg", None, None, _jpeg(7))
    assert a[1] == "written" and b[1] == "skipped" and a[0] == b[0] and _tree(out) == ["cat.jpg"]


def test_concurrent_jobs_in_skip_mode_neither_lose_nor_double_files(tmp_path):
    out = tmp_path / "out"
    rows = [(f"file:///in/img{i:03d}.jpg", _jpeg(i % 5)) for i in range(150)]
    results: dict[int, list] = {}
    barrier = threading.Barrier(3)

    def job(n: int) -> None:
        plan = _plan(out, "skip")
        writers = [_writer(plan, p) for p in range(3)]
        barrier.wait()
        results[n] = [writers[i % 3].write(i // 3, o, None, None, d) for i, (o, d) in enumerate(rows)]

    threads = [threading.Thread(target=job, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _tree(out) == [f"img{i:03d}.jpg" for i in range(150)]  # each once, no suffixed copies
    for i, (_, data) in enumerate(rows):
        statuses = sorted(results[n][i][1] for n in range(3))
        assert statuses == ["skipped", "skipped", "written"], (i, statuses)
        assert (out / f"img{i:03d}.jpg").read_bytes() == data


# ---------------------------------------------------------------- links in the destination


def test_a_folder_link_leaving_the_destination_is_not_written_through(tmp_path):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "cats").symlink_to(elsewhere, target_is_directory=True)
    writer = _writer(_plan(out, "overwrite", partition_by="label"))
    path, status, reason = writer.write(0, "file:///a/c.jpg", None, "cats", _jpeg())
    assert status == "failed" and "symbolic link" in reason and str(out / "cats") in reason
    assert os.listdir(elsewhere) == []
    assert writer.write(1, "file:///a/d.jpg", None, "dogs", _jpeg())[1] == "written"


@pytest.mark.parametrize("mode", ["error", "skip", "overwrite"])
def test_links_inside_the_destination_are_never_followed(tmp_path, mode):
    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    (out / "real").mkdir(parents=True)
    elsewhere.mkdir()
    target = elsewhere / "victim.jpg"
    target.write_bytes(b"keep me")
    (out / "cat.jpg").symlink_to(target)  # a link at the final name, to a file outside
    (out / "inner").symlink_to(out / "real", target_is_directory=True)  # a folder link that stays inside
    (out / "dangling.jpg").symlink_to(tmp_path / "nowhere.jpg")
    writer = _writer(_plan(out, mode, partition_by="label"))
    at_name = writer.write(0, "file:///a/cat.jpg", None, None, _jpeg())
    inner = writer.write(1, "file:///a/x.jpg", None, "inner", _jpeg())
    dangling = writer.write(2, "file:///a/dangling.jpg", None, None, _jpeg())
    assert target.read_bytes() == b"keep me" and sorted(os.listdir(elsewhere)) == ["victim.jpg"]
    assert not (tmp_path / "nowhere.jpg").exists() and os.listdir(out / "real") == []
    assert os.path.islink(out / "cat.jpg") and os.path.islink(out / "dangling.jpg")
    assert inner[1] == "failed" and "symbolic link" in inner[2]
    for _path, status, reason in (at_name, dangling):
        assert "symbolic link" in reason
        assert status == ("skipped" if mode == "skip" else "failed")


def test_the_destination_itself_may_be_a_link(tmp_path):
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "dest").symlink_to(real, target_is_directory=True)
    path, status, _ = _writer(_plan(tmp_path / "dest")).write(0, "file:///a/cat.jpg", None, None, _jpeg())
    assert status == "written" and path == str(tmp_path / "dest" / "cat.jpg")
    assert (real / "cat.jpg").read_bytes() == _jpeg()


def test_a_file_where_a_folder_should_be_fails_the_row(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "cats").write_bytes(b"a file")
    path, status, reason = _writer(_plan(out, "overwrite")).write(0, "file:///a/c.jpg", None, "cats", _jpeg())
    assert status == "failed" and "not a folder" in reason and (out / "cats").read_bytes() == b"a file"


# ---------------------------------------------------------------- long and odd names


def test_long_legal_names_are_written_as_they_are(tmp_path):
    stem = "n" * 241  # 245 bytes with ".jpg"
    path, status, reason = _writer(_plan(tmp_path / "out")).write(0, f"file:///a/{stem}.jpg", None, None, _jpeg())
    assert (status, reason) == ("written", None) and os.path.basename(path) == f"{stem}.jpg"
    assert _tree(tmp_path / "out") == [f"{stem}.jpg"]  # no temporary file left either
    # the same name in another task: the suffix fits too
    other = _writer(_plan(tmp_path / "out"), 1).write(0, f"file:///b/{stem}.jpg", None, None, _jpeg())
    assert other[1] == "written" and len(os.path.basename(other[0]).encode()) <= 255


def test_names_over_the_limit_are_cut_deterministically(tmp_path):
    plan = _plan(tmp_path / "out", name_col="name")
    long_a, long_b = "é" * 150 + "a", "é" * 150 + "b"  # 301 bytes each, the same first 300
    a = _writer(plan).write(0, None, long_a + ".png", None, _jpeg(1))
    b = _writer(plan, 1).write(0, None, long_b + ".png", None, _jpeg(2))
    folder = _writer(plan, 2).write(0, None, "x.png", "f" * 300, _jpeg(3))
    for path, status, _ in (a, b, folder):
        assert status == "written"
        assert all(len(part.encode()) <= 255 for part in Path(path).relative_to(tmp_path / "out").parts)
    name_a, name_b = os.path.basename(a[0]), os.path.basename(b[0])
    assert name_a != name_b and name_a.endswith(".jpg") and name_a.startswith("é" * 100)
    assert fit_name(long_a, "jpg") == name_a  # the same cut every time
    assert Path(a[0]).read_bytes() == _jpeg(1) and Path(b[0]).read_bytes() == _jpeg(2)


def test_control_characters_in_names_are_replaced(tmp_path):
    writer = _writer(_plan(tmp_path / "out", partition_by="label"))
    path, status, _ = writer.write(0, "file:///in/a%0Ab%09c%7Fd%C2%85e.jpg", None, "lab\nel\x1b", _jpeg())
    assert status == "written"
    assert Path(path).relative_to(tmp_path / "out").as_posix() == "lab_el_/a_b_c_d_e.jpg"


# ---------------------------------------------------------------- the write step and the report


def _write_stage(batch: pa.RecordBatch, plan) -> list[dict]:
    from gpuimages.task.runner import run_partition
    from gpuimages.task.spec import StageSpec
    from gpuimages.task.steps import Write

    spec = StageSpec("write", "cpu", plan.input_col, "bytes", (Write(plan),), ("origin", "path", "bytes", "status",
                     "reason"), origin_col=plan.origin_col, error_col="reason")
    return pa.Table.from_batches(list(run_partition(iter([batch]), spec))).to_pylist()


def test_write_step_reports_every_row_and_leaves_no_temporary_file(tmp_path):
    plan = _plan(tmp_path / "out", mode="skip")
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "old.jpg").write_bytes(b"old")
    batch = pa.RecordBatch.from_pydict({
        "content": [_jpeg(1), _jpeg(1), None, _jpeg(2)],
        "path": ["file:///a/x.jpg", "file:///b/x.jpg", "file:///c/y.jpg", "file:///d/old.jpg"],
    })
    report = _write_stage(batch, plan)
    assert [r["status"] for r in report] == ["written", "written", "failed", "skipped"]
    assert report[0]["path"] != report[1]["path"] and report[2]["reason"] == "no bytes (null value)"
    names = sorted(os.listdir(tmp_path / "out"))
    assert [n for n in names if n.startswith(".")] == [plan.claims_folder]  # claims, no temporary files
    remove_claims(plan.root, plan.job_id)
    assert sorted(os.listdir(tmp_path / "out")) == ["old.jpg", "x-1.jpg", "x.jpg"]


# ---------------------------------------------------------------- end to end on Spark


def _binary(spark, rows: list[tuple], partitions: int):
    """A DataFrame of (content, path[, label]) with exactly ``partitions`` partitions, in row order."""
    schema = "content binary, path string" + (", label string" if len(rows[0]) == 3 else "")
    df = spark.createDataFrame(rows, schema)
    return df.repartitionByRange(partitions, "path") if partitions > 1 else df.coalesce(1)


def test_spark_same_name_identical_bytes_in_two_tasks(spark, tmp_path):
    import gpuimages

    data = _jpeg(9)
    df = _binary(spark, [(data, "file:///a/cat.jpg"), (data, "file:///b/cat.jpg")], 2)
    assert df.rdd.glom().map(len).collect() == [1, 1]
    rows = gpuimages.write_images(df, tmp_path / "out", num_partitions=None).collect()
    assert [r.status for r in rows] == ["written", "written"] and rows[0].path != rows[1].path
    assert all(Path(r.path).read_bytes() == data for r in rows)
    assert len(_tree(tmp_path / "out")) == 2
    assert not [n for n in os.listdir(tmp_path / "out") if n.startswith(".")]  # the claims folder is gone


def test_spark_partition_link_leaving_the_destination(spark, tmp_path):
    import gpuimages

    out, elsewhere = tmp_path / "out", tmp_path / "elsewhere"
    out.mkdir()
    elsewhere.mkdir()
    (out / "cats").symlink_to(elsewhere, target_is_directory=True)
    df = _binary(spark, [(_jpeg(1), "file:///a/c1.jpg", "cats"), (_jpeg(2), "file:///a/d1.jpg", "dogs")], 1)
    rows = {r.origin: r for r in gpuimages.write_images(df, out, partition_by="label", mode="skip").collect()}
    assert rows["file:///a/c1.jpg"].status == "failed" and "symbolic link" in rows["file:///a/c1.jpg"].reason
    assert rows["file:///a/d1.jpg"].status == "written"
    assert os.listdir(elsewhere) == [] and _tree(out) == ["cats", "dogs/d1.jpg"]


def test_spark_long_names_and_future_dated_files(spark, tmp_path):
    import gpuimages

    out = tmp_path / "out"
    out.mkdir()
    stem = "l" * 241
    future = out / "now.jpg"
    future.write_bytes(b"old")
    later = time.time() + 86400 * 30
    os.utime(future, (later, later))
    df = _binary(spark, [(_jpeg(1), f"file:///a/{stem}.jpg"), (_jpeg(2), "file:///a/now.jpg")], 1)
    skipped = {r.origin: r for r in gpuimages.write_images(df, out, mode="skip").collect()}
    assert skipped[f"file:///a/{stem}.jpg"].status == "written"
    assert skipped["file:///a/now.jpg"].status == "skipped" and future.read_bytes() == b"old"
    assert _tree(out) == sorted([f"{stem}.jpg", "now.jpg"])
    replaced = {r.origin: r for r in gpuimages.write_images(df, out, mode="overwrite").collect()}
    assert {r.status for r in replaced.values()} == {"written"}
    assert future.read_bytes() == _jpeg(2) and _tree(out) == sorted([f"{stem}.jpg", "now.jpg"])


def test_spark_two_concurrent_jobs_in_skip_mode(spark, tmp_path):
    import gpuimages

    df = _binary(spark, [(_jpeg(i % 4), f"file:///in/p{i:02d}.jpg") for i in range(24)], 2).cache()
    df.count()
    reports: dict[int, list] = {}

    def job(n: int) -> None:
        reports[n] = gpuimages.write_images(df, tmp_path / "out", mode="skip").collect()

    threads = [threading.Thread(target=job, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert _tree(tmp_path / "out") == [f"p{i:02d}.jpg" for i in range(24)]
    for i in range(24):
        origin = f"file:///in/p{i:02d}.jpg"
        statuses = sorted(r.status for n in range(2) for r in reports[n] if r.origin == origin)
        assert statuses in (["skipped", "written"], ["written", "written"]) or statuses == ["skipped", "written"]
        assert statuses.count("written") == 1, (origin, statuses)
    df.unpersist()


def test_spark_bad_destinations_fail_on_the_driver(spark, tmp_path):
    import gpuimages

    df = spark.createDataFrame([(_jpeg(), "file:///a/x.jpg")], "content binary, path string")
    a_file = tmp_path / "file.jpg"
    a_file.write_bytes(b"x")
    (tmp_path / "broken").symlink_to(tmp_path / "missing")
    for mode in ("error", "overwrite", "skip"):
        with pytest.raises(ValueError, match=r"path: expected a folder \(missing or existing\), got .*existing file"):
            gpuimages.write_images(df, a_file, mode=mode)
    with pytest.raises(ValueError, match="broken symbolic link"):
        gpuimages.write_images(df, tmp_path / "broken", mode="overwrite")
    with pytest.raises(ValueError, match="path: expected a folder that can be created"):
        gpuimages.write_images(df, a_file / "sub", mode="overwrite")
    for bad in (None, 3, 2.5, b"/tmp/x", ["/tmp/x"]):
        with pytest.raises(TypeError, match=r"path: expected a folder path or URI \(str or os.PathLike\), got"):
            gpuimages.write_images(df, bad)
    with pytest.raises(ValueError, match="path: expected a folder path or URI, got ''"):
        gpuimages.write_images(df, "")
    assert a_file.read_bytes() == b"x" and sorted(os.listdir(tmp_path)) == ["broken", "file.jpg"]


_RETRY_SCRIPT = textwrap.dedent('''
    import os, sys, time
    import pyarrow as pa
    from pyspark import TaskContext
    import gpuimages
    from gpuimages.session import local_session

    out = sys.argv[1]
    spark = local_session("local[1,4]", "retry", **{"spark.sql.execution.arrow.maxRecordsPerBatch": "2"})
    spark.sparkContext.setLogLevel("OFF")

    def written():
        return len([n for n in os.listdir(out) if n.endswith(".jpg")]) if os.path.isdir(out) else 0

    def source(batches):  # the write task's input; its first attempt dies once some files are written
        attempt = TaskContext.get().attemptNumber()
        for batch in batches:
            for i in batch.column(0).to_pylist():
                if i == 9 and attempt == 0:
                    while written() < 4:  # the write task runs beside this one: wait for it, however loaded
                        time.sleep(0.05)  # the machine (the test's subprocess timeout bounds the wait)
                    print("WRITTEN BEFORE THE FAILURE", written(), file=sys.stderr, flush=True)
                    raise RuntimeError("the first attempt dies after writing some files")
                # 200 kB rows reach the write step one by one; three rows share each name and content
                content = bytes([0xFF, 0xD8, 0xFF, i % 3]) + bytes(200_000)
                yield pa.RecordBatch.from_pydict({"content": [content], "path": [f"file:///in/{i % 6}.jpg"]})

    df = spark.range(12).coalesce(1).mapInArrow(source, "content binary, path string")
    rows = gpuimages.write_images(df, out, mode="error").collect()
    print("STATUS", sorted(r.status for r in rows))
    print("PATHS", len({r.path for r in rows}))
    spark.stop()
''')


@pytest.mark.slow
def test_spark_a_retried_write_task_writes_each_file_once(tmp_path):
    script = tmp_path / "retry.py"
    script.write_text(_RETRY_SCRIPT)
    out = tmp_path / "out"
    env = spark_child_env()
    proc = subprocess.run([sys.executable, str(script), str(out)], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    before = int(proc.stderr.split("WRITTEN BEFORE THE FAILURE ")[1].split()[0])
    assert 4 <= before < 12  # the retried attempt found files of its first attempt
    assert "STATUS " + str(["written"] * 12) in proc.stdout
    assert "PATHS 12" in proc.stdout
    names = _tree(out)
    assert len(names) == 12 and sorted(n for n in names if "-" not in n) == [f"{i}.jpg" for i in range(6)]
    assert not [n for n in os.listdir(out) if n.startswith(".")]


# ---------------------------------------------------------------- object stores (fsspec) and the driver's path check


def test_fsspec_store_follows_the_same_claims(tmp_path):
    pytest.importorskip("fsspec")
    import fsspec

    root = f"memory://gpuimages-hostile/{tmp_path.name}"
    fs = fsspec.filesystem("memory")
    fs.pipe(f"{root}/old.jpg".replace("memory://", "/"), b"old")
    plan = _plan(root, mode="skip")
    data = _jpeg(1)
    one = _writer(plan, 0).write(0, "file:///a/x.jpg", None, None, data)
    two = _writer(plan, 1).write(0, "file:///b/x.jpg", None, None, data)
    again = _writer(plan, 0).write(0, "file:///a/x.jpg", None, None, data)  # the retried task
    old = _writer(plan, 2).write(0, "file:///c/old.jpg", None, None, data)
    assert one[1] == two[1] == again[1] == "written" and one[0] == again[0] != two[0]
    assert old[1] == "skipped" and fs.cat(old[0]) == b"old"
    remove_claims(root, plan.job_id)
    names = sorted(p.rsplit("/", 1)[-1] for p in fs.find(root.replace("memory://", "/")))
    assert names == sorted(["old.jpg", "x.jpg", os.path.basename(two[0])])


def test_check_path_refuses_a_file_uri_on_an_object_store():
    pytest.importorskip("fsspec")
    import fsspec

    from gpuimages.write import check_destination, check_path

    fsspec.filesystem("memory").pipe("/gpuimages-hostile/a-file.jpg", b"x")
    with pytest.raises(ValueError, match="path: expected a folder .*which is a file"):
        check_path("memory://gpuimages-hostile/a-file.jpg")
    assert check_path("memory://gpuimages-hostile/new") == "memory://gpuimages-hostile/new"
    with pytest.raises(FileExistsError, match="mode='error'"):
        check_destination("memory://gpuimages-hostile", "error")
    with pytest.raises(ValueError, match="mode: expected one of error, overwrite, skip, got 'replace'"):
        check_destination("memory://gpuimages-hostile/new", "replace")

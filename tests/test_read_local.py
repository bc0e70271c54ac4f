"""Listed local files read in the task (ReadLocal): the bytes on disk, the reasons Spark's scan would drop a
file for, parts bounded by the next step, rows kept as they came."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from gpuimages.options import DecodeOptions
from gpuimages.task.local_files import EMPTY_REASON, VANISHED_REASON, local_file_problem
from gpuimages.task.runner import run_partition
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps import Decode, ReturnImages, Step, Work
from gpuimages.task.steps.read_local import TOO_LARGE_REASON, ReadLocal, read_file


def _jpeg(path: Path, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (20 + seed, 30, 3), dtype=np.uint8)).save(buf, "JPEG", quality=90)
    path.write_bytes(buf.getvalue())
    return buf.getvalue()


def _origin(path: Path) -> str:
    return path.resolve().as_uri()


def _run(spec: StageSpec, origins: list[str], contents: list[bytes | None], prior: list[str | None]) -> pa.Table:
    batch = pa.RecordBatch.from_arrays(
        [pa.array(origins, pa.string()), pa.array(contents, pa.binary()), pa.array(prior, pa.string())],
        names=["origin", "content", "reason"],
    )
    return pa.Table.from_batches(list(run_partition(iter([batch]), spec)))


def test_files_read_in_the_task_decode_as_pillow_does_and_problems_get_the_probes_reason(tmp_path):
    good = [tmp_path / f"a{i}.jpg" for i in range(3)]
    blobs = [_jpeg(p, i) for i, p in enumerate(good)]
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    gone = tmp_path / "gone.jpg"
    inline = tmp_path / "inline.jpg"
    inline_blob = _jpeg(inline, 7)
    inline.write_bytes(b"not what the row carries")  # a row that arrives with bytes keeps them
    origins = [*map(_origin, good), _origin(empty), _origin(gone), _origin(inline), "s3a://bucket/x.jpg",
               _origin(good[0])]
    contents = [None, None, None, None, None, inline_blob, None, None]
    prior = [None] * 7 + ["listed earlier with a reason"]
    spec = StageSpec("decode", "cpu", "content", "bytes", (ReadLocal(), Decode(DecodeOptions()), ReturnImages("image")),
                     ("origin", "image", "error"), origin_col="origin", prior_error_col="reason")
    out = _run(spec, origins, contents, prior).to_pylist()

    assert [r["origin"] for r in out] == origins
    for row, blob in zip(out[:3] + out[5:6], [*blobs, inline_blob], strict=True):
        rgb = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
        assert row["error"] is None
        assert (row["image"]["height"], row["image"]["width"]) == rgb.shape[:2]
        assert row["image"]["data"] == rgb[:, :, ::-1].tobytes()  # BGR, Pillow's pixels
    assert out[3]["error"] == EMPTY_REASON == local_file_problem(origins[3])
    assert out[4]["error"] == VANISHED_REASON == local_file_problem(origins[4])
    assert out[6]["error"] is not None  # not a local file: nothing read, the decode says why
    assert out[7]["error"] == "listed earlier with a reason"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads files without permission")
def test_a_file_without_read_permission_gets_the_probes_reason(tmp_path):
    locked = tmp_path / "locked.jpg"
    _jpeg(locked, 1)
    locked.chmod(0)
    try:
        spec = StageSpec("read", "cpu", "content", "bytes", (ReadLocal(),), ("origin", "error"), origin_col="origin")
        out = _run(spec, [_origin(locked)], [None], [None]).to_pylist()
        assert out[0]["error"] == local_file_problem(_origin(locked)) is not None
    finally:
        locked.chmod(0o644)


def test_read_file_reads_the_whole_file(tmp_path):
    path = tmp_path / "big.bin"
    data = os.urandom(3 << 20)
    path.write_bytes(data)
    assert read_file(str(path)) == data


class _Blobs(Step):
    """Returns the bytes the steps before it left (as the ``content`` column)."""

    name = "blobs"

    def run(self, work: Work) -> None:
        work.columns["content"] = pa.array(work.blobs, pa.binary())


class _Sizes(Step):
    """Records the rows of each chunk that reaches it (run in-process)."""

    name = "sizes"

    def __init__(self) -> None:
        self.seen: list[int] = []

    def run(self, work: Work) -> None:
        self.seen.append(len(work))


def test_parts_are_bounded_by_what_the_next_step_predicts_for_each_file_read(tmp_path):
    paths = [tmp_path / f"p{i}.png" for i in range(5)]
    for p in paths:
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(p)  # 40*50*3 = 6000 bytes decoded each
    decode, sizes = Decode(DecodeOptions()), _Sizes()
    budget = 13000  # two images a part
    spec = StageSpec("decode", "cpu", "content", "bytes",
                     (ReadLocal(bounds=decode, max_batch_bytes=budget), decode, sizes, ReturnImages("image")),
                     ("origin", "image", "error"), origin_col="origin", prior_error_col="reason",
                     max_batch_bytes=budget)
    out = _run(spec, [_origin(p) for p in paths], [None] * 5, [None] * 5).to_pylist()
    assert sizes.seen == [2, 2, 1]
    assert [r["origin"] for r in out] == [_origin(p) for p in paths]
    assert all(r["error"] is None and r["image"]["width"] == 50 for r in out)


def test_a_file_over_max_length_is_not_read_and_archives_are_left_to_the_next_step(tmp_path):
    big = tmp_path / "big.jpg"
    blob = _jpeg(big, 3)
    shard = tmp_path / "s.tar"
    shard.write_bytes(b"x" * 1024)
    empty = tmp_path / "e.tar"
    empty.write_bytes(b"")
    spec = StageSpec("read", "cpu", "content", "bytes",
                     (ReadLocal(max_length=len(blob) - 1, skip_archives=True), _Blobs()),
                     ("origin", "content", "error"), origin_col="origin")
    out = _run(spec, [_origin(big), _origin(shard), _origin(empty)], [None] * 3, [None] * 3).to_pylist()
    assert out[0] == {"origin": _origin(big), "content": None,
                      "error": TOO_LARGE_REASON.format(size=len(blob), limit=len(blob) - 1)}
    assert out[1] == {"origin": _origin(shard), "content": None, "error": None}  # unread: the next step opens it
    assert out[2]["error"] == EMPTY_REASON  # checked all the same
    spec = StageSpec("read", "cpu", "content", "bytes", (ReadLocal(), _Blobs()), ("origin", "content", "error"),
                     origin_col="origin")
    assert _run(spec, [_origin(shard)], [None], [None]).to_pylist()[0]["content"] == b"x" * 1024


def test_a_part_once_handed_on_is_not_held_by_the_chunk(tmp_path):
    """The chunk holds the part handed on and the file read after it, never more: it lets go of each part."""
    paths = [tmp_path / f"q{i}.png" for i in range(6)]
    for p in paths:
        Image.fromarray(np.zeros((40, 50, 3), np.uint8)).save(p)
    decode = Decode(DecodeOptions())
    step = ReadLocal(bounds=decode, max_batch_bytes=6000)  # one image (6000 bytes decoded) a part
    chunk = pa.RecordBatch.from_arrays([pa.array([_origin(p) for p in paths]), pa.nulls(6, pa.binary())],
                                       names=["origin", "content"])
    work = Work(chunk, chunk.column("origin"))
    held = []
    for part in step.run(work):
        held.append(sum(b is not None for b in work.blobs))
        assert len(part) == 1 and part.blobs[0] is not None
    assert held == [2, 2, 2, 2, 2, 1]  # while a part is processed: it and the next file

"""Memory bounded by bytes: decode slices and returned Arrow batches stay within ``max_batch_bytes``
(predicted from headers after resize/crop; a larger image alone), packing holds no second full copy,
and the memory benchmark's /proc sampling sees a worker's allocation."""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from images import encode, png16, rgb_array
from PIL import Image

import gpuimages
from gpuimages.engines.pillow import BAND_BYTES, PillowEngine, pack
from gpuimages.options import DecodeOptions
from gpuimages.task.images import ImageBatchBuilder
from gpuimages.task.runner import input_chunks, run_partition
from gpuimages.task.spec import StageSpec
from gpuimages.task.steps import Decode, ReturnImages
from gpuimages.task.steps.decode import predicted_bytes

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root

from benchmarks import memory  # noqa: E402


def _batch(blobs: list[bytes | None]) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays([pa.array(blobs, type=pa.binary())], names=["content"])


def _jpeg(h: int, w: int, seed: int = 0) -> bytes:
    return encode(rgb_array(h, w, seed), "JPEG", quality=90)


def test_predicted_bytes_from_headers_after_resize_and_crop():
    blob = _jpeg(100, 200)
    value = _batch([blob]).column(0)[0]
    assert predicted_bytes(value, DecodeOptions()) == 100 * 200 * 3
    assert predicted_bytes(value, DecodeOptions(resize=50)) == 50 * 100 * 3
    assert predicted_bytes(value, DecodeOptions(resize=50, center_crop=(20, 20))) == 20 * 20 * 3
    grey = _batch([encode(rgb_array(30, 40)[:, :, 0], "PNG")]).column(0)[0]
    assert predicted_bytes(grey, DecodeOptions()) == 30 * 40
    gif = _batch([encode(rgb_array(30, 40), "GIF")]).column(0)[0]
    assert predicted_bytes(gif, DecodeOptions()) == 30 * 40 * 4  # other formats: sized by Pillow, 4 channels
    missing = _batch([None, b"", b"not an image"]).column(0)
    assert [predicted_bytes(missing[i], DecodeOptions()) for i in range(3)] == [0, 0, 0]


def test_size_found_beyond_the_first_header_bytes():
    jpeg = encode(rgb_array(10, 12), "JPEG")
    app13 = b"\xff\xed" + (60_002).to_bytes(2, "big") + b"\0" * 60_000
    blob = jpeg[:2] + app13 * 2 + jpeg[2:]  # 120 KB of metadata before the frame header
    assert predicted_bytes(_batch([blob]).column(0)[0], DecodeOptions()) == 10 * 12 * 3


def decode_slices(batch: pa.RecordBatch, column: str, options: DecodeOptions):
    """The chunks the runtime cuts for a CPU decode stage with ``options``."""
    spec = _spec(options)
    return input_chunks(batch, spec, options.batch_size)


def _spec(options: DecodeOptions) -> StageSpec:
    return StageSpec(
        "decode", "cpu", "content", "bytes", (Decode(options), ReturnImages("image")), ("image", "error"),
        rows_per_batch=options.batch_size, max_batch_bytes=options.max_batch_bytes,
    )


def test_slices_bounded_by_count_and_bytes():
    blobs = [_jpeg(100, 100, seed=i) for i in range(7)]  # 30,000 pixel bytes each
    batch = _batch(blobs)
    by_count = [s.num_rows for s in decode_slices(batch, "content", DecodeOptions(batch_size=3))]
    assert by_count == [3, 3, 1]
    by_bytes = [s.num_rows for s in decode_slices(batch, "content", DecodeOptions(max_batch_bytes=70_000))]
    assert by_bytes == [2, 2, 2, 1]
    resized = DecodeOptions(max_batch_bytes=70_000, resize=(10, 10))
    assert [s.num_rows for s in decode_slices(batch, "content", resized)] == [7]


def test_an_image_over_the_budget_goes_alone():
    blobs = [_jpeg(20, 20), _jpeg(200, 200), _jpeg(20, 20), _jpeg(20, 20)]
    sizes = [s.num_rows for s in decode_slices(_batch(blobs), "content", DecodeOptions(max_batch_bytes=10_000))]
    assert sizes == [1, 1, 2]


def test_partition_output_batches_within_budget_and_unchanged():
    blobs = [_jpeg(60 + i, 80, seed=i) for i in range(9)] + [png16(np.full((30, 30, 3), 1000), 2), None]
    loose = list(run_partition(iter([_batch(blobs)]), _spec(DecodeOptions(device="cpu"))))
    bound = DecodeOptions(device="cpu", max_batch_bytes=40_000)
    tight = list(run_partition(iter([_batch(blobs)]), _spec(bound)))
    assert len(loose) == 1 and len(tight) > 3
    for out in tight:
        data = out.column("image").field("data")
        assert out.num_rows == 1 or sum(len(v.as_py() or b"") for v in data) <= 40_000
    assert pa.Table.from_batches(tight).equals(pa.Table.from_batches(loose))


def test_read_images_result_does_not_depend_on_the_budget(spark, class_dir):
    def rows(**kw):
        return sorted((r.image.origin, bytes(r.image.data)) for r in gpuimages.read_images(
            spark, str(class_dir), recursive=True, device="cpu", **kw).collect())

    assert rows(max_batch_bytes=1) == rows()


def test_single_owned_image_is_not_copied_and_several_are_packed():
    a, b = rgb_array(5, 6), rgb_array(7, 8, seed=1)
    one = ImageBatchBuilder(2)
    one.set_image(0, a, owned=True)
    one.set_error(1, "bad")
    batch = one.build()
    assert np.shares_memory(batch.data, a) and np.array_equal(batch.pixels(0), a)
    not_owned = ImageBatchBuilder(1)
    not_owned.set_image(0, a)
    assert not np.shares_memory(not_owned.build().data, a)
    two = ImageBatchBuilder(3)
    two.set_image(0, a, owned=True)
    two.set_image(2, b, owned=True)
    packed = two.build()
    assert np.array_equal(packed.pixels(0), a) and np.array_equal(packed.pixels(2), b)
    assert packed.errors == [None, None, None] and packed.channels[1] == -1


def test_banded_packing_equals_tobytes():
    h = BAND_BYTES // (300 * 3) * 2 + 7  # a few bands and a short last one
    arr = np.random.default_rng(0).integers(0, 256, (h, 300, 3), dtype=np.uint8)
    out = pack(Image.fromarray(arr))
    assert out.flags.writeable and np.array_equal(out, arr[:, :, ::-1])
    rgba = np.random.default_rng(1).integers(0, 256, (h, 300, 4), dtype=np.uint8)
    assert np.array_equal(pack(Image.fromarray(rgba)), rgba[:, :, [2, 1, 0, 3]])


def test_engine_results_same_with_large_images():
    blob = _jpeg(BAND_BYTES // (900 * 3) + 50, 900)
    out = PillowEngine(DecodeOptions()).decode([blob])
    ref = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))[:, :, ::-1]
    assert np.array_equal(out.pixels(0), ref)


def test_memory_sampler_sees_a_child_python_process():
    # The child holds 80 MiB from its "ready" line until its standard input closes: no timing window.
    code = ("import sys; b = bytearray(80 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('ready', "
            "flush=True); sys.stdin.read()")
    child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline() == "ready\n"
        with memory.PeakSampler(interval=0.01) as sampler:
            time.sleep(0.05)  # a few samples; the sampler's exit reads the kernel's high-water mark anyway
    finally:
        child.stdin.close()
        child.wait()
    assert child.pid not in memory.python_workers()
    assert sampler.peak >= 80 * 1024 * 1024


def test_memory_report_format():
    base = memory.Run("max_batch_bytes unbounded", memory.UNBOUNDED, 1.0, 4, 4, 100, 7, 400 * 2**20, 800 * 2**20)
    bound = memory.Run("max_batch_bytes=128 MiB (default)", 128 * 2**20, 1.0, 4, 4, 100, 7, 200 * 2**20, 2**29)
    text = memory.format_runs([base, bound], 100 * 2**20)
    assert "0.50" in text and "yes" in text.splitlines()[-1]


@pytest.mark.parametrize("value", [0, -5, 1.5, True])
def test_bad_budget_is_refused(spark, class_dir, value):
    with pytest.raises(ValueError, match="max_batch_bytes: expected a positive integer"):
        gpuimages.read_images(spark, str(class_dir), max_batch_bytes=value)

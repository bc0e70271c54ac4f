"""transcode_images: encoded files in, resized re-encoded bytes out, sizes as read_images gives them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from images import encode, rgb_array, write_files
from PIL import Image


@pytest.fixture(scope="module")
def files_dir(tmp_path_factory):
    pytest.importorskip("skimage")
    from benchmarks.data import photo_rgb

    folder = tmp_path_factory.mktemp("transcode")
    rng = np.random.default_rng(7)
    files = {f"p{i}.jpg": encode(photo_rgb(rng, h, w), "JPEG", quality=88)
             for i, (h, w) in enumerate([(375, 500), (500, 333), (281, 500), (400, 400)])}
    files["grey.png"] = encode(rgb_array(90, 120, seed=3)[:, :, 0], "PNG")
    files["alpha.png"] = encode(np.concatenate([rgb_array(30, 40), np.full((30, 40, 1), 128, np.uint8)], 2), "PNG")
    files["broken.jpg"] = b"\xff\xd8\xff\xe0 truncated"
    files["text.png"] = b"hello"
    write_files(folder, files)
    return folder


def _name(origin: str) -> str:
    return origin.rsplit("/", 1)[-1]


def test_sizes_equal_read_images_and_bad_files_have_reasons(spark, files_dir):
    import gpuimages

    binary = spark.read.format("binaryFile").load(str(files_dir))
    out = gpuimages.transcode_images(binary, resize=256, format="jpeg", quality=90, device="cpu")
    assert out.columns == ["path", "modificationTime", "length", "origin", "height", "width", "encoded", "error"]
    rows = {_name(r.origin): r for r in out.collect()}
    read = {_name(r.image.origin): r for r in gpuimages.read_images(spark, str(files_dir), resize=256,
                                                                      device="cpu").collect()}
    assert set(rows) == set(read) and len(rows) == 8
    for name, row in rows.items():
        if read[name].error is not None:
            assert row.encoded is None and row.height is None and row.width is None
            assert row.error == read[name].error  # the same reason read_images gives
            continue
        assert row.error is None
        assert (row.height, row.width) == (read[name].image.height, read[name].image.width)
        im = Image.open(io.BytesIO(row.encoded))
        assert im.format == "JPEG" and im.size == (row.width, row.height)
        assert im.mode == ("L" if read[name].image.nChannels == 1 else "RGB")
        assert row.length > 0  # other columns kept
    assert {n for n, r in rows.items() if r.error} == {"broken.jpg", "text.png"}
    assert min(rows["p0.jpg"].height, rows["p0.jpg"].width) == 256


def test_center_crop_png_keeps_alpha_and_input_on_request(spark, files_dir):
    import gpuimages

    binary = spark.read.format("binaryFile").load(str(files_dir / "alpha.png"))
    row = gpuimages.transcode_images(binary, format="png", center_crop=(10, 20), keep_input=True,
                                     device="cpu").first()
    im = Image.open(io.BytesIO(row.encoded))
    assert (row.height, row.width) == (10, 20) and im.mode == "RGBA" and im.size == (20, 10)
    assert np.asarray(im)[..., 3].min() == 128 and row.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_transcode_files_lists_like_read_images(spark, files_dir, tmp_path):
    from gpuimages.transcode import transcode_files

    for sub in ("cats", "dogs"):
        (tmp_path / sub).mkdir()
    (tmp_path / "cats" / "a.jpg").write_bytes((files_dir / "p0.jpg").read_bytes())
    (tmp_path / "dogs" / "b.jpg").write_bytes((files_dir / "p1.jpg").read_bytes())
    (tmp_path / "dogs" / "empty.jpg").write_bytes(b"")  # the binary read skips it: still a row
    out = transcode_files(spark, str(tmp_path), recursive=True, label_from_folder=True, resize=(64, 80),
                          device="cpu")
    assert out.columns == ["origin", "height", "width", "encoded", "error", "label"]
    rows = {_name(r.origin): r for r in out.collect()}
    assert set(rows) == {"a.jpg", "b.jpg", "empty.jpg"}
    assert rows["a.jpg"].origin.startswith("file:///") and rows["a.jpg"].label == "cats"
    assert (rows["b.jpg"].height, rows["b.jpg"].width, rows["b.jpg"].label) == (64, 80, "dogs")
    assert rows["empty.jpg"].encoded is None and "no bytes read" in rows["empty.jpg"].error
    with pytest.raises(TypeError, match="expected options among"):
        transcode_files(spark, str(tmp_path), colour="red")


def test_driver_side_errors(spark):
    import gpuimages

    df = spark.createDataFrame([("x", 1)], "path string, content int")
    with pytest.raises(TypeError, match="input_col 'content': expected a binary column"):
        gpuimages.transcode_images(df)
    df = spark.createDataFrame([("x", b"1", 2)], "path string, content binary, height int")
    with pytest.raises(ValueError, match="expected 'height' not to be a column of the DataFrame"):
        gpuimages.transcode_images(df)
    with pytest.raises(ValueError, match="resize: expected"):
        gpuimages.transcode_images(df, resize=-1)


def test_transcode_files_keeps_partition_columns_and_samples(spark, files_dir, tmp_path):
    from gpuimages.transcode import transcode_files

    for i, part in enumerate(["cls=cats/date=2018-02", "cls=dogs/date=2018-03"]):
        (tmp_path / part).mkdir(parents=True)
        for k in range(4):
            (tmp_path / part / f"{k}.jpg").write_bytes((files_dir / f"p{(i + k) % 2}.jpg").read_bytes())
    out = transcode_files(spark, str(tmp_path), resize=32, device="cpu")
    assert out.columns == ["origin", "height", "width", "encoded", "error", "cls", "date"]
    rows = out.collect()
    assert len(rows) == 8 and all(r.error is None and min(r.height, r.width) == 32 for r in rows)
    assert {(r.cls, r.date) for r in rows} == {("cats", "2018-02"), ("dogs", "2018-03")}
    sampled = transcode_files(spark, str(tmp_path), resize=32, device="cpu", sample_ratio=0.5, seed=3)
    kept = {r.origin for r in sampled.collect()}
    assert 0 < len(kept) < 8 and kept <= {r.origin for r in rows}

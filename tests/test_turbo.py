"""The libjpeg-turbo path (simplejpeg) gives exactly the Pillow path's result on every file, under every
option, and takes the files it should: the parity corpus, the odd files and real-looking photographs."""

from __future__ import annotations

import io
import logging
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
from images import encode, exif_jpeg, odd_files, parity_files, rgb_array
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root

from benchmarks.data import photo_set  # noqa: E402
from gpuimages.engines import pillow, turbo
from gpuimages.engines.formats import sniff
from gpuimages.engines.pillow import DecodeError, PillowEngine, decode_one
from gpuimages.options import DecodeOptions, make_decode_options

pytest.importorskip("simplejpeg")

#: Options every file is decoded under, both ways.
OPTIONS = {
    "full": make_decode_options(),
    "short side 224": make_decode_options(resize=224),
    "short side 16": make_decode_options(resize=16),
    "(h, w) 24x40": make_decode_options(resize=(24, 40)),
    "(h, w) 224x224": make_decode_options(resize=(224, 224)),
    "upscale 600x800": make_decode_options(resize=(600, 800)),
    "crop 16": make_decode_options(center_crop=16),
    "short 40 + crop 32": make_decode_options(resize=40, center_crop=32),
    "short 256 + crop 224": make_decode_options(resize=256, center_crop=224),
    "exif full": make_decode_options(apply_exif=True),
    "exif short 24": make_decode_options(apply_exif=True, resize=24),
}

#: Parity and odd files the libjpeg-turbo path takes (with ``apply_exif`` off); every other file is Pillow's.
TAKEN = {
    "parity": {"noise_in_scan.jpg", "restart_markers_in_scan.jpg", "hole_then_eoi.jpg",
               "junk_after_eoi.jpg", "bad_huffman_refused.jpg", "scan_bad_table_refused.jpg"},
    "odd": {"rgb.jpg", "progressive.jpg", "gray.jpg", "exif6.jpg", "with space.jpg"},
}


@pytest.fixture
def calls(monkeypatch):
    """Counts the files libjpeg-turbo decodes (including those it raises on)."""
    counter = {"n": 0}
    real = turbo.decode

    def counting(blob, plan):
        counter["n"] += 1
        return real(blob, plan)

    monkeypatch.setattr(turbo, "decode", counting)
    return counter


def both_ways(blob: bytes | None, options: DecodeOptions, monkeypatch) -> tuple[object, object]:
    """``decode_one`` with libjpeg-turbo allowed, then with ``GPUIMAGES_JPEG_DECODER=pillow``: pixels or the reason."""
    results = []
    for choice in ("auto", "pillow"):
        monkeypatch.setenv(turbo.DECODER_ENV, choice)
        try:
            results.append(decode_one(blob, options))
        except DecodeError as exc:
            results.append(f"{type(exc).__name__}: {exc}")
    return results[0], results[1]


def assert_same(fast: object, slow: object, label: str) -> None:
    if isinstance(slow, str):
        assert fast == slow, label
        return
    assert isinstance(fast, np.ndarray), f"{label}: {fast}"
    assert fast.shape == slow.shape and fast.dtype == slow.dtype, label
    assert np.array_equal(fast, slow), f"{label}: {np.count_nonzero(fast != slow)} bytes differ"


def test_both_libraries_agree_here():
    assert pillow.turbo_agrees() is True


@pytest.mark.parametrize("corpus", ["parity", "odd"])
def test_route_takes_exactly_the_expected_files(corpus):
    files = parity_files() if corpus == "parity" else odd_files()
    taken = {name for name, blob in files.items()
             if blob and isinstance(turbo.route(blob, sniff(blob), DecodeOptions(), 2, None), turbo.Plan)}
    assert taken == TAKEN[corpus]


@pytest.mark.parametrize("corpus", ["parity", "odd"])
@pytest.mark.parametrize("label", sorted(OPTIONS))
def test_identical_to_pillow_on_test_corpora(corpus, label, monkeypatch, calls):
    files = parity_files() if corpus == "parity" else odd_files()
    for name, blob in sorted(files.items()):
        fast, slow = both_ways(blob, OPTIONS[label], monkeypatch)
        assert_same(fast, slow, f"{name} ({label})")
    assert calls["n"] >= len(TAKEN[corpus]) - (1 if "exif" in label else 0)  # exif6.jpg stays on Pillow then


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[bytes]:
    """Real-looking photographs: JPEG crops of scikit-image's photos, ImageNet-sized, quality 75..95."""
    pytest.importorskip("skimage")
    data = photo_set(12, root=tmp_path_factory.mktemp("photos"))
    return [path.read_bytes() for path in map(data.folder.joinpath, data.files)]


@pytest.fixture(scope="module")
def large_photos(tmp_path_factory) -> list[bytes]:
    """Photographs of about 1200x1600: resizing to 224 goes through DCT scales 1/2 and 1/4."""
    pytest.importorskip("skimage")
    data = photo_set(3, root=tmp_path_factory.mktemp("large"), size=(1200, 1600))
    return [path.read_bytes() for path in map(data.folder.joinpath, data.files)]


def _variants(blob: bytes) -> dict[str, bytes]:
    """The photo as stored, re-encoded progressive, grey, 4:4:4 and 4:2:2, and EXIF-tagged."""
    rgb = np.asarray(Image.open(io.BytesIO(blob)).convert("RGB"))
    return {
        "stored": blob,
        "progressive": encode(rgb, "JPEG", quality=85, progressive=True),
        "grey": encode(rgb[:, :, 1], "JPEG", quality=85),
        "grey progressive": encode(rgb[:, :, 1], "JPEG", quality=85, progressive=True),
        "4:4:4": encode(rgb, "JPEG", quality=92, subsampling=0),
        "4:2:2": encode(rgb, "JPEG", quality=92, subsampling=1),
        "exif 1": exif_jpeg(rgb, 1),
        "exif 6": exif_jpeg(rgb, 6),
    }


@pytest.mark.parametrize("label", sorted(OPTIONS))
def test_identical_to_pillow_on_photographs(photos, label, monkeypatch, calls):
    for i, blob in enumerate(photos[:6]):
        for kind, data in _variants(blob).items():
            fast, slow = both_ways(data, OPTIONS[label], monkeypatch)
            assert_same(fast, slow, f"photo {i} {kind} ({label})")
            assert not isinstance(slow, str), slow
    per_photo = 7 if OPTIONS[label].apply_exif else 8  # "exif 6" is Pillow's when it is applied
    assert calls["n"] == 6 * per_photo


def test_identical_on_every_photograph_full_and_resized(photos, monkeypatch, calls):
    for i, blob in enumerate(photos):
        for label in ("full", "short side 224", "(h, w) 224x224", "short 256 + crop 224"):
            fast, slow = both_ways(blob, OPTIONS[label], monkeypatch)
            assert_same(fast, slow, f"photo {i} ({label})")
    assert calls["n"] == 4 * len(photos)


def test_identical_through_each_dct_scale(large_photos, monkeypatch, calls):
    scales = set()
    for i, blob in enumerate(large_photos):
        info = sniff(blob)
        for size in (448, 224, 100, 64, (300, 300), (150, 200)):
            options = make_decode_options(resize=size)
            scales.add(turbo.draft_scale(info.height, info.width, options, pillow.DRAFT_REDUCING_GAP))
            fast, slow = both_ways(blob, options, monkeypatch)
            assert_same(fast, slow, f"large photo {i} resize={size}")
    assert scales == {1, 2, 4, 8}
    assert calls["n"] == 6 * len(large_photos)


def test_engine_batches_are_identical(photos, monkeypatch):
    blobs = [*photos[:4], b"", None, parity_files()["noise_in_scan.jpg"], odd_files()["cmyk.jpg"]]
    options = make_decode_options(resize=(32, 48))
    monkeypatch.setenv(turbo.DECODER_ENV, "auto")
    fast = PillowEngine(options).decode(blobs)
    monkeypatch.setenv(turbo.DECODER_ENV, "pillow")
    slow = PillowEngine(options).decode(blobs)
    assert fast.errors == slow.errors
    assert fast.errors[4:6] == ["empty file (0 bytes)", "no image bytes (null value)"]
    assert np.array_equal(fast.data, slow.data) and np.array_equal(fast.offsets, slow.offsets)
    assert [fast.pixels(i).shape for i in (0, 6, 7)] == [(32, 48, 3)] * 3


def test_libjpeg_turbo_warnings_fall_back_to_pillow(monkeypatch, calls):
    blob = parity_files()["noise_in_scan.jpg"]  # complete file, corrupt entropy data: libjpeg warns
    assert isinstance(turbo.route(blob, sniff(blob), DecodeOptions(), 2, None), turbo.Plan)
    with pytest.raises(ValueError):
        turbo.decode(blob, turbo.route(blob, sniff(blob), DecodeOptions(), 2, None))
    fast, slow = both_ways(blob, DecodeOptions(), monkeypatch)
    assert_same(fast, slow, "noise_in_scan.jpg")
    assert fast.shape == (64, 96, 3)


def test_the_escape_hatch_keeps_every_file_on_pillow(photos, monkeypatch, calls):
    monkeypatch.setenv(turbo.DECODER_ENV, "Pillow")
    assert decode_one(photos[0], DecodeOptions()).shape[2] == 3
    assert calls["n"] == 0
    monkeypatch.setenv(turbo.DECODER_ENV, "auto")
    decode_one(photos[0], DecodeOptions())
    assert calls["n"] == 1


def test_an_unknown_choice_warns_and_means_auto(photos, monkeypatch, calls, caplog):
    monkeypatch.setenv(turbo.DECODER_ENV, "libjpeg")
    with caplog.at_level(logging.WARNING, logger="gpuimages.engines.turbo"):
        assert turbo.choice(turbo.DECODER_ENV) == "auto"
        decode_one(photos[0], DecodeOptions())
    assert calls["n"] == 1
    assert "GPUIMAGES_JPEG_DECODER='libjpeg' is not one of auto, pillow; using 'auto'" in caplog.text


def test_without_simplejpeg_pillow_decodes(photos, monkeypatch, calls):
    monkeypatch.setattr(turbo, "library", lambda: None)
    monkeypatch.setenv(turbo.DECODER_ENV, "auto")
    monkeypatch.setattr(pillow, "turbo_agrees", pillow.turbo_agrees.__wrapped__)
    out = decode_one(photos[0], make_decode_options(resize=(20, 30)))
    assert out.shape == (20, 30, 3)
    assert calls["n"] == 0
    assert pillow.turbo_agrees() is False


def test_a_disagreeing_library_is_not_used(photos, monkeypatch, caplog):
    real = turbo.decode
    used = {"n": 0}

    def off_by_one(blob, plan):
        used["n"] += 1
        pixels = real(blob, plan).copy()
        pixels[0, 0, 0] ^= 1
        return pixels

    monkeypatch.setattr(turbo, "decode", off_by_one)
    monkeypatch.setattr(pillow, "turbo_agrees", pillow.turbo_agrees.__wrapped__)
    monkeypatch.setenv(turbo.DECODER_ENV, "auto")
    with caplog.at_level(logging.WARNING, logger="gpuimages.engines.pillow"):
        assert pillow.turbo_agrees() is False
    assert "decode a test JPEG differently" in caplog.text
    probe_calls = used["n"]
    monkeypatch.setattr(pillow, "turbo_agrees", lambda: False)
    monkeypatch.setenv(turbo.DECODER_ENV, "pillow")
    slow = decode_one(photos[0], DecodeOptions())
    monkeypatch.setenv(turbo.DECODER_ENV, "auto")
    assert np.array_equal(decode_one(photos[0], DecodeOptions()), slow)
    assert used["n"] == probe_calls


def _with_segment(blob: bytes, marker: int, payload: bytes) -> bytes:
    """``blob`` with one more marker segment right after SOI."""
    return blob[:2] + bytes([0xFF, marker]) + struct.pack(">H", len(payload) + 2) + payload + blob[2:]


def test_header_refusals():
    rgb = rgb_array(40, 56)
    jpeg = encode(rgb, "JPEG", quality=90)
    options = DecodeOptions()

    def reason(blob: bytes, opts: DecodeOptions = options, bomb: int | None = None) -> object:
        plan = turbo.route(blob, sniff(blob), opts, 2, bomb)
        return plan if isinstance(plan, str) else "taken"

    sof = jpeg.index(b"\xff\xc0")
    assert reason(jpeg) == "taken"
    assert reason(jpeg[:sof] + b"\xff\xc1" + jpeg[sof + 2 :]) == "taken"  # extended sequential, 8-bit
    assert reason(jpeg[:sof] + b"\xff\xc9" + jpeg[sof + 2 :]) == "not Huffman baseline/extended/progressive"
    assert reason(jpeg[:sof] + b"\xff\xc3" + jpeg[sof + 2 :]) == "not Huffman baseline/extended/progressive"
    adobe = b"Adobe" + bytes([0, 100, 0, 0, 0, 0])
    assert reason(_with_segment(jpeg, 0xEE, adobe + b"\x01")) == "taken"
    assert reason(_with_segment(jpeg, 0xEE, adobe + b"\x00")) == "Adobe transform other than YCbCr"
    assert reason(encode(rgb, "JPEG", quality=90, keep_rgb=True)) == "Adobe transform other than YCbCr"
    assert reason(jpeg[:-2]) == "truncated"
    assert reason(jpeg[:20] + b"\x00\x00" + jpeg[20:]) == "not jpeg"  # stray bytes before the frame header
    assert reason(jpeg[: sof + 19] + b"\x00\x00" + jpeg[sof + 19 :]) == "truncated"  # after it: no scan found
    assert reason(jpeg, bomb=40 * 56 - 1) == "over Pillow's decompression-bomb limit"
    assert reason(odd_files()["icc_linear.jpg"]) == "non-sRGB ICC profile"
    assert reason(odd_files()["cmyk.jpg"]) == "4 components"
    assert reason(parity_files()["mpf_gain_map.jpg"]) == "multi-picture (MPO) file"
    assert reason(parity_files()["double_soi_refused.jpg"]) == "marker layout"
    assert reason(encode(rgb, "PNG")) == "not jpeg"
    exif = make_decode_options(apply_exif=True)
    assert turbo.route(exif_jpeg(rgb, 1), sniff(exif_jpeg(rgb, 1)), exif, 2, None).check_orientation
    assert not turbo.route(jpeg, sniff(jpeg), exif, 2, None).check_orientation


def test_xmp_orientation_keeps_the_file_on_pillow(monkeypatch, calls):
    rgb = rgb_array(20, 40)
    xmp = b'http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta><rdf:Description tiff:Orientation="6"/></x:xmpmeta>'
    blob = _with_segment(encode(rgb, "JPEG", quality=90), 0xE1, xmp)
    fast, slow = both_ways(blob, make_decode_options(apply_exif=True), monkeypatch)
    assert_same(fast, slow, "xmp orientation")
    assert fast.shape == (40, 20, 3)  # rotated as Pillow reads it
    assert calls["n"] == 0
    fast, _ = both_ways(blob, DecodeOptions(), monkeypatch)
    assert fast.shape == (20, 40, 3) and calls["n"] == 1


def test_draft_scale_follows_pillow():
    def pillow_scale(h: int, w: int, options: DecodeOptions) -> int:
        im = Image.open(io.BytesIO(encode(rgb_array(h, w), "JPEG", quality=80)))
        pillow._draft(im, options, 1)
        return im.decoderconfig[0] if im.decoderconfig else 1

    for h, w in ((375, 500), (1200, 1600), (97, 131), (64, 3000)):
        for resize in (16, 50, 100, 224, (30, 40), (200, 20)):
            options = make_decode_options(resize=resize)
            assert turbo.draft_scale(h, w, options, pillow.DRAFT_REDUCING_GAP) == pillow_scale(h, w, options), (h, w)


def test_tiny_images_whose_scale_libjpeg_turbo_would_pick_differently_stay_on_pillow():
    assert turbo.turbo_factor(6, 6, 3, 3) == (3, 8)  # 3/8 also gives 3x3: not Pillow's 1/2
    assert turbo.turbo_factor(375, 500, 188, 250) == (1, 2)
    blob = encode(rgb_array(6, 6), "JPEG", quality=90)
    options = make_decode_options(resize=1)
    assert turbo.draft_scale(6, 6, options, 2) == 2
    assert turbo.route(blob, sniff(blob), options, 2, None) == "DCT scale libjpeg-turbo would choose differently"

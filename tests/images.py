"""Small generated test images (no downloads): encoders for each odd case the readers must handle."""

from __future__ import annotations

import io
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image


def rgb_array(height: int = 20, width: int = 30, seed: int = 0) -> np.ndarray:
    """A smooth-ish RGB test pattern (JPEG-friendly), deterministic for ``seed``."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack(
        [x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1), (x + y) * 127 // max(width + height - 2, 1)], -1
    )
    noise = rng.integers(0, 32, (height, width, 3))
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def encode(arr: np.ndarray, fmt: str, mode: str | None = None, **save) -> bytes:
    """Encode an array with Pillow."""
    buf = io.BytesIO()
    Image.fromarray(arr, mode).save(buf, fmt, **save)
    return buf.getvalue()


def png16(arr: np.ndarray, color_type: int) -> bytes:
    """A 16-bit PNG (colour type 0, 2, 4 or 6) written by hand: Pillow cannot write them all."""
    h, w = arr.shape[:2]
    raw = b"".join(b"\x00" + arr[y].astype(">u2").tobytes() for y in range(h))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels."""
    good = encode(np.zeros((1, 1), np.uint8), "PNG")
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr) & 0xFFFFFFFF)
    return good[:16] + ihdr + crc + good[33:]


def _s15(v: float) -> bytes:
    """An ICC s15Fixed16Number."""
    return struct.pack(">i", round(v * 65536))


def _icc(tags: list[tuple[bytes, bytes]], kind: bytes) -> bytes:
    """An ICC v2 profile from its tags; ``kind`` is the device class, colour space and PCS (12 bytes)."""
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size) + b"\0\0\0\0" + struct.pack(">I", 0x02100000) + kind + b"\0" * 12
        + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + _s15(0.9642) + _s15(1.0) + _s15(0.8249)
    )
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


def linear_rgb_icc() -> bytes:
    """A minimal ICC v2 RGB profile: sRGB primaries (D50-adapted) with linear (gamma 1) curves."""

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + _s15(x) + _s15(y) + _s15(z)

    name = b"linear RGB test profile\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    curve = b"curv\0\0\0\0" + struct.pack(">IH", 1, 0x0100) + b"\0\0"
    tags = [
        (b"desc", desc),
        (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
        (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
        (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
        (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
        (b"rTRC", curve),
        (b"gTRC", curve),
        (b"bTRC", curve),
    ]
    return _icc(tags, b"mntrRGB XYZ ")


def exif_jpeg(arr: np.ndarray, orientation: int) -> bytes:
    """A JPEG tagged with an EXIF orientation."""
    im = Image.fromarray(arr)
    exif = im.getexif()
    exif[0x0112] = orientation
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, exif=exif)
    return buf.getvalue()


def odd_files() -> dict[str, bytes]:
    """Every odd case: channel rules, bit depths, broken files. Name -> bytes."""
    rgb = rgb_array()
    rng = np.random.default_rng(7)
    gray = rgb[:, :, 0]
    pal = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    buf = io.BytesIO()
    pal.save(buf, "PNG")
    pal_png = buf.getvalue()
    buf = io.BytesIO()
    pal.save(buf, "PNG", transparency=3)
    pal_trns = buf.getvalue()
    jpeg = encode(rgb, "JPEG", quality=90)
    return {
        "rgb.png": encode(rgb, "PNG"),
        "rgb.jpg": jpeg,
        "progressive.jpg": encode(rgb, "JPEG", quality=90, progressive=True),
        "gray.png": encode(gray, "PNG"),
        "gray.jpg": encode(gray, "JPEG", quality=90),
        "rgba.png": encode(np.dstack([rgb, gray]), "PNG"),
        "la.png": encode(np.dstack([gray, rgb[:, :, 1]]), "PNG", "LA"),
        "palette.png": pal_png,
        "palette_trns.png": pal_trns,
        "rgb_trns.png": encode(rgb, "PNG", transparency=(1, 2, 3)),
        "bilevel.png": encode(gray > 128, "PNG"),
        "gray16.png": png16(rng.integers(0, 65536, (20, 30)), 0),
        "la16.png": png16(rng.integers(0, 65536, (20, 30, 2)), 4),
        "rgb16.png": png16(rng.integers(0, 65536, (20, 30, 3)), 2),
        "rgba16.png": png16(rng.integers(0, 65536, (20, 30, 4)), 6),
        "cmyk.jpg": _cmyk_jpeg(rgb),
        "exif6.jpg": exif_jpeg(rgb, 6),
        "icc_linear.jpg": encode(rgb, "JPEG", quality=90, icc_profile=linear_rgb_icc()),
        "image.gif": encode(rgb, "GIF"),
        "image.bmp": encode(rgb, "BMP"),
        "with space.jpg": jpeg,
        "empty.jpg": b"",
        "text.jpg": b"this is not an image\n",
        "truncated.jpg": jpeg[: len(jpeg) // 2],
        "bomb.png": bomb_png(),
    }


def _cmyk_jpeg(rgb: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(rgb).convert("CMYK").save(buf, "JPEG", quality=90)
    return buf.getvalue()


def write_files(folder: Path, files: dict[str, bytes]) -> list[Path]:
    """Write ``files`` under ``folder`` (names may contain sub-folders); return the paths."""
    paths = []
    for name, data in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        paths.append(path)
    return paths


# ---------------------------------------------------------------------------------------------
# Files Spark's image source decodes although they are broken or unusual (parity cases)
# ---------------------------------------------------------------------------------------------


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk with its length and CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _pack_rows(samples: np.ndarray, bit_depth: int) -> list[bytes]:
    """Rows of integer samples (h, w*planes) packed at ``bit_depth`` bits, MSB first."""
    if bit_depth == 16:
        return [row.astype(">u2").tobytes() for row in samples]
    if bit_depth == 8:
        return [row.astype(np.uint8).tobytes() for row in samples]
    per_byte = 8 // bit_depth
    rows = []
    for row in samples.astype(np.uint8):
        pad = (-len(row)) % per_byte
        row = np.concatenate([row, np.zeros(pad, np.uint8)]).reshape(-1, per_byte)
        shifts = np.arange(per_byte - 1, -1, -1, dtype=np.uint8) * bit_depth
        rows.append((row << shifts).sum(axis=1).astype(np.uint8).tobytes())
    return rows


def png_bytes(
    samples: np.ndarray,
    bit_depth: int,
    color_type: int,
    *,
    palette: np.ndarray | None = None,
    trns: bytes | None = None,
    before_idat: Sequence[bytes] = (),
    idat_chunks: int = 1,
    compression_method: int = 0,
) -> bytes:
    """A PNG written by hand: any bit depth and colour type, optional PLTE/tRNS, extra chunks
    (``before_idat``: complete chunks from :func:`png_chunk`), the image data split into
    ``idat_chunks`` IDAT chunks, and the IHDR compression-method byte as given.

    ``samples`` is ``(h, w)`` or ``(h, w, planes)`` of integers below ``2 ** bit_depth``.
    """
    h, w = samples.shape[:2]
    flat = samples.reshape(h, -1)
    raw = b"".join(b"\x00" + row for row in _pack_rows(flat, bit_depth))
    data = zlib.compress(raw, 9)
    ihdr = struct.pack(">IIBBBBB", w, h, bit_depth, color_type, compression_method, 0, 0)
    out = b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr)
    if palette is not None:
        out += png_chunk(b"PLTE", np.asarray(palette, np.uint8).tobytes())
    if trns is not None:
        out += png_chunk(b"tRNS", trns)
    out += b"".join(before_idat)
    step = -(-len(data) // idat_chunks)
    for i in range(0, len(data), step):
        out += png_chunk(b"IDAT", data[i : i + step])
    return out + png_chunk(b"IEND", b"")


def noise(height: int, width: int, high: int, planes: int = 0, seed: int = 0) -> np.ndarray:
    """Random integer samples in ``[0, high)`` (``planes`` = 0: a 2-D array)."""
    shape = (height, width, planes) if planes else (height, width)
    return np.random.default_rng(seed).integers(0, high, shape)


def big_text_chunk(kind: bytes = b"zTXt", size: int = 2 * 1024 * 1024) -> bytes:
    """A compressed text chunk (zTXt or iTXt) that inflates to ``size`` bytes (over Pillow's limit)."""
    text = zlib.compress(b"x" * size, 9)
    if kind == b"zTXt":
        return png_chunk(b"zTXt", b"Comment\0\0" + text)
    return png_chunk(b"iTXt", b"Comment\0\x01\0" + b"\0" + b"\0" + text)


def mpf_jpeg(arr: np.ndarray, quality: int = 90) -> bytes:
    """An "Ultra HDR"-like file: a primary JPEG with an APP2 ``MPF\\0`` segment, then a second JPEG."""
    primary = encode(arr, "JPEG", quality=quality)
    gain_map = encode(arr[::4, ::4, 0], "JPEG", quality=70)
    # MP header: big-endian TIFF header, one IFD with MPFVersion, NumberOfImages and the MP entry.
    entries = b"".join(
        [
            struct.pack(">HHI4s", 0xB000, 7, 4, b"0100"),
            struct.pack(">HHII", 0xB001, 4, 1, 2),
            struct.pack(">HHII", 0xB002, 7, 32, 50),
        ]
    )
    ifd = struct.pack(">H", 3) + entries + struct.pack(">I", 0)
    mp_entries = struct.pack(">IIIHH", 0x030000, 0, 0, 0, 0) + struct.pack(">IIIHH", 0, len(gain_map), 0, 0, 0)
    body = b"MPF\0" + b"MM\0\x2a" + struct.pack(">I", 8) + ifd + mp_entries
    app2 = b"\xff\xe2" + struct.pack(">H", len(body) + 2) + body
    return primary[:2] + app2 + primary[2:] + gain_map


def cmyk_icc(grid: int = 5) -> bytes:
    """A small ICC v2 CMYK output profile (A2B0 only, Lab PCS) built in code.

    The CLUT maps ink amounts to Lab as a naive press would (ink = 1 - RGB, K darkens),
    which is enough to tell a profile-driven conversion from a plain inversion.
    """

    axes = np.linspace(0.0, 1.0, grid)
    c, m, y, k = np.meshgrid(axes, axes, axes, axes, indexing="ij")
    rgb = np.stack([(1 - c) * (1 - k), (1 - m) * (1 - k), (1 - y) * (1 - k)], -1) * 0.92 + 0.04
    lin = np.where(rgb <= 0.04045, rgb / 12.92, ((rgb + 0.055) / 1.055) ** 2.4)
    d50 = np.array([[0.4361, 0.3851, 0.1431], [0.2225, 0.7169, 0.0606], [0.0139, 0.0971, 0.7141]])
    xyz = lin @ d50.T / np.array([0.9642, 1.0, 0.8249])
    f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
    lab = np.stack([116 * f[..., 1] - 16, 500 * (f[..., 0] - f[..., 1]), 200 * (f[..., 1] - f[..., 2])], -1)
    enc = np.stack([lab[..., 0] * 255 / 100, lab[..., 1] + 128, lab[..., 2] + 128], -1)
    clut = np.clip(np.round(enc), 0, 255).astype(np.uint8).reshape(-1).tobytes()
    identity = b"\0\0\0\x01" + b"\0\0\0\0" * 3 + b"\0\0\0\x01" + b"\0\0\0\0" * 3 + b"\0\0\0\x01"
    ramp = bytes(range(256))
    a2b0 = b"mft1\0\0\0\0" + bytes([4, 3, grid, 0]) + identity + ramp * 4 + clut + ramp * 3
    name = b"CMYK test profile\0"
    desc = b"desc\0\0\0\0" + struct.pack(">I", len(name)) + name + b"\0" * 8 + b"\0\0\0" + b"\0" * 67
    tags = [
        (b"desc", desc),
        (b"wtpt", b"XYZ \0\0\0\0" + _s15(0.9642) + _s15(1.0) + _s15(0.8249)),
        (b"cprt", b"text\0\0\0\0" + b"no copyright\0"),
        (b"A2B0", a2b0),
    ]
    return _icc(tags, b"prtrCMYKLab ")


def cmyk_array(height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
    """Ink amounts (C, M, Y, K) 0..255 for a CMYK test image."""
    rgb = rgb_array(height, width, seed).astype(int)
    k = (255 - rgb.max(axis=2)) // 2
    return np.clip(np.dstack([255 - rgb, k]), 0, 255).astype(np.uint8)


def cmyk_jpeg(ink: np.ndarray, *, ycck: bool = False, icc: bytes | None = None, quality: int = 92) -> bytes:
    """An Adobe (APP14) CMYK JPEG of ``ink`` amounts, or a YCCK one, optionally with an ICC profile.

    Pillow writes Adobe-style inverted CMYK only; a YCCK file is made by storing Y, Cb, Cr of
    the inverted C, M, Y planes (and inverted K) as the four components, then setting the APP14
    transform byte to 2 (YCCK), which is how decoders (libjpeg, Java) recognise it.
    """
    planes = ink
    if ycck:
        ycc = np.asarray(Image.fromarray(np.ascontiguousarray(ink[:, :, :3]), "RGB").convert("YCbCr"))
        planes = np.dstack([255 - ycc, ink[:, :, 3]]).astype(np.uint8)
    save: dict = {"quality": quality}
    if icc is not None:
        save["icc_profile"] = icc
    blob = encode(np.ascontiguousarray(planes), "JPEG", "CMYK", **save)
    pos = blob.find(b"Adobe")
    if pos < 4 or blob[pos - 4 : pos - 2] != b"\xff\xee":
        raise ValueError("no APP14 Adobe segment written")
    transform = pos + 11  # "Adobe", version (2), flags0 (2), flags1 (2), then the transform byte
    return blob[:transform] + bytes([2 if ycck else 0]) + blob[transform + 1 :]


def _patch(blob: bytes, pos: int, new: bytes) -> bytes:
    return blob[:pos] + new + blob[pos + len(new) :]


def _bad_crc(png: bytes, ctype: bytes) -> bytes:
    """``png`` with the CRC of its first ``ctype`` chunk flipped."""
    at = png.find(ctype)
    crc = at + 4 + struct.unpack(">I", png[at - 4 : at])[0]
    return png[:crc] + bytes([png[crc] ^ 0xFF]) + png[crc + 1 :]


def interlaced_png(samples: np.ndarray, bit_depth: int = 8) -> bytes:
    """An Adam7-interlaced PNG (written with pypng); ``samples`` is ``(h, w)`` or ``(h, w, 1..4)``."""
    import png

    h, w = samples.shape[:2]
    planes = 1 if samples.ndim == 2 else samples.shape[2]
    writer = png.Writer(w, h, greyscale=planes in (1, 2), alpha=planes in (2, 4), bitdepth=bit_depth, interlace=True)
    buf = io.BytesIO()
    writer.write(buf, samples.reshape(h, -1).tolist())
    return buf.getvalue()


def parity_files() -> dict[str, bytes]:
    """Broken and unusual files, each compared with Spark's image source. Name -> bytes.

    Names say what Java does with them, as measured with Spark's image source on OpenJDK 17:
    ``*_refused.*`` files are invalid rows there; every other file decodes.
    """
    rgb = rgb_array(64, 96, seed=3)
    jpeg = encode(rgb, "JPEG", quality=90)
    scan = jpeg.find(b"\xff\xda")
    scan_end = scan + 2 + struct.unpack(">H", jpeg[scan + 2 : scan + 4])[0]
    middle = (scan + len(jpeg)) // 2
    progressive = encode(rgb, "JPEG", quality=90, progressive=True)
    png = png_bytes(noise(40, 50, 256, 3, seed=1), 8, 2, idat_chunks=4)
    grey_png = png_bytes(noise(40, 50, 256, seed=2), 8, 0, idat_chunks=4)
    small = noise(10, 12, 256, 3, seed=4)
    interlaced = interlaced_png(noise(37, 45, 256, 3, seed=7))
    files = {
        # JPEG cut inside the headers (Java refuses), just after the scan header and further on
        "jpeg_cut_in_header_refused.jpg": jpeg[: scan // 2],
        "jpeg_cut_in_scan_header_refused.jpg": jpeg[: scan + 6],
        "jpeg_cut_after_scan_header.jpg": jpeg[:scan_end],
        "jpeg_cut_30.jpg": jpeg[: len(jpeg) * 3 // 10],
        "jpeg_cut_60.jpg": jpeg[: len(jpeg) * 6 // 10],
        "jpeg_cut_90.jpg": jpeg[: len(jpeg) * 9 // 10],
        "jpeg_no_eoi.jpg": jpeg[:-2],
        "progressive_cut_50.jpg": progressive[: len(progressive) // 2],
        # PNG: IEND gone, chunk trailer and zlib checksum cut (rows complete) / rows cut (Java refuses)
        "png_no_iend.png": png[:-12],
        "png_last_crc_cut.png": png[:-14],
        "png_adler_cut.png": png[:-20],
        "png_rows_cut_refused.png": png[:-21],
        "png_cut_half_refused.png": png[: len(png) // 2],
        "grey_png_cut_refused.png": grey_png[: len(grey_png) * 3 // 4],
        "png_bad_adler_refused.png": png[:-20] + bytes([png[-20] ^ 0xFF]) + png[-19:],
        # corrupt JPEGs: some Java reads (libjpeg warnings), some it refuses
        "bad_huffman_refused.jpg": bad_huffman_jpeg(rgb),
        "scan_bad_table_refused.jpg": _patch(jpeg, scan + 6, b"\x77"),
        "double_soi_refused.jpg": b"\xff\xd8" + jpeg,
        "noise_in_scan.jpg": _patch(jpeg, middle, noise(1, 200, 255, seed=9).astype(np.uint8).tobytes()),
        "restart_markers_in_scan.jpg": _patch(jpeg, middle, b"\xff\xd0" * 10),
        "hole_then_eoi.jpg": jpeg[: len(jpeg) // 2] + b"\xff\xd9",
        "junk_after_eoi.jpg": jpeg + b"\0" * 500,
        "junk_before_first_marker.jpg": b"\xff\xd8" + b"\0" * 20 + jpeg[2:],
        # multi-picture JPEG (primary + gain map, MPF APP2)
        "mpf_gain_map.jpg": mpf_jpeg(rgb),
        # metadata chunks Pillow rejects, pixels fine
        "ztxt_over_limit.png": png_bytes(small, 8, 2, before_idat=[big_text_chunk(b"zTXt")]),
        "itxt_over_limit.png": png_bytes(small, 8, 2, before_idat=[big_text_chunk(b"iTXt")]),
        "ztxt_bad_method.png": png_bytes(
            small, 8, 2, before_idat=[png_chunk(b"zTXt", b"c\0\x01" + zlib.compress(b"t"))]
        ),
        "iccp_bad_method.png": png_bytes(
            small, 8, 2, before_idat=[png_chunk(b"iCCP", b"p\0\x01" + zlib.compress(b"x"))]
        ),
        # CRCs Java does not check, palette PNGs that end early (Java refuses them), 16-bit without IEND
        "idat_bad_crc.png": _bad_crc(png, b"IDAT"),
        "ihdr_bad_crc.png": _bad_crc(png, b"IHDR"),
        "rgb16_no_iend.png": png_bytes(noise(9, 13, 65536, 3, seed=6), 16, 2)[:-12],
        "rgba16_no_iend.png": png_bytes(noise(9, 13, 65536, 4, seed=6), 16, 6)[:-12],
        "palette_no_iend_refused.png": png_bytes(noise(9, 13, 16), 4, 3, palette=noise(16, 3, 256))[:-12],
        "palette_trns_no_iend_refused.png": png_bytes(
            noise(9, 13, 16), 8, 3, palette=noise(16, 3, 256), trns=bytes([0, 5])
        )[:-12],
        # Adam7-interlaced PNG: whole, without IEND (rows complete), cut inside the data
        "interlaced.png": interlaced,
        "interlaced16_rgba.png": interlaced_png(noise(37, 45, 65536, 4, seed=8), 16),
        "interlaced_no_iend.png": interlaced[:-12],
        "interlaced_cut_refused.png": interlaced[:-40],
        # palette indices past the end of PLTE
        "palette_short.png": png_bytes(np.arange(117).reshape(9, 13) % 8, 8, 3, palette=noise(4, 3, 256)),
        "palette_short_trns.png": png_bytes(
            np.arange(117).reshape(9, 13) % 8, 8, 3, palette=noise(4, 3, 256), trns=bytes([10, 20])
        ),
        # IHDR methods Java does not know
        "ihdr_compression_1_refused.png": png_bytes(small, 8, 2, compression_method=1),
        # CMYK / YCCK, with and without an embedded CMYK profile
        "cmyk.jpg": cmyk_jpeg(cmyk_array()),
        "ycck.jpg": cmyk_jpeg(cmyk_array(), ycck=True),
        "cmyk_profile.jpg": cmyk_jpeg(cmyk_array(), icc=cmyk_icc()),
        "ycck_profile.jpg": cmyk_jpeg(cmyk_array(), ycck=True, icc=cmyk_icc()),
    }
    # grey / RGB / palette x tRNS x bit depths
    for bits in (1, 2, 4, 8, 16):
        top = 2**bits
        files[f"grey{bits}.png"] = png_bytes(noise(9, 13, top), bits, 0)
        files[f"grey{bits}_trns.png"] = png_bytes(noise(9, 13, top), bits, 0, trns=struct.pack(">H", 1))
        if bits <= 8:
            palette = noise(top, 3, 256, seed=5)
            files[f"palette{bits}.png"] = png_bytes(noise(9, 13, top), bits, 3, palette=palette)
            files[f"palette{bits}_trns.png"] = png_bytes(
                noise(9, 13, top), bits, 3, palette=palette, trns=bytes([0, 128][: min(2, top)])
            )
        if bits >= 8:
            files[f"rgb{bits}.png"] = png_bytes(noise(9, 13, top, 3), bits, 2)
            files[f"rgb{bits}_trns.png"] = png_bytes(noise(9, 13, top, 3), bits, 2, trns=struct.pack(">HHH", 1, 2, 3))
            files[f"grey_alpha{bits}.png"] = png_bytes(noise(9, 13, top, 2), bits, 4)
            files[f"rgba{bits}.png"] = png_bytes(noise(9, 13, top, 4), bits, 6)
    return files


def bad_huffman_jpeg(arr: np.ndarray | None = None) -> bytes:
    """A complete JPEG (EOI present, nothing cut) whose first Huffman table is corrupt: no decoder reads it."""
    blob = encode(rgb_array() if arr is None else arr, "JPEG", quality=90)
    dht = blob.find(b"\xff\xc4")
    counts = dht + 5  # marker (2), length (2), table class/id (1), then 16 code-length counts
    return blob[:counts] + b"\xff" * 16 + blob[counts + 16 :]

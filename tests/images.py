"""Small generated test images (no downloads): encoders for each odd case the readers must handle."""

from __future__ import annotations

import io
import struct
import zlib
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


def linear_rgb_icc() -> bytes:
    """A minimal ICC v2 RGB profile: sRGB primaries (D50-adapted) with linear (gamma 1) curves."""

    def s15(v: float) -> bytes:
        return struct.pack(">i", round(v * 65536))

    def xyz(x: float, y: float, z: float) -> bytes:
        return b"XYZ \0\0\0\0" + s15(x) + s15(y) + s15(z)

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
    offset = 128 + 4 + 12 * len(tags)
    table, body = b"", b""
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += sig + struct.pack(">II", offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = (
        struct.pack(">I", size) + b"\0\0\0\0" + struct.pack(">I", 0x02100000) + b"mntrRGB XYZ " + b"\0" * 12
        + b"acsp" + b"\0" * 24 + struct.pack(">I", 0) + s15(0.9642) + s15(1.0) + s15(0.8249)
    )
    header += b"\0" * (128 - len(header))
    return header + struct.pack(">I", len(tags)) + table + body


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

"""Header sniffing: image format, size and Spark's channel rule, read without decoding.

Spark's image source (Java ImageIO) decides the channel count from the colour model:
a grey colour space gives 1 channel (alpha dropped, 16-bit samples keep their low byte),
otherwise 4 channels (BGRA) with alpha, else 3 (BGR). PNG grey below 8 bits per sample is
palette-backed in Java and comes out as 3 channels, unless it has a ``tRNS`` entry (then Java
expands it to 8-bit grey: 1 channel, the transparent value ignored). Both engines follow these rules.

The sniffer also tells whether the data ends early (:attr:`HeaderInfo.truncated`) and what Java's
readers need to decode a truncated file at all: a JPEG needs its first scan header
(:attr:`HeaderInfo.scan_start`); a PNG needs every image row in its IDAT data (checked on demand
by :func:`png_rows_complete`, only for files Pillow refuses).
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"

# PNG colour types
PNG_GRAY, PNG_RGB, PNG_PALETTE, PNG_GRAY_ALPHA, PNG_RGBA = 0, 2, 3, 4, 6
#: Samples per pixel of each PNG colour type.
PNG_PLANES = {PNG_GRAY: 1, PNG_RGB: 3, PNG_PALETTE: 1, PNG_GRAY_ALPHA: 2, PNG_RGBA: 4}
#: PNG chunks that carry pixels (everything else is metadata Java's reader can do without).
PNG_PIXEL_CHUNKS = (b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND")
JPEG_EOI = b"\xff\xd9"


@dataclass(frozen=True)
class HeaderInfo:
    """What the header says. ``format`` is "png", "jpeg" or "other"; sizes may be 0 if unknown."""

    format: str
    width: int = 0
    height: int = 0
    bit_depth: int = 8
    color_type: int = -1  # PNG colour type
    components: int = 0  # JPEG colour components (1 grey, 3 YCbCr/RGB, 4 CMYK/YCCK)
    has_trns: bool = False
    progressive: bool = False
    icc_profile: bytes | None = None  # JPEG: the embedded ICC profile (APP2 chunks joined)
    png_methods: tuple[int, int, int] = (0, 0, 0)  # PNG IHDR compression, filter and interlace methods
    palette_entries: int = 0  # PNG: colours in PLTE
    scan_start: int = -1  # JPEG: offset just past the first complete SOS header (-1: none)
    truncated: bool = False  # the data ends before the image does (no JPEG EOI / PNG IEND after the pixels)

    @property
    def pixels(self) -> int:
        return self.width * self.height

    @property
    def png_header_error(self) -> str | None:
        """Why Java's PNG reader refuses this header (methods it does not know), or None."""
        if self.format != "png":
            return None
        compression, filtering, interlace = self.png_methods
        if compression != 0:
            return f"PNG header: unknown compression method {compression}"
        if filtering != 0:
            return f"PNG header: unknown filter method {filtering}"
        if interlace > 1:
            return f"PNG header: unknown interlace method {interlace}"
        return None

    def spark_channels(self) -> int | None:
        """Channels Spark's image source gives for this file, or None if Pillow must decide."""
        if self.format == "png":
            if self.color_type in (PNG_GRAY, PNG_GRAY_ALPHA):
                return 3 if self.bit_depth < 8 and not self.has_trns else 1
            if self.color_type == PNG_RGBA or (self.has_trns and self.color_type in (PNG_RGB, PNG_PALETTE)):
                return 4
            return 3
        if self.format == "jpeg":
            return 1 if self.components == 1 else 3
        return None


def sniff(blob: bytes) -> HeaderInfo:
    """Parse a PNG or JPEG header; other or broken data gives ``HeaderInfo("other")``."""
    try:
        if blob.startswith(PNG_SIGNATURE):
            return _sniff_png(blob)
        if blob.startswith(JPEG_SOI):
            return _sniff_jpeg(blob)
    except (struct.error, IndexError, ValueError):
        pass
    return HeaderInfo("other")


def _sniff_png(blob: bytes) -> HeaderInfo:
    width, height, bit_depth, color_type, *methods = struct.unpack(">IIBBBBB", blob[16:29])
    has_trns = False
    entries = 0
    pos = 8
    # Walk chunks up to the first IDAT: PLTE and tRNS must come before it.
    while pos + 8 <= len(blob):
        length, ctype = struct.unpack(">I4s", blob[pos : pos + 8])
        if ctype == b"IDAT":
            break
        if ctype == b"tRNS":
            has_trns = True
        if ctype == b"PLTE":
            entries = length // 3
        pos += 12 + length
    truncated = blob.rfind(b"IEND", pos) < 0
    return HeaderInfo(
        "png", width, height, bit_depth, color_type, has_trns=has_trns, png_methods=tuple(methods),
        palette_entries=entries, truncated=truncated,
    )


def png_chunks(blob: bytes) -> list[tuple[bytes, int, int]]:
    """``(type, data start, data end)`` of each chunk, the last one cut at the end of the data."""
    chunks = []
    pos, n = 8, len(blob)
    while pos + 8 <= n:
        length, ctype = struct.unpack(">I4s", blob[pos : pos + 8])
        chunks.append((ctype, pos + 8, min(pos + 8 + length, n)))
        pos += 12 + length
    return chunks


def png_chunk_bytes(ctype: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data and a correct CRC."""
    return struct.pack(">I", len(data)) + ctype + data + struct.pack(">I", zlib.crc32(ctype + data) & 0xFFFFFFFF)


def png_pixels_only(blob: bytes) -> bytes:
    """The PNG as Java's reader sees it: only the chunks that carry pixels (text, profiles and other
    metadata dropped), every CRC recomputed (Java does not check them), a cut last chunk kept with
    the data present, and an ``IEND`` at the end."""
    keep = [blob[:8]]
    for ctype, start, end in png_chunks(blob):
        if ctype == b"IEND":
            break
        if ctype in PNG_PIXEL_CHUNKS:
            keep.append(png_chunk_bytes(ctype, blob[start:end]))
    keep.append(png_chunk_bytes(b"IEND", b""))
    return b"".join(keep)


def png_raw_size(info: HeaderInfo) -> int:
    """Bytes of filtered scanlines the IDAT data must inflate to (Adam7 passes when interlaced)."""
    bits = info.bit_depth * PNG_PLANES.get(info.color_type, 1)

    def rows(width: int, height: int) -> int:
        return 0 if width == 0 or height == 0 else height * (1 + (width * bits + 7) // 8)

    if info.png_methods[2] != 1:
        return rows(info.width, info.height)
    w, h = info.width, info.height
    passes = [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2)]
    return sum(rows((w - x + dx - 1) // dx, (h - y + dy - 1) // dy) for x, y, dx, dy in passes)


def png_rows_complete(blob: bytes, info: HeaderInfo) -> bool:
    """True when the IDAT data inflates, without error, to every row of the image.

    Java's PNG reader decodes a file whose trailing chunks or checksum are missing as long as every
    row is there, and refuses one whose rows run out or whose data is corrupt; this is that test.
    """
    need = png_raw_size(info)
    inflater = zlib.decompressobj()
    got = 0
    try:
        for ctype, start, end in png_chunks(blob):
            if ctype != b"IDAT":
                continue
            data = blob[start:end]
            while data:
                got += len(inflater.decompress(data, _INFLATE_STEP))  # bounded: rows are counted, not kept
                if got >= need:
                    return True
                data = inflater.unconsumed_tail
    except zlib.error:
        return False
    return got >= need


_INFLATE_STEP = 1 << 20


def jpeg_without_junk(blob: bytes) -> bytes | None:
    """The JPEG without stray bytes between its SOI and first marker (libjpeg skips them), or None."""
    pos = 2
    while pos < len(blob) and blob[pos] != 0xFF:
        pos += 1
    if pos == 2 or pos + 1 >= len(blob) or blob[pos + 1] < 0xC0:
        return None
    return blob[:2] + blob[pos:]


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _sniff_jpeg(blob: bytes) -> HeaderInfo:
    pos = 2
    n = len(blob)
    icc_chunks: dict[int, bytes] = {}
    sof: tuple[int, int, int, int, int] | None = None
    scan_start = -1
    while pos + 4 <= n:
        if blob[pos] != 0xFF:
            if sof is not None:
                break  # what the frame header said stands; the file is broken after it
            raise ValueError("bad marker")
        marker = blob[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        (length,) = struct.unpack(">H", blob[pos + 2 : pos + 4])
        if marker == 0xE2 and blob[pos + 4 : pos + 16] == b"ICC_PROFILE\0":
            icc_chunks[blob[pos + 16]] = blob[pos + 18 : pos + 2 + length]
        if marker in _SOF_MARKERS and sof is None:
            sof = (marker, *struct.unpack(">BHHB", blob[pos + 4 : pos + 10]))
        if marker == 0xDA:  # start of scan: the entropy-coded data follows its header
            if sof is not None and pos + 2 + length <= n:
                scan_start = pos + 2 + length
            break
        pos += 2 + length
    truncated = scan_start < 0 or blob.rfind(JPEG_EOI, scan_start) < 0
    if sof is None:
        return HeaderInfo("jpeg", truncated=truncated)
    marker, bits, height, width, comps = sof
    icc = b"".join(icc_chunks[k] for k in sorted(icc_chunks)) or None
    return HeaderInfo(
        "jpeg",
        width,
        height,
        bits,
        components=comps,
        progressive=marker in (0xC2, 0xC6, 0xCA, 0xCE),
        icc_profile=icc,
        scan_start=scan_start,
        truncated=truncated,
    )

"""Header sniffing: image format, size and Spark's channel rule, read without decoding.

Spark's image source (Java ImageIO) decides the channel count from the colour model:
a grey colour space gives 1 channel (alpha dropped, 16-bit samples keep their low byte),
otherwise 4 channels (BGRA) with alpha, else 3 (BGR). PNG grey below 8 bits per sample is
palette-backed in Java and comes out as 3 channels. Both engines follow these rules.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"

# PNG colour types
PNG_GRAY, PNG_RGB, PNG_PALETTE, PNG_GRAY_ALPHA, PNG_RGBA = 0, 2, 3, 4, 6


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

    @property
    def pixels(self) -> int:
        return self.width * self.height

    def spark_channels(self) -> int | None:
        """Channels Spark's image source gives for this file, or None if Pillow must decide."""
        if self.format == "png":
            if self.color_type in (PNG_GRAY, PNG_GRAY_ALPHA):
                return 3 if self.bit_depth < 8 else 1
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
    width, height, bit_depth, color_type = struct.unpack(">IIBB", blob[16:26])
    has_trns = False
    pos = 8
    # Walk chunks up to the first IDAT: tRNS must come before it.
    while pos + 8 <= len(blob):
        length, ctype = struct.unpack(">I4s", blob[pos : pos + 8])
        if ctype == b"IDAT":
            break
        if ctype == b"tRNS":
            has_trns = True
        pos += 12 + length
    return HeaderInfo("png", width, height, bit_depth, color_type, has_trns=has_trns)


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _sniff_jpeg(blob: bytes) -> HeaderInfo:
    pos = 2
    n = len(blob)
    icc_chunks: dict[int, bytes] = {}
    while pos + 4 <= n:
        if blob[pos] != 0xFF:
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
        if marker in _SOF_MARKERS:
            bits, height, width, comps = struct.unpack(">BHHB", blob[pos + 4 : pos + 10])
            icc = b"".join(icc_chunks[k] for k in sorted(icc_chunks)) or None
            return HeaderInfo(
                "jpeg",
                width,
                height,
                bits,
                components=comps,
                progressive=marker in (0xC2, 0xC6, 0xCA, 0xCE),
                icc_profile=icc,
            )
        pos += 2 + length
    return HeaderInfo("jpeg")

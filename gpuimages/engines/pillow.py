"""The CPU engine: Pillow (libjpeg-turbo, zlib), one image at a time, Spark's channel rules.

Large JPEGs that will be shrunk are decoded in Pillow's draft mode (DCT scaling), so a
4000x3000 photo resized to 224x224 is never fully decoded. Headers that claim more than
``max_pixels`` are refused before any pixel buffer is allocated.

Files Pillow refuses but Java's readers (Spark's image source) decode are retried the way Java
reads them, so both sources agree on which files are valid:

* a JPEG whose data ends early (or that Pillow finds short, such as some multi-picture "Ultra HDR"
  files) is decoded as far as its data goes when its first scan header is complete; the missing
  blocks come out mid-grey, as in Java. Without a complete scan header it stays invalid, as in Java;
* a PNG Pillow refuses is decoded from its pixel chunks only, CRCs recomputed, when every image row
  inflates from its IDAT data (:func:`gpuimages.engines.formats.png_rows_complete`), as Java reads
  it: metadata chunks Pillow rejects (a compressed text over ``PngImagePlugin.MAX_TEXT_CHUNK``, an
  unknown compression byte in ``zTXt``/``iCCP``), wrong CRCs, cut trailing chunks. Missing rows or
  corrupt data stay invalid, and so does a palette PNG that ends early, as in Java;
* palette indices past the end of ``PLTE`` take the last entry's colour, as in Java (Pillow: black);
* a PNG header with a compression, filter or interlace method Java does not know is refused.

Loading a truncated file needs Pillow's process-wide ``ImageFile.LOAD_TRUNCATED_IMAGES``; it is set
only around that one load and restored afterwards. With ``strict=True`` a file whose data ends
before the image does is an invalid row instead of a partial image.
"""

from __future__ import annotations

import contextlib
import io
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from gpuimages.engines.base import BatchBuilder, DecodedBatch, Engine
from gpuimages.engines.color import to_srgb
from gpuimages.engines.formats import (
    JPEG_SOI,
    PNG_GRAY_ALPHA,
    PNG_PALETTE,
    PNG_RGB,
    PNG_RGBA,
    HeaderInfo,
    jpeg_without_junk,
    png_pixels_only,
    png_rows_complete,
    sniff,
)
from gpuimages.options import DecodeOptions, resize_pixels_reason

log = logging.getLogger(__name__)

_EXIF_ORIENTATION = 0x0112
#: EXIF orientations that swap width and height.
SWAPS_AXES = {5, 6, 7, 8}


class DecodeError(Exception):
    """A single image cannot be decoded; the message is the reason recorded in its row."""


class Refused(DecodeError):
    """An image refused on purpose (size limits, ``strict``): never retried another way."""


#: Reason recorded for a truncated file under ``strict=True``.
STRICT_TRUNCATED = "truncated file: the data ends before the image does (strict=True refuses partial images)"

#: Reason for a palette PNG without IEND: Java refuses those even when every row is there.
TRUNCATED_PALETTE = "truncated palette PNG: the data ends before IEND (Spark's image source refuses it too)"

_TRUNCATED_LOCK = threading.Lock()


@contextlib.contextmanager
def truncated_images_allowed() -> Iterator[None]:
    """Let Pillow load truncated data for the duration of one load, then restore the flag.

    ``ImageFile.LOAD_TRUNCATED_IMAGES`` is process-wide; a lock keeps two such loads from
    interleaving their save/restore, and the previous value (a user's choice) is put back.
    """
    with _TRUNCATED_LOCK:
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            yield
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before


def check_bytes(blob: bytes | None, options: DecodeOptions) -> HeaderInfo:
    """Reject missing, empty and oversized inputs; return the sniffed header."""
    if blob is None:
        raise DecodeError("no image bytes (null value)")
    if len(blob) == 0:
        raise DecodeError("empty file (0 bytes)")
    info = sniff(blob)
    check_pixels(info.width, info.height, options)
    return info


def check_pixels(width: int, height: int, options: DecodeOptions) -> None:
    """Refuse an image whose claimed size, or its size after ``resize``, is over ``max_pixels``
    (decompression-bomb guard)."""
    if width * height > options.max_pixels:
        raise Refused(
            f"image claims {width}x{height} = {width * height} pixels, "
            f"over max_pixels={options.max_pixels}; refused without decoding"
        )
    too_large = resize_pixels_reason(options, height, width)
    if too_large:
        raise Refused(too_large)


def _open(blob: bytes, options: DecodeOptions) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(io.BytesIO(blob))
    except UnidentifiedImageError:
        raise DecodeError("not a recognised image format") from None
    except Image.DecompressionBombError as exc:
        raise Refused(f"decompression bomb refused: {exc}") from None
    check_pixels(im.width, im.height, options)
    return im


def exif_orientation(im: Image.Image, broken: int | None = 1) -> int | None:
    """The EXIF orientation tag (1 when absent); ``broken`` when the EXIF block cannot be read."""
    try:
        return int(im.getexif().get(_EXIF_ORIENTATION, 1))
    except Exception:  # noqa: BLE001 - by default a broken EXIF block means "no orientation"
        return broken


#: Draft (DCT-scaled) decoding stops at this multiple of the target size, as ``Image.thumbnail`` does,
#: so the final bilinear filter still sees enough detail (and stays close to a full decode).
DRAFT_REDUCING_GAP = 2


def _draft(im: Image.Image, options: DecodeOptions, orientation: int) -> None:
    """Ask libjpeg to decode at the smallest DCT scale still at least twice the target size."""
    if im.format != "JPEG" or options.resize is None:
        return
    w, h = im.size
    if orientation in SWAPS_AXES:
        tw, th = options.target_size(w, h)
    else:
        th, tw = options.target_size(h, w)
    target = (tw * DRAFT_REDUCING_GAP, th * DRAFT_REDUCING_GAP)
    if target[0] < w and target[1] < h:
        im.draft(im.mode, target)


def _png16(blob: bytes, info: HeaderInfo) -> np.ndarray:
    """Decode a 16-bit grey+alpha / RGB / RGBA PNG exactly as Spark does (see module formats)."""
    import png  # pypng: pure Python, used for these rare files only

    width, height, rows, meta = png.Reader(bytes=blob).asDirect()
    planes = meta["planes"]  # tRNS on RGB adds an alpha plane, as in Java
    arr = np.vstack([np.asarray(r, dtype=np.uint32) for r in rows]).reshape(height, width, planes)
    if info.color_type == PNG_GRAY_ALPHA:
        return (arr[:, :, 0] & 0xFF).astype(np.uint8)  # grey colour space: low byte, alpha dropped
    return ((arr * 255 + 32767) // 65535).astype(np.uint8)  # sRGB: scaled and rounded


def _pad_palette(im: Image.Image) -> None:
    """Give palette indices past the last ``PLTE`` entry that entry's colour, as Java's PNG reader does."""
    palette = im.getpalette("RGB")
    entries = len(palette) // 3 if palette else 0
    if 0 < entries < 256:
        im.putpalette(palette + palette[-3:] * (256 - entries), "RGB")


def _to_spark_mode(im: Image.Image, info: HeaderInfo) -> Image.Image:
    """Convert a Pillow image to "L", "RGB" or "RGBA" following Spark's channel rules."""
    channels = info.spark_channels()
    mode = im.mode
    if mode == "P" and info.format == "png":
        _pad_palette(im)
    if channels is None:  # not PNG/JPEG: decide from Pillow's mode
        if mode in ("L", "I", "F") or mode.startswith("I;16"):
            channels = 1
        elif mode in ("RGBA", "RGBa", "PA", "LA", "La") or "transparency" in im.info:
            channels = 4
        else:
            channels = 3
    if channels == 1:
        if mode == "I" or mode.startswith("I;16"):
            low = (np.asarray(im).astype(np.int64) & 0xFF).astype(np.uint8)
            return Image.fromarray(low, "L")
        return im if mode == "L" else im.convert("L")
    target = "RGBA" if channels == 4 else "RGB"
    return im if mode == target else im.convert(target)


def _geometry(im: Image.Image, options: DecodeOptions, size: tuple[int, int]) -> Image.Image:
    """Resize then centre-crop, both optional; ``size`` is the (height, width) before any draft scaling."""
    if options.resize is not None:
        h, w = options.target_size(*size)
        if (h, w) != (im.height, im.width):
            im = im.resize((w, h), Image.BILINEAR)
    if options.center_crop is not None:
        ch, cw = options.output_size(*size)
        top, left = (im.height - ch) // 2, (im.width - cw) // 2
        im = im.crop((left, top, left + cw, top + ch))
    return im


_PACKERS = {"L": ("L", 1), "RGB": ("BGR", 3), "RGBA": ("BGRA", 4)}
#: Images with more packed bytes than this are packed in bands of rows straight into their output
#: array, so packing never holds a second full-size copy (``tobytes`` joins a list of chunks).
BAND_BYTES = 8 * 1024 * 1024


def pack(im: Image.Image) -> np.ndarray:
    """An "L", "RGB" or "RGBA" image as an ``(h, w, c)`` uint8 array in Spark's byte order (BGR(A))."""
    rawmode, channels = _PACKERS[im.mode]
    h, w = im.height, im.width
    row = w * channels
    if h * row <= BAND_BYTES:
        return np.frombuffer(im.tobytes("raw", rawmode), dtype=np.uint8).reshape(h, w, channels)
    out = np.empty((h, w, channels), dtype=np.uint8)
    step = max(1, BAND_BYTES // row)
    for top in range(0, h, step):
        bottom = min(h, top + step)
        band = im.crop((0, top, w, bottom)).tobytes("raw", rawmode)
        out[top:bottom] = np.frombuffer(band, dtype=np.uint8).reshape(bottom - top, w, channels)
    return out


def finish(
    im: Image.Image,
    options: DecodeOptions,
    info: HeaderInfo,
    orientation: int = 1,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Orient, convert to Spark's channels, resize/crop, and pack a loaded image as BGR(A).

    ``size`` is the oriented (height, width) before draft scaling; geometry is planned from it.
    """
    if orientation != 1:
        im = ImageOps.exif_transpose(im)
    im = _geometry(_to_spark_mode(im, info), options, size or (im.height, im.width))
    return pack(im)


def _is_png16_colour(info: HeaderInfo) -> bool:
    return info.format == "png" and info.bit_depth == 16 and info.color_type in (PNG_GRAY_ALPHA, PNG_RGB, PNG_RGBA)


def _decode(blob: bytes, info: HeaderInfo, options: DecodeOptions, lenient: bool = False) -> np.ndarray:
    """One decode attempt; ``lenient`` loads truncated data as far as it goes."""
    with truncated_images_allowed() if lenient else contextlib.nullcontext():
        im = _open(blob, options)
        orientation = exif_orientation(im) if options.apply_exif else 1
        if _is_png16_colour(info):
            return finish(Image.fromarray(_png16(blob, info)), options, HeaderInfo("other"), orientation)
        size = (im.width, im.height) if orientation in SWAPS_AXES else (im.height, im.width)
        _draft(im, options, orientation)
        im.load()
    if info.format == "jpeg":
        im = to_srgb(im)
    return finish(im, options, info, orientation, size)


def _is_truncation(exc: BaseException) -> bool:
    """Pillow ran out of data (as opposed to a decoder error on corrupt data, which Java refuses too)."""
    return isinstance(exc, OSError) and "truncated" in str(exc).lower()


def _retry_like_java(blob: bytes, info: HeaderInfo, options: DecodeOptions, first: BaseException) -> np.ndarray | None:
    """Decode a file Pillow refused the way Java's readers accept it, or None if Java refuses it too."""
    if info.format == "other" and blob.startswith(JPEG_SOI) and isinstance(first, DecodeError):
        cleaned = jpeg_without_junk(blob)  # libjpeg (and so Java) skips bytes before a marker; Pillow does not
        return None if cleaned is None else decode_one(cleaned, options)
    if info.format == "jpeg":
        # Java decodes whatever the entropy-coded data holds once the first scan header is complete.
        return _decode(blob, info, options, lenient=True) if info.scan_start >= 0 and _is_truncation(first) else None
    if info.format != "png":
        return None
    if not png_rows_complete(blob, info):
        return None  # rows missing or corrupt data: Java refuses it too
    # Java needs only the pixel chunks and checks no CRC: retry with the metadata dropped, the CRCs
    # recomputed and an IEND in place, then (for a zlib stream cut after the last row) leniently.
    repaired = png_pixels_only(blob)
    try:
        return _decode(repaired, info, options)
    except Exception:  # noqa: BLE001 - the lenient load below decides
        return _decode(repaired, info, options, lenient=True)


def decode_one(blob: bytes | None, options: DecodeOptions) -> np.ndarray:
    """Decode one encoded image to Spark's layout, or raise :class:`DecodeError` with the reason."""
    info = check_bytes(blob, options)
    refusal = info.png_header_error
    if refusal is not None:
        raise DecodeError(refusal)
    if options.strict and info.truncated and info.format in ("jpeg", "png"):
        raise Refused(STRICT_TRUNCATED)
    if info.truncated and info.format == "png" and info.color_type == PNG_PALETTE:
        raise DecodeError(TRUNCATED_PALETTE)
    try:
        return _decode(blob, info, options)
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a recorded reason
        first = exc
    try:
        pixels = _retry_like_java(blob, info, options, first)
    except Refused:
        raise
    except Exception as exc:  # noqa: BLE001 - the retry failing too: report the first reason
        log.debug("lenient retry failed too: %s", exc)
        pixels = None
    if pixels is None:
        if isinstance(first, DecodeError):
            raise first
        raise DecodeError(f"{type(first).__name__}: {first}") from None
    return pixels


class PillowEngine(Engine):
    """CPU engine: Pillow decode, optional draft-mode resize and centre crop, BGR(A) output."""

    name = "pillow"

    def decode(self, blobs: Sequence[bytes | None]) -> DecodedBatch:
        out = BatchBuilder(len(blobs))
        for i, blob in enumerate(blobs):
            try:
                out.set_image(i, decode_one(blob, self.options), owned=True)
            except DecodeError as exc:
                out.set_error(i, str(exc))
        return out.build()

"""The CPU engine: Pillow (libjpeg-turbo, zlib), one image at a time, Spark's channel rules.

Most JPEGs (8-bit YCbCr or grey, complete, no colour profile to convert) are decoded by libjpeg-turbo
directly, through simplejpeg, straight to Spark's BGR or grey layout (:mod:`gpuimages.engines.turbo`):
the same pixels as Pillow's path, in about 60% of the CPU time. Every other file, and any file that
path raises on, goes through Pillow as described below; ``GPUIMAGES_JPEG_DECODER=pillow`` sends every
file there.

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
import functools
import io
import logging
import threading
import warnings
from collections.abc import Iterator, Sequence

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from gpuimages.engines import turbo
from gpuimages.engines.base import Engine
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
from gpuimages.task.images import ImageBatch, ImageBatchBuilder

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

#: Guards Pillow's process-wide LOAD_TRUNCATED_IMAGES flag: a load that allows truncated data holds it.
TRUNCATED_LOCK = threading.Lock()


@contextlib.contextmanager
def truncated_images_allowed() -> Iterator[None]:
    """Let Pillow load truncated data for the duration of one load, then restore the flag.

    ``ImageFile.LOAD_TRUNCATED_IMAGES`` is process-wide; a lock keeps two such loads from
    interleaving their save/restore, and the previous value (a user's choice) is put back.
    """
    with TRUNCATED_LOCK:
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


def _array_image(pixels: np.ndarray) -> Image.Image:
    """A Pillow image over an ``(h, w, 1)`` grey, ``(h, w, 3)`` BGR or ``(h, w, 4)`` RGBX array.

    Grey and RGBX (the layout of Pillow's own "RGB" images) are used in place, without a copy (RGBX
    through ``Image.core.map_buffer``, as ``Image.frombuffer`` maps its modes); BGR is copied.
    """
    h, w, channels = pixels.shape
    if channels == 1:
        return Image.frombuffer("L", (w, h), np.ascontiguousarray(pixels), "raw", "L", 0, 1)
    if channels == 3:
        return Image.frombuffer("RGB", (w, h), np.ascontiguousarray(pixels), "raw", "BGR", 0, 1)
    pixels = np.ascontiguousarray(pixels)
    try:
        im = Image.new("RGB", (0, 0))._new(Image.core.map_buffer(pixels, (w, h), "raw", 0, ("RGB", 0, 1)))
        im.readonly = 1
        return im
    except Exception:  # noqa: BLE001 - a Pillow without the mapping primitive: copy instead
        return Image.frombuffer("RGB", (w, h), pixels, "raw", "RGBX", 0, 1)


def finish_array(pixels: np.ndarray, options: DecodeOptions, size: tuple[int, int]) -> np.ndarray:
    """Resize and crop an upright decoded array exactly as :func:`finish` does a Pillow image.

    ``pixels`` is ``(h, w, 1)`` grey, ``(h, w, 3)`` BGR or ``(h, w, 4)`` RGBX (see :func:`_array_image`);
    ``size`` is the (height, width) before any DCT scaling. A resize goes through Pillow's own bilinear
    filter (the same call as :func:`_geometry`); a crop alone is a slice. The result is grey or BGR.
    """
    if pixels.shape[2] == 4 or (options.resize is not None and options.target_size(*size) != pixels.shape[:2]):
        return pack(_geometry(_array_image(pixels), options, size))
    if options.center_crop is None:
        return pixels
    ch, cw = options.output_size(*size)
    top, left = (pixels.shape[0] - ch) // 2, (pixels.shape[1] - cw) // 2
    return np.ascontiguousarray(pixels[top : top + ch, left : left + cw])


def _bomb_pixels() -> int | None:
    """Pixels over which Pillow refuses to open an image (``DecompressionBombError``), None for no limit."""
    return None if Image.MAX_IMAGE_PIXELS is None else 2 * Image.MAX_IMAGE_PIXELS


def _upright(blob: bytes) -> bool:
    """True when Pillow reads an EXIF orientation of 1 (or none) from the file, as :func:`_decode` would."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(blob)) as im:
                return exif_orientation(im) == 1
    except Exception:  # noqa: BLE001 - Pillow's own path decides what such a file gives
        return False


def _turbo_pixels(blob: bytes, info: HeaderInfo, options: DecodeOptions) -> np.ndarray | str:
    """Decode on the libjpeg-turbo path, or say why the file is not for it (exceptions propagate)."""
    plan = turbo.route(blob, info, options, DRAFT_REDUCING_GAP, _bomb_pixels())
    if isinstance(plan, str):
        return plan
    if plan.check_orientation and not _upright(blob):
        return "EXIF orientation"
    return finish_array(turbo.decode(blob, plan), options, (info.height, info.width))


def decode_turbo(blob: bytes, info: HeaderInfo, options: DecodeOptions) -> np.ndarray | None:
    """The image through libjpeg-turbo directly (:mod:`gpuimages.engines.turbo`), or None when the file
    is left to Pillow: not a JPEG that path takes, a libjpeg-turbo warning or error, simplejpeg not
    installed, ``GPUIMAGES_JPEG_DECODER=pillow``, or the two libraries disagreeing here (:func:`turbo_agrees`)."""
    if info.format != "jpeg" or not turbo.decode_directly() or not turbo_agrees():
        return None
    try:
        pixels = _turbo_pixels(blob, info, options)
    except Exception as exc:  # noqa: BLE001 - Pillow's path decodes it (or records the reason)
        log.debug("libjpeg-turbo refused a JPEG (%s: %s); decoding it with Pillow", type(exc).__name__, exc)
        return None
    return None if isinstance(pixels, str) else pixels


#: Size (height, width) of the generated JPEGs :func:`turbo_agrees` decodes both ways: odd sides, so
#: the last MCU row and column are partial at every DCT scale.
_PROBE_SIZE = (97, 131)


def _probe_jpegs() -> list[bytes]:
    """Small JPEGs of a seeded photo-like pattern: 4:2:0, 4:2:2, 4:4:4, progressive 4:2:0 and grey."""
    h, w = _PROBE_SIZE
    rng = np.random.default_rng(20261218)
    y, x = np.mgrid[0:h, 0:w]
    base = np.stack([x * 255 // w, y * 255 // h, (x * y) % 256], -1) + rng.integers(-40, 40, (h, w, 3))
    rgb = np.clip(base, 0, 255).astype(np.uint8)
    saves = [{"subsampling": 2}, {"subsampling": 1}, {"subsampling": 0}, {"subsampling": 2, "progressive": True}]
    blobs = []
    for image, save in [(rgb, s) for s in saves] + [(rgb[:, :, 1], {})]:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, "JPEG", quality=90, **save)
        blobs.append(buf.getvalue())
    return blobs


@functools.lru_cache(maxsize=1)
def turbo_agrees() -> bool:
    """True when libjpeg-turbo through simplejpeg gives Pillow's pixels in this process.

    Checked once per Python worker on generated JPEGs (each chroma subsampling, progressive, grey;
    full size and resized through each DCT scale 1/2, 1/4 and 1/8). Both normally use libjpeg-turbo's
    accurate IDCT and fancy upsampling; a Pillow built on another libjpeg (IJG libjpeg 9, for
    instance) may not agree, and then Pillow decodes every JPEG, as before, with a warning.
    """
    if turbo.library() is None:
        return False
    try:
        for blob in _probe_jpegs():
            info = sniff(blob)
            for scale in (1, 2, 4, 8):
                h, w = _PROBE_SIZE
                options = DecodeOptions(resize=None if scale == 1 else (h // (2 * scale), w // (2 * scale)))
                fast = _turbo_pixels(blob, info, options)
                if isinstance(fast, str):
                    raise RuntimeError(f"the libjpeg-turbo path refused a test JPEG: {fast}")
                if turbo.draft_scale(h, w, options, DRAFT_REDUCING_GAP) != scale:
                    raise RuntimeError(f"the test JPEG was not decoded at DCT scale 1/{scale}")
                slow = _decode(blob, info, options)
                if fast.shape != slow.shape or not np.array_equal(fast, slow):
                    log.warning("gpuimages: libjpeg-turbo (simplejpeg) and Pillow decode a test JPEG differently "
                                "here (scale 1/%d); Pillow decodes every JPEG", scale)
                    return False
    except Exception as exc:  # noqa: BLE001 - any surprise keeps Pillow's path
        log.warning("gpuimages: the libjpeg-turbo check failed (%s: %s); Pillow decodes every JPEG",
                    type(exc).__name__, exc)
        return False
    log.info("gpuimages: JPEGs are decoded by libjpeg-turbo directly (simplejpeg %s) where that gives Pillow's pixels",
             getattr(turbo.library(), "__version__", "?"))
    return True


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
    pixels = decode_turbo(blob, info, options)
    if pixels is not None:
        return pixels
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

    def decode(self, blobs: Sequence[bytes | None]) -> ImageBatch:
        out = ImageBatchBuilder(len(blobs))
        for i, blob in enumerate(blobs):
            try:
                out.set_image(i, decode_one(blob, self.options), owned=True)
            except DecodeError as exc:
                out.set_error(i, str(exc))
        return out.build()

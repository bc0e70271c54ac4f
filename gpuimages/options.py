"""Option parsing and validation, done on the driver before any Spark job runs.

Every check raises ``ValueError`` or ``TypeError`` with an "expected ..., got ..." message.
The validated values travel to executors inside :class:`DecodeOptions`, a small frozen,
picklable dataclass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

DEVICES = ("auto", "cpu", "gpu")

#: Pillow's own decompression-bomb threshold (2 x ``Image.MAX_IMAGE_PIXELS``).
DEFAULT_MAX_PIXELS = 178_956_970
#: Images per Arrow batch returned to the JVM; small batches measured fastest on CPU.
DEFAULT_BATCH_SIZE = 16
#: Decoded pixel bytes per engine call and per Arrow batch returned (an image over it goes alone).
DEFAULT_MAX_BATCH_BYTES = 128 * 1024 * 1024
#: Images per GPU decode (a DALI device batch), independent of the Arrow batches returned.
DEFAULT_DEVICE_BATCH_SIZE = 128


@dataclass(frozen=True)
class DecodeOptions:
    """What an engine needs to know to decode one batch. Validated, immutable, picklable.

    resize:      ``None``; ``(height, width)`` for an exact size; or an ``int`` for the
                 length of the shorter side, keeping the aspect ratio.
    center_crop: ``None`` or ``(height, width)`` cut from the centre after resizing
                 (an ``int`` means a square).
    max_pixels:  images whose header claims more pixels are refused before decoding.
    apply_exif:  rotate/flip by the EXIF orientation tag (Spark's source does not).
    batch_size:  images per Arrow batch returned to the JVM (and per CPU engine call).
    device_batch_size: images per GPU engine call (a DALI device batch), bounded by ``max_batch_bytes``
                 as well; the result is cut into Arrow batches of ``batch_size``.
    device:      "auto", "cpu" or "gpu".
    hw_decoder_load: share of JPEGs sent to the GPU's hardware decoder (DALI mixed mode).
    strict:      a file whose data ends before the image does is an invalid row (default: decoded
                 as far as it goes, as Spark's image source does).
    max_batch_bytes: decoded pixel bytes per engine call and per Arrow batch, predicted from the
                 headers after resize/crop; an image larger than this goes alone.
    """

    resize: tuple[int, int] | int | None = None
    center_crop: tuple[int, int] | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    apply_exif: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    device: str = "auto"
    hw_decoder_load: float = 0.65
    strict: bool = False
    max_batch_bytes: int = DEFAULT_MAX_BATCH_BYTES
    device_batch_size: int = DEFAULT_DEVICE_BATCH_SIZE

    def target_size(self, height: int, width: int) -> tuple[int, int]:
        """Size ``(height, width)`` after resize (before crop) of an image of the given size."""
        if self.resize is None:
            return height, width
        if isinstance(self.resize, int):
            short = min(height, width)
            scale = self.resize / short
            return max(1, round(height * scale)), max(1, round(width * scale))
        return self.resize

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        """Final ``(height, width)`` after resize and centre crop."""
        h, w = self.target_size(height, width)
        if self.center_crop is not None:
            ch, cw = self.center_crop
            return min(h, ch), min(w, cw)
        return h, w


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def check_device(device: Any) -> str:
    """Validate ``device``: one of "auto", "cpu", "gpu"."""
    if not isinstance(device, str) or device.lower() not in DEVICES:
        raise ValueError(f"device: expected one of {', '.join(DEVICES)}, got {_describe(device)}")
    return device.lower()


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name}: expected a positive integer, got {_describe(value)}")
    return value


def check_size_pair(name: str, value: Any, allow_int: bool) -> tuple[int, int] | int | None:
    """Validate a ``(height, width)`` pair (or an int where ``allow_int``), or None."""
    if value is None:
        return None
    if allow_int and isinstance(value, int) and not isinstance(value, bool):
        return _positive_int(name, value)
    if isinstance(value, (tuple, list)) and len(value) == 2:
        return (_positive_int(f"{name}[0] (height)", value[0]),
                _positive_int(f"{name}[1] (width)", value[1]))
    expected = "(height, width) of positive integers"
    if allow_int:
        expected += " or a positive integer for the shorter side"
    raise ValueError(f"{name}: expected {expected}, got {_describe(value)}")


def check_bool(name: str, value: Any) -> bool:
    """Validate a boolean flag."""
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected True or False, got {_describe(value)}")
    return value


def check_sample_ratio(value: Any) -> float:
    """Validate ``sample_ratio``: a number in [0, 1], as Spark's ``readImages`` took (0 reads nothing)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"sample_ratio: expected a number in [0, 1], got {_describe(value)}")
    return float(value)


def check_seed(value: Any) -> int:
    """Validate ``seed``: an integer."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"seed: expected an integer, got {_describe(value)}")
    return value


def check_num_partitions(value: Any) -> int | None:
    """Validate ``num_partitions``: None (planned) or a positive integer."""
    return None if value is None else _positive_int("num_partitions", value)


def check_hw_decoder_load(value: Any) -> float:
    """Validate ``hw_decoder_load``: a number in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(f"hw_decoder_load: expected a number in [0, 1], got {_describe(value)}")
    return float(value)


def resize_pixels_reason(options: DecodeOptions, height: int, width: int) -> str | None:
    """Why resizing an image of ``height`` x ``width`` would make more than ``max_pixels`` pixels, or None.

    The size after ``resize`` (before any crop: the resized image is made first) is what a decoder
    allocates; engines refuse such a file before decoding it, with this reason.
    """
    if options.resize is None or height <= 0 or width <= 0:
        return None
    out_h, out_w = options.target_size(height, width)
    if out_h * out_w <= options.max_pixels:
        return None
    return (
        f"resize={options.resize!r} would make this {width}x{height} image {out_w}x{out_h} = {out_h * out_w} "
        f"pixels, over max_pixels={options.max_pixels}; refused without decoding"
    )


def check_output_size(options: DecodeOptions) -> DecodeOptions:
    """Refuse, on the driver, a fixed ``resize=(height, width)`` over ``max_pixels`` (every file would be)."""
    if isinstance(options.resize, tuple):
        height, width = options.resize
        if height * width > options.max_pixels:
            raise ValueError(
                f"resize: expected at most max_pixels={options.max_pixels} pixels, got {options.resize!r} = "
                f"{height * width} pixels; choose a smaller size or raise max_pixels"
            )
    return options


def _square(size: tuple[int, int] | int | None) -> tuple[int, int] | None:
    return (size, size) if isinstance(size, int) else size


def make_decode_options(
    *,
    resize: Any = None,
    center_crop: Any = None,
    max_pixels: Any = DEFAULT_MAX_PIXELS,
    apply_exif: Any = False,
    batch_size: Any = DEFAULT_BATCH_SIZE,
    device: Any = "auto",
    hw_decoder_load: Any = 0.65,
    strict: Any = False,
    max_batch_bytes: Any = DEFAULT_MAX_BATCH_BYTES,
    device_batch_size: Any = DEFAULT_DEVICE_BATCH_SIZE,
) -> DecodeOptions:
    """Validate user-facing decode options and bundle them for executors."""
    return check_output_size(DecodeOptions(
        resize=check_size_pair("resize", resize, allow_int=True),
        center_crop=_square(check_size_pair("center_crop", center_crop, allow_int=True)),
        max_pixels=_positive_int("max_pixels", max_pixels),
        apply_exif=check_bool("apply_exif", apply_exif),
        batch_size=_positive_int("batch_size", batch_size),
        device=check_device(device),
        hw_decoder_load=check_hw_decoder_load(hw_decoder_load),
        strict=check_bool("strict", strict),
        max_batch_bytes=_positive_int("max_batch_bytes", max_batch_bytes),
        device_batch_size=_positive_int("device_batch_size", device_batch_size),
    ))

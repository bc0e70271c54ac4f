"""Encoders: one interface (:mod:`.base`), a CPU encoder (Pillow) and a GPU JPEG encoder (nvImageCodec).

Encoders are created on executors only, by :func:`create_encoder`, for the task's
:class:`~gpuimages.task.device.TaskDevice`; importing this package imports neither nvImageCodec nor CUDA.
:func:`make_encode_options` validates the user-facing options on the driver.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

from gpuimages.encoders.base import (
    DEFAULT_PNG_LEVEL,
    DEFAULT_QUALITY,
    FORMATS,
    SUBSAMPLING,
    EncodedBatch,
    EncodeOptions,
    Encoder,
)
from gpuimages.options import check_bool, check_device
from gpuimages.task.device import TaskDevice

__all__ = [
    "ENCODERS", "EncodedBatch", "Encoder", "EncodeOptions", "create_encoder", "make_encode_options",
    "encoder_for", "nvimgcodec_installed", "resolve_encode_device",
]

log = logging.getLogger(__name__)

#: Images per encoder call and per returned Arrow batch in encode_images (encoded rows are small).
DEFAULT_ENCODE_BATCH = 64

#: Encoder names :func:`create_encoder` accepts.
ENCODERS = ("pillow", "nvimgcodec")
#: The module whose presence (and the task's device) makes nvImageCodec the JPEG encoder.
NVIMGCODEC_MODULE = "nvidia.nvimgcodec"


def encoder_for(options: EncodeOptions, device: TaskDevice) -> str:
    """The encoder a task on ``device`` uses for ``options``: Pillow for PNG or where asked; nvImageCodec where
    asked or where the device uses it (a GPU task with nvImageCodec importable). The one place it is chosen."""
    if options.format != "jpeg" or options.encoder == "pillow":
        return "pillow"
    if options.encoder == "nvimgcodec":
        return "nvimgcodec"
    return "nvimgcodec" if device.uses(NVIMGCODEC_MODULE) else "pillow"


def create_encoder(options: EncodeOptions, device: TaskDevice, encoder: str | None = None) -> Encoder:
    """Create the encoder for a task on ``device``.

    ``encoder`` forces "pillow" or "nvimgcodec" (default: :func:`encoder_for`); PNG always uses Pillow.
    nvImageCodec encodes on ``device.gpu_id`` (its CPU-only backend when None) with at most
    ``device.threads`` CPU threads, and takes host or device images
    (:class:`gpuimages.encoders.nvimgcodec.NvImageCodecEncoder`). A missing or too old nvImageCodec raises
    an ImportError naming the extra. nvImageCodec is imported here, never at package import.
    """
    name = encoder or encoder_for(options, device)
    if name == "nvimgcodec" and options.format != "jpeg":
        name = "pillow"
    if name == "pillow":
        from gpuimages.encoders.pillow import PillowEncoder

        return PillowEncoder(options)
    if name == "nvimgcodec":
        from gpuimages.encoders.nvimgcodec import NvImageCodecEncoder

        return NvImageCodecEncoder(options, device)
    raise ValueError(f"encoder: expected one of {', '.join(ENCODERS)}, got {name!r}")


def nvimgcodec_installed() -> bool:
    """True when nvImageCodec can be imported (checked without importing it)."""
    try:
        return importlib.util.find_spec(NVIMGCODEC_MODULE) is not None
    except (ImportError, ValueError):
        return False


def resolve_encode_device(device: str, encoder: str | None = None) -> str:
    """Driver-side check for the encoder: "gpu" (or ``encoder="nvimgcodec"``) needs nvImageCodec installed.

    Returns the device executors choose the encoder from; "auto" without nvImageCodec becomes "cpu".
    """
    if device == "gpu" or encoder == "nvimgcodec":
        if not nvimgcodec_installed():
            raise ImportError(
                "GPU JPEG encoding needs nvImageCodec (nvidia-nvimgcodec-cu12), which is not installed. "
                'Install the GPU extra: pip install "gpuimages[gpu]" (or use device="cpu" / "auto").'
            )
    elif device == "auto" and not nvimgcodec_installed():
        log.info("device='auto': nvImageCodec is not installed, encoding with Pillow on CPU")
        return "cpu"
    return device


def _describe(value: Any) -> str:
    return f"{value!r} ({type(value).__name__})"


def make_encode_options(
    *,
    format: Any = "jpeg",  # noqa: A002 - the public name of the option
    quality: Any = DEFAULT_QUALITY,
    subsampling: Any = "4:2:0",
    optimize: Any = False,
    compress_level: Any = DEFAULT_PNG_LEVEL,
    device: Any = "auto",
    encoder: Any = None,
    batch_size: Any = DEFAULT_ENCODE_BATCH,
) -> EncodeOptions:
    """Validate user-facing encode options ("X: expected ..., got ...") and bundle them for executors."""
    fmt = format.lower() if isinstance(format, str) else format
    fmt = "jpeg" if fmt == "jpg" else fmt
    if fmt not in FORMATS:
        raise ValueError(f"format: expected one of {', '.join(FORMATS)}, got {_describe(format)}")
    if isinstance(quality, bool) or not isinstance(quality, int) or not 1 <= quality <= 100:
        raise ValueError(f"quality: expected an integer in 1..100, got {_describe(quality)}")
    if subsampling not in SUBSAMPLING:
        raise ValueError(f"subsampling: expected one of {', '.join(SUBSAMPLING)}, got {_describe(subsampling)}")
    if isinstance(compress_level, bool) or not isinstance(compress_level, int) or not 0 <= compress_level <= 9:
        raise ValueError(f"compress_level: expected an integer in 0..9, got {_describe(compress_level)}")
    if encoder is not None and encoder not in ENCODERS:
        raise ValueError(f"encoder: expected one of {', '.join(ENCODERS)} or None, got {_describe(encoder)}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
        raise ValueError(f"batch_size: expected a positive integer, got {_describe(batch_size)}")
    return EncodeOptions(
        format=fmt,
        quality=quality,
        subsampling=subsampling,
        optimize=check_bool("optimize", optimize),
        compress_level=compress_level,
        device=check_device(device),
        encoder=encoder,
        batch_size=batch_size,
    )

"""The GPU JPEG encoder: NVIDIA nvImageCodec (nvJPEG on a GPU), with a per-file Pillow fallback.

DALI has no encoder operator; nvImageCodec's ``Encoder().encode(images, codec="jpeg", params=...)``
encodes a whole batch and returns ``None`` for an image it could not encode instead of failing the
batch; those images (and any batch that raises) are encoded by Pillow with the same options. Without
a GPU (``gpu_id=None``) nvImageCodec runs its CPU-only backend, which is what CI exercises. PNG is
always encoded by Pillow (nvImageCodec's PNG path is a CPU codec too). nvImageCodec is imported when
the encoder is created, on executors only.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from gpuimages.encoders.base import EncodedBatch, EncodeOptions, Encoder, check_image, for_format
from gpuimages.encoders.pillow import PillowEncoder

log = logging.getLogger(__name__)

NVIMGCODEC_HINT = 'pip install "gpuimages[gpu]"'

_SUBSAMPLING = {"4:4:4": "CSS_444", "4:2:2": "CSS_422", "4:2:0": "CSS_420"}


def import_nvimgcodec():
    """``nvidia.nvimgcodec``, or an ImportError naming the extra to install."""
    try:
        from nvidia import nvimgcodec
    except ImportError as exc:
        raise ImportError(f"the nvimgcodec encoder needs nvidia-nvimgcodec-cu12: {NVIMGCODEC_HINT}") from exc
    return nvimgcodec


class NvImageCodecEncoder(Encoder):
    """JPEG encoding with nvImageCodec on ``gpu_id`` (None: its CPU-only backend)."""

    def __init__(self, options: EncodeOptions, gpu_id: int | None = None) -> None:
        super().__init__(options)
        if options.format != "jpeg":
            raise ValueError(f"nvimgcodec encoder: expected format 'jpeg', got {options.format!r} (PNG uses Pillow)")
        nvimgcodec = import_nvimgcodec()
        self.gpu_id = gpu_id
        device = nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY if gpu_id is None else int(gpu_id)
        self.name = "nvimgcodec-cpu" if gpu_id is None else "nvimgcodec-gpu"
        self._encoder = nvimgcodec.Encoder(device_id=device)
        jpeg = nvimgcodec.JpegEncodeParams(progressive=False, optimized_huffman=options.optimize)
        self._colour = nvimgcodec.EncodeParams(
            quality_type=nvimgcodec.QualityType.QUALITY,
            quality_value=float(options.quality),
            chroma_subsampling=getattr(nvimgcodec.ChromaSubsampling, _SUBSAMPLING[options.subsampling]),
            jpeg_encode_params=jpeg,
        )
        self._grey = nvimgcodec.EncodeParams(
            quality_type=nvimgcodec.QualityType.QUALITY,
            quality_value=float(options.quality),
            chroma_subsampling=nvimgcodec.ChromaSubsampling.CSS_GRAY,
            jpeg_encode_params=jpeg,
        )
        self._fallback = PillowEncoder(options)
        self.fallbacks = 0  # images handed to Pillow so far (tests and logs)

    def _encode_group(self, arrays: list[np.ndarray], params) -> list[bytes | None]:
        try:
            streams = self._encoder.encode(arrays, codec="jpeg", params=params)
        except Exception as exc:  # noqa: BLE001 - the batch goes to Pillow instead
            log.warning("gpuimages: nvImageCodec failed a batch of %d (%s); encoding it with Pillow", len(arrays), exc)
            return [None] * len(arrays)
        return [None if s is None else bytes(s) for s in streams]

    def encode(self, images: Sequence[np.ndarray | None]) -> EncodedBatch:
        n = len(images)
        data: list[bytes | None] = [None] * n
        errors: list[str | None] = [None] * n
        colour: list[int] = []
        grey: list[int] = []
        for i, image in enumerate(images):
            reason = check_image(image, "jpeg")
            if reason is not None:
                errors[i] = reason
            elif image.shape[2] == 1:
                grey.append(i)
            else:
                colour.append(i)
        for rows, params in ((colour, self._colour), (grey, self._grey)):
            if not rows:
                continue
            # nvImageCodec reads interleaved RGB (or Y): reorder Spark's BGR, drop alpha
            arrays = [np.ascontiguousarray(for_format(images[i], "jpeg")[:, :, ::-1]) for i in rows]
            for i, blob in zip(rows, self._encode_group(arrays, params), strict=True):
                data[i] = blob
        missing = [i for i in colour + grey if data[i] is None]
        if missing:
            self.fallbacks += len(missing)
            log.info("gpuimages: %d image(s) not encoded by nvImageCodec; encoding them with Pillow", len(missing))
            redo = self._fallback.encode([images[i] for i in missing])
            for i, blob, reason in zip(missing, redo.data, redo.errors, strict=True):
                data[i], errors[i] = blob, reason
        return EncodedBatch(data, errors)

"""The model interface: a batch of images in, one feature vector per image out.

A model says which input it wants (:class:`InputFormat`: layout and per-channel normalisation) so
that whoever decodes can produce exactly that batch: numpy on the host (:meth:`InputFormat.prepare`)
or DALI on the device (``fn.crop_mirror_normalize`` with the same mean and std). Models never decode.
"""

from __future__ import annotations

import abc
import logging
from dataclasses import dataclass
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class InputFormat:
    """What a model reads: float32 RGB ``(x / 255 - mean) / std`` per channel, in ``layout``.

    ``mean`` and ``std`` are in [0, 1] units (ImageNet: ``(0.485, 0.456, 0.406)``, ``(0.229, 0.224, 0.225)``);
    ``mean=(0, 0, 0), std=(1, 1, 1)`` gives ``x / 255``.
    """

    layout: str = "NCHW"
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)

    def __post_init__(self) -> None:
        if self.layout not in LAYOUTS:
            raise ValueError(f"layout: expected one of {', '.join(LAYOUTS)}, got {self.layout!r}")

    def pixel_mean(self) -> list[float]:
        """``mean`` in 0..255 pixel units (what DALI's ``crop_mirror_normalize`` takes)."""
        return [float(m) * 255.0 for m in self.mean]

    def pixel_std(self) -> list[float]:
        """``std`` in 0..255 pixel units."""
        return [float(s) * 255.0 for s in self.std]

    def prepare(self, rgb: np.ndarray) -> np.ndarray:
        """``[N, H, W, 3]`` uint8 RGB to this format's float32 batch (C-contiguous)."""
        return self._normalise(rgb, (0, 1, 2))

    def prepare_spark(self, pixels: np.ndarray) -> np.ndarray:
        """``[N, H, W, 1|3|4]`` uint8 in Spark's layout (grey, BGR, BGRA) to this format's float32 batch.

        The same values as :meth:`prepare` of :func:`to_rgb`'s pixels (grey replicated, alpha dropped), in one
        pass per channel: no RGB copy and no transposed copy of the bytes first.
        """
        channels = pixels.shape[-1]
        if channels not in (1, 3, 4):
            raise ValueError(f"pixels: expected 1, 3 or 4 channels (grey, BGR, BGRA), got {channels}")
        return self._normalise(pixels, (0, 0, 0) if channels == 1 else (2, 1, 0))

    def _normalise(self, pixels: np.ndarray, sources: tuple[int, int, int]) -> np.ndarray:
        """``(x / 255 - mean) / std`` of channel ``sources[c]`` of ``pixels`` as output channel ``c`` (R, G, B),
        computed in float32 as ``x * scale + offset`` straight into the output layout."""
        std = np.asarray(self.std, dtype=np.float64)
        scale = (1.0 / (255.0 * std)).astype(np.float32)
        offset = (-np.asarray(self.mean, dtype=np.float64) / std).astype(np.float32)
        n, h, w = pixels.shape[:3]
        nchw = self.layout == "NCHW"
        out = np.empty((n, 3, h, w) if nchw else (n, h, w, 3), dtype=np.float32)
        for c, source in enumerate(sources):
            plane = out[:, c] if nchw else out[..., c]
            np.multiply(pixels[..., source], scale[c], out=plane, dtype=np.float32)
            plane += offset[c]
        return out


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """One decoded image in Spark's layout (``(h, w, 1|3|4)`` gray/BGR/BGRA) as ``(h, w, 3)`` RGB."""
    channels = pixels.shape[2]
    if channels == 1:
        return np.repeat(pixels, 3, axis=2)
    return pixels[:, :, 2::-1]


def as_features(out: Any, n: int, who: str) -> np.ndarray:
    """A model's output as ``[n, D]`` float64 (first output flattened per image); a clear error otherwise."""
    if hasattr(out, "detach"):  # a torch tensor
        out = out.detach().cpu().numpy()
    elif hasattr(out, "get") and not isinstance(out, np.ndarray):  # a cupy array
        out = out.get()
    out = np.asarray(out, dtype=np.float64)
    if out.ndim == 0 or out.shape[0] != n:
        raise ValueError(f"{who}: expected an output of shape [N, ...] for N={n} images, got {out.shape}")
    return out.reshape(n, -1)


class Model(abc.ABC):
    """A model backend: :meth:`run` on a host batch; :meth:`run_device` on a DALI device tensor."""

    #: Short name shown in logs.
    name: str = "model"
    #: The batch the model wants.
    input_format: InputFormat = InputFormat()

    @abc.abstractmethod
    def run(self, batch: np.ndarray) -> np.ndarray:
        """``[N, D]`` float64 features of a host batch in :attr:`input_format`."""

    def run_device(self, tensor: Any, n: int) -> np.ndarray:
        """Features of ``n`` images held by a DALI tensor (device or host memory) in :attr:`input_format`.

        The default brings the tensor to host memory and calls :meth:`run`; backends that can read
        device memory (ONNX Runtime with CUDA) override it.
        """
        return self.run(host_array(tensor))


def in_device_memory(tensor: Any) -> bool:
    """True for a DALI tensor in GPU memory (``TensorGPU``, ``TensorListGPU``)."""
    return type(tensor).__name__.endswith("GPU")


def host_array(tensor: Any) -> np.ndarray:
    """A DALI tensor as a numpy array: a view for host tensors, a copy for device tensors."""
    if in_device_memory(tensor):
        tensor = tensor.as_cpu()
    return np.asarray(tensor)

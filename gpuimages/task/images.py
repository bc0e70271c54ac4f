"""The one image batch type of the runtime: decoded pixels in Spark's layout, to and from Arrow.

An :class:`ImageBatch` holds ``n`` images as one contiguous ``uint8`` buffer with offsets (row-major
BGR(A) or grey, Spark's byte layout), their sizes and channel counts, and a reason for every row
without an image (``channels == -1``). Engines return one, the image-struct column of a record batch
is viewed as one without copying pixels (:meth:`ImageBatch.from_struct`), and one becomes Spark's
image struct again without copying pixels (:meth:`ImageBatch.to_struct`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from gpuimages.schema import ARROW_IMAGE_TYPE, IMAGE_FIELDS, mode_for_channels

#: Arrow's 32-bit binary offsets: a ``binary`` column holds less than this many bytes.
ARROW_BINARY_LIMIT = (1 << 31) - 1

#: Reasons for image-struct rows that hold no usable image.
NULL_STRUCT = "no image (null value)"
INVALID_STRUCT = "invalid image (it was not decoded)"


@dataclass
class ImageBatch:
    """Pixels of ``n`` images; ``channels[i] == -1`` marks a row without an image and ``errors[i]`` says why.

    ``present[i]`` is False for a null image struct (kept null when written back).
    """

    height: np.ndarray
    width: np.ndarray
    channels: np.ndarray
    offsets: np.ndarray  # int64, n + 1 entries into ``data``
    data: np.ndarray  # uint8, contiguous
    errors: list[str | None] = field(default_factory=list)
    present: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.present is None:
            self.present = np.ones(len(self.errors), dtype=bool)

    def __len__(self) -> int:
        return len(self.errors)

    @property
    def valid(self) -> np.ndarray:
        """Rows that hold an image."""
        return np.asarray(self.channels) > 0

    def pixels(self, i: int) -> np.ndarray:
        """Image ``i`` as an ``(h, w, c)`` view (an empty array for a row without an image)."""
        if self.channels[i] <= 0:
            return np.zeros((0, 0, 0), dtype=np.uint8)
        chunk = self.data[int(self.offsets[i]) : int(self.offsets[i + 1])]
        return chunk.reshape(int(self.height[i]), int(self.width[i]), int(self.channels[i]))

    def images(self) -> list[np.ndarray | None]:
        """Each row's pixels (a view), None where there is no image."""
        return [self.pixels(i) if self.channels[i] > 0 else None for i in range(len(self))]

    def slice(self, start: int, end: int) -> ImageBatch:
        """Rows ``start:end`` as their own batch (pixel bytes re-based, not copied)."""
        offsets = self.offsets[start : end + 1]
        return ImageBatch(
            self.height[start:end],
            self.width[start:end],
            self.channels[start:end],
            offsets - offsets[0],
            self.data[int(offsets[0]) : int(offsets[-1])],
            self.errors[start:end],
            self.present[start:end],
        )

    def ranges(self, rows: int, max_bytes: int) -> Iterator[tuple[int, int]]:
        """Row ranges of at most ``rows`` rows whose pixels stay within ``max_bytes`` (and Arrow's
        binary limit); an image larger than the budget is a range of its own."""
        limit = min(max_bytes, ARROW_BINARY_LIMIT)
        start, n = 0, len(self)
        while start < n:
            end = start + 1
            while end < n and end - start < rows and self.offsets[end + 1] - self.offsets[start] <= limit:
                end += 1
            yield start, end
            start = end

    def groups(self) -> dict[tuple[int, int, int], list[int]]:
        """Rows with an image grouped by ``(height, width, channels)``, in row order."""
        out: dict[tuple[int, int, int], list[int]] = {}
        for i in np.flatnonzero(self.valid):
            key = (int(self.height[i]), int(self.width[i]), int(self.channels[i]))
            out.setdefault(key, []).append(int(i))
        return out

    def stack(self, rows: Sequence[int]) -> np.ndarray:
        """Same-sized images ``rows`` as one ``[N, H, W, C]`` array."""
        return np.stack([self.pixels(i) for i in rows])

    # ------------------------------------------------------------------ Arrow

    @classmethod
    def from_struct(cls, column: pa.Array | pa.ChunkedArray) -> ImageBatch:
        """View an Arrow image-struct column (Spark's image schema) without copying its pixels.

        A row is an image when the struct and its data are not null, ``nChannels`` is 1, 3 or 4,
        the sizes are positive and ``len(data) == height * width * nChannels``; every other row
        gets a reason (null struct, Spark's invalid row, or sizes that do not match the data).
        """
        if isinstance(column, pa.ChunkedArray):
            column = column.combine_chunks()
        if not isinstance(column, pa.StructArray):
            raise TypeError(f"expected an image struct column, got Arrow type {column.type}")
        n = len(column)
        present = ~_bools(column.is_null())
        height, width, channels = (_ints(column.field(name)) for name in ("height", "width", "nChannels"))
        data = column.field("data")
        if n == 0:
            empty = np.zeros(0, dtype=np.int32)
            return cls(empty, empty, empty, np.zeros(1, np.int64), np.zeros(0, np.uint8), [], present)
        offset_type = np.int64 if pa.types.is_large_binary(data.type) else np.int32
        buffers = data.buffers()
        offsets = np.frombuffer(buffers[1], dtype=offset_type)[data.offset : data.offset + n + 1].astype(np.int64)
        values = np.frombuffer(buffers[2], dtype=np.uint8) if buffers[2] is not None else np.zeros(0, np.uint8)
        lengths = offsets[1:] - offsets[:-1]
        ok = (
            present
            & ~_bools(data.is_null())
            & np.isin(channels, (1, 3, 4))
            & (height > 0)
            & (width > 0)
            & (lengths == height.astype(np.int64) * width * channels)
        )
        errors: list[str | None] = []
        for i in range(n):
            if ok[i]:
                errors.append(None)
            elif not present[i]:
                errors.append(NULL_STRUCT)
            elif channels[i] == -1:
                errors.append(INVALID_STRUCT)
            else:
                errors.append(
                    f"inconsistent image struct: height={height[i]}, width={width[i]}, nChannels={channels[i]} "
                    "do not match its data"
                )
        return cls(
            np.where(ok, height, -1).astype(np.int32),
            np.where(ok, width, -1).astype(np.int32),
            np.where(ok, channels, -1).astype(np.int32),
            offsets,
            values,
            errors,
            present,
        )._only_valid_bytes(ok)

    def _only_valid_bytes(self, ok: np.ndarray) -> ImageBatch:
        """Rows without an image keep no bytes (their offsets collapse); a copy only when needed."""
        lengths = self.offsets[1:] - self.offsets[:-1]
        if not np.any(lengths[~ok]):
            return self
        keep = [self.pixels(i).reshape(-1) for i in range(len(self)) if ok[i]]
        sizes = np.where(ok, lengths, 0)
        offsets = np.zeros(len(self) + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        data = np.concatenate(keep) if keep else np.zeros(0, np.uint8)
        return ImageBatch(self.height, self.width, self.channels, offsets, data, self.errors, self.present)

    def to_struct(
        self, origins: pa.Array | Sequence[str | None], data_type: pa.DataType | None = None
    ) -> pa.StructArray:
        """Spark's image-struct column for these rows, without copying the pixel bytes.

        Rows without an image get Spark's invalid row (-1 sizes and mode, empty data); rows whose
        ``present`` flag is False are null structs. ``data_type`` is ``binary`` (default) or
        ``large_binary`` (what Spark sends with ``useLargeVarTypes``).
        """
        n = len(self)
        data_type = data_type or pa.binary()
        valid = self.valid
        height = np.where(valid, self.height, -1).astype(np.int32)
        width = np.where(valid, self.width, -1).astype(np.int32)
        channels = np.where(valid, self.channels, -1).astype(np.int32)
        modes = np.array([mode_for_channels(c) for c in channels], dtype=np.int32)
        large = pa.types.is_large_binary(data_type)
        if not large and self.offsets[-1] > ARROW_BINARY_LIMIT:
            raise ValueError(f"an output batch holds {int(self.offsets[-1])} bytes, over Arrow's 2 GiB binary limit")
        offsets = np.asarray(self.offsets, dtype=np.int64 if large else np.int32)
        binary = pa.Array.from_buffers(data_type, n, [None, pa.py_buffer(offsets), pa.py_buffer(self.data)])
        origin = origins if isinstance(origins, pa.Array) else pa.array(list(origins), type=pa.string())
        if pa.types.is_null(origin.type):
            origin = origin.cast(pa.string())
        children = [origin, pa.array(height), pa.array(width), pa.array(channels), pa.array(modes), binary]
        fields = [pa.field(name, child.type) for name, child in zip(IMAGE_FIELDS, children, strict=True)]
        mask = None if bool(np.all(self.present)) else pa.array(~np.asarray(self.present, dtype=bool))
        return pa.StructArray.from_arrays(children, fields=fields, mask=mask)


def _bools(array: pa.Array) -> np.ndarray:
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=bool)


def _ints(array: pa.Array) -> np.ndarray:
    return np.asarray(array.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)


class ImageBatchBuilder:
    """Collects per-row results in input order and packs them into an :class:`ImageBatch`."""

    def __init__(self, size: int) -> None:
        self._arrays: list[np.ndarray | None] = [None] * size
        self._errors: list[str | None] = [None] * size
        self._owned: set[int] = set()

    def set_image(self, i: int, pixels: np.ndarray, owned: bool = False) -> None:
        """Record image ``i`` as an ``(h, w)`` or ``(h, w, c)`` uint8 array in BGR(A) order.

        ``owned``: the array is the batch's to keep (nothing else holds or rewrites it), so a batch
        whose only image it is uses it without a copy.
        """
        if pixels.ndim == 2:
            pixels = pixels[:, :, None]
        self._arrays[i] = pixels
        self._errors[i] = None
        if owned:
            self._owned.add(i)
        else:
            self._owned.discard(i)

    def set_error(self, i: int, reason: str) -> None:
        """Record that row ``i`` has no image, and why."""
        self._arrays[i] = None
        self._errors[i] = reason
        self._owned.discard(i)

    def error(self, i: int) -> str | None:
        """The reason recorded for row ``i``, if any."""
        return self._errors[i]

    def build(self) -> ImageBatch:
        """Pack the images into one contiguous buffer.

        A batch whose only image is ``owned`` keeps that image's buffer (no copy); otherwise each
        image is released as soon as it is copied, so packing holds about the batch plus one image.
        """
        n = len(self._arrays)
        height = np.full(n, -1, dtype=np.int32)
        width = np.full(n, -1, dtype=np.int32)
        channels = np.full(n, -1, dtype=np.int32)
        sizes = np.zeros(n, dtype=np.int64)
        for i, arr in enumerate(self._arrays):
            if arr is not None:
                height[i], width[i], channels[i] = arr.shape
                sizes[i] = arr.size
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(sizes, out=offsets[1:])
        present = [i for i, arr in enumerate(self._arrays) if arr is not None]
        single = self._arrays[present[0]] if len(present) == 1 and present[0] in self._owned else None
        if single is not None and single.flags.c_contiguous:
            data = single.reshape(-1)
        else:
            data = np.empty(int(offsets[-1]), dtype=np.uint8)
            for i, arr in enumerate(self._arrays):
                if arr is not None:
                    data[offsets[i] : offsets[i + 1]].reshape(arr.shape)[...] = arr
                    self._arrays[i] = None
        self._arrays = [None] * n
        self._owned.clear()
        return ImageBatch(height, width, channels, offsets, data, list(self._errors))


def batch_of(images: Sequence[np.ndarray | None], errors: Sequence[str | None]) -> ImageBatch:
    """An :class:`ImageBatch` of ``images`` (None rows take ``errors[i]``)."""
    out = ImageBatchBuilder(len(images))
    for i, (image, error) in enumerate(zip(images, errors, strict=True)):
        if image is None:
            out.set_error(i, error or INVALID_STRUCT)
        else:
            out.set_image(i, image)
    return out.build()


def list_column(rows: Sequence[np.ndarray | None], value_type: pa.DataType) -> pa.ListArray:
    """A ``list<value_type>`` column from 1-D arrays; None rows are null lists."""
    sizes = np.array([0 if r is None else r.size for r in rows], dtype=np.int64)
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if offsets[-1] > ARROW_BINARY_LIMIT:
        raise ValueError(f"an output batch holds {int(offsets[-1])} values, over Arrow's 32-bit list offsets")
    dtype = value_type.to_pandas_dtype()
    parts = [np.asarray(r, dtype=dtype).reshape(-1) for r in rows if r is not None]
    values = pa.array(np.concatenate(parts) if parts else np.zeros(0, dtype=dtype), type=value_type)
    mask = pa.array(np.array([r is None for r in rows], dtype=bool), type=pa.bool_())
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32), type=pa.int32()), values, mask=mask)


__all__ = ["ARROW_IMAGE_TYPE", "ImageBatch", "ImageBatchBuilder", "batch_of", "list_column"]

"""gpuimages: images into Spark DataFrames in Spark's image schema, decoded on GPU (DALI) or CPU (Pillow).

    >>> import gpuimages
    >>> df = gpuimages.read_images(spark, "/data/images", recursive=True, device="auto")
    >>> jpegs = gpuimages.encode_images(df, "image", format="jpeg", quality=90)
    >>> report = gpuimages.write_images(df, "/data/thumbs", format="jpeg")
    >>> shards = gpuimages.write_webdataset(df, "/data/shards", label_col="label")

Importing this package imports neither pyspark's JVM side nor DALI/cupy, and needs no Java (a GPU worker
or a benchmark host may have none); engines load on executors, and
:func:`gpuimages.session.local_session` finds a Java runtime when it starts a session.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = [
    "read_images", "decode_images", "encode_images", "transcode_images", "transcode_files", "write_images",
    "write_webdataset", "__version__",
]

if TYPE_CHECKING:  # pragma: no cover
    from gpuimages.decode import decode_images
    from gpuimages.encode import encode_images
    from gpuimages.reader import read_images
    from gpuimages.transcode import transcode_files, transcode_images
    from gpuimages.webdataset import write_webdataset
    from gpuimages.write import write_images

#: Public functions and the module each is imported from when first used.
_LAZY = {
    "read_images": "gpuimages.reader",
    "decode_images": "gpuimages.decode",
    "encode_images": "gpuimages.encode",
    "transcode_images": "gpuimages.transcode",
    "transcode_files": "gpuimages.transcode",
    "write_images": "gpuimages.write",
    "write_webdataset": "gpuimages.webdataset",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'gpuimages' has no attribute {name!r}")

"""Whether encoded bytes decode with the reader training code uses: Pillow, as the ``webdataset`` package's
``decode("pil")`` and torchvision's loaders open them (``Image.open(...).load()``, truncated data refused).

Used by the shard writer for bytes it writes as they are (a binary column): a file Spark's image source
reads as valid (a truncated JPEG, with ``strict=False``) would otherwise stop a training epoch with
``OSError: image file is truncated``. JPEG is decoded at 1/8 scale (libjpeg's DCT scaling reads the whole
entropy-coded stream, so a cut file fails the same way, about 10x faster).
"""

from __future__ import annotations

import io


def decode_problem(blob: bytes) -> str | None:
    """Why Pillow (truncated data refused) cannot decode ``blob``, or None when it can."""
    from PIL import Image, ImageFile

    from gpuimages.engines.pillow import TRUNCATED_LOCK  # the lock that guards Pillow's process-wide flag

    with TRUNCATED_LOCK:  # a load that allows truncated data must not run meanwhile
        before = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = False
        try:
            with Image.open(io.BytesIO(blob)) as im:
                if im.format == "JPEG":
                    im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
                im.load()
        except Exception as exc:  # noqa: BLE001 - any failure is the reason
            return (f"not written: training readers cannot decode these bytes (Pillow, as webdataset's "
                    f"decode('pil'): {type(exc).__name__}: {exc})")
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = before
    return None

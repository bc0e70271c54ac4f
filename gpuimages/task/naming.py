"""How a row's file is named: safe parts, names cut to the filesystem's limit, clash suffixes, claim keys.

Pure functions, used by the writers in tasks (:mod:`gpuimages.task.claims`, the shard step) and by the
driver to say where files go.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from urllib.parse import unquote

#: The mark put before a name Spark's file sources would skip (``_0001`` -> ``~_0001``, ``.cache`` -> ``~.cache``).
VISIBLE_MARK = "~"
#: Folder for rows whose ``partition_by`` value is null (visible: ``__null__`` would be skipped by Spark's readers).
NULL_FOLDER = "~null"
#: The name of a part that has nothing left once separators, control characters and spaces are replaced.
EMPTY_NAME = "~empty"
#: Longest file or folder name written, in bytes (the limit of ext4, XFS, btrfs, NTFS, APFS, S3 UIs).
NAME_MAX = 255

_UNSAFE = re.compile(r"[\x00-\x1f\x7f-\x9f/\\:*?\"<>|]+")


def signature_extension(blob: bytes) -> str | None:
    """File extension from the leading bytes (JPEG, PNG, GIF, BMP, WebP, TIFF), else None."""
    if blob[:3] == b"\xff\xd8\xff":
        return "jpg"
    if blob[:8] == b"\x89PNG\r\n\x1a\n":
        return "png"
    if blob[:6] in (b"GIF87a", b"GIF89a"):
        return "gif"
    if blob[:2] == b"BM":
        return "bmp"
    if blob[:4] == b"RIFF" and blob[8:12] == b"WEBP":
        return "webp"
    if blob[:4] in (b"II*\x00", b"MM\x00*"):
        return "tif"
    return None


def spark_hidden(name: str) -> bool:
    """Whether Spark's file sources (the image source, ``binaryFile``, Parquet...) skip a file or folder of this
    name: a leading ``_`` without ``=``, a leading ``.``, a ``._COPYING_`` ending. (The listing's
    ``HadoopFSUtils.shouldFilterOutPathName`` keeps ``_metadata*`` and ``_common_metadata*`` for Parquet, but
    ``PartitioningAwareFileIndex.isDataPath`` then drops them as data files, so they are hidden too.)"""
    return (name.startswith("_") and "=" not in name) or name.startswith(".") or name.endswith("._COPYING_")


def visible(name: str) -> str:
    """``name`` as a name Spark's file sources read: a hidden name gets :data:`VISIBLE_MARK` before it
    (``_0001`` -> ``~_0001``, ``.`` -> ``~.``) and, where it ends in ``._COPYING_``, after it."""
    if name.startswith(("_", ".")) and spark_hidden(name):
        name = VISIBLE_MARK + name
    return name + VISIBLE_MARK if name.endswith("._COPYING_") else name


def safe_part(text: str) -> str:
    """A file or folder name with separators and control characters replaced and surrounding spaces removed,
    never "", "." or "..", and never hidden from Spark's file sources (:func:`visible`); nothing left gives
    :data:`EMPTY_NAME`."""
    cleaned = _UNSAFE.sub("_", text).strip()
    return visible(cleaned) if cleaned else EMPTY_NAME


def _encoded(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


def _short_hash(text: str) -> str:
    return hashlib.blake2b(_encoded(text), digest_size=4).hexdigest()


def fit_name(stem: str, ext: str | None = None, limit: int = NAME_MAX) -> str:
    """``stem.ext`` within ``limit`` bytes (UTF-8). A longer stem is cut at a character boundary and
    marked with ``~`` and a hash of the whole stem, so two long names that share their start stay apart
    and the same name is always cut the same way; the extension is kept."""
    suffix = f".{ext}" if ext else ""
    if len(_encoded(suffix)) > limit // 2:  # an absurd "extension": part of the stem
        stem, suffix = stem + suffix, ""
    name = stem + suffix
    if len(_encoded(name)) <= limit:
        return name
    mark = f"~{_short_hash(stem)}"
    room = limit - len(_encoded(mark + suffix))
    cut = _encoded(stem)[:room].decode("utf-8", "ignore")
    return f"{cut}{mark}{suffix}"


def file_stem(origin: str | None, name: str | None) -> tuple[str | None, str | None]:
    """Stem and extension of the target file from ``name`` (a name column) or the origin's last part."""
    if not name and not origin:
        return None, None
    # a name column is taken literally; an origin is a URI, %-escaped
    source = str(name) if name else unquote(str(origin))
    last = source.rstrip("/").rsplit("/", 1)[-1]
    stem, dot, ext = last.rpartition(".")
    if not dot or not stem:
        return safe_part(last), None
    return safe_part(stem), _UNSAFE.sub("_", ext).strip().lower() or None


def clash_suffix(key: str) -> str:
    """A short deterministic suffix for a name already taken (same inputs: same suffix on a retry)."""
    return _short_hash(key)


def claim_key(rel: str) -> str:
    """The claim file name for a target path relative to the destination.

    Names that differ only in case or Unicode normalisation share a claim, so they never land on one
    file of a case-insensitive or normalising filesystem (macOS, SMB, some FUSE mounts).
    """
    canonical = unicodedata.normalize("NFC", rel).casefold()
    return hashlib.blake2b(_encoded(canonical), digest_size=16).hexdigest()

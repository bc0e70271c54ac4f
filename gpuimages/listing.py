"""Listing and sampling files through Spark's ``binaryFile`` source (DataFrame API only).

Spark's file sources skip zero-byte files when they plan splits, but ``DataFrame.inputFiles()``
still lists them; the listing here is ``inputFiles()``, so every file gets a row later.
Paths are sampled on the driver by a seeded hash of the path, before any file is read.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, unquote

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, DataFrameReader, SparkSession

# Characters java.net.URI leaves unquoted in a path (unreserved, punct, '/', '@'); others are %-escaped.
_URI_PATH_SAFE = "/@_-!.~'()*,;:$&+="
_GLOB_CHARS = re.compile(r"([\\*?\[\]{}])")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):(.*)$")


def normalize_paths(path: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Validate ``path`` (a path, glob, or list of them) and return a list of strings."""
    items: Iterable = [path] if isinstance(path, (str, os.PathLike)) else path
    if not isinstance(items, (list, tuple)):
        raise TypeError(f"path: expected a string, a path or a list of them, got {type(path).__name__}")
    out = []
    for p in items:
        if not isinstance(p, (str, os.PathLike)) or not str(p):
            raise TypeError(f"path: expected non-empty strings or paths, got {p!r}")
        out.append(os.fspath(p))
    if not out:
        raise ValueError("path: expected at least one path, got an empty list")
    return out


def _uri_quote(text: str) -> str:
    """%-escape like ``java.net.URI``: ASCII outside the path's legal set; non-ASCII printable kept."""
    if text.isascii():
        return quote(text, safe=_URI_PATH_SAFE)
    out = []
    for ch in text:
        if ord(ch) > 127 and ch.isprintable() and not ch.isspace():
            out.append(ch)
        else:
            out.append(quote(ch, safe=_URI_PATH_SAFE))
    return "".join(out)


def to_origin(path: str) -> str:
    """Spark image-source ``origin`` for a Hadoop path string as ``binaryFile`` gives it.

    ``file:/tmp/a b.jpg`` -> ``file:///tmp/a%20b.jpg``; ``s3a://bucket/a b.jpg`` ->
    ``s3a://bucket/a%20b.jpg`` (the path part %-escaped as ``java.net.URI`` does).
    """
    m = _SCHEME.match(path)
    if not m:
        return _uri_quote(path)
    scheme, rest = m.groups()
    if rest.startswith("//"):
        slash = rest.find("/", 2)
        authority, rest = (rest[2:], "") if slash < 0 else (rest[2:slash], rest[slash:])
    else:
        authority = ""
    return f"{scheme}://{authority}{_uri_quote(rest)}"


def escape_glob(path: str) -> str:
    """Escape Hadoop glob characters so a listed file name is loaded literally."""
    return _GLOB_CHARS.sub(r"\\\1", path)


def load_path(origin: str) -> str:
    """The string to ``load()`` one listed file by (``inputFiles()`` entries are %-escaped URIs)."""
    return escape_glob(unquote(origin))


def sample_keep(path: str, ratio: float, seed: int) -> bool:
    """Deterministic Bernoulli(ratio) choice for ``path`` under ``seed`` (stable across runs)."""
    if ratio >= 1.0:
        return True
    digest = hashlib.blake2b(f"{seed}\0{path}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64 < ratio


def sample_paths(paths: Sequence[str], ratio: float, seed: int) -> list[str]:
    """The paths kept by :func:`sample_keep`, in their original order."""
    return [p for p in paths if sample_keep(p, ratio, seed)]


def folder_label(origin: str) -> str:
    """The parent folder name of a file (decoded), used by ``label_from_folder``."""
    parts = unquote(origin).rstrip("/").split("/")
    return parts[-2] if len(parts) >= 2 else ""


def binary_reader(spark: SparkSession, recursive: bool, path_glob_filter: str | None) -> DataFrameReader:
    """A ``binaryFile`` reader that keeps going past unreadable files (they get rows later)."""
    reader = spark.read.format("binaryFile").option("ignoreCorruptFiles", "true").option("ignoreMissingFiles", "true")
    if recursive:
        reader = reader.option("recursiveFileLookup", "true")
    if path_glob_filter:
        reader = reader.option("pathGlobFilter", path_glob_filter)
    return reader


@dataclass
class Listing:
    """Files found for a read: the ``binaryFile`` DataFrame and every file's image origin."""

    frame: DataFrame
    files: list[str]


def list_files(
    spark: SparkSession, paths: list[str], *, recursive: bool, path_glob_filter: str | None
) -> Listing:
    """List ``paths`` with Spark (driver-side file index, no Spark job, no file opened).

    Raises ``FileNotFoundError`` naming the missing path when Spark reports one.
    """
    reader = binary_reader(spark, recursive, path_glob_filter)
    try:
        frame = reader.load(paths)
        files = sorted(frame.inputFiles())
    except Exception as exc:  # noqa: BLE001 - classic and Connect raise different classes
        text = str(exc)
        if "PATH_NOT_FOUND" in text or "Path does not exist" in text:
            missing = re.search(r"Path does not exist: (\S+?)\.?(\s|$)", text)
            where = missing.group(1) if missing else ", ".join(paths)
            raise FileNotFoundError(f"path: expected an existing file, folder or glob, got {where}") from None
        raise
    return Listing(frame, files)

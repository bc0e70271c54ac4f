"""The one URI parser: schemes, image-source origins, local paths, Hadoop glob escaping.

A leaf module (no gpuimages import), used by the driver and by tasks alike:

- an **origin** is the URI Spark's image source gives a file (``file:///tmp/a%20b.jpg``): the path part
  %-escaped as ``java.net.URI`` escapes it (:func:`to_origin`);
- a **load path** is what ``DataFrameReader.load`` takes (Hadoop glob characters escaped, :func:`load_path`);
- a **local path** is a plain filesystem path: of a ``file:`` URI (:func:`file_uri_path`), of a ``dbfs:``
  URI through the Databricks FUSE mounts (:func:`fuse_path`), or of a destination root (:func:`local_root_path`).
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import quote, unquote

# Characters java.net.URI leaves unquoted in a path (unreserved, punct, '/', '@'); others are %-escaped.
URI_PATH_SAFE = "/@_-!.~'()*,;:$&+="
GLOB_CHARS = re.compile(r"([\\*?\[\]{}])")
#: A URI scheme (RFC 3986), as a regular expression (Python's and Spark's alike).
SCHEME_PATTERN = "[A-Za-z][A-Za-z0-9+.-]*"
_SCHEME = re.compile(f"^({SCHEME_PATTERN}):(.*)$", re.DOTALL)
_EMPTY_AUTHORITY = re.compile(f"^({SCHEME_PATTERN}):///")
#: Schemes whose files are on this machine's filesystem (``dbfs:`` through the Databricks FUSE mounts).
LOCAL_SCHEMES = ("file", "dbfs")
#: Where Databricks mounts ``dbfs:/`` on every node (``dbfs:/Volumes/...`` is mounted at ``/Volumes``).
DBFS_MOUNT = "/dbfs"


def split_scheme(path: str) -> tuple[str | None, str]:
    """``(scheme, rest)`` of a URI, the scheme lower-cased; ``(None, path)`` for a plain path or a Windows
    drive letter (``C:\\x``)."""
    m = _SCHEME.match(path)
    if m is None or len(m.group(1)) == 1:
        return None, path
    return m.group(1).lower(), m.group(2)


def scheme_of(path: str) -> str | None:
    """The lower-cased scheme of a URI, None for a plain path (see :func:`split_scheme`)."""
    return split_scheme(path)[0]


def is_local(path: str) -> bool:
    """True for plain paths (FUSE mounts included), ``file:`` URIs and ``dbfs:`` paths (written and read
    through the Databricks FUSE mounts)."""
    return scheme_of(path) in (None, *LOCAL_SCHEMES)


def split_authority(rest: str) -> tuple[str | None, str]:
    """``//host/p`` -> (``host``, ``/p``); a rest without ``//`` has no authority (None)."""
    if not rest.startswith("//"):
        return None, rest
    slash = rest.find("/", 2)
    return (rest[2:], "") if slash < 0 else (rest[2:slash], rest[slash:])


def _java_quotes(ch: str) -> bool:
    """Whether ``java.net.URI`` %-escapes this non-ASCII character: ISO controls and space separators."""
    return 0x80 <= ord(ch) <= 0x9F or unicodedata.category(ch) in ("Zs", "Zl", "Zp")


def uri_quote(text: str) -> str:
    """%-escape like ``java.net.URI``: ASCII outside the path's legal set (controls such as a newline
    included), and of the rest only C1 controls and Unicode space separators; other characters stay."""
    if text.isascii():
        return quote(text, safe=URI_PATH_SAFE)
    out = []
    for ch in text:
        if ord(ch) > 127 and not _java_quotes(ch):
            out.append(ch)
        else:
            out.append(quote(ch, safe=URI_PATH_SAFE))
    return "".join(out)


def to_origin(path: str) -> str:
    """Spark image-source ``origin`` for a Hadoop path string as ``binaryFile`` gives it.

    ``file:/tmp/a b.jpg`` -> ``file:///tmp/a%20b.jpg``; ``s3a://bucket/a b.jpg`` ->
    ``s3a://bucket/a%20b.jpg`` (the path part %-escaped as ``java.net.URI`` does, a newline as ``%0A``).
    """
    m = _SCHEME.match(path)
    if not m:
        return uri_quote(path)
    scheme, rest = m.groups()
    authority, rest = split_authority(rest)
    return f"{scheme}://{authority or ''}{uri_quote(rest)}"


def escape_glob(path: str) -> str:
    """Escape Hadoop glob characters so a listed file name is loaded literally."""
    return GLOB_CHARS.sub(r"\\\1", path)


def load_path(origin: str) -> str:
    """The string to ``load()`` one listed file by (``inputFiles()`` entries are %-escaped URIs)."""
    return escape_glob(unquote(origin))


def file_uri_path(uri: str, *, escaped: bool = True) -> str | None:
    """The local path of a ``file:`` URI with no host (or ``localhost``), None for anything else.

    ``file:///tmp/a%20b.jpg`` -> ``/tmp/a b.jpg`` (``escaped``: the URI is %-escaped, as origins are);
    ``escaped=False`` for a Hadoop load path (``file:/tmp/a b.jpg``), which is taken as written.
    """
    scheme, rest = split_scheme(uri)
    if scheme != "file":
        return None
    authority, rest = split_authority(rest)
    if authority not in (None, "", "localhost"):
        return None
    return unquote(rest) if escaped else rest


def fuse_path(dbfs_path: str) -> str:
    """The Databricks FUSE path of a ``dbfs:`` path's part after the scheme (``/Volumes/x`` stays, ``/a`` ->
    ``/dbfs/a``)."""
    local = dbfs_path.lstrip("/")
    return f"/{local}" if local == "Volumes" or local.startswith("Volumes/") else f"{DBFS_MOUNT}/{local}"


def local_root_path(root: str) -> str:
    """A plain path for a local destination (``file:///tmp/x`` -> ``/tmp/x``; ``dbfs:/x`` -> ``/dbfs/x`` and
    ``dbfs:/Volumes/x`` -> ``/Volumes/x``, the FUSE mounts reads use too; a plain path as it is)."""
    if scheme_of(root) == "dbfs":
        local = fuse_path(root[5:])
        return local if local.startswith("/Volumes") else local.rstrip("/")
    if scheme_of(root) == "file":
        authority, rest = split_authority(root[5:])
        return unquote(rest if authority is not None else root[5:])
    return root


def origin_local_path(origin: str) -> str | None:
    """Where a task opens a %-escaped origin on its own filesystem: a plain path as it is, ``file:`` URIs,
    ``dbfs:`` through the FUSE mounts; None for other schemes."""
    scheme, rest = split_scheme(origin)
    if scheme is None:
        return origin
    if scheme == "file":
        _, rest = split_authority(unquote(rest))
        return rest or "/"
    if scheme == "dbfs":
        return fuse_path(unquote(rest))
    return None


def file_path_form(origin: str) -> str:
    """An origin as Spark's ``_metadata.file_path`` writes it: ``scheme:///p`` -> ``scheme:/p`` (the empty
    authority dropped); other origins as they are."""
    return _EMPTY_AUTHORITY.sub(r"\1:/", origin, count=1)


def sample_key(origin: str) -> str:
    """What a file's seeded sample is decided on: its origin in ``_metadata.file_path``'s form
    (:func:`file_path_form`), S3 spelled ``s3a://`` or ``s3n://`` as ``s3://`` (the same objects are sampled
    whichever a user writes; :func:`gpuimages.sources.columns.file_sample_sql` applies the same rule)."""
    key = file_path_form(origin)
    return "s3://" + key[6:] if key.startswith(("s3a://", "s3n://")) else key

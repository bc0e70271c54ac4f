"""Column expressions of a read's stage input: internal column names, origins, sampling, partition values.

Evaluated by Spark, on classic and Connect sessions alike (no Python object per file).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from gpuimages.task.hashing import SAMPLE_BITS
from gpuimages.uris import SCHEME_PATTERN, uri_quote

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import Column

#: Names a partition column shares with ``binaryFile``'s columns or its metadata column (case-insensitive).
SHADOWING = {"path", "modificationtime", "length", "content", "_metadata"}
#: Spark's name for a null partition value in a directory name.
HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"

#: Internal columns of a stage's input (a partition folder may not take these names).
INTERNAL_PREFIX = "__gpuimages_"
ORIGIN_COL = INTERNAL_PREFIX + "origin"
CONTENT_COL = INTERNAL_PREFIX + "content"
REASON_COL = INTERNAL_PREFIX + "reason"


def quoted(name: str) -> str:
    """A column name for ``F.col``/``select`` taken literally (dots, backticks)."""
    return "`" + name.replace("`", "``") + "`"


def origin_column(file_path: Column) -> Column:
    """``_metadata.file_path`` (``file:/tmp/a%20b.jpg``) as the image origin (``file:///tmp/a%20b.jpg``).

    Both are %-escaped URIs; a scheme followed by a single slash gets the empty authority ``//``
    that ``java.net.URI`` (and so ``inputFiles()`` and Spark's image source) writes.
    """
    from pyspark.sql import functions as F

    return F.regexp_replace(file_path, f"^({SCHEME_PATTERN}):/(?!/)", "$1:///")


def sample_condition(origin: Column, ratio: float, seed: int) -> Column:
    """A seeded Bernoulli(``ratio``) choice per file, as a boolean column over its origin.

    The same choice as :func:`file_sample_condition` makes over the file's ``_metadata.file_path``
    (the origin is turned back into that form first).
    """
    from pyspark.sql import functions as F

    return file_sample_condition(F.regexp_replace(origin, f"^({SCHEME_PATTERN}):///", "$1:/"), ratio, seed)


def file_sample_condition(file_path: Column, ratio: float, seed: int) -> Column:
    """A seeded Bernoulli(``ratio``) choice per file, over ``_metadata.file_path`` (``file:/tmp/a.jpg``).

    ``xxhash64(seed, file_path)`` is Spark's own hash, so the choice is the same on every session
    (classic or Connect), every run and every Spark version that has ``xxhash64`` (3.0+). It is
    evaluated for every listed file when Spark prunes its listing, so it is kept to one hash (no
    string rewriting). A ratio of 0 is a constant false, which Spark's optimiser turns into an empty
    relation (nothing is read).
    """
    from pyspark.sql import functions as F

    if ratio <= 0:
        return F.lit(False)
    threshold = int(round(ratio * (1 << SAMPLE_BITS)))
    seed64 = (int(seed) + (1 << 63)) % (1 << 64) - (1 << 63)  # any Python int, as a signed 64-bit value
    # S3 spelled s3a:// (or s3n://) hashes as s3://: the same objects are sampled whichever a user writes
    file_path = F.when(file_path.startswith("s3a://") | file_path.startswith("s3n://"),
                       F.concat(F.lit("s3://"), F.substring(file_path, 7, 1 << 30))).otherwise(file_path)
    bits = F.shiftrightunsigned(F.xxhash64(F.lit(seed64).cast("long"), file_path), 64 - SAMPLE_BITS)
    return bits < F.lit(threshold).cast("long")


def url_decode(col: Column, lenient: bool = False) -> Column:
    """Undo one level of %-escaping (``+`` kept: it is a literal plus in a path). A malformed escape
    (``100%``) leaves the text as it is, as Spark's ``unescapePathName`` leaves it: ``lenient`` (Spark 4+)
    with ``try_url_decode``, else by testing for one first."""
    from pyspark.sql import functions as F

    plus_kept = F.call_function("replace", col, F.lit("+"), F.lit("%2B"))
    if not lenient:  # Spark 3.5 (no try_url_decode): text with a malformed escape is not decoded at all
        return F.when(col.rlike("%(?![0-9A-Fa-f]{2})"), col).otherwise(F.call_function("url_decode", plus_kept))
    return F.coalesce(F.call_function("try_url_decode", plus_kept), col)


#: Characters Spark's ``ExternalCatalogUtils.escapePathName`` %-escapes in partition folder names.
_SPARK_ESCAPED = {chr(c) for c in range(1, 0x20)} | set("\"#%'*/:=?\\\x7f{[]^")


def spark_escape_path_name(text: str) -> str:
    """A partition column name or value as Spark writes it in a folder name (``escapePathName``)."""
    return "".join(f"%{ord(ch):02X}" if ch in _SPARK_ESCAPED else ch for ch in text)


def partition_value(origin: Column, name: str, data_type, lenient: bool = False) -> Column:
    """The value of partition column ``name`` parsed from a file's origin, cast to ``data_type``.

    Spark writes ``name=value`` directory names with both parts escaped (``escapePathName``); the
    origin is a URI, %-escaped once more. The last ``/name=`` segment wins, as in Spark's partition
    discovery of the directories below the base path; null without one. ``lenient`` (Spark 4+, which has
    ``try_url_decode``): a value with a stray ``%`` is kept as written, as Spark keeps it.
    """
    from pyspark.sql import functions as F

    pattern = ".*/" + re.escape(uri_quote(spark_escape_path_name(name))) + "=([^/]*)/"
    raw = F.regexp_extract(origin, pattern, 1)
    value = url_decode(url_decode(raw), lenient=lenient)
    value = F.when(value == F.lit(HIVE_DEFAULT_PARTITION), F.lit(None)).otherwise(value)
    value = F.when(origin.rlike(pattern), value)  # no such folder (a file beside the partitions): null
    return value.cast(data_type)


def folder_column(origin: Column) -> Column:
    """The parent folder's name of a file, decoded, from its origin (``label_from_folder``)."""
    from pyspark.sql import functions as F

    return url_decode(F.element_at(F.split(origin, "/"), -2))

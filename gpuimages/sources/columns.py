"""Column expressions of a read's stage input: internal column names, origins, sampling, partition values.

Evaluated by Spark, on classic and Connect sessions alike (no Python object per file). They are SQL text, which
a session parses in one call (``selectExpr``, ``filter``, ``F.expr``), where a chain of ``F`` functions and
``Column`` methods costs several py4j calls per step.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gpuimages.task.hashing import SAMPLE_BITS
from gpuimages.uris import SCHEME_PATTERN, uri_quote

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame

#: Names a partition column shares with ``binaryFile``'s columns or its metadata column (case-insensitive).
SHADOWING = {"path", "modificationtime", "length", "content", "_metadata"}
#: Spark's name for a null partition value in a directory name.
HIVE_DEFAULT_PARTITION = "__HIVE_DEFAULT_PARTITION__"

#: Internal columns of a stage's input (a partition folder may not take these names).
INTERNAL_PREFIX = "__gpuimages_"
ORIGIN_COL = INTERNAL_PREFIX + "origin"
CONTENT_COL = INTERNAL_PREFIX + "content"
REASON_COL = INTERNAL_PREFIX + "reason"


def partition_alias(index: int) -> str:
    """The internal name partition column ``index`` travels under between the listing and the result."""
    return f"{INTERNAL_PREFIX}part{index}"


def to_partition_names(frame: DataFrame, parts: Sequence[str]) -> DataFrame:
    """``frame`` with its :func:`partition_alias` columns renamed to the partition columns ``parts``.

    Names a user chose (partition folders) never go into SQL text: Spark substitutes ``${...}`` in it
    (``spark.sql.variable.substitute``) even between backticks. ``withColumnsRenamed`` takes them literally.
    """
    return frame.withColumnsRenamed({partition_alias(i): p for i, p in enumerate(parts)}) if parts else frame


def to_partition_aliases(frame: DataFrame, parts: Sequence[str]) -> DataFrame:
    """``frame`` with its partition columns ``parts`` renamed to their :func:`partition_alias` (see
    :func:`to_partition_names`)."""
    return frame.withColumnsRenamed({p: partition_alias(i) for i, p in enumerate(parts)}) if parts else frame


def quoted(name: str) -> str:
    """A column name for ``F.col``/``select`` and SQL text taken literally (dots, backticks)."""
    return "`" + name.replace("`", "``") + "`"


#: Characters a regex treats specially that a one-character class ``[c]`` matches literally.
_CLASS_SAFE = set(".$|?*+(){}")
#: Characters a SQL literal cannot hold as they are, spelled as a regex without them: the quote as the range
#: ``&``..``(`` without ``&`` and ``(``.
_SPELLED = {"'": "[&-(&&[^&(]]"}
#: Characters a backslash-free regex cannot match on their own.
_UNSAFE = set("\\[]^")


def sql_string(text: str) -> str:
    """``text`` as a SQL string literal; it may hold neither a quote nor a backslash, so the literal reads the
    same whatever the parser's escaping (``spark.sql.parser.escapedStringLiterals``)."""
    bad = sorted(set(text) & {"'", "\\"})
    if bad:
        raise ValueError(f"expected text without {bad} for a SQL literal, got {text!r}")
    return "'" + text + "'"


def sql_regex(text: str) -> str:
    """A Java regex matching ``text`` literally, written without a backslash or a quote (special characters as
    one-character classes), for a SQL literal. Used for names that reach a pattern URI-quoted, where ``[``, ``]``,
    ``^`` and backslashes do not occur; any of them raises ``ValueError``."""
    bad = sorted(set(text) & _UNSAFE)
    if bad:
        raise ValueError(f"expected text without {bad} for a pattern, got {text!r}")
    return "".join(_SPELLED.get(ch) or (f"[{ch}]" if ch in _CLASS_SAFE else ch) for ch in text)


def folder_name_regex(name: str) -> str:
    """A regex (see :func:`sql_regex`) matching partition column ``name`` as an origin spells its folder: each
    character as it is or %-escaped as Spark's ``escapePathName`` writes it, then URI-quoted. Spark's partition
    discovery unescapes either, and a folder made by hand need not be escaped (``a{b}=1`` is column ``a{b}``)."""
    pieces = []
    for ch in name:
        forms = {uri_quote(spark_escape_path_name(ch))}
        if ch not in "=/":  # a bare "=" ends the name in a folder name, a bare "/" the folder
            forms.add(uri_quote(ch))
        alternatives = sorted(sql_regex(f) for f in forms)
        pieces.append(alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")")
    return "".join(pieces)


def origin_sql(file_path: str = "_metadata.file_path") -> str:
    """SQL of ``_metadata.file_path`` (``file:/tmp/a%20b.jpg``) as the image origin (``file:///tmp/a%20b.jpg``).

    Both are %-escaped URIs; a scheme followed by a single slash gets the empty authority ``//``
    that ``java.net.URI`` (and so ``inputFiles()`` and Spark's image source) writes.
    """
    return f"regexp_replace({file_path}, '^({SCHEME_PATTERN}):/(?!/)', '$1:///')"


def sample_sql(origin: str, ratio: float, seed: int) -> str:
    """SQL of a seeded Bernoulli(``ratio``) choice per file, a boolean over its origin (SQL ``origin``).

    The same choice as :func:`file_sample_sql` makes over the file's ``_metadata.file_path``
    (the origin is turned back into that form first).
    """
    return file_sample_sql(f"regexp_replace({origin}, '^({SCHEME_PATTERN}):///', '$1:/')", ratio, seed)


def file_sample_sql(file_path: str, ratio: float, seed: int) -> str:
    """SQL of a seeded Bernoulli(``ratio``) choice per file, over ``_metadata.file_path`` (``file:/tmp/a.jpg``).

    ``xxhash64(seed, file_path)`` is Spark's own hash, so the choice is the same on every session
    (classic or Connect), every run and every Spark version that has ``xxhash64`` (3.0+). It is
    evaluated for every listed file when Spark prunes its listing, so it is kept to one hash (no
    string rewriting). A ratio of 0 is a constant false, which Spark's optimiser turns into an empty
    relation (nothing is read).
    """
    if ratio <= 0:
        return "false"
    threshold = int(round(ratio * (1 << SAMPLE_BITS)))
    seed64 = (int(seed) + (1 << 63)) % (1 << 64) - (1 << 63)  # any Python int, as a signed 64-bit value
    # S3 spelled s3a:// (or s3n://) hashes as s3://: the same objects are sampled whichever a user writes
    path = (f"CASE WHEN {file_path} LIKE 's3a://%' OR {file_path} LIKE 's3n://%' "
            f"THEN concat('s3://', substring({file_path}, 7, {1 << 30})) ELSE {file_path} END")
    bits = f"shiftrightunsigned(xxhash64(CAST('{seed64}' AS BIGINT), {path}), {64 - SAMPLE_BITS})"
    return f"{bits} < CAST({threshold} AS BIGINT)"


def url_decode_sql(text: str, lenient: bool = False) -> str:
    """SQL undoing one level of %-escaping of SQL ``text`` (``+`` kept: it is a literal plus in a path). A malformed
    escape (``100%``) leaves the text as it is, as Spark's ``unescapePathName`` leaves it: ``lenient`` (Spark 4+)
    with ``try_url_decode``, else by testing for one first."""
    plus_kept = f"replace({text}, '+', '%2B')"
    if not lenient:  # Spark 3.5 (no try_url_decode): text with a malformed escape is not decoded at all
        return f"CASE WHEN {text} RLIKE '%(?![0-9A-Fa-f]{{2}})' THEN {text} ELSE url_decode({plus_kept}) END"
    return f"coalesce(try_url_decode({plus_kept}), {text})"


#: Characters Spark's ``ExternalCatalogUtils.escapePathName`` %-escapes in partition folder names.
_SPARK_ESCAPED = {chr(c) for c in range(1, 0x20)} | set("\"#%'*/:=?\\\x7f{[]^")


def spark_escape_path_name(text: str) -> str:
    """A partition column name or value as Spark writes it in a folder name (``escapePathName``)."""
    return "".join(f"%{ord(ch):02X}" if ch in _SPARK_ESCAPED else ch for ch in text)


def partition_value_sql(origin: str, name: str, data_type: Any, lenient: bool = False) -> str:
    """SQL of the value of partition column ``name`` parsed from a file's origin (SQL ``origin``), cast to
    ``data_type`` (a Spark ``DataType`` or its SQL name).

    Spark writes ``name=value`` directory names with both parts escaped (``escapePathName``), other tools
    may not (:func:`folder_name_regex`); the origin is a URI, %-escaped once more. The last ``/name=``
    segment wins, as in Spark's partition discovery of the directories below the base path; null without
    one. ``lenient`` (Spark 4+, which has ``try_url_decode``): a value with a stray ``%`` is kept as written,
    as Spark keeps it.
    """
    pattern = sql_string(".*/" + folder_name_regex(name) + "=([^/]*)/")
    value = url_decode_sql(url_decode_sql(f"regexp_extract({origin}, {pattern}, 1)"), lenient=lenient)
    value = f"CASE WHEN {value} = '{HIVE_DEFAULT_PARTITION}' THEN NULL ELSE {value} END"
    sql_type = data_type if isinstance(data_type, str) else data_type.simpleString()
    # no such folder (a file beside the partitions): null
    return f"CAST(CASE WHEN {origin} RLIKE {pattern} THEN {value} END AS {sql_type})"


def folder_sql(origin: str) -> str:
    """SQL of the parent folder's name of a file, decoded, from its origin (SQL ``origin``; ``label_from_folder``)."""
    return url_decode_sql(f"element_at(split({origin}, '/'), -2)")

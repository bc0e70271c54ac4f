"""Store settings, driver side: the Hadoop settings Spark was given, for the executors' fsspec filesystems.

Spark reads ``s3a://`` (and ``gs://``, ``abfss://``) through Hadoop, configured by ``spark.hadoop.fs.*``
settings and the cluster's ``core-site.xml``. The tasks that open archives by path or write files use
fsspec, which reads none of that. :func:`store_settings` collects the relevant Hadoop settings of the
session once, on the driver, as a plain dict that travels in the stage's plan;
:func:`gpuimages.task.filesystems.fsspec_options` turns them into the filesystem's arguments on both
sides. So a MinIO or on-prem endpoint (``fs.s3a.endpoint``), path-style access, keys and region named
only to Spark reach the executors, and nothing falls back to AWS's default endpoint behind the
user's back.

Only the DataFrame API and the session's conf are used, on classic and Spark Connect sessions (where the
server's ``core-site.xml`` is not visible: there only ``spark.hadoop.*`` settings the session reports
are carried).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from gpuimages.sources.file_index import is_connect_session

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Hadoop setting prefixes carried to the executors.
PREFIXES = ("fs.s3a.", "fs.gs.", "fs.azure.")
#: Single Hadoop settings carried as well.
KEYS = ("fs.defaultFS",)
_SEPARATOR = "\x00"


def _classic_settings(spark: SparkSession) -> dict[str, str]:
    """Read in one call (iterating a Java map over py4j costs a call per entry, and an exception at its end):
    the matching entries (values resolved, variables expanded) joined as ``key=value`` lines."""
    conf = spark.sparkContext._jsc.hadoopConfiguration()
    pattern = "^(" + "|".join(re.escape(p) for p in PREFIXES) + ")"
    entries = conf.getValByRegex(pattern).entrySet()
    text = str(spark.sparkContext._jvm.org.apache.commons.lang3.StringUtils.join(entries, _SEPARATOR))
    settings: dict[str, str] = {}
    for entry in text.split(_SEPARATOR) if text else ():
        key, _, value = entry.partition("=")  # Hadoop keys hold no '='
        settings[key] = value
    for key in KEYS:
        value = conf.get(key)
        if value is not None:
            settings[key] = str(value)
    return settings


def _connect_settings(spark: SparkSession) -> dict[str, str]:
    settings: dict[str, str] = {}
    try:
        everything = spark.conf.getAll
        items = everything.items() if isinstance(everything, dict) else everything().items()
    except Exception:  # noqa: BLE001 - older clients: read the known keys one by one
        items = []
    for key, value in items:
        if key.startswith("spark.hadoop.") and value is not None:
            name = key[len("spark.hadoop."):]
            if name.startswith(PREFIXES) or name in KEYS:
                settings[name] = str(value)
    return settings


def store_settings(spark: SparkSession) -> dict[str, str]:
    """The session's Hadoop store settings (``fs.s3a.*``, ``fs.gs.*``, ``fs.azure.*``, ``fs.defaultFS``)."""
    try:
        if is_connect_session(spark):
            return _connect_settings(spark)
        return _classic_settings(spark)
    except Exception as exc:  # noqa: BLE001 - the executors then use their own environment
        log.warning("gpuimages: the session's store settings could not be read (%s); executors use their own "
                    "environment for object stores", exc)
        return {}


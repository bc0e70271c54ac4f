"""The listing of a read as Spark's file index holds it: origins, file count, total bytes.

Classic sessions keep the listing in the JVM (no Python object per file); Spark Connect sessions bring
``inputFiles()`` across once (see ``docs/listing.md``).
"""

from __future__ import annotations

import logging
import re
from typing import TYPE_CHECKING

from gpuimages.planning import plan_partitions

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def is_connect_session(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect session."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def counts(spark: SparkSession, frame: DataFrame) -> tuple[int | None, int | None]:
    """File count and total bytes of the listing without bringing the listing anywhere."""
    if not is_connect_session(spark):
        try:
            jdf = frame._jdf
            return len(jdf.inputFiles()), _jvm_size(jdf)
        except Exception:  # noqa: BLE001 - hints only
            return None, None
    return None, _connect_size_in_bytes(frame)


def listed_origins(spark: SparkSession, frame: DataFrame, slots: int = 1
                   ) -> tuple[DataFrame | None, int | None, int | None]:
    """Every file of ``frame``'s file index as a DataFrame of origins, the file count and total bytes.

    Classic sessions: the listing stays in the JVM (``inputFiles()``'s array is wrapped into a local
    Dataset there; one py4j call, no Python string per file), and the byte total is the relation's
    statistics (the sum of the listed files' sizes Spark keeps). Spark Connect: ``inputFiles()``
    comes back as one gRPC message; past the client's message limit the listing cannot reach the
    driver, and a warning says so (files the scan returns no bytes for then get no row; every other
    file is still read). ``slots``: the cluster's task slots as the conf says (the listing a stage reads
    its local files from gets at least that many partitions, on classic sessions).
    """
    if not is_connect_session(spark):
        try:
            return _listed_on_jvm(spark, frame, slots)
        except Exception as exc:  # noqa: BLE001 - a JVM API that moved: fall back to the client path
            log.warning("gpuimages: JVM-side listing unavailable (%s); listing through inputFiles()", exc)
    try:
        files = frame.inputFiles()
    except Exception as exc:  # noqa: BLE001 - RESOURCE_EXHAUSTED and friends
        log.warning(
            "gpuimages: the file listing could not be brought to the driver (%s); files the scan returns "
            "no bytes for (zero-byte, unreadable, vanished) cannot be counted and get no row. Every other "
            "file is read. Raise the client's gRPC message limit or read fewer files per call to keep them.",
            error_summary(exc),
        )
        return None, None, None
    count = len(files)
    try:
        listed = _listing_view(spark, files)
    except Exception as exc:  # noqa: BLE001 - the listing did not fit in one message to the server
        log.warning(
            "gpuimages: the listing of %d file(s) could not be sent back to the server (%s); files the "
            "scan returns no bytes for (zero-byte, unreadable, vanished) get no row. Every other file is read.",
            count, error_summary(exc),
        )
        listed = None
    del files
    return listed, count, _connect_size_in_bytes(frame)


_GRPC_DETAILS = re.compile(r'details = "([^"]*)"')


def error_summary(exc: BaseException) -> str:
    """One line for a log: the class, the gRPC status and details where there are, else the first line."""
    text = str(exc)
    parts = [type(exc).__name__]
    if "RESOURCE_EXHAUSTED" in text:
        parts.append("RESOURCE_EXHAUSTED, the gRPC message limit")
    details = _GRPC_DETAILS.search(text)
    parts.append(details.group(1) if details else (text.splitlines()[0] if text else ""))
    return ": ".join(p for p in parts if p)[:400]


def _listing_view(spark: SparkSession, files: list[str]) -> DataFrame:
    """The listing as a temporary view on the server (Connect), sent once, now.

    Sending it here (one command) rather than inside the result's plan means a listing too large
    for one message fails on the driver, before anything runs, and the result's plan stays small.
    """
    import uuid

    name = f"gpuimages_listing_{uuid.uuid4().hex}"
    spark.createDataFrame([(f,) for f in files], "origin string").createOrReplaceTempView(name)
    return spark.table(name)


def _listed_on_jvm(spark: SparkSession, frame: DataFrame, slots: int = 1) -> tuple[DataFrame, int, int | None]:
    """The listing as a Dataset over an RDD of ``inputFiles()``'s Java array (no copy of a path in Python).

    An RDD-backed relation, not a local one: a plan holding every path as a literal row (a
    ``LocalRelation``) is hashed, copied and re-analysed by every DataFrame operation built on it, which
    at 100k files cost more than a second per ``read_images`` call; the RDD's slices stay in the driver
    JVM and travel with the tasks that scan them.
    """
    try:
        from pyspark.sql.classic.dataframe import DataFrame as ClassicFrame
    except ImportError:  # pyspark 3.5
        from pyspark.sql.dataframe import DataFrame as ClassicFrame

    jvm = spark.sparkContext._jvm
    jdf = frame._jdf
    files = jdf.inputFiles()  # a Java String[] proxy: its elements stay in the JVM
    count = len(files)
    size = _jvm_size(jdf)
    # planned as the stage plans its partitions, which it can then only coalesce
    slices = plan_partitions(max(slots, spark.sparkContext.defaultParallelism), total_bytes=size, num_files=count)
    try:  # Scala 2.13 (Spark 4)
        paths = jvm.scala.jdk.javaapi.CollectionConverters.asJava(
            jvm.scala.collection.immutable.ArraySeq.unsafeWrapArray(files)
        )
    except Exception:  # noqa: BLE001 - Scala 2.12 (Spark 3.5)
        paths = jvm.scala.collection.JavaConverters.seqAsJavaListConverter(
            jvm.scala.Predef.genericWrapArray(files)
        ).asJava()
    rdd = spark.sparkContext._jsc.parallelize(paths, slices)  # a java.util.List view of the array
    jds = spark._jsparkSession.createDataset(rdd.rdd(), jvm.org.apache.spark.sql.Encoders.STRING())
    listed = ClassicFrame(jds.toDF(), spark).withColumnRenamed("value", "origin")
    return listed, count, size


def _jvm_size(jdf) -> int | None:
    try:
        return int(str(jdf.queryExecution().analyzed().stats().sizeInBytes()))
    except Exception:  # noqa: BLE001 - statistics are a hint
        return None


_SIZE = re.compile(r"sizeInBytes=([0-9.]+)\s*(B|KiB|MiB|GiB|TiB|PiB|EiB)")
_UNITS = {"B": 0, "KiB": 1, "MiB": 2, "GiB": 3, "TiB": 4, "PiB": 5, "EiB": 6}


def parse_size_in_bytes(plan: str) -> int | None:
    """The first ``sizeInBytes=60.3 MiB`` of an ``explain(mode="cost")`` text, in bytes."""
    m = _SIZE.search(plan)
    return int(float(m.group(1)) * 1024 ** _UNITS[m.group(2)]) if m else None


def _connect_size_in_bytes(frame: DataFrame) -> int | None:
    try:
        return parse_size_in_bytes(frame._explain_string(mode="cost"))
    except Exception:  # noqa: BLE001 - statistics are a hint
        return None

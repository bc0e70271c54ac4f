"""What a person sees on the console when a command runs Spark: quiet by default.

A session the command starts gets Spark's log level before the JVM starts (a log4j2 properties file in a
temporary folder, passed with ``-Dlog4j2.configurationFile``), so even start-up lines stay quiet, and no
console progress bar of Spark's (``spark.ui.showConsoleProgress=false``): the command draws its own
(:mod:`gpuimages.progress`). The JDK prints ``WARNING: Using incubator modules: jdk.incubator.vector`` itself
whenever an incubator module is resolved (JEP 11), and Spark's launcher always adds that one
(``JavaModuleOptions``); no JVM option was found that silences the line, and leaving the module out would
change the JVM Spark runs on, so the JVM's stderr goes through a pipe (``launch_gateway``'s ``popen_kwargs``)
that drops that one line and passes every other line on.

A session that is running already (a notebook's, a test run's) is used as it is: it is not stopped afterwards,
and its log level is set for the command only and put back.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

#: Lines of the JVM's stderr dropped on a quiet run (the JDK's own warning, see the module's docstring).
JVM_NOISE = (b"WARNING: Using incubator modules:",)

_LOG4J2 = """\
# gpuimages: Spark's log level for one command ({level} and above)
rootLogger.level = {level}
rootLogger.appenderRef.stderr.ref = console
appender.console.type = Console
appender.console.name = console
appender.console.target = SYSTEM_ERR
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = %d{{yy/MM/dd HH:mm:ss}} %p %c{{1}}: %m%n%ex
# Spark's own classes configured too: its shell logic then takes their level as the console's and does not
# print "Setting default log level" (it does where their level is the root's default)
logger.spark.name = org.apache.spark
logger.spark.level = {level}
"""


def spark_level(verbosity: int) -> str:
    """Spark's log level for ``-v`` counted ``verbosity`` times: ERROR, ERROR, then WARN."""
    return "WARN" if verbosity >= 2 else "ERROR"


def gpuimages_level(verbosity: int) -> int:
    """The ``gpuimages`` loggers' level: warnings, ``-v`` its decisions (INFO), ``-vv`` DEBUG too."""
    return (logging.WARNING, logging.INFO)[verbosity] if verbosity < 2 else logging.DEBUG


@contextmanager
def command_logging(verbosity: int, stream: IO[str] | None = None) -> Iterator[None]:
    """Log the ``gpuimages`` loggers to ``stream`` (stderr) at :func:`gpuimages_level` while the block runs;
    the logger's level, handlers and propagation are put back afterwards (the root logger is not touched)."""
    logger = logging.getLogger("gpuimages")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))  # messages name gpuimages
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(gpuimages_level(verbosity))
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


def log4j2_properties(level: str) -> str:
    """A log4j2 configuration: the root logger at ``level``, to stderr."""
    return _LOG4J2.format(level=level.lower())


def quiet_settings(config_file: str) -> dict[str, str]:
    """Settings of a session started quiet: the log4j2 file for driver and executors, no console progress bar."""
    option = f"-Dlog4j2.configurationFile=file:{config_file}"
    return {
        "spark.driver.extraJavaOptions": option,
        "spark.executor.extraJavaOptions": option,
        "spark.ui.showConsoleProgress": "false",
    }


def _forward(source: IO[bytes], drop: tuple[bytes, ...]) -> None:
    """Copy the JVM's stderr to ours, line by line, without the lines starting with ``drop``."""
    try:
        for line in iter(source.readline, b""):
            if not line.startswith(drop):
                os.write(2, line)
    except (OSError, ValueError):  # our stderr or the pipe closed: the JVM is going away
        pass


def _launch_jvm(settings: dict[str, str]) -> None:
    """Start Spark's JVM (as ``SparkContext`` would) with its stderr filtered; the next context uses it."""
    from pyspark import SparkConf, SparkContext
    from pyspark.java_gateway import launch_gateway

    conf = SparkConf(loadDefaults=False).setAll(list(settings.items()))
    gateway = launch_gateway(conf, popen_kwargs={"stderr": subprocess.PIPE})
    threading.Thread(target=_forward, args=(gateway.proc.stderr, JVM_NOISE), name="jvm-stderr", daemon=True).start()
    SparkContext._ensure_initialized(gateway=gateway)


def _root_level(spark: SparkSession) -> str | None:
    """The JVM's root log level (None where it cannot be read, e.g. Spark Connect)."""
    try:
        return str(spark.sparkContext._jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel().name())
    except Exception:  # noqa: BLE001 - not a classic session, or no log4j2 on the class path
        return None


@contextmanager
def _level_for(spark: SparkSession, level: str) -> Iterator[None]:
    """Spark's log level ``level`` while the block runs, then the level it had."""
    before = _root_level(spark)
    if before is None or before == level:
        yield
        return
    spark.sparkContext.setLogLevel(level)
    try:
        yield
    finally:
        spark.sparkContext.setLogLevel(before)


def running_session() -> SparkSession | None:
    """The session running in this process (a notebook's, a test run's), or None."""
    from pyspark import SparkContext
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is None and SparkContext._active_spark_context is not None:
        active = SparkSession.builder.getOrCreate()
    return active


@contextmanager
def command_session(master: str, app_name: str, verbosity: int = 0) -> Iterator[SparkSession]:
    """A session for one command: the running one (``master`` is then ignored) or a quiet new one, stopped at
    the end. Spark logs at :func:`spark_level` meanwhile."""
    from pyspark import SparkContext

    from gpuimages.java import ensure_java
    from gpuimages.session import local_session, session_settings

    level = spark_level(verbosity)
    spark = running_session()
    if spark is not None:
        log.info("gpuimages: using the running Spark session (master %s)", spark.sparkContext.master)
        with _level_for(spark, level):
            yield spark
        return
    folder = tempfile.mkdtemp(prefix="gpuimages-log4j2-")
    config_file = os.path.join(folder, "log4j2.properties")
    with open(config_file, "w", encoding="utf-8") as out:
        out.write(log4j2_properties(level))
    try:
        settings = quiet_settings(config_file)
        if SparkContext._gateway is None:  # a JVM started earlier in this process keeps its stderr
            ensure_java()
            os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
            os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
            _launch_jvm(session_settings(master, app_name, **settings))
        spark = local_session(master, app_name, **settings)
        try:
            with _level_for(spark, level):  # a JVM that was running already has its own log4j2 configuration
                yield spark
        finally:
            spark.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)

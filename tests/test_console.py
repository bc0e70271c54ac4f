"""What a command shows on the console: the progress bar fed by Spark's status tracker, the quiet log4j2
configuration, and a running session used as it is (not stopped, its log level put back)."""

from __future__ import annotations

import io
import logging

from gpuimages.console import command_logging, command_session, log4j2_properties, spark_level
from gpuimages.progress import Count, Progress, bar, clock, line


def test_bar_and_line_show_done_rate_and_time_left():
    count = Count(done=12, total=40, seconds=4.0)
    assert (count.rate, count.left) == (3.0, 28 / 3)
    assert bar(count, width=10) == "[###-------] 12/40 tasks  3.0/s  0:09 left"
    assert line(count) == "progress: 12/40 tasks (30%), 3.0 tasks/s, about 0:09 left"
    assert line(Count(0, 5, 1.0)) == "progress: 0/5 tasks (0%), 0.0 tasks/s"  # no estimate before a task is done
    assert (clock(3725), clock(None)) == ("1:02:05", "?")


def test_progress_counts_the_block_jobs_tasks(spark):
    spark.range(10, numPartitions=3).count()  # a job outside the block is not counted
    out = io.StringIO()
    with Progress(spark, "test", interval=0.05, stream=out, terminal=False) as progress:
        assert spark.sparkContext.getLocalProperty("spark.jobGroup.id").startswith("gpuimages-")
        spark.range(100, numPartitions=4).rdd.map(lambda x: x).count()
        counted = progress.count()
    assert (counted.done, counted.total) == (4, 4)
    assert spark.sparkContext.getLocalProperty("spark.jobGroup.id") is None
    lines = out.getvalue().splitlines()
    assert all(x.startswith("progress: ") for x in lines)
    assert not lines or lines[-1].startswith("progress: 4/4 tasks (100%)")


def test_progress_on_a_terminal_redraws_one_line(spark):
    out = io.StringIO()
    with Progress(spark, "gpuimages test", interval=0.05, stream=out, terminal=True):
        spark.range(100, numPartitions=2).rdd.map(lambda x: x).count()
    text = out.getvalue()
    assert text.endswith("\n") and text.count("\n") == 1
    assert text.rsplit("\r", 1)[-1].startswith("gpuimages test [########################] 2/2 tasks")


def test_log4j2_configuration_sets_the_level():
    text = log4j2_properties(spark_level(0))
    assert "rootLogger.level = error" in text and "target = SYSTEM_ERR" in text
    assert "rootLogger.level = warn" in log4j2_properties(spark_level(2))


def test_a_running_session_is_used_and_kept(spark):
    jvm = spark.sparkContext._jvm
    before = jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel().name()
    with command_session("local[1]", "ignored", verbosity=2) as session:
        assert session is spark
        assert jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel().name() == "WARN"
    assert jvm.org.apache.logging.log4j.LogManager.getRootLogger().getLevel().name() == before
    assert spark.sparkContext._jsc is not None and spark.range(2).count() == 2


def test_command_logging_is_put_back():
    logger = logging.getLogger("gpuimages")
    saved = (logger.level, logger.propagate, list(logger.handlers))
    out = io.StringIO()
    with command_logging(1, out):
        logging.getLogger("gpuimages.x").info("gpuimages: decided")
        logging.getLogger("gpuimages.x").debug("gpuimages: detail")
    assert out.getvalue() == "INFO gpuimages: decided\n"
    assert (logger.level, logger.propagate, list(logger.handlers)) == saved

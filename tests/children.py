"""JVM options for the test run's Spark drivers, and the environment of child processes that start one."""

from __future__ import annotations

import os
import sys

#: The client compiler only and the serial collector: the tests run many small jobs, for which C2's compile
#: threads and a parallel collector cost CPU they never win back (about a third of the CPU time of
#: test_read_images + test_partitions on the 2-core machine).
JVM_OPTIONS = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC"


def spark_child_env(**extra: str) -> dict[str, str]:
    """This process's environment for a child that starts its own Spark driver (with :data:`JVM_OPTIONS`)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable, **extra}
    env["PYSPARK_SUBMIT_ARGS"] = f'--driver-java-options "{JVM_OPTIONS}" pyspark-shell'
    return env

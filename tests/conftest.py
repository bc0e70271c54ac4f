"""Shared fixtures: one local SparkSession per test run, one Spark Connect server, generated image folders."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root

from children import JVM_OPTIONS  # noqa: E402
from images import odd_files, rgb_array, write_files  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    """A classic local[2] session shared by the whole run."""
    import s3  # the local S3 server and the S3A settings (empty where unavailable)

    from gpuimages.session import local_session

    session = local_session("local[2]", "gpuimages-tests", **{"spark.driver.memory": "2g",
                                                               "spark.driver.extraJavaOptions": JVM_OPTIONS,
                                                               **s3.spark_conf()})
    session.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    yield session
    session.stop()


@pytest.fixture
def restore_session_conf(spark):
    """Put the shared session's conf back as it was after the test.

    ``SparkSession.builder...getOrCreate()`` with a SparkContext running returns the running session
    and writes the builder's settings into its conf: ``gpuimages.session.local_session()`` (the demo,
    the CLI) turns ``spark.master`` into ``local[*]``, which later tests' slot planning reads.
    """
    before = dict(spark.conf.getAll)
    yield
    after = dict(spark.conf.getAll)
    # The session's SQLConf itself: spark.conf.set refuses Spark configs such as spark.driver.memory,
    # which getOrCreate wrote there all the same.
    conf = spark._jsparkSession.sessionState().conf()
    for key in after.keys() - before.keys():
        conf.unsetConf(key)
    for key, value in before.items():
        if after.get(key) != value:
            conf.setConfString(key, value)
    assert dict(spark.conf.getAll) == before


@pytest.fixture(scope="session")
def connect_server(tmp_path_factory):
    """The ``sc://127.0.0.1:PORT`` address of one local Spark Connect server shared by the run's Connect tests.

    Started the first time a test asks for it (a child process: see ``connect_server.py``); use it
    through ``connect_server.connect_session(address)``.
    """
    import connect_server as server

    reason = server.connect_unavailable()
    if reason:
        pytest.skip(reason)
    proc, address = server.start_server(tmp_path_factory.mktemp("connect-server") / "server.log")
    yield address
    server.stop_server(proc)


@pytest.fixture(scope="session")
def odd_dir(tmp_path_factory) -> Path:
    """A folder with every odd case from :func:`images.odd_files`."""
    folder = tmp_path_factory.mktemp("odd")
    write_files(folder, odd_files())
    return folder


@pytest.fixture(scope="session")
def class_dir(tmp_path_factory) -> Path:
    """Two class folders (cats/, dogs/) of small JPEGs and PNGs."""
    from images import encode

    folder = tmp_path_factory.mktemp("classes")
    files = {}
    for i in range(6):
        files[f"cats/cat{i}.jpg"] = encode(rgb_array(24, 32, seed=i), "JPEG", quality=90)
        files[f"dogs/dog{i}.png"] = encode(rgb_array(16, 20, seed=100 + i), "PNG")
    write_files(folder, files)
    return folder

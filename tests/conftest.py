"""Shared fixtures: one local SparkSession per test run, generated image folders."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))  # the benchmarks package lives at the repo root

from images import odd_files, rgb_array, write_files  # noqa: E402


@pytest.fixture(scope="session")
def spark():
    """A classic local[2] session shared by the whole run."""
    import s3  # the local S3 server and the S3A settings (empty where unavailable)

    from gpuimages.session import local_session

    session = local_session("local[2]", "gpuimages-tests", **{"spark.driver.memory": "2g", **s3.spark_conf()})
    session.sparkContext.setLogLevel("ERROR")
    logging.getLogger("py4j").setLevel(logging.WARNING)
    yield session
    session.stop()


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

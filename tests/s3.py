"""A local S3 server for the tests (moto, on 127.0.0.1 only) and the Spark settings that point ``s3a://`` at it.

The server starts once per test run, before the shared Spark session (``tests/conftest.py`` adds
:func:`spark_conf` to that session's settings), on a free loopback port; every request it serves is
counted (:attr:`S3Server.requests`), so tests and benchmarks can say how many requests something took.
No other address is contacted: the settings name this endpoint and dummy keys, and the environment
variables that could point the AWS SDKs elsewhere are removed for the run.

Where the jars (``tests/s3_jars.py``) or moto are not available, :data:`UNAVAILABLE` holds the reason
and :func:`require_s3` skips the test with it.
"""

from __future__ import annotations

import logging
import os
import threading
from dataclasses import dataclass, field

import pytest

KEY, SECRET, REGION = "testing-key", "testing-secret", "us-east-1"
#: Why the S3 tests cannot run here (None: they can).
UNAVAILABLE: str | None = None
_server: S3Server | None = None


@dataclass
class Request:
    method: str
    path: str
    query: str


@dataclass
class S3Server:
    """moto's S3 server in a thread on 127.0.0.1, counting the requests it serves."""

    requests: list[Request] = field(default_factory=list)
    endpoint: str = ""

    def start(self) -> None:
        from moto.server import DomainDispatcherApplication, MotoRequestHandler, create_backend_app
        from werkzeug.serving import make_server

        logging.getLogger("werkzeug").setLevel(logging.ERROR)
        app = DomainDispatcherApplication(create_backend_app)

        def counted(environ, start_response):
            self.requests.append(Request(environ["REQUEST_METHOD"], environ.get("PATH_INFO", ""),
                                         environ.get("QUERY_STRING", "")))
            return app(environ, start_response)

        class Quiet(MotoRequestHandler):
            def log_request(self, *args, **kwargs) -> None:  # no line per request on stderr
                pass

        self._server = make_server("127.0.0.1", 0, counted, threaded=True, request_handler=Quiet)
        self.endpoint = f"http://127.0.0.1:{self._server.server_address[1]}"
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self._server.shutdown()

    def mark(self) -> int:
        """The number of requests so far (for :meth:`since`)."""
        return len(self.requests)

    def since(self, mark: int) -> list[Request]:
        """Requests served after :meth:`mark` returned ``mark``."""
        return self.requests[mark:]


def _clean_environment() -> None:
    for name in list(os.environ):
        if name.startswith(("AWS_ENDPOINT_URL", "FSSPEC_S3")) or name in (
            "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_PROFILE",
        ):
            del os.environ[name]
    os.environ["AWS_CONFIG_FILE"] = os.devnull
    os.environ["AWS_SHARED_CREDENTIALS_FILE"] = os.devnull
    os.environ["AWS_EC2_METADATA_DISABLED"] = "true"


def server() -> S3Server | None:
    """The run's S3 server (started on first use), or None where the S3 tests cannot run."""
    return _server


def spark_conf() -> dict[str, str]:
    """Settings for the shared session: the S3A jars and ``fs.s3a.*`` pointing at the local server ({} where
    unavailable, with :data:`UNAVAILABLE` set)."""
    global UNAVAILABLE, _server
    try:
        import boto3  # noqa: F401
        import moto  # noqa: F401
        import s3fs  # noqa: F401
    except ImportError as exc:
        UNAVAILABLE = f"the S3 tests need moto[server], s3fs and boto3 (the test extra): {exc}"
        return {}
    from s3_jars import JarsUnavailable, jars

    try:
        paths = jars()
    except JarsUnavailable as exc:
        UNAVAILABLE = f"hadoop-aws jars unavailable: {exc}"
        return {}
    _clean_environment()
    try:
        started = S3Server()
        started.start()
    except Exception as exc:  # noqa: BLE001 - the S3 tests skip with the reason; the others run
        UNAVAILABLE = f"the local S3 server did not start: {type(exc).__name__}: {exc}"
        return {}
    _server = started
    return {
        "spark.jars": ",".join(paths),
        "spark.hadoop.fs.s3a.endpoint": _server.endpoint,
        "spark.hadoop.fs.s3a.endpoint.region": REGION,
        "spark.hadoop.fs.s3a.path.style.access": "true",
        "spark.hadoop.fs.s3a.connection.ssl.enabled": "false",
        "spark.hadoop.fs.s3a.access.key": KEY,
        "spark.hadoop.fs.s3a.secret.key": SECRET,
        "spark.hadoop.fs.s3a.aws.credentials.provider":
            "org.apache.hadoop.fs.s3a.SimpleAWSCredentialsProvider",
        "spark.hadoop.fs.s3a.attempts.maximum": "2",
        "spark.hadoop.fs.s3a.retry.limit": "2",
        # s3:// read by S3A too (as Databricks and EMR read it through their own S3 filesystems)
        "spark.hadoop.fs.s3.impl": "org.apache.hadoop.fs.s3a.S3AFileSystem",
    }


def require_s3() -> S3Server:
    """The server, or skip the test with the reason the S3 tests cannot run (fail it where
    ``GPUIMAGES_REQUIRE_S3=1``, as in CI)."""
    if _server is None:
        reason = UNAVAILABLE or "the shared session was started without the S3 settings"
        if os.environ.get("GPUIMAGES_REQUIRE_S3") == "1":
            pytest.fail(f"GPUIMAGES_REQUIRE_S3=1 but the S3 tests cannot run: {reason}")
        pytest.skip(reason)
    return _server


def client():
    """A boto3 S3 client of the local server (test setup and checks)."""
    import boto3

    return boto3.client("s3", endpoint_url=require_s3().endpoint, aws_access_key_id=KEY,
                        aws_secret_access_key=SECRET, region_name=REGION)


def make_bucket(name: str, objects: dict[str, bytes] | None = None) -> str:
    """Create bucket ``name`` holding ``objects`` (key -> bytes); returns the name."""
    s3 = client()
    s3.create_bucket(Bucket=name)
    for key, data in (objects or {}).items():
        s3.put_object(Bucket=name, Key=key, Body=data)
    return name


def keys(bucket: str, prefix: str = "") -> list[str]:
    """Every key under ``prefix`` in ``bucket`` (listed now, through boto3)."""
    s3 = client()
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        found.extend(o["Key"] for o in page.get("Contents", []))
    return sorted(found)


def read(bucket: str, key: str) -> bytes:
    return client().get_object(Bucket=bucket, Key=key)["Body"].read()

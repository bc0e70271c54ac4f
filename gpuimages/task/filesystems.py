"""fsspec filesystems for object-store URIs, built from the store settings Spark was given.

The driver collects the Hadoop settings of the session (``fs.s3a.*``, ``fs.gs.*``, ``fs.azure.*``:
:func:`gpuimages.sources.stores.store_settings`) and carries them, as a plain picklable dict, to the
tasks that open archives or write files. Here they become the fsspec filesystem's arguments
(:func:`fsspec_options`), so the driver and the executors talk to the same endpoint with the same
keys as Spark's own ``S3AFileSystem`` does. Settings that cannot be carried are refused with what to
set (:class:`StoreSettingsError`), never replaced by a default endpoint.

Each call makes a fresh filesystem instance without a listing cache: a listing another part of the
process made (a user's ``fs.ls``, an earlier check) is never trusted. URIs are split here, never by
fsspec's URL parser, so a ``::`` in an object key is part of the key (fsspec reads it as chaining).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gpuimages.uris import split_scheme

#: URI schemes and the fsspec protocol that serves them.
PROTOCOLS = {
    "s3": "s3", "s3a": "s3", "s3n": "s3",
    "gs": "gs", "gcs": "gs",
    "abfs": "abfs", "abfss": "abfs", "az": "abfs",
}
#: Schemes of object stores: no folders (a "folder" is a key prefix), buckets are never created.
OBJECT_STORES = frozenset(PROTOCOLS)
#: The Python package each protocol needs on the driver and the executors.
PACKAGES = {"s3": "s3fs", "gs": "gcsfs", "abfs": "adlfs"}

_TRUE = ("true", "1", "yes")


class StoreSettingsError(ValueError):
    """Store settings Spark has that the executors' filesystem cannot be given (the message says what to set)."""


def split_uri(uri: str) -> tuple[str, str]:
    """``(scheme, rest)`` of ``scheme://rest`` (scheme lower case); ``("", uri)`` for anything else."""
    scheme, rest = split_scheme(uri)
    if scheme is None or not rest.startswith("//"):
        return "", uri
    return scheme, rest[2:]


def bucket_of(uri: str) -> str | None:
    """The bucket (or container) a store URI names: ``s3a://bkt/x`` -> ``bkt``."""
    scheme, rest = split_uri(uri)
    if scheme not in OBJECT_STORES:
        return None
    bucket = rest.split("/", 1)[0]
    return bucket.split("@", 1)[0] or None


def _endpoint(value: str, ssl: bool) -> str:
    value = value.strip()
    if "://" in value:
        return value
    return f"{'https' if ssl else 'http'}://{value}"


def _s3_options(settings: Mapping[str, str], bucket: str | None) -> dict[str, Any]:
    def get(key: str) -> str | None:
        if bucket is not None:
            value = settings.get(f"fs.s3a.bucket.{bucket}.{key}")
            if value not in (None, ""):
                return value
        value = settings.get(f"fs.s3a.{key}")
        return None if value in (None, "") else value

    options: dict[str, Any] = {}
    client: dict[str, Any] = {}
    endpoint = get("endpoint")
    if endpoint:
        ssl = (get("connection.ssl.enabled") or "true").lower() in _TRUE
        client["endpoint_url"] = _endpoint(endpoint, ssl)
    region = get("endpoint.region") or get("region")
    if region:
        client["region_name"] = region
    if client:
        options["client_kwargs"] = client
    if (get("path.style.access") or "").lower() in _TRUE:
        options["config_kwargs"] = {"s3": {"addressing_style": "path"}}
    key, secret, token = get("access.key"), get("secret.key"), get("session.token")
    if key and secret:
        options["key"], options["secret"] = key, secret
        if token:
            options["token"] = token
    provider = get("aws.credentials.provider") or ""
    if "AnonymousAWSCredentialsProvider" in provider or "AnonymousCredentialsProvider" in provider:
        options["anon"] = True
    if "AssumedRoleCredentialProvider" in provider:
        raise StoreSettingsError(
            "fs.s3a.aws.credentials.provider names an assumed role, which only Spark's S3A client can use: give "
            "the executors credentials of their own (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY/AWS_SESSION_TOKEN "
            "or AWS_PROFILE in the executor environment, an instance profile) or set fs.s3a.access.key, "
            "fs.s3a.secret.key and fs.s3a.session.token"
        )
    return options


def _azure_options(settings: Mapping[str, str], rest: str) -> dict[str, Any]:
    container, _, host = rest.split("/", 1)[0].partition("@")
    account = host.split(".", 1)[0] if host else None
    if not account:
        raise StoreSettingsError(f"expected an Azure URI of the form abfss://<container>@<account>.dfs.core."
                                 f"windows.net/<path>, got one naming the container {container!r} only")
    options: dict[str, Any] = {"account_name": account}
    key = settings.get(f"fs.azure.account.key.{host}") or settings.get(f"fs.azure.account.key.{account}.blob."
                                                                         "core.windows.net")
    if key:
        options["account_key"] = key
        return options
    auth = (settings.get(f"fs.azure.account.auth.type.{host}") or settings.get("fs.azure.account.auth.type") or "")
    if auth and auth != "SharedKey":
        raise StoreSettingsError(
            f"Spark authenticates to {host} with fs.azure.account.auth.type={auth}, which the executors' adlfs "
            "filesystem cannot be given: set AZURE_STORAGE_ACCOUNT_KEY, or AZURE_CLIENT_ID, AZURE_TENANT_ID and "
            "AZURE_CLIENT_SECRET, in the executor environment, or set fs.azure.account.key.<account>.dfs.core."
            "windows.net"
        )
    return options


def _gcs_options(settings: Mapping[str, str]) -> dict[str, Any]:
    keyfile = settings.get("fs.gs.auth.service.account.json.keyfile")
    if keyfile:
        return {"token": keyfile}
    if settings.get("fs.gs.auth.type") not in (None, "", "APPLICATION_DEFAULT", "COMPUTE_ENGINE"):
        raise StoreSettingsError(
            f"Spark authenticates to GCS with fs.gs.auth.type={settings['fs.gs.auth.type']}, which the executors' "
            "gcsfs filesystem cannot be given: set fs.gs.auth.service.account.json.keyfile (a file on every "
            "executor) or GOOGLE_APPLICATION_CREDENTIALS in the executor environment"
        )
    return {}


def fsspec_options(settings: Mapping[str, str] | None, uri: str) -> dict[str, Any]:
    """The fsspec filesystem arguments for ``uri`` from Spark's Hadoop store settings (``fs.s3a.*`` with
    per-bucket overrides ``fs.s3a.bucket.<bucket>.*``; ``fs.azure.account.key.*``; ``fs.gs.*`` key files).
    Settings not given leave the filesystem's own lookup (environment, instance profile) in place."""
    scheme, rest = split_uri(uri)
    protocol = PROTOCOLS.get(scheme)
    settings = settings or {}
    if protocol == "s3":
        return _s3_options(settings, bucket_of(uri))
    if protocol == "abfs":
        return _azure_options(settings, rest)
    if protocol == "gs":
        return _gcs_options(settings)
    return {}


def open_filesystem(uri: str, settings: Mapping[str, str] | None = None) -> tuple[Any, str, str]:
    """``(filesystem, path inside it, scheme)`` for a store URI: a fresh fsspec instance without a listing
    cache, configured from ``settings`` (:func:`fsspec_options`). The URI is taken literally (no
    chaining, no %-decoding)."""
    try:
        import fsspec
    except ImportError as exc:
        raise ImportError(
            f"{uri!r} is opened through fsspec and the filesystem's package (s3fs, gcsfs, adlfs, ...): "
            'pip install "gpuimages[s3]" (or the package for the store)'
        ) from exc
    scheme, rest = split_uri(uri)
    protocol = PROTOCOLS.get(scheme, scheme)
    try:
        cls = fsspec.get_filesystem_class(protocol)
    except ImportError as exc:
        package = PACKAGES.get(protocol, "the filesystem's package")
        raise ImportError(f"{uri!r} is opened through fsspec, which needs {package} for {scheme}:// "
                          f"(pip install {package}): {exc}") from exc
    options = fsspec_options(settings, uri)
    options.setdefault("skip_instance_cache", True)
    options.setdefault("use_listings_cache", False)
    fs = cls(**options)
    if protocol == "abfs":
        container = rest.split("/", 1)[0].split("@", 1)[0]
        inner = "/".join([container, *rest.split("/", 1)[1:]])
    elif protocol in ("s3", "gs"):
        inner = rest
    else:
        inner = cls._strip_protocol(uri)
    return fs, inner, scheme

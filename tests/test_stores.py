"""Store settings, URIs and destinations without Spark: what the driver carries, what the tasks make of it."""

from __future__ import annotations

import io
import os
import tarfile
import tempfile

import pytest

from gpuimages.sources.archives import opens_by_path
from gpuimages.task.filesystems import StoreSettingsError, fsspec_options, open_filesystem, split_uri
from gpuimages.task.hashing import sampled
from gpuimages.task.naming import file_stem
from gpuimages.task.stores import LocalStore
from gpuimages.uris import is_local, local_root_path

S3 = {
    "fs.s3a.endpoint": "minio.internal:9000",
    "fs.s3a.connection.ssl.enabled": "false",
    "fs.s3a.path.style.access": "true",
    "fs.s3a.access.key": "AK",
    "fs.s3a.secret.key": "SK",
    "fs.s3a.endpoint.region": "eu-west-1",
    "fs.s3a.bucket.other.endpoint": "https://other.example:443",
}


def test_s3a_settings_become_s3fs_arguments():
    options = fsspec_options(S3, "s3a://data/x.tar")
    assert options == {
        "client_kwargs": {"endpoint_url": "http://minio.internal:9000", "region_name": "eu-west-1"},
        "config_kwargs": {"s3": {"addressing_style": "path"}},
        "key": "AK", "secret": "SK",
    }
    assert fsspec_options(S3, "s3://other/y")["client_kwargs"]["endpoint_url"] == "https://other.example:443"
    assert fsspec_options({}, "s3a://data/x") == {}  # nothing given: s3fs's own lookup, as S3A's


def test_settings_that_cannot_be_carried_say_what_to_set():
    with pytest.raises(StoreSettingsError, match="AWS_ACCESS_KEY_ID"):
        role = "org.apache.hadoop.fs.s3a.auth.AssumedRoleCredentialProvider"
        fsspec_options({"fs.s3a.aws.credentials.provider": role}, "s3a://b/x")
    with pytest.raises(StoreSettingsError, match="AZURE_CLIENT_ID"):
        fsspec_options({"fs.azure.account.auth.type.acct.dfs.core.windows.net": "OAuth"},
                       "abfss://c@acct.dfs.core.windows.net/x")
    with pytest.raises(StoreSettingsError, match="keyfile"):
        fsspec_options({"fs.gs.auth.type": "SERVICE_ACCOUNT_JSON_KEYFILE_INLINE"}, "gs://b/x")
    key = {"fs.azure.account.key.acct.dfs.core.windows.net": "k=="}
    options = fsspec_options(key, "abfss://c@acct.dfs.core.windows.net/x")
    assert options == {"account_name": "acct", "account_key": "k=="}


def test_uris_are_split_literally():
    assert split_uri("s3a://b/shard::0 a.tar") == ("s3a", "b/shard::0 a.tar")
    pytest.importorskip("s3fs")
    fs, inner, scheme = open_filesystem("s3a://b/k::v/x.tar", S3)
    assert (inner, scheme) == ("b/k::v/x.tar", "s3a")
    assert fs.client_kwargs["endpoint_url"] == "http://minio.internal:9000"
    fs2, _, _ = open_filesystem("s3a://b/k", S3)
    assert fs2 is not fs  # a fresh instance: no listing another caller cached


def test_archives_follow_the_default_filesystem():
    assert opens_by_path(True, ["/data/x"], "file:///")
    assert not opens_by_path(True, ["/data/x"], "hdfs://nn:8020")  # binaryFile reads it: no 'Protocol not known'
    assert not opens_by_path(True, ["viewfs://c/data"], "file:///")
    assert opens_by_path(True, ["dbfs:/mnt/x"], "hdfs://nn:8020")
    if __import__("importlib").util.find_spec("s3fs"):
        assert opens_by_path(True, ["/data/x"], "s3a://bucket")  # streamed by ranges in the task
        assert opens_by_path(True, ["s3a://b/x", "gs://b/y"][:1])


def test_dbfs_destinations_are_the_fuse_mounts(tmp_path):
    assert is_local("dbfs:/tmp/out") and local_root_path("dbfs:/tmp/out") == "/dbfs/tmp/out"
    assert local_root_path("dbfs:/Volumes/main/s/v/x") == "/Volumes/main/s/v/x"
    store = LocalStore("dbfs:/Volumes/main/s/v/out/")
    assert store.root == "/Volumes/main/s/v/out/"
    assert store.path("cls", "a.jpg") == "dbfs:/Volumes/main/s/v/out/cls/a.jpg"
    if not os.path.isdir("/dbfs"):
        from gpuimages.write import check_path

        cwd = os.getcwd()
        os.chdir(tmp_path)
        try:
            with pytest.raises(FileNotFoundError, match="FUSE mount /dbfs"):
                check_path("dbfs:/tmp/out")
        finally:
            os.chdir(cwd)
        assert not os.path.exists(tmp_path / "dbfs:")


def test_name_column_is_taken_literally():
    assert file_stem(None, "p%20q.jpg") == ("p%20q", "jpg")
    assert file_stem(None, "100%25 x%2Fy") == ("100%25 x%2Fy", None)
    assert file_stem("s3a://b/p%20q.jpg", None) == ("p q", "jpg")  # an origin is a %-escaped URI


def test_s3_spellings_sample_alike():
    picks = [sampled(f"s3a://b/f{i}.jpg", 0.3, 1) for i in range(200)]
    assert picks == [sampled(f"s3://b/f{i}.jpg", 0.3, 1) for i in range(200)]
    assert 20 < sum(picks) < 100


class _Store:
    def __init__(self) -> None:
        self.put: dict[str, bytes] = {}

    def join(self, name: str) -> str:
        return f"bucket/{name}"


def test_shard_spool_file_has_no_name(tmp_path, monkeypatch):
    from gpuimages.task.steps.shards import ShardPlan, _Shard

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    shard = _Shard(ShardPlan(root="s3a://bucket/x", max_samples=10, max_bytes=1 << 20), _Store(), "s-00000-00000.tar")
    shard.add([("k.jpg", b"\xff\xd8\xff" * 10)])
    assert shard.tmp is None and os.listdir(tmp_path) == []  # nothing a killed task could leave behind
    shard.file.seek(0)
    assert tarfile.open(fileobj=io.BytesIO(shard.file.read())).getnames() == ["k.jpg"]
    shard.abort()


def test_carried_secrets_stay_out_of_reprs():
    from gpuimages.sources.archives import archive_plan
    from gpuimages.task.claims import WritePlan
    from gpuimages.task.steps.shards import ShardPlan

    plan = WritePlan(root="s3a://b/o", input_col="c", input_is_struct=False, origin_col=None, name_col=None,
                     partition_by=None, mode="error", extension=None, store_settings=S3)
    reading = archive_plan(True, False, ["s3a://b/x"], settings=S3)
    shards = ShardPlan(root="s3a://b/o", max_samples=1, max_bytes=1, store_settings=S3)
    step = reading.step("content", None, 1, path_col="path")
    for obj in (plan, reading, shards, step):
        assert "SK" not in repr(obj) and obj.store_settings == S3

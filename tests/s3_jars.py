"""The jars Spark needs to read and write ``s3a://`` in the tests: hadoop-aws and the AWS SDK v2 modules it loads.

pyspark ships Hadoop's shaded client without ``hadoop-aws``. This file (independent of gpuimages, run by
the tests and by ``.ci/run``) downloads ``org.apache.hadoop:hadoop-aws`` of the Hadoop version pyspark
bundles, with the smallest set of AWS SDK v2 modules ``S3AFileSystem`` needs against a local S3 server
(34 jars, about 12 MB, instead of the 600 MB ``software.amazon.awssdk:bundle`` hadoop-aws declares),
from Maven Central over HTTPS into a cache folder, and checks each file's SHA-256.

``python tests/s3_jars.py`` downloads them and prints the cache folder; :func:`jars` returns their paths
or raises :class:`JarsUnavailable` with the reason (the S3 tests then skip with it).
"""

from __future__ import annotations

import glob
import hashlib
import os
import sys
import tempfile
import urllib.request
from pathlib import Path

#: The Hadoop version these jars are for (pyspark 4.x's bundled client).
HADOOP_VERSION = "3.5.0"
MAVEN = os.environ.get("GPUIMAGES_MAVEN_REPO", "https://repo1.maven.org/maven2")
CACHE = Path(os.environ.get("GPUIMAGES_TEST_JARS", Path.home() / ".cache" / "gpuimages-test-jars"))

#: (group, artifact, version, sha256). The SDK modules are those ``software.amazon.awssdk:s3``,
#: ``s3-transfer-manager`` and hadoop-aws's ``analyticsaccelerator-s3`` depend on at runtime, less what
#: Spark already ships (netty, Apache httpclient/httpcore, commons-codec/logging, slf4j) and the
#: netty-nio async client, which S3A does not load for reads and writes.
JARS = (
    ("org.apache.hadoop", "hadoop-aws", "3.5.0",
     "66bd9eefb938b1a1657487324b63c13df2d8b17164a1dd24e0ef37b905bc5baa"),
    ("org.reactivestreams", "reactive-streams", "1.0.4",
     "f75ca597789b3dac58f61857b9ac2e1034a68fa672db35055a8fb4509e325f28"),
    ("software.amazon.awssdk", "annotations", "2.35.4",
     "6f36bd87155d1dd85d6efbdd29e532e3759a022211feb71affebee1aa34f04b8"),
    ("software.amazon.awssdk", "apache-client", "2.35.4",
     "6eade21b482724ed0a4613eaa95d20e47e7a81304bd28538ac427fece94a7740"),
    ("software.amazon.awssdk", "arns", "2.35.4",
     "c63cc29f76a8527e9e10b621703163df541dc5cb315508dc2898518602c75380"),
    ("software.amazon.awssdk", "auth", "2.35.4",
     "6b601323004833fb4a857ffc95db4795e0e6320eb93e64b1246c655c9ff04994"),
    ("software.amazon.awssdk", "aws-core", "2.35.4",
     "fdb5fc8f1a48d97fa7d04d3460fb42f6973c7b1bbe1b9d317871ef0162bcb623"),
    ("software.amazon.awssdk", "aws-query-protocol", "2.35.4",
     "9b4cf9b78977cc9f5b4ceae9c435dedbde6a055a0f8d9e053eaca945715e2a9f"),
    ("software.amazon.awssdk", "aws-xml-protocol", "2.35.4",
     "4f59176da2522c357b1993e4a890fde529f12f365795ef86269bde4a3984cd0d"),
    ("software.amazon.awssdk", "checksums-spi", "2.35.4",
     "88b5af85ac2d3c862be8856be4e683ab31932e4a5a3c1c45af864d2671ac7cec"),
    ("software.amazon.awssdk", "checksums", "2.35.4",
     "94464af4374d08ecf33ca06ed4d03e1615529e547726e26b56abacefbeee7948"),
    ("software.amazon.awssdk", "crt-core", "2.35.4",
     "2c6aaa17bf9ccbb9d962dded4351e73decb197e3c5519970e0dae17e05d3df62"),
    ("software.amazon.awssdk", "endpoints-spi", "2.35.4",
     "ef02441bda916959b8341290b49c68cc35538e1ad6f8629b75d8334dc6653e00"),
    ("software.amazon.awssdk", "http-auth-aws-eventstream", "2.35.4",
     "709107552f302be3fa9e05969a3779f5c0f07fb809e6fa1fa571a6f0c61326dd"),
    ("software.amazon.awssdk", "http-auth-aws", "2.35.4",
     "c4acb92fdec90bfd9b67bfab8e41b69cd152c03cacc10281a8ab464791856e01"),
    ("software.amazon.awssdk", "http-auth-spi", "2.35.4",
     "4495463406bb98eb136f2c3f3604ed5f08ec9974ebc3f34f2121b20679f61d5c"),
    ("software.amazon.awssdk", "http-auth", "2.35.4",
     "3ec933a06e751a05e195eb3589209e23c44e1897263b6fcae34ef4cc63cd4491"),
    ("software.amazon.awssdk", "http-client-spi", "2.35.4",
     "728be89b2a07b595edb0adee3a2cbbbdd4cb1f4caddde0d08c3979fe2620dedb"),
    ("software.amazon.awssdk", "identity-spi", "2.35.4",
     "188d73db7d4e2361654bc3c5a1b3eaeb445d0500fb012cc46c5d67975adf97bf"),
    ("software.amazon.awssdk", "json-utils", "2.35.4",
     "80d67a6bb3e7eb49c7d4b6e4ba4c1463ed7da0192b795158328602dc131c5ecc"),
    ("software.amazon.awssdk", "metrics-spi", "2.35.4",
     "c2a4ee90a21081317e2e6eba0c414d05d3d518aed2f86b1c1710a7367b450487"),
    ("software.amazon.awssdk", "profiles", "2.35.4",
     "0f4ef7ca72ccd80dd49ebeaf7f3ce60a7d7a00da59a91aeeae6e91052bbacbd8"),
    ("software.amazon.awssdk", "protocol-core", "2.35.4",
     "f2532eca6ba2142fe4821d5decb03c83a3e15dc8bfae2240e7f2efa75f9868b5"),
    ("software.amazon.awssdk", "regions", "2.35.4",
     "77eae87b34ce96ecdf916a9bc06684dbeafcb6d38ef0513285fa5d5d6d41f5ca"),
    ("software.amazon.awssdk", "retries-spi", "2.35.4",
     "668638751d059c527ddd41ffa4dcebe36a7c14860ed56776df09b861c14dc7dd"),
    ("software.amazon.awssdk", "retries", "2.35.4",
     "f99fb2f8c66d7e859955b3542d3af8f9de8f23a21d5e3250f0f2c5f18487e469"),
    ("software.amazon.awssdk", "s3-transfer-manager", "2.35.4",
     "0eec78870b3d0abc509a847072cf963cb2ae6e360dc6161a9449b3398c470476"),
    ("software.amazon.awssdk", "s3", "2.35.4",
     "f23532c5223be9b0bfec0d72837ed09ed34dbdf8022818ba145b20076a78b4bc"),
    ("software.amazon.awssdk", "sdk-core", "2.35.4",
     "fa559a4ce598852f3519c8f3b36250f583b0858a7611eedc4a81997778c617f4"),
    ("software.amazon.awssdk", "third-party-jackson-core", "2.35.4",
     "32f4252c6c2df8f3a4aff885e6dc77024ad6b4cb48455d07b461ec30c41643ea"),
    ("software.amazon.awssdk", "utils-lite", "2.35.4",
     "e004806def5e22ec98edc48a133ff3317166255e1ba29d93d129e9fdfa64a7be"),
    ("software.amazon.awssdk", "utils", "2.35.4",
     "642aeef536a071668f0b772f05f9d21573abf6955e7b6fb5fdb893760cca10e8"),
    ("software.amazon.eventstream", "eventstream", "1.0.1",
     "0c37d8e696117f02c302191b8110b0d0eb20fa412fce34c3a269ec73c16ce822"),
    ("software.amazon.s3.analyticsaccelerator", "analyticsaccelerator-s3", "1.3.1",
     "4959a9747cbb479c73c3ffbcd479bee5b014f8b2880994585a8693fb9d24675e"),
)


class JarsUnavailable(RuntimeError):
    """The jars could not be found or downloaded (the reason is the message)."""


def bundled_hadoop() -> str | None:
    """The Hadoop client version pyspark bundles (from its jars folder), or None."""
    import pyspark

    found = glob.glob(os.path.join(os.path.dirname(pyspark.__file__), "jars", "hadoop-client-api-*.jar"))
    if not found:
        return None
    return os.path.basename(found[0])[len("hadoop-client-api-"):-len(".jar")]


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch(group: str, artifact: str, version: str, sha256: str, timeout: float) -> Path:
    target = CACHE / f"{artifact}-{version}.jar"
    if target.exists() and _sha256(target) == sha256:
        return target
    url = f"{MAVEN}/{group.replace('.', '/')}/{artifact}/{version}/{artifact}-{version}.jar"
    fd, tmp = tempfile.mkstemp(dir=CACHE, suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310
            while block := resp.read(1 << 20):
                out.write(block)
        got = _sha256(Path(tmp))
        if got != sha256:
            raise JarsUnavailable(f"{url}: SHA-256 {got}, expected {sha256}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def jars(timeout: float = 60.0) -> list[str]:
    """Paths of the cached jars (downloaded where missing); raises :class:`JarsUnavailable` with the reason."""
    version = bundled_hadoop()
    if version != HADOOP_VERSION:
        raise JarsUnavailable(f"pyspark bundles Hadoop {version}; the S3 test jars are for Hadoop {HADOOP_VERSION}")
    CACHE.mkdir(parents=True, exist_ok=True)
    paths = []
    for group, artifact, ver, sha256 in JARS:
        try:
            paths.append(str(_fetch(group, artifact, ver, sha256, timeout)))
        except JarsUnavailable:
            raise
        except Exception as exc:  # noqa: BLE001 - no network, a proxy, a full disk: the reason skips the tests
            raise JarsUnavailable(f"could not download {group}:{artifact}:{ver} from {MAVEN}: {exc}") from exc
    return paths


if __name__ == "__main__":
    try:
        jars()
    except JarsUnavailable as exc:
        print(f"S3 test jars unavailable: {exc}", file=sys.stderr)
        sys.exit(1)
    print(CACHE)

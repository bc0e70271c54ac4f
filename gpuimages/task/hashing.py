"""Spark's ``xxhash64`` in Python, so a task makes the same seeded choice a Spark filter makes.

``read_images(sample_ratio=...)`` keeps a loose file when ``xxhash64(seed, origin)`` falls under the
ratio (a filter Spark evaluates on its file listing, :func:`gpuimages.sources.columns.sample_sql`). The
images inside an archive only exist in the task, so the task applies the same rule to each member's
origin with :func:`sampled`: one rule for every image, whatever holds it.
"""

from __future__ import annotations

from gpuimages.uris import sample_key

_MASK = (1 << 64) - 1
_P1 = 0x9E3779B185EBCA87
_P2 = 0xC2B2AE3D27D4EB4F
_P3 = 0x165667B19E3779F9
_P4 = 0x85EBCA77C2B2AE63
_P5 = 0x27D4EB2F165667C5
#: Spark's default seed of ``xxhash64`` (the hash of the first column starts from it).
SPARK_HASH_SEED = 42
#: Sampling compares the top 53 bits of the hash with ``ratio * 2**53`` (as ``columns.sample_sql``).
SAMPLE_BITS = 53


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _MASK


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _MASK
    return (_rotl(acc, 31) * _P1) & _MASK


def _merge(acc: int, value: int) -> int:
    acc ^= _round(0, value)
    return (acc * _P1 + _P4) & _MASK


def _avalanche(h: int) -> int:
    h ^= h >> 33
    h = (h * _P2) & _MASK
    h ^= h >> 29
    h = (h * _P3) & _MASK
    return h ^ (h >> 32)


def xxh64(data: bytes, seed: int) -> int:
    """XXH64 of ``data`` with ``seed`` (unsigned 64-bit), as Spark's ``XXH64.hashUnsafeBytes`` computes it."""
    n = len(data)
    seed &= _MASK
    i = 0
    if n >= 32:
        v1, v2, v3, v4 = (seed + _P1 + _P2) & _MASK, (seed + _P2) & _MASK, seed, (seed - _P1) & _MASK
        while i + 32 <= n:
            v1 = _round(v1, int.from_bytes(data[i:i + 8], "little"))
            v2 = _round(v2, int.from_bytes(data[i + 8:i + 16], "little"))
            v3 = _round(v3, int.from_bytes(data[i + 16:i + 24], "little"))
            v4 = _round(v4, int.from_bytes(data[i + 24:i + 32], "little"))
            i += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _MASK
        for v in (v1, v2, v3, v4):
            h = _merge(h, v)
    else:
        h = (seed + _P5) & _MASK
    h = (h + n) & _MASK
    while i + 8 <= n:
        h ^= _round(0, int.from_bytes(data[i:i + 8], "little"))
        h = (_rotl(h, 27) * _P1 + _P4) & _MASK
        i += 8
    if i + 4 <= n:
        h ^= (int.from_bytes(data[i:i + 4], "little") * _P1) & _MASK
        h = (_rotl(h, 23) * _P2 + _P3) & _MASK
        i += 4
    while i < n:
        h ^= (data[i] * _P5) & _MASK
        h = (_rotl(h, 11) * _P1) & _MASK
        i += 1
    return _avalanche(h)


def spark_xxhash64(seed: int, text: str) -> int:
    """Spark's ``xxhash64(CAST(seed AS BIGINT), text)`` as an unsigned 64-bit value."""
    first = xxh64((seed & _MASK).to_bytes(8, "little"), SPARK_HASH_SEED)
    return xxh64(text.encode("utf-8"), first)


def sample_threshold(ratio: float) -> int:
    """The bound the top :data:`SAMPLE_BITS` bits of the hash are compared with."""
    return int(round(ratio * (1 << SAMPLE_BITS)))




def sampled(origin: str, ratio: float, seed: int) -> bool:
    """True when the image ``origin`` is in the seeded sample of ``ratio``: the rule
    :func:`gpuimages.sources.columns.sample_sql` applies to files (the hash of the origin in
    ``_metadata.file_path``'s form, ``file:/d/a.tar#x.jpg``)."""
    if ratio >= 1.0:
        return True
    if ratio <= 0:
        return False
    seed64 = (int(seed) + (1 << 63)) % (1 << 64) - (1 << 63)
    key = sample_key(origin)
    return (spark_xxhash64(seed64, key) >> (64 - SAMPLE_BITS)) < sample_threshold(ratio)

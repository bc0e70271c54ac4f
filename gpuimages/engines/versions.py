"""Version floors of the GPU libraries, checked where they are imported (on executors, never on the driver).

An older DALI or nvImageCodec imports fine and then fails on the first call that needs a newer API
(``exec_dynamic``, ``.cpu()`` on a GPU node, ``QualityType``, ``NVIMGCODEC_DEVICE_CPU_ONLY``); that
failure used to surface as a quiet switch to Pillow. :func:`require_version` turns it into an
:class:`LibraryVersionError` naming the version found, the version needed and the command that fixes
it. It is an ``ImportError``, which the task code re-raises instead of falling back.
"""

from __future__ import annotations

import re


class LibraryVersionError(ImportError):
    """A GPU library is installed but older than gpuimages needs."""


def version_tuple(text: str | None) -> tuple[int, ...]:
    """The leading numeric components of a version string (``"1.44.0.post1"`` -> ``(1, 44, 0)``)."""
    if not text:
        return ()
    parts: list[int] = []
    for piece in str(text).split("."):
        match = re.match(r"\d+", piece)
        if match is None:
            break
        parts.append(int(match.group()))
        if match.end() != len(piece):
            break
    return tuple(parts)


def require_version(library: str, found: str | None, floor: str, install: str) -> None:
    """Raise :class:`LibraryVersionError` unless ``found`` is at least ``floor``.

    ``library`` names the package in the message, ``install`` is the command that fixes it. An
    unreadable version (``None``) is refused too: it cannot be shown to be new enough.
    """
    have = version_tuple(found)
    if have and have >= version_tuple(floor):
        return
    raise LibraryVersionError(
        f"gpuimages needs {library} >= {floor}, found {found or 'an unknown version'}: {install}"
    )

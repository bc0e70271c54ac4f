"""Messages the documentation quotes are the messages the code produces.

Every inline code span of the README, ``docker/README.md`` and ``docs/`` that reads like a sentence
(four words or more, not a call or a command) is looked up in the string literals of ``gpuimages``
(f-string fields, ``%s`` and ``{name}`` fields stand for any value). A span that quotes another
library (Pillow, CUDA, Java, pyspark) or is not a message (a command, a column list) is listed in
``NOT_OURS``; each of those must still be on its page, so the list cannot outlive the docs.
"""

from __future__ import annotations

import ast
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "docker" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

#: Spans that are not gpuimages' messages: commands, column lists, other libraries' messages.
NOT_OURS = {
    "image, error, cls, date",
    "image, error, <partition columns>, label",
    "origin, height, width, encoded, error",
    "origin, path, bytes, status, reason",
    "origin, height, width, nChannels, mode, data",
    "gpuimages write SRC DIR",
    'pip install ".[docs]" && mkdocs build',
    "python -m pytest -q",
    "python -m pytest -q tests",
    "databricks fs cp dist/gpuimages-0.1.0-py3-none-any.whl dbfs:/Volumes/main/default/libs/",
    "sudo apt-get install -y openjdk-17-jre-headless",
    "partition id % visible GPUs",
    "3 * gridSize**2 + 3 * histogramBins + 10",
    "[N, H, W, 3]",
    # Pillow's, CUDA's, Java's and pyspark's own messages
    "OSError: Truncated File Read",
    "OSError: image file is truncated",
    "CUDA driver version is insufficient",
    "JAVA_GATEWAY_EXITED: Java gateway process exited before sending its port number",
    "java.lang.module.FindException: Module jdk.incubator.vector not found",
}

#: Words the docs put where the code has a field (example values that are plain words).
EXAMPLE_WORDS = {"decode", "symbolic link,", "None", "file,"}

_PLACEHOLDER = re.compile(r"\.\.\.|…")
_VALUE = re.compile(r"\d|/|'|\"|[\[\]()<>]|^[A-Z]$|^\W*$|^\.?\w+\.\w+")


def quoted_spans(page: Path) -> list[str]:
    """Inline code spans of ``page`` that read like sentences (outside fenced blocks)."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    spans = []
    for raw in (m for paragraph in re.split(r"\n\s*\n", text) for m in re.findall(r"`([^`]+)`", paragraph)):
        span = " ".join(raw.split())
        if len(span.split()) >= 4 and not re.search(r"[=(]|--|\$|/\w+/|^\w+\.\w+\(", span[:40]):
            spans.append(span)
    return spans


@cache
def code_strings() -> str:
    """Every string literal of the package, fields replaced by NUL, joined by SOH."""
    pieces = []
    for path in sorted((ROOT / "gpuimages").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                pieces.append("".join(v.value if isinstance(v, ast.Constant) else "\0" for v in node.values))
            elif isinstance(node, ast.Constant) and isinstance(node.value, str):
                pieces.append(re.sub(r"%[-\d.]*[sdrfgi]|\{[^{}]*\}", "\0", node.value))
    return "\1".join(pieces)


def _longest_prefix_in_code(text: str) -> int:
    corpus = code_strings()
    low, high = 0, len(text)
    while low < high:
        mid = (low + high + 1) // 2
        if text[:mid] in corpus:
            low = mid
        else:
            high = mid - 1
    return low


def _covered(fragment: str, i: int) -> int:
    """Length of the text at ``fragment[i:]`` that a literal covers: 10 characters or more, or 5 or
    more up to the fragment's end or next to one of the literal's fields, or only spaces and punctuation."""
    corpus = code_strings()
    for k in range(_longest_prefix_in_code(fragment[i:]), 0, -1):
        covered = fragment[i : i + k]
        if k >= 10 or not covered.strip(" .,;:"):
            return k
        if k >= 5 and (i + k == len(fragment) or f"\0{covered}" in corpus or f"{covered}\0" in corpus):
            return k
    return 0


def unmatched_words(fragment: str) -> list[str]:
    """Words of ``fragment`` that neither a string literal of the code nor an example value covers."""
    missing, i = [], 0
    while i < len(fragment):
        k = _covered(fragment, i)
        if k:
            i += k
            continue
        j = fragment.find(" ", i + 1)
        j = len(fragment) if j < 0 else j
        word = fragment[i:j].strip()
        pair = fragment[i:fragment.find(" ", j + 1) if fragment.find(" ", j + 1) > 0 else len(fragment)].strip()
        if pair in EXAMPLE_WORDS:
            j = i + len(fragment[i:].split(pair, 1)[0]) + len(pair) + 1
        elif word and not _VALUE.search(word) and word not in EXAMPLE_WORDS:
            missing.append(word)
        i = j
    return missing


def _cases() -> list:
    return [pytest.param(page, span, id=f"{page.name}: {span[:60]}") for page in PAGES for span in quoted_spans(page)]


@pytest.mark.parametrize(("page", "span"), _cases())
def test_quoted_message_is_in_the_code(page: Path, span: str) -> None:
    if span in NOT_OURS:
        return
    message = re.sub(r"^\w+(Error|Exception): ", "", span)
    for fragment in (part.strip() for part in _PLACEHOLDER.split(message)):
        assert not unmatched_words(fragment), (
            f"{page.relative_to(ROOT)} quotes `{span}`, but no message in gpuimages says "
            f"{fragment!r} (words not found: {unmatched_words(fragment)})"
        )


def test_every_listed_exception_is_still_quoted() -> None:
    quoted = {span for page in PAGES for span in quoted_spans(page)}
    assert NOT_OURS <= quoted, sorted(NOT_OURS - quoted)


def test_the_matcher_finds_a_drifted_message() -> None:
    # the code says "DALI ran out of memory on %d images; batches now %d"
    assert unmatched_words("DALI ran out of memory on 16 images; batches now 8") == []
    assert unmatched_words("DALI overflowed its memory on 16 images; batches now 8") != []

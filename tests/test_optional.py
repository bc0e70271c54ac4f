"""Skip guards on optional packages never stop collection (an install with ``.[test]`` alone has no ``nvidia``)."""

from __future__ import annotations

import re
from pathlib import Path

from optional import has_module


def test_has_module_answers_false_without_the_parent_package():
    assert has_module("pytest") and has_module("gpuimages.schema")
    assert not has_module("gpuimages_no_such_package.dali")  # find_spec itself raises ModuleNotFoundError here
    assert not has_module("gpuimages.no_such_module")


def test_test_files_check_nested_modules_through_has_module():
    """``find_spec("nvidia.dali")`` at collection time raises where ``nvidia`` is missing; ``has_module`` does not."""
    offenders = [
        f"{path.name}:{number}"
        for path in sorted(Path(__file__).parent.glob("*.py"))
        if path.name not in ("optional.py", Path(__file__).name)
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if re.search(r"find_spec\(\s*[\"'][\w]+\.", line)
    ]
    assert offenders == []

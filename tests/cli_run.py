"""The command line run in the test process, as a person would see it."""

from __future__ import annotations

from gpuimages.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """``gpuimages ARGS`` in this process: (exit status, stdout, stderr)."""
    capsys.readouterr()
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err

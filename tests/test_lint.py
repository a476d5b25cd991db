"""The linters run as tests, so a clean clone's test command checks style and types too."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    "argv",
    [
        [sys.executable, "-m", "ruff", "check", "perfnet", "tests", "benchmarks", "scripts"],
        [sys.executable, "-m", "mypy"],
    ],
    ids=["ruff", "mypy"],
)
def test_linter_is_clean(argv: list[str]) -> None:
    if shutil.which(argv[2]) is None and subprocess.run([*argv[:3], "--version"], capture_output=True).returncode:
        pytest.skip(f"{argv[2]} is not installed (pip install -e '.[dev]')")
    result = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr

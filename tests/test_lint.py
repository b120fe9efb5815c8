"""CI lints before it tests: ``.ci/run`` runs ``ruff check .`` (rules in pyproject.toml) and
stops on a lint error."""

import os
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT


def test_ci_runs_the_linter_between_install_and_tests():
    with open(os.path.join(REPO_ROOT, ".ci", "run")) as handle:
        script = handle.read()
    command = next(line for line in script.splitlines() if "pytest" in line)
    assert command.index("pip install") < command.index("ruff check .") < command.index("pytest")
    assert "set -euo pipefail" in script


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the test extra")
def test_ci_fails_on_a_lint_error(tmp_path):
    """The CI script, install step left out, on a copy of the checkout with one unused import."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO_ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "weights"))
    script = (copy / ".ci" / "run").read_text()
    (copy / ".ci" / "run").write_text(script.replace("pip install '.[test]'", "true")
                                      .replace("python -m pytest", "echo TESTS-RAN"))
    clean = subprocess.run(["bash", str(copy / ".ci" / "run")], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "TESTS-RAN" in clean.stdout
    with open(copy / "converter" / "zoo.py", "a") as handle:
        handle.write("\nimport os  # unused: F401\n")
    dirty = subprocess.run(["bash", str(copy / ".ci" / "run")], capture_output=True, text=True)
    assert dirty.returncode != 0
    assert "F401" in dirty.stdout and "TESTS-RAN" not in dirty.stdout

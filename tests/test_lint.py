"""CI lints before it tests: ``.ci/run`` runs ``ruff check .`` (rules in pyproject.toml) and
stops on a lint error."""

import ast
import os
import shlex
import shutil
import subprocess

import pytest

from conftest import REPO_ROOT


def _ci_commands(script):
    """Every simple command the CI script runs, in order, each as its argument list (shell
    syntax parsed with shlex: ``a && b; c`` gives three commands; comments dropped)."""
    commands = []
    for line in script.splitlines():
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True
        lexer.commenters = "#"
        current = []
        for token in lexer:
            if token in ("&&", "||", ";", "|"):
                commands.append(current)
                current = []
            else:
                current.append(token)
        if current:
            commands.append(current)
    return [command for command in commands if command]


FAST_TIER = ["python", "-m", "pytest", "-n", "2"]
SLOW_TIER = ["python", "-m", "pytest", "-m", "slow", "-n", "2"]


def test_ci_runs_the_linter_between_install_and_both_tiers():
    with open(os.path.join(REPO_ROOT, ".ci", "run")) as handle:
        script = handle.read()
    commands = _ci_commands(script)
    steps = [commands.index(step) for step in (["pip", "install", ".[test]"],
                                               ["ruff", "check", "."], FAST_TIER, SLOW_TIER)]
    assert steps == sorted(steps), commands
    assert ["set", "-euo", "pipefail"] in commands


def test_the_readme_shows_the_test_commands_ci_runs():
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        readme = handle.read()
    lines = [line for block in readme.split("```bash")[1:]
             for line in block.split("```", 1)[0].splitlines() if "pytest" in line]
    shown = _ci_commands("\n".join(lines))
    assert FAST_TIER in shown and SLOW_TIER in shown


def test_the_readme_layout_names_every_doc():
    """The README's Layout block lists docs/: every file there, so none goes unfound."""
    with open(os.path.join(REPO_ROOT, "README.md")) as handle:
        layout = handle.read().split("## Layout", 1)[1].split("```", 2)[1]
    docs = layout.split("\ndocs/", 1)[1].split("\ntests/", 1)[0]
    missing = [name for name in sorted(os.listdir(os.path.join(REPO_ROOT, "docs")))
               if name.endswith(".md") and name not in docs]
    assert not missing, f"README.md, Layout: docs/ does not name {missing}; add them"


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is in the test extra")
def test_ci_fails_on_a_lint_error(tmp_path):
    """The CI script, install step left out, on a copy of the checkout with one unused import."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO_ROOT, copy, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "weights"))
    script = (copy / ".ci" / "run").read_text()
    (copy / ".ci" / "run").write_text(script.replace("pip install '.[test]'", "true")
                                      .replace("python -m pytest", "echo TESTS-RAN"))  # both tiers
    clean = subprocess.run(["bash", str(copy / ".ci" / "run")], capture_output=True, text=True)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    assert "TESTS-RAN" in clean.stdout
    with open(copy / "converter" / "zoo.py", "a") as handle:
        handle.write("\nimport os  # unused: F401\n")
    dirty = subprocess.run(["bash", str(copy / ".ci" / "run")], capture_output=True, text=True)
    assert dirty.returncode != 0
    assert "F401" in dirty.stdout and "TESTS-RAN" not in dirty.stdout


LIBRARY = ("converter", "tf_models", "torch_reference")


def imported_modules(path, package):
    """Every module ``path`` imports anywhere in its body (functions included), as absolute
    dotted names, read with ``ast``; ``package`` is the file's dotted package, for relative
    imports."""
    with open(path, encoding="utf-8") as handle:
        tree = ast.parse(handle.read(), filename=path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def library_imports():
    """{file relative to the repository: modules it imports} for every library module."""
    result = {}
    for top in LIBRARY:
        for folder, _, files in os.walk(os.path.join(REPO_ROOT, top)):
            package = os.path.relpath(folder, REPO_ROOT).replace(os.sep, ".")
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    result[os.path.relpath(path, REPO_ROOT)] = imported_modules(path, package)
    return result


def _importers_of(imports, module):
    return sorted(f for f, names in imports.items()
                  if any(n == module or n.startswith(module + ".") for n in names))


def test_the_import_reader_sees_relative_nested_and_aliased_imports(tmp_path):
    source = tmp_path / "m.py"
    source.write_text("def f():\n    from ..quiet import silenced as s\n"
                      "    import unittest.mock as m\n    from . import zoo\n")
    assert imported_modules(str(source), "converter.sub") >= {
        "converter.quiet", "converter.quiet.silenced", "unittest.mock", "converter.sub.zoo"}


def test_the_library_never_imports_its_cli_package():
    imports = library_imports()
    assert len(imports) > 30  # the walk found the packages
    assert _importers_of(imports, "videomae_cli") == []


def test_the_library_patches_nothing_with_unittest_mock():
    assert _importers_of(library_imports(), "unittest") == []

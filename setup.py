"""setuptools's entry beside setup.cfg (which holds everything else): an installed, built copy
records the commit it was built from, for a release's manifest (``converter.release``)."""

import os
import subprocess

from setuptools import setup
from setuptools.command.build_py import build_py

HERE = os.path.dirname(os.path.abspath(__file__))
# read by converter.release.git_commit where no checkout surrounds the installed package
BUILD_COMMIT = os.path.join("converter", "BUILD_COMMIT")


def checkout_commit():
    """HEAD of the checkout this file is tracked in; None outside one (an unpacked sdist,
    perhaps inside some other repository) or without git."""
    def git(*args):
        try:
            done = subprocess.run(["git", "-C", HERE, *args], capture_output=True, text=True,
                                  timeout=10)
        except (OSError, subprocess.SubprocessError):
            return None
        return done.stdout.strip() if done.returncode == 0 else None

    if git("ls-files", "--error-unmatch", "setup.cfg") is None:
        return None
    return git("rev-parse", "HEAD") or None


class BuildPyWithCommit(build_py):
    """build_py, then BUILD_COMMIT beside the built converter package (not for an editable
    install, which runs from the checkout and asks git)."""

    def run(self):
        super().run()
        commit = checkout_commit()
        if commit and not getattr(self, "editable_mode", False):
            with open(os.path.join(self.build_lib, BUILD_COMMIT), "w") as handle:
                handle.write(commit + "\n")


setup(cmdclass={"build_py": BuildPyWithCommit})

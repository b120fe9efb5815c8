"""The benchmark's peer (litert-torch) setup fails cleanly: one line, nothing half-made left.

None of these needs the peer installed: they run the benchmark script up to the point where
its own virtual environment would be created or used, with the package index out of reach.
"""

import os
import subprocess
import sys

from conftest import REPO_ROOT

BENCH = os.path.join(REPO_ROOT, "scripts", "bench.py")


def run_bench(*args, env=None):
    return subprocess.run([sys.executable, BENCH, "--peer-only", "--peer", "T", *args],
                          capture_output=True, text=True, env=env, timeout=300)


def test_bench_peer_install_without_index_fails_in_one_line_and_leaves_no_venv(tmp_path):
    venv = tmp_path / "peer-venv"
    wheels = tmp_path / "no-wheels"  # an empty find-links folder: no package can be found
    wheels.mkdir()
    env = dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels))
    done = run_bench("--peer-venv", str(venv), env=env)
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: installing litert-torch into"), done.stderr
    assert "litert-torch==" in last and "full log:" in last
    assert "Traceback" not in done.stderr
    assert not venv.exists()  # the half-made environment is removed, never reused


def test_bench_peer_refuses_a_venv_path_that_is_not_a_venv(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "keep.txt").write_text("not a virtual environment")
    done = run_bench("--peer-venv", str(folder))
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "is not a virtual environment" in last and str(folder) in last
    assert "Traceback" not in done.stderr
    assert (folder / "keep.txt").read_text() == "not a virtual environment"  # untouched

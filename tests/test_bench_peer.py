"""The benchmark's peer (litert-torch) setup fails cleanly: one line, nothing half-made left.

None of these needs the peer installed: they run the benchmark script up to the point where
its own virtual environment would be created or used, with the package index out of reach.
"""

import os
import subprocess
import sys

import pytest
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


@pytest.mark.parametrize("existing", ["keep.txt", "pyvenv.cfg"])
def test_bench_peer_never_removes_or_fills_a_folder_it_did_not_make(tmp_path, existing):
    # a plain folder, or someone's own virtual environment given as --peer-venv
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / existing).write_text("theirs")
    done = run_bench("--peer-venv", str(folder))
    assert done.returncode != 0
    last = done.stderr.strip().splitlines()[-1]
    assert "is not a peer environment this benchmark made" in last and str(folder) in last
    assert "Traceback" not in done.stderr
    assert [p.name for p in folder.iterdir()] == [existing]  # untouched
    assert (folder / existing).read_text() == "theirs"


def test_bench_peer_rebuilds_an_interrupted_install_of_its_own(tmp_path):
    # a venv the bench made and was killed while filling: removed, then rebuilt (here the
    # rebuild fails without an index, which removes it again)
    venv = tmp_path / "peer-venv"
    venv.mkdir()
    (venv / "videomae-peer-installing").write_text("")
    (venv / "half.txt").write_text("half-installed")
    wheels = tmp_path / "no-wheels"
    wheels.mkdir()
    done = run_bench("--peer-venv", str(venv),
                     env=dict(os.environ, PIP_NO_INDEX="1", PIP_FIND_LINKS=str(wheels)))
    assert "is an interrupted install" in done.stderr and "rebuilding it" in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("Error: installing litert-torch")
    assert not venv.exists()

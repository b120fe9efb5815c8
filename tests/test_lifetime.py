"""The console scripts' process lifetime (tf_models/lifetime.py): the frameworks' import runs
without the collector's passes and ends with one collection and a frozen heap; at exit the
heap is frozen after the exit handlers registered since the claim (before those registered
earlier), so finalisation has nothing to scan.

Each case runs in a fresh Python: claiming a process registers an exit handler, and the test
process must stay unclaimed (its heap is never frozen)."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time

import pytest

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Inside the block: 60 000 lists in 20 000 reference cycles (garbage once the block ends) and
# 5 000 kept ones, enough allocations for dozens of young-generation passes with the collector
# on. The gc callback records every pass. Exit handlers registered before and after the claim
# report what they see (handlers run last-in first-out).
CHILD = """
import atexit, gc, json, sys, weakref
from videomae_cli.lifetime import claim_process, framework_imports

report = {}
atexit.register(lambda: print("AFTER-CLAIM-HANDLER", json.dumps(
    {"frozen": gc.get_freeze_count(), "late": late_alive()}), flush=True))
__CLAIM__
atexit.register(lambda: print("BEFORE-CLAIM-HANDLER", json.dumps(
    {"frozen": gc.get_freeze_count()}), flush=True))

passes = []
gc.callbacks.append(lambda phase, info: passes.append(info["generation"])
                    if phase == "start" else None)

class Node(list):
    pass

probes = []
with framework_imports():
    for _ in range(20000):
        a, b, c = Node(), Node(), Node()
        a.append(b); b.append(c); c.append(a)
        if len(probes) < 10:
            probes.append(weakref.ref(a))
    kept = [Node() for _ in range(5000)]
    report["passes_inside"] = list(passes)
    report["enabled_inside"] = gc.isenabled()
report["passes_at_end"] = passes[len(report["passes_inside"]):]
report["full_passes_at_end"] = [g for g in report["passes_at_end"] if g == 2]
report["cycles_freed"] = all(p() is None for p in probes)
report["enabled_after"] = gc.isenabled()
report["frozen_after"] = gc.get_freeze_count()
late = [Node() for _ in range(3000)]
late_ref = weakref.ref(late[0])
late_alive = lambda: late_ref() is not None
print("REPORT", json.dumps(report), flush=True)
"""


def run_child(claim: bool) -> dict:
    code = CHILD.replace("__CLAIM__", "claim_process()" if claim else "")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (REPO_ROOT, env.get("PYTHONPATH")) if p)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = {}
    for line in done.stdout.splitlines():
        tag, _, payload = line.partition(" ")
        lines[tag] = json.loads(payload)
    # BEFORE-CLAIM's handler was registered after the claim's: it runs first, then the claim's
    # freeze, then AFTER-CLAIM's, which was registered before the claim
    order = [line.partition(" ")[0] for line in done.stdout.splitlines()]
    assert order == ["REPORT", "BEFORE-CLAIM-HANDLER", "AFTER-CLAIM-HANDLER"]
    return lines


def test_a_claimed_process_imports_without_collector_passes_then_collects_once_and_freezes():
    lines = run_child(claim=True)
    report = lines["REPORT"]
    assert report["passes_inside"] == [] and report["enabled_inside"] is False
    assert report["passes_at_end"] == [2]  # one full collection when the block ends
    assert report["cycles_freed"]  # the garbage made inside is gone
    assert report["enabled_after"] is True
    assert report["frozen_after"] >= 5000  # the survivors (the kept lists) are frozen


def test_a_claimed_process_freezes_its_heap_at_exit_after_the_handlers_registered_since():
    lines = run_child(claim=True)
    # a handler registered after the claim runs before the freeze: nothing new is frozen yet
    # (the count only drops, as frozen objects are freed)
    before = lines["BEFORE-CLAIM-HANDLER"]["frozen"]
    assert before <= lines["REPORT"]["frozen_after"]
    # the claim's handler ran next: the objects made since (3 000 lists, alive) are frozen too
    after = lines["AFTER-CLAIM-HANDLER"]
    assert after["late"] and after["frozen"] >= before + 3000


def test_an_unclaimed_process_imports_with_the_collector_on_and_freezes_nothing():
    lines = run_child(claim=False)
    report = lines["REPORT"]
    assert report["enabled_inside"] is True and len(report["passes_inside"]) > 10
    # no collection of its own at the block's end (a young-generation pass may happen to fall
    # due in the few allocations between the block's last line and this count)
    assert report["full_passes_at_end"] == [] and report["frozen_after"] == 0
    assert lines["BEFORE-CLAIM-HANDLER"]["frozen"] == 0
    assert lines["AFTER-CLAIM-HANDLER"]["frozen"] == 0


TARGET = """
import gc, json, sys

IMPORTED_WITH_COLLECTOR = gc.isenabled()


def main():
    print(json.dumps({"argv": sys.argv, "imported_with_collector": IMPORTED_WITH_COLLECTOR,
                      "enabled": gc.isenabled(), "frozen": gc.get_freeze_count(),
                      "loaded": sorted(m for m in ("tf_models", "keras", "tensorflow")
                                       if m in sys.modules)}))
"""


def test_a_framework_child_imports_its_target_claimed_and_passes_its_arguments(tmp_path):
    """``framework_child`` (``--all``'s conversions, the release's fresh-process check): the
    target's module imports with the collector paused, then the heap is frozen and the
    collector back on; the target gets its arguments after its module's name."""
    from tf_models.lifetime import framework_child

    (tmp_path / "probe_target.py").write_text(TARGET)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(tmp_path), REPO_ROOT, env.get("PYTHONPATH")) if p)
    done = subprocess.run(framework_child("probe_target:main", "--name", "x y"), env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["argv"] == ["probe_target", "--name", "x y"]
    assert found["imported_with_collector"] is False
    assert found["enabled"] is True and found["frozen"] > 0
    assert found["loaded"] == []  # the lifetime file alone, not its package (Keras)


# A parent that starts ``framework_child("signal:pause")`` (a child that waits for a signal),
# prints its pid and waits too; this file loaded by path, as the child loads it (no Keras)
PAUSING_PARENT = """
import importlib.util, signal, subprocess, sys
spec = importlib.util.spec_from_file_location("_lifetime", sys.argv[1])
lifetime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lifetime)
child = subprocess.Popen(lifetime.framework_child("signal:pause"))
print(child.pid, flush=True)
signal.pause()
"""


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (an ended child whose new parent has not reaped it is a zombie)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


def _kill_group(process) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _ends_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _running(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    return not _running(pid)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
def test_a_framework_child_ends_when_its_parent_is_killed():
    """``--all`` killed with SIGKILL (its handlers never run) leaves no conversion running:
    each child gets SIGTERM from the kernel when the parent dies."""
    import tf_models.lifetime

    parent = subprocess.Popen([sys.executable, "-c", PAUSING_PARENT, tf_models.lifetime.__file__],
                              stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        child = int(parent.stdout.readline())
        time.sleep(0.5)  # the child's first lines (``end_with_parent``) have run
        assert _running(child)
        parent.kill()
        parent.wait()
        assert _ends_within(child, 5), "the child outlived its killed parent"
    finally:
        _kill_group(parent)  # the child too, on the old code


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="Linux's parent-death signal")
def test_a_framework_child_whose_parent_is_already_gone_stops_at_once():
    """The parent may die between the fork and the child's request for the signal: the child
    then has another parent than the pid it was given, and stops."""
    from tf_models.lifetime import framework_child

    # started by another process than the one that made the command line
    relay = subprocess.Popen([sys.executable, "-c",
                              "import subprocess, sys; print(subprocess.call(sys.argv[1:]))",
                              *framework_child("signal:pause")], stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
    try:
        assert relay.communicate(timeout=5)[0].strip() == str(-signal.SIGTERM)
    finally:
        _kill_group(relay)

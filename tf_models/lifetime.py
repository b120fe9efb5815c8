"""A process around the frameworks: their import without the garbage collector's repeated
full passes, and an exit without its last ones (stdlib only, importing nothing of its package:
``videomae_cli`` loads this file on its own before any framework, and ``framework_child``'s
processes load it by path).

Importing torch, TensorFlow and Keras makes about 1.4 million Python objects, 600 000 of them
garbage by the end. With the collector on, the import runs full passes over the growing heap
again and again: 1.5-2 s of ``import converter.api``'s 7.4-8.1 s on a 2-core machine. Paused,
the import takes 5.8-6.0 s; one collection afterwards (0.4 s) frees the same garbage, and the
survivors, the modules and their tables, are then frozen out of the collector's view
(``gc.freeze``): they live as long as the process, and no later pass scans them.

At exit, Python's finalisation clears every module and collects after each step: 2.2-2.4 s
with the frameworks loaded, spent freeing memory the operating system takes back at once.
Freezing the heap in the last exit handler leaves those collections nothing to scan. The
exit handlers registered after the claim (the frameworks', temporary folders', Ray's
shutdown) have run by then; the few registered before it run after, unaffected (freezing
stops no code from running), and objects are still freed by reference counting as their
modules are cleared.

Only a process that a console script owns does this (``claim_process``, the first call of
every entry point), or a child process the library starts for one job (``framework_child``:
``--all``'s conversions, the release's fresh-process check): the commands themselves also run
inside test processes, where freezing the heap would keep other tests' garbage alive.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import gc
import os
import signal
import sys
from typing import List

_claimed = False


def claim_process() -> None:
    """Mark this process as a console script's own (or ``framework_child``'s):
    ``framework_imports`` pauses and then freezes, and the exit skips its collections. Call
    first in an entry point."""
    global _claimed
    if not _claimed:
        _claimed = True
        # registered before the frameworks register theirs: exit handlers run last-in
        # first-out, so theirs run before the freeze
        atexit.register(gc.freeze)


@contextlib.contextmanager
def framework_imports():
    """Import the frameworks inside this block: in a claimed process the collector waits
    until the block ends, collects once and freezes what is left; elsewhere a no-op."""
    if not _claimed:
        yield
        return
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.collect()
        gc.freeze()
        if enabled:
            gc.enable()


# Linux's prctl option: the signal this process gets when its parent dies
_PR_SET_PDEATHSIG = 1


def end_with_parent(parent: int) -> None:
    """SIGTERM to this process when ``parent`` (the pid that started it) dies: the kernel's
    parent-death signal, which the children handle as any stop (``tf_models.stopping``). Asked
    for after the fork, so a parent that died first is caught by its pid: this process has
    another parent by then, and stops at once. A no-op where the kernel has no such signal."""
    if not sys.platform.startswith("linux"):
        return
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return
    if prctl(_PR_SET_PDEATHSIG, int(signal.SIGTERM), 0, 0, 0) != 0:
        return
    if os.getppid() != parent:
        os.kill(os.getpid(), signal.SIGTERM)


# The child's first lines: this file loaded by path (its package's __init__ imports Keras,
# which must come inside ``framework_imports``), the child tied to its parent's life, the
# process claimed, the target imported with the collector paused, then called. argv: this
# file, the parent's pid, the target, the target's own.
_CHILD = """
import importlib, importlib.util, sys
path, parent, target = sys.argv[1:4]
module, function = target.split(":")
sys.argv[:4] = [module]
spec = importlib.util.spec_from_file_location("_videomae_lifetime", path)
lifetime = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lifetime)
lifetime.end_with_parent(int(parent))
lifetime.claim_process()
with lifetime.framework_imports():
    loaded = importlib.import_module(module)
getattr(loaded, function)()
"""


def framework_child(target: str, *args: str) -> List[str]:
    """The command line of a fresh Python that runs ``target`` (``"package.module:function"``,
    called with no arguments; ``args`` in ``sys.argv[1:]``, ``sys.argv[0]`` the module's name)
    as a claimed process: its imports without the collector's passes, its exit with nothing to
    scan (the release's fresh-process check, which imports torch and TensorFlow, started and
    exited in 5.8-6.2 s against 7.8-9.8 s as ``python -m``, on 2 cores). The child gets SIGTERM
    when this process dies (``end_with_parent``: a killed ``--all`` leaves no conversion
    running); start it in this process, from a thread that outlives it (Linux sends the
    signal when the starting thread ends: ``--all``'s threads wait for their child)."""
    return [sys.executable, "-c", _CHILD, __file__, str(os.getpid()), target, *args]

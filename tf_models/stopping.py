"""Stopping a command on SIGTERM or SIGINT: one exception, wherever the signal lands.

Python runs a signal handler between two bytecodes of the main thread, wherever that is, and
raises its exception there. Three places keep that exception from reaching the command: a
garbage-collector callback (jax registers one; Python prints the exception and goes on), a
Python call made by C++ code (TensorFlow's ``nest`` checks: it comes back as a SystemError,
or is printed by ``PyErr_Print``), and a destructor. Inside ``stop_handlers()`` the handler
remembers the signal (``Terminated.received``) and raises ``Terminated`` where it can; the
command calls ``stop_if_signalled()`` at each phase or step, so a signal swallowed anywhere
still stops it there, and what Python could only print of it is not printed.
``run_stoppably(work)`` is the whole pattern, which every long-running command uses
(``videomae_cli.exits.stoppable`` the same around a whole command). Stdlib only, importing
nothing of its package at import time: the console scripts (``videomae_cli.exits``) load this
file on its own, so that their handlers are in place before TensorFlow is imported (a stop
while it imports, or while a model loads, is one line too).
"""

from __future__ import annotations

import contextlib
import gc
import signal
import sys


class Terminated(BaseException):
    """SIGTERM or SIGINT, raised like KeyboardInterrupt so no ``except Exception`` swallows
    it; ``received`` remembers it even if a library turns it into another exception."""

    received = None


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def stop_if_signalled(phase: str = "") -> None:
    """Called as each phase (a conversion's) or step (a training run's) starts: a signal
    whose exception was swallowed (it landed in a garbage-collector callback, where Python
    only prints it) still stops the run here, before anything is moved into place."""
    if Terminated.received is not None:
        raise Terminated()


def on_stop_signal(signum, frame):
    Terminated.received = signum
    if _inside_gc_callback(frame):
        return  # raised there it would only be printed; the next phase start stops the run
    if _deferred(signum):
        return  # a lock or staging folder is being taken: raised again once it is recorded
    raise Terminated()


def _deferred(signum) -> bool:
    """``tf_models.artifacts.files.defer_stop_signal``, looked up when a signal lands: this file
    may be loaded on its own, before the package, and no stop can be held back before that
    module is loaded (its ``stop_signals_deferred`` holds them)."""
    files = sys.modules.get("tf_models.artifacts.files")
    return files is not None and files.defer_stop_signal(signum)


def _from_stop_signal(error) -> bool:
    """Whether ``error``, reported after a stop signal, is that signal's exception or was
    raised because of it. A signal's exception that lands inside a Python call made by C++
    code (TensorFlow's ``nest`` type checks) comes back as a ``SystemError`` (``... returned a
    result with an exception set``; ``bad argument to internal function`` seen here too),
    caused by it at first; TensorFlow's and Keras's traceback filters re-raise it ``from
    None``, and CI printed one with one frame (what those filters keep when they drop all) and
    no chain leading to the signal. So any SystemError in the chain counts: after a stop signal
    it is the signal's fallout, and the run is stopping anyway."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, (Terminated, KeyboardInterrupt, SystemError)):
            return True
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return False


def _unraisable_hook(previous):
    """``sys.unraisablehook`` while a run has its stop handlers: a stop signal's exception
    (or one it caused) raised where Python can only report it (a callback from C++ code, a
    destructor, a garbage-collector callback) is left unprinted, since ``received`` stops the
    run at the next phase; anything else goes to ``previous``."""
    def hook(unraisable):
        if Terminated.received is not None and _from_stop_signal(unraisable.exc_value):
            return
        previous(unraisable)
    return hook


def _except_hook(previous):
    """``sys.excepthook`` while a run has its stop handlers: C++ code that prints a Python
    error it cannot raise (``PyErr_Print``) goes through it; a stop signal's is left
    unprinted as in ``_unraisable_hook``."""
    def hook(kind, value, traceback):
        if Terminated.received is not None and _from_stop_signal(value):
            return
        previous(kind, value, traceback)
    return hook


@contextlib.contextmanager
def stop_handlers():
    """Inside the block SIGTERM and SIGINT raise ``Terminated`` (``on_stop_signal``), and what
    Python could only print of it is not printed (``_unraisable_hook``, ``_except_hook``)."""
    Terminated.received = None
    previous = {sig: signal.signal(sig, on_stop_signal) for sig in STOP_SIGNALS}
    previous_hooks = sys.unraisablehook, sys.excepthook
    sys.unraisablehook = _unraisable_hook(previous_hooks[0])
    sys.excepthook = _except_hook(previous_hooks[1])
    try:
        yield
    finally:
        sys.unraisablehook, sys.excepthook = previous_hooks
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run_stoppably(work):
    """``work(on_phase)`` under ``stop_handlers``, ``on_phase`` (``stop_if_signalled``: call it
    at each phase, step or video) stopping it there after a swallowed signal: the way
    ``videomae-convert``, ``-export`` and ``-finetune`` are stopped (``-evaluate``, ``-extract``,
    ``-predict`` and ``-reconstruct``: ``videomae_cli.exits.stoppable``, from their start).
    Returns what ``work`` returns; a stop signal, and anything raised because of it, comes out
    as KeyboardInterrupt (whatever ``work`` cleans up on the way out is cleaned by then); any
    other exception as itself."""
    try:
        with stop_handlers():
            return work(stop_if_signalled)
    except BaseException as error:
        if Terminated.received is None and not isinstance(error, KeyboardInterrupt):
            raise
        raise KeyboardInterrupt("interrupted") from None


def _inside_gc_callback(frame) -> bool:
    """Whether ``frame`` runs inside a garbage-collector callback (jax registers one)."""
    codes = {getattr(callback, "__code__", None) for callback in gc.callbacks}
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False

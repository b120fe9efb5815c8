"""Progress bars (tqdm) for long work: a conversion's phases, a download, a list of videos, a
fine-tuning run. On a terminal, as tqdm draws them. Where the stream is not one (a log file,
a pipe, CI), tqdm would still redraw each frame after a carriage return, so a whole run piled
up on one line of the log; there each frame becomes a line of its own, one every
``LOG_SECONDS`` at most, and the first and the last (where the work ended, even for a bar
that a terminal clears when done). In a notebook, tqdm's widget as ever."""

from __future__ import annotations

import sys

# the least time between two lines of a bar written to a log (a terminal's redraws: tqdm's)
LOG_SECONDS = 30.0


class LogLines:
    """A stream for tqdm that turns its redrawn frames (``\\r`` + text + padding) into lines
    of ``stream``; the blank writes that close or clear a bar are dropped, and so is a frame
    the line before holds (tqdm redraws the last one when the bar closes)."""

    def __init__(self, stream):
        self.stream = stream
        self.last = None

    def write(self, text: str) -> None:
        frame = text.replace("\r", "").strip()
        if frame and frame != self.last:
            self.stream.write(frame + "\n")
            self.last = frame

    def flush(self) -> None:
        self.stream.flush()


def is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # no isatty, or a closed stream
        return False


def progress_bar(**kwargs):
    """``tqdm.auto.tqdm(**kwargs)`` (``file`` defaults to stderr), whose frames are log lines
    where ``file`` is not a terminal (``LogLines``, at most one every ``LOG_SECONDS``; the
    last one kept: ``leave`` is a terminal's choice)."""
    from tqdm.auto import tqdm
    from tqdm.autonotebook import tqdm as chosen  # tqdm.std's, or a notebook's widget
    from tqdm.std import tqdm as plain

    stream = kwargs.get("file") or sys.stderr
    if chosen is plain and not kwargs.get("disable") and not is_terminal(stream):
        kwargs.update(file=LogLines(stream), dynamic_ncols=False, leave=True,
                      mininterval=max(kwargs.get("mininterval", 0.0), LOG_SECONDS))
    return tqdm(**kwargs)

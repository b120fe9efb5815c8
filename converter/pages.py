"""Handing back a memory-mapped checkpoint's pages as its tensors are consumed.

Checkpoints are memory-mapped (``torch.load(mmap=True)``): a tensor's bytes are read from the
file when first touched and then stay resident, counted in the process's memory, until the
whole mapping goes away with the last tensor. During the mapping phase that would hold the
checkpoint (W) and the filled Keras variables (W) at once. ``MappedPages.release_all`` drops
every page once the torch reference has run, and ``MappedPages.release`` drops a tensor's
pages (``madvise(MADV_DONTNEED)``) right after its bytes were copied into their variable, so
the checkpoint streams through one tensor at a time as the Keras model fills in.

Only mappings of the checkpoint's own files that appeared while it was loaded are ever
touched (never a library's), and ``release`` only whole pages inside the tensor. Such a page
is a private, unmodified copy of the file: dropping it loses nothing, and reading the tensor
again reads the file again. Tensors anywhere else (an fp16 file upcast to fp32, a pre-pass's
fused bias) are left alone. Without ``/proc/self/maps`` or ``madvise`` (not Linux) it does
nothing.
"""

from __future__ import annotations

import ctypes
import mmap
import os
from typing import FrozenSet, List, Tuple

MADV_DONTNEED = 4  # Linux

Mapping = Tuple[int, int, str]


def file_mappings() -> FrozenSet[Mapping]:
    """This process's file-backed mappings as (start, end, path); empty where unknown."""
    found = set()
    try:
        with open("/proc/self/maps") as handle:
            for line in handle:
                fields = line.split(maxsplit=5)
                if len(fields) == 6 and fields[5].startswith("/"):
                    start, end = (int(x, 16) for x in fields[0].split("-"))
                    found.add((start, end, fields[5].rstrip("\n")))
    except OSError:
        pass
    return frozenset(found)


def _madvise():
    try:
        function = ctypes.CDLL(None, use_errno=True).madvise
    except (OSError, AttributeError):
        return None
    function.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    function.restype = ctypes.c_int
    return function


def _inside(path: str, source: str) -> bool:
    path, source = os.path.realpath(path), os.path.realpath(source)
    return path == source or (os.path.isdir(source) and path.startswith(source + os.sep))


class MappedPages:
    """The mappings of ``source`` (a checkpoint file, or a folder of them) that a load created;
    ``release(tensor)`` and ``release_all()`` drop their pages.

    Build it from two ``file_mappings()`` snapshots taken around the load. Only mappings of
    the checkpoint's own files count: a library the load happened to open maps writable data
    that must never be dropped.
    """

    def __init__(self, before: FrozenSet[Mapping], after: FrozenSet[Mapping], source: str):
        self.ranges: List[Tuple[int, int]] = sorted(
            (s, e) for s, e, path in after - before if _inside(path, source))
        self.released = 0  # bytes handed back, for tests and reports
        self._madvise = _madvise() if self.ranges else None

    def release_all(self) -> None:
        """Drop every resident page of the checkpoint's mappings (they stay mapped: a tensor
        read later is read from the file again)."""
        if self._madvise is None:
            return
        for start, end in self.ranges:
            if self._madvise(start, end - start, MADV_DONTNEED) == 0:
                self.released += end - start

    def release(self, tensor) -> None:
        if self._madvise is None or tensor.numel() == 0:
            return
        start = tensor.data_ptr()
        end = start + tensor.numel() * tensor.element_size()
        if not any(lo <= start and end <= hi for lo, hi in self.ranges):
            return
        first = -(-start // mmap.PAGESIZE) * mmap.PAGESIZE  # whole pages inside the tensor
        last = end // mmap.PAGESIZE * mmap.PAGESIZE
        if last > first and self._madvise(first, last - first, MADV_DONTNEED) == 0:
            self.released += last - first

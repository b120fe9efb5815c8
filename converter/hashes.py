"""The staged artifacts' sha256, computed in a background thread while the conversion goes on.

Each artifact is handed over as soon as it is written (``StagedArtifacts.write``) and hashed
by one worker thread. Reading a file just written (still in the page cache) and hashlib's
update both release the GIL, so the hashing runs beside the reload checks, which leave part
of the second core idle, instead of after them when the artifacts are placed (ViT-B: about
0.7 s for its 1 GB of artifacts). The worker then flushes the tree to disk (``fsync``, errors
ignored: a head start only; placing flushes everything again and raises there), so the
placing's own flush finds little left to write (ViT-B: 0.36 s of its move into place).

The worker takes the tree's stamp (``tree_stamp``: names, sizes, mtimes) before it reads a
byte; a hash is used only if the stamp is the same when the hash is asked for, otherwise the
tree is hashed again there, so a file rewritten after its hash began (its size or mtime
changed) is not recorded with the old bytes' checksum; nothing in a conversion writes a
staged artifact after handing it over. ``close`` stops a running hash within one chunk (a
flush under way finishes first) and waits for the worker, so nothing reads a staging folder
that is being removed.
"""

from __future__ import annotations

import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Dict, Optional, Tuple

from tf_models.artifacts.checksums import tree_sha256, tree_stamp
from tf_models.artifacts.files import fsync_quietly


# the worker thread's name prefix (tests look for a worker left running by it)
WORKER_NAME = "videomae-sha256"


class BackgroundHashes:
    """sha256 of artifact trees, started with ``start`` and collected with ``sha256``."""

    def __init__(self) -> None:
        self._stop = threading.Event()
        self._pool: Optional[ThreadPoolExecutor] = None
        self._jobs: Dict[str, Future] = {}

    def start(self, key: str, path: str) -> None:
        """Hash the file or folder at ``path`` in the worker thread, as ``key``."""
        if self._stop.is_set():
            raise RuntimeError("start() after close()")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=WORKER_NAME)
        self._jobs[key] = self._pool.submit(self._hash, path)

    def _hash(self, path: str) -> Tuple[tuple, str]:
        stamp = tree_stamp(path)
        digest = tree_sha256(path, stop=self._stop.is_set)
        if not self._stop.is_set():
            fsync_quietly(path)
        return stamp, digest

    def sha256(self, key: str, path: str) -> str:
        """The hex sha256 of ``path``: the worker's when it hashed this same tree (waiting for
        it if it is still running), else computed here. A read error in the worker is not
        trusted either way: hashing here raises it where the caller can handle it."""
        job = self._jobs.pop(key, None)
        if job is not None:
            try:
                stamp, digest = job.result()
            except OSError:
                stamp = None
            if stamp is not None and stamp == tree_stamp(path):
                return digest
        return tree_sha256(path)

    def close(self) -> None:
        """Stop the worker (a running hash ends within one chunk) and wait for it."""
        self._stop.set()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        self._jobs.clear()

"""Artifacts hashed in a background thread while the conversion goes on
(``converter.hashes.BackgroundHashes``): the checksum recorded is always that of the bytes
placed, a tree written after its hash began is hashed again, and closing leaves no worker."""

import os
import threading

import pytest

import converter.hashes as hashes_module
from converter.hashes import WORKER_NAME, BackgroundHashes
from tf_models.artifacts.checksums import HashStopped, sha256_file, tree_sha256


def _tree(root):
    """A folder with a nested file (as a SavedModel has) and a single file beside it."""
    folder = root / "savedmodel"
    (folder / "variables").mkdir(parents=True)
    (folder / "saved_model.pb").write_bytes(os.urandom(3000))
    (folder / "variables" / "variables.data").write_bytes(os.urandom(5 << 20))
    single = root / "model.keras"
    single.write_bytes(os.urandom(2 << 20))
    return str(folder), str(single)


def _counting(monkeypatch):
    """tree_sha256 as converter.hashes calls it, recording which thread hashed."""
    threads = []
    real = hashes_module.tree_sha256

    def counted(path, stop=None):
        threads.append(threading.current_thread().name)
        return real(path, stop=stop)
    monkeypatch.setattr(hashes_module, "tree_sha256", counted)
    return threads


def _workers():
    return [t for t in threading.enumerate() if t.name.startswith(WORKER_NAME)]


def test_an_unchanged_tree_gets_the_workers_checksum_of_its_bytes(tmp_path, monkeypatch):
    """Hashed once, in the worker, which then flushes the tree to disk (a head start for the
    placing's own flush); nothing is hashed again when the checksum is asked for."""
    folder, single = _tree(tmp_path)
    threads = _counting(monkeypatch)
    flushed = []
    monkeypatch.setattr(hashes_module, "fsync_quietly",
                        lambda path: flushed.append((threading.current_thread().name, path)))
    hashes = BackgroundHashes()
    try:
        hashes.start("savedmodel", folder)
        hashes.start("keras", single)
        assert hashes.sha256("savedmodel", folder) == tree_sha256(folder)
        assert hashes.sha256("keras", single) == sha256_file(single)
    finally:
        hashes.close()
    # hashed once each, both in the worker: nothing hashed again when placing
    assert len(threads) == 2 and all(name.startswith(WORKER_NAME) for name in threads)
    assert [path for _, path in flushed] == [folder, single]
    assert all(name.startswith(WORKER_NAME) for name, _ in flushed)


def test_a_tree_written_after_its_hash_began_is_hashed_again(tmp_path, monkeypatch):
    """The worker's stamp (names, sizes, mtimes) is taken before it reads; a file rewritten
    after that (here: same size, other bytes, a later mtime) is not recorded with the old
    bytes' checksum but hashed again when asked for."""
    folder, _ = _tree(tmp_path)
    threads = _counting(monkeypatch)
    hashes = BackgroundHashes()
    try:
        hashes.start("savedmodel", folder)
        hashes._jobs["savedmodel"].result()  # the worker has finished with the old bytes
        old = tree_sha256(folder)
        data = os.path.join(folder, "variables", "variables.data")
        with open(data, "r+b") as handle:
            handle.write(b"\0" * 4096)
        info = os.stat(data)
        os.utime(data, ns=(info.st_atime_ns, info.st_mtime_ns + 1_000_000))
        digest = hashes.sha256("savedmodel", folder)
    finally:
        hashes.close()
    assert digest == tree_sha256(folder) != old
    assert threads[0].startswith(WORKER_NAME) and threads[-1] == "MainThread"


def test_a_read_error_in_the_worker_is_raised_where_the_checksum_is_asked_for(tmp_path):
    """A file the worker cannot read (here a link to nothing inside the folder) is read
    again by the caller, whose error is raised to it, not left in the worker."""
    folder, _ = _tree(tmp_path)
    os.symlink(str(tmp_path / "nowhere"), os.path.join(folder, "dangling"))
    hashes = BackgroundHashes()
    try:
        hashes.start("savedmodel", folder)
        with pytest.raises(FileNotFoundError, match="dangling"):
            hashes.sha256("savedmodel", folder)
    finally:
        hashes.close()


def test_closing_stops_the_worker_and_waits_for_it(tmp_path):
    folder, single = _tree(tmp_path)
    hashes = BackgroundHashes()
    hashes.start("savedmodel", folder)
    hashes.start("keras", single)
    hashes.close()
    assert _workers() == []
    with pytest.raises(RuntimeError, match="after close"):
        hashes.start("keras", single)


def test_a_hash_asked_to_stop_ends_before_the_next_chunk(tmp_path):
    _, single = _tree(tmp_path)
    chunks = []

    def stop():
        chunks.append(1)
        return len(chunks) > 1
    with pytest.raises(HashStopped):
        tree_sha256(single, stop=stop)
    assert len(chunks) == 2  # asked before the first chunk (go on) and the second (stop)

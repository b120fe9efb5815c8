"""The one downloader (tf_models.artifacts.download) against the loopback FaultServer: a cut
transfer resumes where it stopped, two processes fetching one asset end with one verified
file, and the offline switch reads the usual spellings under every name it has had."""

import hashlib
import os
import subprocess
import sys
import textwrap

import pytest

from conftest import REPO_ROOT
from tf_models.artifacts import download

PAYLOAD = bytes(range(256)) * 2053  # ~0.5 MiB, not a multiple of any chunk size
DIGEST = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    for name in download.OFFLINE_ENVS:
        monkeypatch.delenv(name, raising=False)


def _read(path):
    with open(path, "rb") as handle:
        return handle.read()


def test_a_cut_download_resumes_from_the_byte_where_it_stopped(fault_server, tmp_path):
    url = fault_server.add("asset.bin", PAYLOAD)
    dest = str(tmp_path / "cache" / "asset.bin")
    fault_server.plan("drop:123457")
    with pytest.raises(download.DownloadInterrupted) as caught:
        download.fetch_file(url, dest, DIGEST, progress=False)
    assert caught.value.have == 123457 and "\n" not in str(caught.value)
    assert sorted(os.listdir(tmp_path / "cache")) == ["asset.bin.part"]  # kept, no lock left
    assert download.fetch_file(url, dest, DIGEST, progress=False) == dest
    assert fault_server.requests == [("/asset.bin", None), ("/asset.bin", "bytes=123457-")]
    assert hashlib.sha256(_read(dest)).hexdigest() == DIGEST
    assert sorted(os.listdir(tmp_path / "cache")) == ["asset.bin", "asset.bin.sha256"]


def test_a_resumed_download_with_a_wrong_digest_is_discarded(fault_server, tmp_path):
    url = fault_server.add("asset.bin", PAYLOAD)
    dest = str(tmp_path / "cache" / "asset.bin")
    fault_server.plan("drop:1000", "corrupt")
    with pytest.raises(download.DownloadInterrupted):
        download.fetch_file(url, dest, DIGEST, progress=False)
    with pytest.raises(download.DownloadDamaged, match="sha256"):
        download.fetch_file(url, dest, DIGEST, progress=False)
    assert os.listdir(tmp_path / "cache") == []


# the downloader needs neither Keras nor TensorFlow: the child imports it without running
# tf_models/__init__.py (which imports Keras), so the test starts in well under a second
CHILD = textwrap.dedent("""
    import os, sys, time, types
    url, dest, digest, ready, go, repo = sys.argv[1:]
    package = types.ModuleType("tf_models")
    package.__path__ = [os.path.join(repo, "tf_models")]
    sys.modules["tf_models"] = package
    from tf_models.artifacts import download
    assert "keras" not in sys.modules and "tensorflow" not in sys.modules
    open(ready, "w").close()
    while not os.path.exists(go):  # start together, after the (slow) imports
        time.sleep(0.01)
    print(download.fetch_file(url, dest, digest, progress=False))
""")


def test_two_processes_fetching_one_asset_end_with_one_verified_file(fault_server, tmp_path):
    url = fault_server.add("asset.bin", PAYLOAD)
    dest = str(tmp_path / "cache" / "asset.bin")
    fault_server.plan("slow:2")  # the first transfer takes 2 s: the second process must wait
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        p for p in (REPO_ROOT, os.environ.get("PYTHONPATH")) if p))
    go = str(tmp_path / "go")
    ready = [str(tmp_path / f"ready{i}") for i in range(2)]
    children = [subprocess.Popen([sys.executable, "-c", CHILD, url, dest, DIGEST, r, go,
                                  REPO_ROOT],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, stdin=subprocess.DEVNULL) for r in ready]
    try:
        while not all(os.path.exists(r) for r in ready):
            assert all(c.poll() is None for c in children), children[0].communicate()
        open(go, "w").close()
        results = [c.communicate(timeout=300) for c in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for child, (out, err) in zip(children, results):
        assert child.returncode == 0, err[-2000:]
        assert out.strip() == dest
    assert len(fault_server.requests) == 1  # one transfer; the other took its verified file
    assert hashlib.sha256(_read(dest)).hexdigest() == DIGEST
    assert sorted(os.listdir(tmp_path / "cache")) == ["asset.bin", "asset.bin.sha256"]


@pytest.mark.parametrize("value, expected", [
    ("1", True), ("true", True), ("TRUE", True), ("Yes", True), ("on", True), (" On ", True),
    ("0", False), ("false", False), ("off", False), ("", False), ("no", False)])
@pytest.mark.parametrize("name", download.OFFLINE_ENVS)
def test_offline_switch_reads_the_usual_spellings_under_every_name(monkeypatch, name, value,
                                                                   expected):
    monkeypatch.setenv(name, value)
    assert download.is_offline() is expected
    assert download.is_offline(False) is False and download.is_offline(True) is True


def test_offline_never_downloads_and_creates_nothing(fault_server, tmp_path, monkeypatch):
    url = fault_server.add("asset.bin", PAYLOAD)
    monkeypatch.setenv("VIDEOMAE_OFFLINE", "on")
    with pytest.raises(download.OfflineError, match="offline mode never downloads"):
        download.fetch_file(url, str(tmp_path / "cache" / "asset.bin"), DIGEST)
    assert fault_server.requests == [] and not (tmp_path / "cache").exists()


def test_a_cached_copy_that_changed_is_never_used(fault_server, tmp_path):
    url = fault_server.add("asset.bin", PAYLOAD)
    dest = str(tmp_path / "asset.bin")
    download.fetch_file(url, dest, DIGEST, progress=False)
    with open(dest, "r+b") as handle:
        handle.write(b"X")
    with pytest.raises(download.CachedFileChanged, match="changed since it was downloaded"):
        download.fetch_file(url, dest, DIGEST, progress=False)
    assert download.fetch_file(url, dest, DIGEST, progress=False, force=True) == dest
    assert hashlib.sha256(_read(dest)).hexdigest() == DIGEST


READ_ONLY_CHILD = textwrap.dedent("""
    import os, sys
    from tf_models.artifacts import download
    from tf_models.artifacts.resolve import PresetError, fetch_asset

    url, dest, digest, base = sys.argv[1:]
    assert download.fetch_file(url, dest, digest, offline=True, progress=False) == dest
    assert download.fetch_file(url, dest, digest, progress=False) == dest  # online, cached
    try:
        download.fetch_file(url, dest + ".other", digest, progress=False)
    except PermissionError as error:
        print("uncached:", type(error).__name__)
    os.environ["VIDEOMAE_CACHE"] = os.path.dirname(dest) + "-release"
    # online: the list is fetched afresh (into a scratch folder), the asset read from the cache
    print("cached asset:", fetch_asset(base, "asset.bin", progress=False) ==
          fetch_asset(base, "asset.bin", offline=True, progress=False))
    try:
        fetch_asset(base, "other.bin", progress=False)
    except PresetError as error:
        print("release:", error)
""")


def test_a_read_only_cache_serves_its_verified_copies(fault_server, tmp_path, monkeypatch):
    """A shared cache this process cannot write (filled by another user, mounted read-only):
    a cached copy is verified and used, offline and online (the release's list then fetched
    into a scratch folder) (before: PermissionError creating the lock file, as a traceback
    through from_preset); what is not cached is the OSError, which the release resolver words
    as one line naming the cache, its variable and offline mode. Root ignores file modes, so
    the child runs without CAP_DAC_OVERRIDE (setpriv)."""
    import shutil

    from tf_models.artifacts.resolve import fetch_asset

    url = fault_server.add("asset.bin", PAYLOAD)
    fault_server.add("other.bin", PAYLOAD[:100])
    fault_server.add("SHA256SUMS", (f"{DIGEST}  asset.bin\n"
                                    f"{hashlib.sha256(PAYLOAD[:100]).hexdigest()}  other.bin\n"
                                    ).encode())
    cache, release_cache = tmp_path / "cache", tmp_path / "cache-release"
    dest = str(cache / "asset.bin")
    download.fetch_file(url, dest, DIGEST, progress=False)
    monkeypatch.setenv("VIDEOMAE_CACHE", str(release_cache))
    fetch_asset(fault_server.url("").rstrip("/"), "asset.bin", progress=False)
    for top in (cache, release_cache):
        for folder, _, files in os.walk(top):
            for name in files:
                os.chmod(os.path.join(folder, name), 0o444)
            os.chmod(folder, 0o555)
    prefix = []
    if os.geteuid() == 0:
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: file modes cannot be enforced")
        prefix = ["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
    result = subprocess.run(
        prefix + [sys.executable, "-c", READ_ONLY_CHILD, url, dest, DIGEST,
                  fault_server.url("").rstrip("/")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120,
        env={**os.environ, "PYTHONPATH": REPO_ROOT})
    for top in (cache, release_cache):
        for folder, _, _ in os.walk(top):
            os.chmod(folder, 0o755)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert lines[:2] == ["uncached: PermissionError", "cached asset: True"], result.stdout
    assert lines[2].startswith("release: ") and "cannot use it as the model cache" in lines[2]
    assert "VIDEOMAE_CACHE" in lines[2] and "VIDEOMAE_OFFLINE=1" in lines[2]
    assert sorted(os.listdir(cache)) == ["asset.bin", "asset.bin.sha256"]


def test_a_changed_cached_copy_with_a_non_ascii_name_is_caught(fault_server, tmp_path):
    """The sidecar is written in UTF-8 and was read as ASCII: for a name such as
    ``modèle.bin`` the record read as absent, so a changed copy was re-recorded instead of
    refused."""
    url = fault_server.add("asset.bin", PAYLOAD)
    dest = str(tmp_path / "modèle.bin")
    download.fetch_file(url, dest, progress=False)
    with open(dest, "r+b") as handle:
        handle.write(b"X")
    with pytest.raises(download.CachedFileChanged, match="changed since it was downloaded"):
        download.fetch_file(url, dest, progress=False)


def test_a_link_planted_in_the_cache_is_never_written_through(fault_server, tmp_path):
    """A ``.part``, lock or sidecar's temporary file that is a symbolic link (planted in a
    shared cache folder): the download stops with an OSError and the file the link points at
    is untouched (before: the sidecar's ``.sha256.tmp`` was written through, the file it
    pointed at overwritten with a checksum line)."""
    url = fault_server.add("asset.bin", PAYLOAD)
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"keep me\n")
    for planted in ("asset.bin.part", "asset.bin.part.lock", "asset.bin.sha256.tmp"):
        cache = tmp_path / planted.replace(".", "_")
        cache.mkdir()
        (cache / planted).symlink_to(precious)
        with pytest.raises(OSError) as error:
            download.fetch_file(url, str(cache / "asset.bin"), DIGEST, progress=False)
        if planted.endswith(".part"):  # one line saying so, not "run again to resume"
            assert "a symbolic link where the download's own file goes" in str(error.value)
        assert precious.read_bytes() == b"keep me\n"
        assert not (cache / "asset.bin").exists()


def test_a_link_planted_as_a_joins_record_temporary_is_never_written_through(tmp_path):
    """``join_parts`` records its progress in ``NAME.joining.json`` through a temporary named
    by the process id (``files.save_json``): one planted there as a symbolic link stops the
    join with an OSError and the file it points at is untouched (before: overwritten with
    the record)."""
    from tf_models.artifacts import parts

    source = tmp_path / "asset.bin"
    source.write_bytes(PAYLOAD)
    pieces = parts.split_file(str(source), 200_000)
    precious = tmp_path / "precious.txt"
    precious.write_bytes(b"keep me\n")
    cache = tmp_path / "cache"
    cache.mkdir()
    dest = cache / "asset.bin"
    (cache / f"asset.bin{parts.JOINING}.json.tmp{os.getpid()}").symlink_to(precious)
    with pytest.raises(OSError):
        parts.join_parts(pieces, str(dest), DIGEST, len(PAYLOAD))
    assert precious.read_bytes() == b"keep me\n"
    assert not dest.exists()


def test_parts_joined_to_another_file_leave_nothing_under_its_name(tmp_path):
    """``parts.join_parts``: bytes that are not the recorded file are discarded (no file
    under the asset's name, no ``.joining`` left); the right ones are renamed into place with
    their sidecar; a file cut into parts joins back byte for byte."""
    from tf_models.artifacts import parts

    source = tmp_path / "asset.bin"
    source.write_bytes(PAYLOAD)
    pieces = parts.split_file(str(source), 200_000)
    assert [os.path.basename(p) for p in pieces] == parts.part_names("asset.bin", 3) == [
        f"asset.bin.part-00{i}-of-003" for i in (1, 2, 3)]
    assert not source.exists() and [os.path.getsize(p) for p in pieces] == [
        200_000, 200_000, len(PAYLOAD) - 400_000]
    dest = str(tmp_path / "cache" / "asset.bin")
    with pytest.raises(parts.JoinDamaged, match="sha256"):
        parts.join_parts(pieces[::-1], dest, DIGEST, len(PAYLOAD))
    assert os.listdir(tmp_path / "cache") == []
    assert parts.join_parts(pieces, dest, DIGEST, len(PAYLOAD)) == dest
    assert _read(dest) == PAYLOAD
    assert sorted(os.listdir(tmp_path / "cache")) == ["asset.bin", "asset.bin.sha256"]
    assert parts.parts_listed(["x", *map(os.path.basename, pieces)], "asset.bin") == \
        parts.part_names("asset.bin", 3)
    with pytest.raises(ValueError, match="missing asset.bin.part-002-of-003"):
        parts.parts_listed([os.path.basename(pieces[0])], "asset.bin")


def _release_in_parts(server, part_size):
    """The served folder made a release shipping ``asset.bin`` (PAYLOAD) in parts of
    ``part_size`` bytes: the parts, ``manifest.json`` (the whole file's sha256 and bytes) and
    ``SHA256SUMS``. Returns (base URL, the parts' names)."""
    import json

    from tf_models.artifacts import parts

    source = os.path.join(server.root, "asset.bin")
    with open(source, "wb") as handle:
        handle.write(PAYLOAD)
    names = [os.path.basename(p) for p in parts.split_file(source, part_size)]
    server.add("manifest.json", json.dumps({"assets": {"asset.bin": {
        "sha256": DIGEST, "bytes": len(PAYLOAD), "parts": names}}}).encode())
    server.add("SHA256SUMS", "".join(
        f"{hashlib.sha256(_read(os.path.join(server.root, n))).hexdigest()}  {n}\n"
        for n in ["manifest.json", *names]).encode())
    return server.url("").rstrip("/"), names


def _cached(tmp_path):
    """{name: bytes} of every file in the release cache (all in one subfolder)."""
    return {name: os.path.getsize(os.path.join(root, name))
            for root, _, files in os.walk(tmp_path / "cache") for name in files}


PART_BYTES = 100_000  # PAYLOAD in 6 parts


def test_each_part_is_appended_and_dropped_before_the_next_is_fetched(fault_server, tmp_path,
                                                                      monkeypatch):
    """An asset shipped in parts is joined as it comes: when each part is requested, the
    cache holds no earlier part, only the ``.joining`` file with every earlier part's bytes
    (before: all parts were fetched, then joined, so the disk held twice the asset, ~8 GB
    for ViT-g's fp32 file); the whole lands verified, nothing of the join left."""
    from tf_models.artifacts.resolve import fetch_asset

    base, names = _release_in_parts(fault_server, PART_BYTES)
    monkeypatch.setenv("VIDEOMAE_CACHE", str(tmp_path / "cache"))
    seen = {}
    fault_server.on_request = lambda path: seen.setdefault(path.lstrip("/"), _cached(tmp_path))
    path = fetch_asset(base, "asset.bin", progress=False)
    assert _read(path) == PAYLOAD
    for index, name in enumerate(names):
        cached = seen[name]
        assert [n for n in cached if ".part-" in n and not n.endswith(".lock")] == [], (
            name, sorted(cached))
        assert cached.get("asset.bin.joining", 0) == index * PART_BYTES, (name, cached)
        assert sum(cached.values()) < len(PAYLOAD) + PART_BYTES
    assert sorted(_cached(tmp_path)) == ["SHA256SUMS", "SHA256SUMS.sha256", "asset.bin",
                                         "asset.bin.sha256", "manifest.json",
                                         "manifest.json.sha256"]
    fault_server.requests.clear()  # offline: the joined copy, verified, without the server
    assert fetch_asset(base, "asset.bin", offline=True, progress=False) == path
    assert fault_server.requests == []


@pytest.mark.parametrize("cut", ["none", "mid-append", "damaged", "no-record"])
def test_a_join_cut_short_resumes_after_its_recorded_parts_or_restarts(
        fault_server, tmp_path, monkeypatch, cut):
    """A run stopped inside the fourth part leaves the ``.joining`` file holding three parts
    and its record: the next run verifies it and fetches from the fourth part on (resuming
    its transfer); bytes appended after the record (a kill mid-append) are cut back; a
    ``.joining`` file that does not show the recorded sha256, or has no record, restarts
    from the first part. Nothing unverified ever sits under the asset's name."""
    from tf_models.artifacts.resolve import PresetError, fetch_asset

    base, names = _release_in_parts(fault_server, PART_BYTES)
    monkeypatch.setenv("VIDEOMAE_CACHE", str(tmp_path / "cache"))
    fault_server.plan("ok", "ok", "ok", "ok", "ok", "drop:1000")  # sums, manifest, 3 parts
    with pytest.raises(PresetError, match=f"{names[3]}: download stopped at 1000 of "):
        fetch_asset(base, "asset.bin", progress=False)
    cached = _cached(tmp_path)
    assert cached["asset.bin.joining"] == 3 * PART_BYTES and "asset.bin" not in cached
    assert [n for n in cached if ".part-" in n] == [f"{names[3]}.part"]
    joining = next(os.path.join(root, "asset.bin.joining") for root, _, files
                   in os.walk(tmp_path / "cache") if "asset.bin.joining" in files)
    if cut == "mid-append":
        with open(joining, "ab") as handle:
            handle.write(PAYLOAD[:5000])
    elif cut == "damaged":
        with open(joining, "r+b") as handle:
            handle.write(b"X")
    elif cut == "no-record":
        os.remove(joining + ".json")
    fault_server.requests.clear()
    path = fetch_asset(base, "asset.bin", progress=False)
    again = [(f"/{n}", None) for n in names[:3]] if cut in ("damaged", "no-record") else []
    assert fault_server.requests == [("/SHA256SUMS", None), *again,
                                     (f"/{names[3]}", "bytes=1000-"),
                                     *[(f"/{n}", None) for n in names[4:]]]
    assert _read(path) == PAYLOAD
    assert not any(".part" in n or ".joining" in n for n in _cached(tmp_path))


def test_two_callers_joining_one_asset_fetch_each_part_once(fault_server, tmp_path,
                                                           monkeypatch):
    """Two callers (threads: each lock file opened apart, so flock holds between them) asking
    for one asset in parts at once: the second waits on the join's lock, then takes the whole
    file the first one joined; each part is transferred once."""
    import threading

    from tf_models.artifacts.resolve import fetch_asset

    base, names = _release_in_parts(fault_server, PART_BYTES)
    monkeypatch.setenv("VIDEOMAE_CACHE", str(tmp_path / "cache"))
    fault_server.plan("ok", "ok", "slow:1")  # the first part takes a second
    found = []
    callers = [threading.Thread(target=lambda: found.append(
        fetch_asset(base, "asset.bin", progress=False))) for _ in range(2)]
    for caller in callers:
        caller.start()
    for caller in callers:
        caller.join(timeout=120)
    assert len(found) == 2 and found[0] == found[1] and _read(found[0]) == PAYLOAD
    served = [path.lstrip("/") for path, _ in fault_server.requests]
    assert sorted(p for p in served if ".part-" in p) == names


def test_an_endless_body_without_a_length_stops_at_the_ceiling_and_leaves_nothing(
        fault_server, tmp_path, monkeypatch):
    """A server that sends no Content-Length and a chunked body without end is cut off at
    ``MAX_BYTES`` (lowered here) with one line, the part discarded, nothing under the final
    name (before: written whole until the server stopped, however large)."""
    url = fault_server.add("asset.bin", PAYLOAD)
    dest = str(tmp_path / "cache" / "asset.bin")
    monkeypatch.setattr(download, "MAX_BYTES", 1 << 20, raising=False)
    fault_server.plan("endless")
    with pytest.raises(download.DownloadTooLarge) as caught:
        download.fetch_file(url, dest, DIGEST, progress=False)
    message = str(caught.value)
    assert "\n" not in message and url in message
    assert f"expected at most {1 << 20} bytes, found more" in message
    assert os.listdir(tmp_path / "cache") == []


@pytest.mark.parametrize("mode, found", [("ok", f"{len(PAYLOAD)} bytes announced"),
                                         ("chunked", "more")])
def test_a_body_longer_than_the_known_size_is_refused(fault_server, tmp_path, mode, found):
    """A caller that knows the size (``max_bytes``) gets nothing larger: an announced length
    over it is refused before a byte is written, a chunked body past it is cut off there."""
    url = fault_server.add("asset.bin", PAYLOAD)
    dest = str(tmp_path / "cache" / "asset.bin")
    fault_server.plan(mode)
    with pytest.raises(download.DownloadTooLarge,
                       match=f"expected at most {len(PAYLOAD) - 1} bytes, found {found}"):
        download.fetch_file(url, dest, progress=False, max_bytes=len(PAYLOAD) - 1)
    assert os.listdir(tmp_path / "cache") == []


def test_a_chunked_body_of_the_known_size_is_downloaded(fault_server, tmp_path):
    url = fault_server.add("asset.bin", PAYLOAD)
    dest = str(tmp_path / "cache" / "asset.bin")
    fault_server.plan("chunked")
    assert download.fetch_file(url, dest, DIGEST, progress=False,
                               max_bytes=len(PAYLOAD)) == dest
    assert _read(dest) == PAYLOAD
    assert sorted(os.listdir(tmp_path / "cache")) == ["asset.bin", "asset.bin.sha256"]


def test_a_part_larger_than_its_whole_is_refused(fault_server, tmp_path, monkeypatch):
    """A release's part is never larger than the whole file its manifest records: an endless
    part is cut off there (not at the far larger ``MAX_BYTES``), one line, nothing of it
    cached."""
    from tf_models.artifacts.resolve import PresetError, fetch_asset

    base, names = _release_in_parts(fault_server, PART_BYTES)
    monkeypatch.setenv("VIDEOMAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "MAX_BYTES", 32 << 20, raising=False)
    fault_server.plan("ok", "ok", "endless")  # sums, manifest, the first part
    with pytest.raises(PresetError, match=f"expected at most {len(PAYLOAD)} bytes, found "
                                          f"more") as caught:
        fetch_asset(base, "asset.bin", progress=False)
    assert "\n" not in str(caught.value)
    cached = _cached(tmp_path)  # the join's empty ``.joining`` waits for a resume, as ever
    assert sorted(n for n in cached if not n.endswith(".lock")) == [
        "SHA256SUMS", "SHA256SUMS.sha256", "asset.bin.joining", "manifest.json",
        "manifest.json.sha256"] and cached["asset.bin.joining"] == 0


def test_an_asset_larger_than_its_manifest_records_is_refused(fault_server, tmp_path,
                                                              monkeypatch):
    """A release asset is never larger than the bytes ``manifest.json`` records for it: a
    body past that is cut off there (not at the far larger ``MAX_BYTES``), one line, nothing
    under its name; served as recorded, it downloads."""
    import json

    from tf_models.artifacts.resolve import PresetError, fetch_asset

    fault_server.add("asset.bin", PAYLOAD)
    fault_server.add("manifest.json", json.dumps({"assets": {"asset.bin": {
        "sha256": DIGEST, "bytes": len(PAYLOAD)}}}).encode())
    fault_server.add("SHA256SUMS", "".join(
        f"{hashlib.sha256(_read(os.path.join(fault_server.root, n))).hexdigest()}  {n}\n"
        for n in ["manifest.json", "asset.bin"]).encode())
    base = fault_server.url("").rstrip("/")
    monkeypatch.setenv("VIDEOMAE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(download, "MAX_BYTES", 32 << 20, raising=False)
    fault_server.plan("ok", "ok", "endless")  # sums, manifest, the asset
    with pytest.raises(PresetError, match=f"expected at most {len(PAYLOAD)} bytes, found "
                                          f"more") as caught:
        fetch_asset(base, "asset.bin", progress=False)
    assert "\n" not in str(caught.value)
    assert sorted(n for n in _cached(tmp_path) if not n.endswith(".lock")) == [
        "SHA256SUMS", "SHA256SUMS.sha256", "manifest.json", "manifest.json.sha256"]
    fault_server.plan("ok", "chunked")  # sums, the asset (the manifest is cached)
    assert _read(fetch_asset(base, "asset.bin", progress=False)) == PAYLOAD

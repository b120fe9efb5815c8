"""Hostile downloads against a loopback server (tests/http_faults.py): every fault ends as one
clear error line or a resumed download, and never leaves a damaged file in the cache."""

import dataclasses
import hashlib
import os

import pytest

from converter.synthetic import write_synthetic_checkpoint
from converter.errors import CheckpointError
from converter.sources import (DownloadInterrupted, cached_checkpoint_path, fetch_to_part,
                               resolve_checkpoint)
from converter.zoo import TEST_ZOO

FT = dataclasses.replace(TEST_ZOO["TFVideoMAE_T_K400_4x32_FT"], gdrive_id="FAKE-ID")


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    for name in ("VIDEOMAE_CONVERT_CACHE", "VIDEOMAE_CONVERT_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def payload(tmp_path_factory):
    """A real tiny checkpoint (a zip with CRCs, as upstream's .pth files are)."""
    path = write_synthetic_checkpoint(FT, str(tmp_path_factory.mktemp("src") / "ft.pth"), seed=3)
    with open(path, "rb") as handle:
        return handle.read()


@pytest.fixture
def served(fault_server, payload):
    return fault_server, fault_server.add("ft.pth", payload)


def download(cache, url, **kwargs):
    return resolve_checkpoint(FT, cache_dir=str(cache), offline=False, progress=False,
                              downloader=lambda _, part: fetch_to_part(url, part, progress=False,
                                                                       timeout=1), **kwargs)


def cache_files(cache):
    return sorted(os.listdir(cache)) if os.path.isdir(cache) else []


def assert_cached_whole(cache, payload):
    target = cached_checkpoint_path(FT, str(cache))
    assert cache_files(cache) == [os.path.basename(target), os.path.basename(target) + ".sha256"]
    with open(target, "rb") as handle:
        assert handle.read() == payload
    with open(target + ".sha256") as handle:
        assert handle.read().split()[0] == hashlib.sha256(payload).hexdigest()


def one_line(error):
    message = str(error.value)
    assert "\n" not in message and "Traceback" not in message
    return message


@pytest.mark.parametrize("status", [404, 500, 503])
def test_http_error_status_is_one_line_and_caches_nothing(served, tmp_path, status):
    server, url = served
    server.plan(f"status:{status}")
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url)
    assert f"download failed (HTTP {status}" in one_line(caught)
    assert [f for f in cache_files(tmp_path / "cache") if not f.endswith(".part")] == []


def test_server_error_mid_resume_keeps_the_part_then_resumes(served, tmp_path, payload):
    server, url = served
    server.plan("drop:100000", "status:500")
    for _ in range(2):
        with pytest.raises(DownloadInterrupted) as caught:
            download(tmp_path / "cache", url)
        assert "run again to resume" in one_line(caught)
    download(tmp_path / "cache", url)
    assert server.requests[-1][1] == "bytes=100000-"
    assert_cached_whole(tmp_path / "cache", payload)


def test_connection_dropped_mid_file_resumes_on_the_next_run(served, tmp_path, payload):
    server, url = served
    server.plan("drop:250000")
    with pytest.raises(DownloadInterrupted) as caught:
        download(tmp_path / "cache", url)
    assert "run again to resume" in one_line(caught)
    assert cache_files(tmp_path / "cache") == [f"{FT.name}.pth.part"]
    download(tmp_path / "cache", url)
    assert server.requests[-1][1] == "bytes=250000-"
    assert_cached_whole(tmp_path / "cache", payload)


def test_announced_length_too_short_is_caught_and_discarded(served, tmp_path, payload):
    server, url = served
    server.plan(f"length:{len(payload) - 5000}")  # the server lies: a short file looks whole
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url)
    assert "is damaged (not a whole zip archive" in one_line(caught)
    assert cache_files(tmp_path / "cache") == []
    download(tmp_path / "cache", url)  # the next run starts afresh
    assert_cached_whole(tmp_path / "cache", payload)


def test_announced_length_too_long_resumes_to_the_real_end(served, tmp_path, payload):
    server, url = served
    server.plan(f"length:{len(payload) + 5000}")
    with pytest.raises(DownloadInterrupted) as caught:
        download(tmp_path / "cache", url)
    one_line(caught)
    download(tmp_path / "cache", url)  # 416 with the real total: complete
    assert_cached_whole(tmp_path / "cache", payload)


def test_corrupted_bytes_fail_the_zip_crc_and_are_discarded(served, tmp_path, payload):
    server, url = served
    server.plan("corrupt")
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url)
    assert "fails its CRC check" in one_line(caught)
    assert cache_files(tmp_path / "cache") == []


def test_wrong_sha256_is_refused_and_discarded(served, tmp_path, payload):
    server, url = served
    expected = hashlib.sha256(payload).hexdigest()
    other = served[0].add("other.bin", b"x" * 5000)  # a whole file, just not the right one
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", other, sha256=expected)
    assert f"expected {expected[:16]}" in one_line(caught)
    assert cache_files(tmp_path / "cache") == []
    download(tmp_path / "cache", url, sha256=expected)
    assert_cached_whole(tmp_path / "cache", payload)


def test_cached_file_that_is_not_the_expected_one_is_refused(served, tmp_path, payload):
    server, url = served
    download(tmp_path / "cache", url)
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url, sha256="0" * 64)
    assert "is not the expected file" in one_line(caught)


def test_redirect_loop_is_one_line(served, tmp_path):
    server, url = served
    server.plan(*["redirect-loop"] * 20)
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url)
    assert "HTTP 302" in one_line(caught)
    assert [f for f in cache_files(tmp_path / "cache") if not f.endswith(".part")] == []


@pytest.mark.parametrize("mode", ["stall:30", "stall-headers:30"])
def test_stalled_server_times_out_with_one_line(served, tmp_path, mode):
    server, url = served
    server.plan(mode)
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url)
    assert "timed out" in one_line(caught)
    assert [f for f in cache_files(tmp_path / "cache") if not f.endswith(".part")] == []


def test_stall_after_some_bytes_keeps_them_for_a_resume(served, tmp_path, payload):
    server, url = served
    server.plan("drop:50000", "stall:30")
    for _ in range(2):
        with pytest.raises(DownloadInterrupted):
            download(tmp_path / "cache", url)
    download(tmp_path / "cache", url)
    assert_cached_whole(tmp_path / "cache", payload)


def test_malformed_content_length_is_one_line(served, tmp_path):
    server, url = served
    server.plan("bad-length")
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url)
    one_line(caught)
    assert [f for f in cache_files(tmp_path / "cache") if not f.endswith(".part")] == []


def test_web_page_instead_of_the_file_is_one_line(served, tmp_path):
    server, url = served
    server.plan("html")
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url)
    assert "sent a web page" in one_line(caught)
    assert cache_files(tmp_path / "cache") == []


@pytest.mark.parametrize("page", [
    '<a href="file://{secret}#&confirm=1">download</a>',
    '<form action="file://{secret}#download"><input type="hidden" name="confirm" value="t">'
    '</form>'])
def test_web_page_leading_to_a_local_file_is_refused(served, tmp_path, page):
    """A confirmation page naming a file:// address would copy a local file into the cache as
    the checkpoint (urllib refuses such a redirect, but follows a page's link); refused."""
    secret = tmp_path / "secret.txt"
    secret.write_text("local secret")
    server, url = served
    server.plan("html:" + page.format(secret=secret))
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url)
    assert "not http(s)" in one_line(caught)
    assert [f for f in cache_files(tmp_path / "cache") if not f.endswith(".lock")] == []


def test_redirect_to_an_ftp_address_is_refused_without_connecting(served, tmp_path):
    """urllib refuses a redirect to file:// but follows one to ftp://, which would fetch from
    whatever FTP server it names (on the user's own network too) into the cache: refused in
    one line, no connection made (before: the FTP address was dialled)."""
    import socket

    server, url = served
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        listener.setblocking(False)
        server.plan(f"redirect:ftp://127.0.0.1:{listener.getsockname()[1]}/ft.pth")
        with pytest.raises(CheckpointError) as caught:
            download(tmp_path / "cache", url)
        assert "redirect to a ftp: address, not http(s)" in one_line(caught)
        with pytest.raises(BlockingIOError):
            listener.accept()
    assert [f for f in cache_files(tmp_path / "cache") if not f.endswith(".lock")] == []


def test_endless_chunked_body_stops_at_the_ceiling_and_caches_nothing(served, tmp_path,
                                                                      payload, monkeypatch):
    """No Content-Length and a chunked body without end: the zoo records no upstream file's
    size, so the download stops at ``download.MAX_BYTES`` (lowered here) with one line and
    nothing left in the cache (before: written until the server stopped, filling the disk)."""
    from tf_models.artifacts import download as downloader

    server, url = served
    monkeypatch.setattr(downloader, "MAX_BYTES", 2 * len(payload), raising=False)
    server.plan("endless")
    with pytest.raises(CheckpointError) as caught:
        download(tmp_path / "cache", url)
    assert f"expected at most {2 * len(payload)} bytes, found more" in one_line(caught)
    assert FT.source_url in one_line(caught)  # the address it names (the test fetches url)
    assert cache_files(tmp_path / "cache") == []


def test_chunked_body_without_a_length_under_the_ceiling_is_cached(served, tmp_path, payload):
    server, url = served
    server.plan("chunked")
    download(tmp_path / "cache", url)
    assert_cached_whole(tmp_path / "cache", payload)

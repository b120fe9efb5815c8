"""Checkpoint sources: the verified cache and resumable downloads (loopback only)."""

import dataclasses
import hashlib
import os
import threading
import urllib.error
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import torch

import converter  # noqa: F401
from converter.checkpoint import read_checkpoint
from converter.synthetic import write_synthetic_checkpoint
from converter.errors import CheckpointError
from converter.inspect_checkpoint import check_fits
from converter.sources import (DownloadInterrupted, cached_checkpoint_path, fetch_to_part,
                               is_offline, resolve_cache_dir, resolve_checkpoint)
from converter.zoo import TEST_ZOO, find_entry

# a tiny entry with a (fake) upstream source; real ids are never contacted
FT = dataclasses.replace(TEST_ZOO["TFVideoMAE_T_K400_4x32_FT"], gdrive_id="FAKE-ID")
PAYLOAD = bytes(range(256)) * 4099  # ~1 MiB, not a multiple of the chunk size


@pytest.fixture(autouse=True)
def _no_ambient_settings(monkeypatch):
    for name in ("VIDEOMAE_CONVERT_CACHE", "VIDEOMAE_CONVERT_OFFLINE", "HF_HUB_OFFLINE"):
        monkeypatch.delenv(name, raising=False)


def never(url, part):
    raise AssertionError(f"no download expected, got {url}")


def fake_downloader(payload, announce=None, calls=None):
    """Writes the rest of ``payload`` after what the part file holds (like a Range resume)."""
    def download(url, part):
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if calls is not None:
            calls.append((url, have))
        with open(part, "ab") as handle:
            handle.write(payload[have:])
        return len(payload) if announce is None else announce
    return download


def sha(data):
    return hashlib.sha256(data).hexdigest()


# --- settings ---------------------------------------------------------------------------------

def test_cache_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert resolve_cache_dir() == str(tmp_path / "home" / ".cache" / "videomae-convert")
    monkeypatch.setenv("VIDEOMAE_CONVERT_CACHE", str(tmp_path / "env"))
    assert resolve_cache_dir() == str(tmp_path / "env")
    assert resolve_cache_dir(str(tmp_path / "arg")) == str(tmp_path / "arg")
    assert cached_checkpoint_path(FT) == str(tmp_path / "env" / f"{FT.name}.pth")


def test_a_cache_folder_that_cannot_be_made_is_one_line_naming_it(tmp_path):
    (tmp_path / "afile").write_text("x")
    cache = tmp_path / "afile" / "cache"
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(FT, cache_dir=str(cache), offline=False, downloader=never)
    message = str(caught.value)
    assert message.startswith(f"{cache}: cannot use it as the checkpoint cache")
    assert "--cache-dir" in message and "\n" not in message
    assert (tmp_path / "afile").read_text() == "x"


def test_encoder_only_variant_shares_the_upstream_file(tmp_path):
    entry = find_entry("H", "PT", "k400")
    assert cached_checkpoint_path(entry.encoder_variant(), str(tmp_path)) == \
        cached_checkpoint_path(entry, str(tmp_path))


@pytest.mark.parametrize("env, value, expected", [
    (None, None, False), ("VIDEOMAE_CONVERT_OFFLINE", "1", True), ("HF_HUB_OFFLINE", "1", True),
    ("HF_HUB_OFFLINE", "true", True), ("VIDEOMAE_CONVERT_OFFLINE", "0", False)])
def test_offline_from_environment(monkeypatch, env, value, expected):
    if env:
        monkeypatch.setenv(env, value)
    assert is_offline() is expected
    assert is_offline(True) is True and is_offline(False) is False


# --- the cache --------------------------------------------------------------------------------

def test_explicit_checkpoint_is_returned_untouched(tmp_path):
    assert resolve_checkpoint(FT, "given.pth", cache_dir=str(tmp_path), downloader=never) == \
        "given.pth"
    assert not os.listdir(tmp_path)


def test_cache_hit_is_verified_against_its_sidecar(tmp_path):
    target = cached_checkpoint_path(FT, str(tmp_path))
    with open(target, "wb") as handle:
        handle.write(PAYLOAD)
    with open(target + ".sha256", "w") as handle:
        handle.write(f"{sha(PAYLOAD)}  {os.path.basename(target)}\n")
    assert resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=True, downloader=never) == target


def test_cache_hit_without_sidecar_records_one(tmp_path):
    target = cached_checkpoint_path(FT, str(tmp_path))
    with open(target, "wb") as handle:
        handle.write(PAYLOAD)
    assert resolve_checkpoint(FT, cache_dir=str(tmp_path), downloader=never) == target
    with open(target + ".sha256") as handle:
        assert handle.read().split()[0] == sha(PAYLOAD)


def test_changed_cache_file_is_refused(tmp_path):
    target = cached_checkpoint_path(FT, str(tmp_path))
    with open(target, "wb") as handle:
        handle.write(PAYLOAD[:-1] + b"X")
    with open(target + ".sha256", "w") as handle:
        handle.write(f"{sha(PAYLOAD)}  {os.path.basename(target)}\n")
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(FT, cache_dir=str(tmp_path), downloader=never)
    message = str(caught.value)
    assert message.startswith(f"{target}: cached checkpoint for {FT.name} changed since it was "
                              f"downloaded")
    assert "--force-download" in message and "\n" not in message


def test_force_download_replaces_a_changed_file(tmp_path):
    target = cached_checkpoint_path(FT, str(tmp_path))
    with open(target, "wb") as handle:
        handle.write(b"stale")
    with open(target + ".sha256", "w") as handle:
        handle.write(f"{sha(PAYLOAD)}  x\n")
    path = resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False, force_download=True,
                              downloader=fake_downloader(PAYLOAD))
    with open(path, "rb") as handle:
        assert handle.read() == PAYLOAD


def test_download_writes_sidecar_and_renames_into_place(tmp_path):
    calls = []
    path = resolve_checkpoint(FT, cache_dir=str(tmp_path / "new"), offline=False,
                              downloader=fake_downloader(PAYLOAD, calls=calls))
    assert calls == [(FT.source_url, 0)]
    assert sorted(os.listdir(tmp_path / "new")) == [f"{FT.name}.pth", f"{FT.name}.pth.sha256"]
    with open(path, "rb") as handle:
        assert handle.read() == PAYLOAD
    with open(path + ".sha256") as handle:
        assert handle.read() == f"{sha(PAYLOAD)}  {FT.name}.pth\n"


def test_partial_download_resumes_from_the_part_file(tmp_path):
    target = cached_checkpoint_path(FT, str(tmp_path))
    with open(target + ".part", "wb") as handle:
        handle.write(PAYLOAD[:1000])
    calls = []
    resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False,
                       downloader=fake_downloader(PAYLOAD, calls=calls))
    assert calls == [(FT.source_url, 1000)]
    with open(target, "rb") as handle:
        assert handle.read() == PAYLOAD


def test_short_download_keeps_the_part_for_resume(tmp_path):
    target = cached_checkpoint_path(FT, str(tmp_path))
    with pytest.raises(DownloadInterrupted, match=f"stopped at {len(PAYLOAD)} of "
                                                  f"{len(PAYLOAD) + 10} bytes"):
        resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False,
                           downloader=fake_downloader(PAYLOAD, announce=len(PAYLOAD) + 10))
    assert os.path.getsize(target + ".part") == len(PAYLOAD)
    assert not os.path.exists(target)


def test_oversized_download_is_discarded(tmp_path):
    target = cached_checkpoint_path(FT, str(tmp_path))
    with pytest.raises(CheckpointError, match="more than the 10 announced"):
        resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False,
                           downloader=fake_downloader(PAYLOAD, announce=10))
    assert not os.path.exists(target + ".part") and not os.path.exists(target)


def test_offline_without_cache_says_where_to_get_and_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("VIDEOMAE_CONVERT_OFFLINE", "1")
    target = cached_checkpoint_path(FT, str(tmp_path))
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(FT, cache_dir=str(tmp_path), downloader=never)
    assert str(caught.value) == (f"no cached checkpoint for {FT.name}: download "
                                 f"{FT.source_url} and pass --checkpoint PATH, or put it at "
                                 f"{target}")


def test_offline_message_mentions_a_hub_copy(tmp_path):
    entry = find_entry("B", "FT", "k400")
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(entry, cache_dir=str(tmp_path), offline=True, downloader=never)
    assert str(caught.value).endswith("(a transformers-format copy is on the hub as "
                                      "MCG-NJU/videomae-base-finetuned-kinetics)")


def test_unreachable_network_gives_the_same_advice(tmp_path):
    def unreachable(url, part):
        raise urllib.error.URLError(OSError(101, "Network is unreachable"))
    with pytest.raises(CheckpointError) as caught:
        resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False, downloader=unreachable)
    message = str(caught.value)
    assert message.startswith(f"no cached checkpoint for {FT.name} and the download failed (")
    assert "Network is unreachable" in message
    assert f"download {FT.source_url} and pass --checkpoint PATH" in message


def test_entry_without_upstream_source(tmp_path):
    entry = TEST_ZOO["TFVideoMAE_T_K400_4x32_PT"]  # no drive id
    with pytest.raises(CheckpointError, match="no upstream download is known"):
        resolve_checkpoint(entry, cache_dir=str(tmp_path), offline=False, downloader=never)


# --- the real HTTP client against a loopback server -------------------------------------------

class Server:
    """A bounded loopback HTTP server: serves PAYLOAD with Range support, a Google-Drive-like
    confirmation page, and can cut the first transfer short."""

    def __init__(self, payload, cut_first=None, ignore_range=False):
        self.payload = payload
        self.cut_first = cut_first
        self.ignore_range = ignore_range
        self.requests = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                parsed = urllib.parse.urlparse(self.path)
                query = dict(urllib.parse.parse_qsl(parsed.query))
                if parsed.path == "/uc":  # drive's first answer for a large file
                    page = ('<html><body>Google Drive can\'t scan this file for viruses.'
                            '<form id="download-form" action="/download" method="get">'
                            '<input type="submit" value="Download anyway"/>'
                            f'<input type="hidden" name="id" value="{query.get("id")}">'
                            '<input type="hidden" name="export" value="download">'
                            '<input type="hidden" name="confirm" value="t">'
                            '<input type="hidden" name="uuid" value="u-1"></form></body></html>')
                    return self._send(200, page.encode(), "text/html; charset=utf-8")
                if parsed.path == "/old-uc" and "confirm" not in query:
                    page = ('<a href="/old-uc?export=download&amp;confirm=AbC1&amp;id=X">'
                            'Download anyway</a>')
                    return self._send(200, page.encode(), "text/html")
                if parsed.path == "/quota":
                    return self._send(200, b"<p>Too many users have viewed or downloaded this "
                                           b"file recently.</p>", "text/html")
                if parsed.path == "/download" and query.get("confirm") != "t":
                    return self._send(403, b"no", "text/plain")
                self._serve_file()

            def _send(self, status, body, ctype, extra=()):
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                for name, value in extra:
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

            def _serve_file(self):
                data = owner.payload
                wanted = self.headers.get("Range")
                start = 0
                if wanted and not owner.ignore_range:
                    start = int(wanted.split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_response(416)
                        self.send_header("Content-Range", f"bytes */{len(data)}")
                        self.send_header("Content-Length", "0")
                        self.end_headers()
                        return
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                body = data[start:]
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut_first is not None:  # announce everything, send a part, hang up
                    cut, owner.cut_first = owner.cut_first, None
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    return
                self.wfile.write(body)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def loopback(server_url):
    """A downloader that sends every request to the loopback server instead of the zoo URL."""
    def download(url, part):
        return fetch_to_part(server_url, part, progress=False, timeout=5)
    return download


def test_http_download_resumes_with_a_range_request(tmp_path):
    target = cached_checkpoint_path(FT, str(tmp_path))
    with open(target + ".part", "wb") as handle:
        handle.write(PAYLOAD[:300_000])
    with Server(PAYLOAD) as server:
        resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False,
                           downloader=loopback(server.url("/file")))
    assert server.requests == [("/file", "bytes=300000-")]
    with open(target, "rb") as handle:
        assert handle.read() == PAYLOAD
    with open(target + ".sha256") as handle:
        assert handle.read().split()[0] == sha(PAYLOAD)


def test_http_interrupted_transfer_resumes_on_the_next_run(tmp_path):
    target = cached_checkpoint_path(FT, str(tmp_path))
    with Server(PAYLOAD, cut_first=200_000) as server:
        with pytest.raises(DownloadInterrupted, match="run again to resume"):
            resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False,
                               downloader=loopback(server.url("/file")))
        assert os.path.getsize(target + ".part") == 200_000
        resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False,
                           downloader=loopback(server.url("/file")))
    assert server.requests == [("/file", None), ("/file", "bytes=200000-")]
    with open(target, "rb") as handle:
        assert handle.read() == PAYLOAD


def test_http_server_ignoring_range_restarts_the_file(tmp_path):
    part = str(tmp_path / "x.part")
    with open(part, "wb") as handle:
        handle.write(b"garbage that must not survive")
    with Server(PAYLOAD, ignore_range=True) as server:
        assert fetch_to_part(server.url("/file"), part, progress=False, timeout=5) == len(PAYLOAD)
    with open(part, "rb") as handle:
        assert handle.read() == PAYLOAD


def test_http_complete_part_file_is_accepted_on_416(tmp_path):
    part = str(tmp_path / "x.part")
    with open(part, "wb") as handle:
        handle.write(PAYLOAD)
    with Server(PAYLOAD) as server:
        assert fetch_to_part(server.url("/file"), part, progress=False, timeout=5) == len(PAYLOAD)
    assert server.requests == [("/file", f"bytes={len(PAYLOAD)}-")]


def test_http_google_drive_confirmation_form_is_followed(tmp_path):
    part = str(tmp_path / "x.part")
    with Server(PAYLOAD) as server:
        total = fetch_to_part(server.url("/uc?export=download&id=ABC"), part, progress=False,
                              timeout=5)
    assert total == len(PAYLOAD)
    assert server.requests[0] == ("/uc?export=download&id=ABC", None)
    assert server.requests[1] == ("/download?id=ABC&export=download&confirm=t&uuid=u-1", None)
    with open(part, "rb") as handle:
        assert handle.read() == PAYLOAD


def test_http_old_style_confirm_link_is_followed(tmp_path):
    part = str(tmp_path / "x.part")
    with Server(PAYLOAD) as server:
        fetch_to_part(server.url("/old-uc?export=download&id=X"), part, progress=False, timeout=5)
    assert server.requests[1][0] == "/old-uc?export=download&confirm=AbC1&id=X"
    with open(part, "rb") as handle:
        assert handle.read() == PAYLOAD


def test_http_quota_page_is_one_line_error(tmp_path):
    with Server(PAYLOAD) as server:
        with pytest.raises(CheckpointError, match="download quota exceeded") as caught:
            fetch_to_part(server.url("/quota"), str(tmp_path / "x.part"), progress=False,
                          timeout=5)
    assert "--checkpoint PATH" in str(caught.value)
    assert not os.path.exists(tmp_path / "x.part")


def test_http_error_status_gives_the_manual_download_advice(tmp_path):
    with Server(PAYLOAD) as server:
        with pytest.raises(CheckpointError, match=r"download failed \(HTTP 403"):
            resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False,
                               downloader=loopback(server.url("/download?confirm=no")))


def test_refused_connection_counts_as_unreachable(tmp_path):
    with Server(PAYLOAD) as server:
        dead = server.url("/file")
    with pytest.raises(CheckpointError) as caught:  # the port is closed now
        resolve_checkpoint(FT, cache_dir=str(tmp_path), offline=False, downloader=loopback(dead))
    assert f"no cached checkpoint for {FT.name} and the download failed" in str(caught.value)


def test_downloaded_synthetic_checkpoint_loads_and_fits(tmp_path):
    real = TEST_ZOO["TFVideoMAE_T_SSv2_4x32_FT"]
    entry = dataclasses.replace(real, gdrive_id="FAKE-SSV2")
    source = write_synthetic_checkpoint(real, str(tmp_path / "src.pth"), seed=2,
                                        dtype=torch.float16)
    with open(source, "rb") as handle:
        payload = handle.read()
    with Server(payload) as server:
        path = resolve_checkpoint(entry, cache_dir=str(tmp_path / "cache"), offline=False,
                                  downloader=loopback(server.url("/file")))
    loaded = read_checkpoint(path)
    assert loaded.sha256 == sha(payload) and loaded.container_key == "module"
    assert check_fits(entry, loaded.state_dict, path).dataset == "ssv2"
    with pytest.raises(CheckpointError, match="use --dataset ssv2"):
        check_fits(TEST_ZOO["TFVideoMAE_T_K400_4x32_FT"], loaded.state_dict, path)

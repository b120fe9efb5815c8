"""Where a checkpoint comes from when ``--checkpoint`` is omitted.

Upstream's files live on Google Drive (ids in the zoo). ``resolve_checkpoint`` keeps them in a
local cache folder (``~/.cache/videomae-convert``, or ``$VIDEOMAE_CONVERT_CACHE``, or an
explicit folder) as ``{entry.name}.pth`` with a ``.sha256`` sidecar written when the file
arrived; a cached file is checked against its sidecar before use. A download goes to a
``.part`` file first, resumes with an HTTP Range request when one is left from an earlier try,
is checked against the announced size, then renamed into place. Offline
(``VIDEOMAE_CONVERT_OFFLINE=1`` or ``HF_HUB_OFFLINE=1``) or when the network is unreachable, the
error says where to get the file and where to put it.

A transformers-format copy (a hub snapshot folder) is passed with ``--checkpoint``;
``converter.checkpoint.read_checkpoint`` reads it.
"""

from __future__ import annotations

import html
import http.client
import http.cookiejar
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from functools import partial
from typing import Callable, Dict, List, Optional, Tuple

from .checkpoint import sha256_file
from .errors import CheckpointError
from .zoo import Entry

CACHE_ENV = "VIDEOMAE_CONVERT_CACHE"
# Either one set to a true value means: never touch the network.
OFFLINE_ENVS = ("VIDEOMAE_CONVERT_OFFLINE", "HF_HUB_OFFLINE")
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "videomae-convert")
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0
# Google Drive answers a large file with a "can't scan for viruses" page first; one or two
# confirmation hops are normal, more means something else is going on.
MAX_PAGES = 3

# A downloader writes (or resumes) ``url`` into ``part_path`` and returns the file's full size
# in bytes as the server announced it, or None when it did not say.
Downloader = Callable[[str, str], Optional[int]]


class DownloadInterrupted(CheckpointError):
    """The transfer stopped part-way; the ``.part`` file is kept and the next try resumes it."""


def resolve_cache_dir(cache_dir: Optional[str] = None) -> str:
    """The cache folder: ``cache_dir`` if given, else ``$VIDEOMAE_CONVERT_CACHE``, else
    ``~/.cache/videomae-convert``."""
    folder = cache_dir or os.environ.get(CACHE_ENV) or DEFAULT_CACHE_DIR
    return os.path.abspath(os.path.expanduser(os.fspath(folder)))


def _truthy(value: Optional[str]) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def is_offline(offline: Optional[bool] = None) -> bool:
    """``offline`` if given, else whether VIDEOMAE_CONVERT_OFFLINE or HF_HUB_OFFLINE is set."""
    if offline is not None:
        return bool(offline)
    return any(_truthy(os.environ.get(name)) for name in OFFLINE_ENVS)


def upstream_file_name(entry: Entry) -> str:
    """The entry name the upstream file is cached under: an encoder-only variant
    (``NAME_encoder``) converts the same file as ``NAME``."""
    suffix = "_encoder"
    if getattr(entry, "encoder_only", False) and entry.name.endswith(suffix):
        return entry.name[: -len(suffix)]
    return entry.name


def cached_checkpoint_path(entry: Entry, cache_dir: Optional[str] = None) -> str:
    """Where the upstream file for ``entry`` lives in the cache (whether or not it is there)."""
    return os.path.join(resolve_cache_dir(cache_dir), f"{upstream_file_name(entry)}.pth")


def sidecar_path(path: str) -> str:
    return f"{path}.sha256"


def read_sidecar(path: str) -> Optional[str]:
    """The sha256 recorded for ``path`` (``sha256sum`` format), or None when there is none."""
    try:
        with open(sidecar_path(path), encoding="ascii") as handle:
            words = handle.read().split()
    except (OSError, UnicodeDecodeError):
        return None
    if words and re.fullmatch(r"[0-9a-f]{64}", words[0].lower()):
        return words[0].lower()
    return None


def write_sidecar(path: str, digest: str) -> None:
    tmp = f"{sidecar_path(path)}.tmp"
    with open(tmp, "w", encoding="ascii") as handle:
        handle.write(f"{digest}  {os.path.basename(path)}\n")
    os.replace(tmp, sidecar_path(path))


def verify_cached(path: str, entry: Entry) -> str:
    """Check a cached file against its sidecar; returns its sha256.

    A file put there by hand has no sidecar yet: its digest is recorded now, so a later
    change is caught. Raises CheckpointError when the file no longer matches its record.
    """
    digest = sha256_file(path)
    recorded = read_sidecar(path)
    if recorded is None:
        try:
            write_sidecar(path, digest)
        except OSError:
            pass  # a read-only cache still works; it just cannot record the digest
    elif recorded != digest:
        raise CheckpointError(
            f"{path}: cached checkpoint for {entry.name} changed since it was downloaded "
            f"(sha256 {digest[:16]}..., recorded {recorded[:16]}...): delete it and "
            f"{os.path.basename(sidecar_path(path))}, or re-download with --force-download")
    return digest


def _missing_message(entry: Entry, url: str, target: str, why: str = "") -> str:
    hub = f" (a transformers-format copy is on the hub as {entry.hub_id})" if entry.hub_id else ""
    return (f"no cached checkpoint for {entry.name}{why}: download {url} and pass "
            f"--checkpoint PATH, or put it at {target}{hub}")


def _remove(*paths: str) -> None:
    for path in paths:
        try:
            os.remove(path)
        except FileNotFoundError:
            pass


def resolve_checkpoint(entry: Entry, checkpoint: Optional[str] = None,
                       cache_dir: Optional[str] = None, offline: Optional[bool] = None,
                       downloader: Optional[Downloader] = None, force_download: bool = False,
                       progress: bool = True, url: Optional[str] = None,
                       sha256: Optional[str] = None) -> str:
    """The checkpoint file to convert for ``entry``.

    ``checkpoint`` given: returned as is (nothing else is touched). Otherwise the cached
    ``{entry.name}.pth`` (verified against its sha256 sidecar), or a fresh download of the
    upstream file (``url`` overrides the zoo's) into the cache: resumed from a ``.part`` file,
    size-checked, sidecar written, renamed into place. ``force_download`` discards the cached
    copy first. ``downloader(url, part_path) -> total bytes or None`` replaces the HTTP client
    (tests pass a fake). ``sha256``, when known, must match the download (and the cached
    copy). A download is checked before it enters the cache (``verify_download``): a zip
    (every ``.pth`` upstream wrote) must be whole with every member's CRC right. Raises
    CheckpointError with one line when offline and nothing is cached, when the network is
    unreachable, when a download is damaged or not the expected file, or when a cached file
    changed.
    """
    if checkpoint is not None:
        return os.fspath(checkpoint)
    target = cached_checkpoint_path(entry, cache_dir)
    part = f"{target}.part"
    if force_download:
        _remove(target, sidecar_path(target), part)
    if os.path.isfile(target):
        digest = verify_cached(target, entry)
        if sha256 and digest != sha256.lower():
            raise CheckpointError(
                f"{target}: cached checkpoint for {entry.name} is not the expected file "
                f"(sha256 {digest[:16]}..., expected {sha256.lower()[:16]}...): delete it, or "
                f"re-download with --force-download")
        return target
    source = url or entry.source_url
    if source is None:
        raise CheckpointError(f"no cached checkpoint for {entry.name} and no upstream download "
                              f"is known for it: pass --checkpoint PATH, or put it at {target}")
    if is_offline(offline):
        raise CheckpointError(_missing_message(entry, source, target))
    os.makedirs(os.path.dirname(target), exist_ok=True)
    fetch = downloader or partial(fetch_to_part, progress=progress)
    try:
        expected = fetch(source, part)
    except CheckpointError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        # ValueError: a malformed header (Content-Length, Content-Range) from the server
        reason = _reason(error)
        have = os.path.getsize(part) if os.path.exists(part) else 0
        if have:
            raise DownloadInterrupted(
                f"download of {entry.name} stopped after {have} bytes ({reason}): run again to "
                f"resume from {part}, or download {source} and pass --checkpoint PATH") from None
        raise CheckpointError(_missing_message(entry, source, target,
                                               f" and the download failed ({reason})")) from None
    have = os.path.getsize(part) if os.path.exists(part) else 0
    if expected is not None and have != expected:
        if have > expected:
            _remove(part)
            raise CheckpointError(f"download of {entry.name} from {source} gave {have} bytes, "
                                  f"more than the {expected} announced; discarded it, run again")
        raise DownloadInterrupted(f"download of {entry.name} stopped at {have} of {expected} "
                                  f"bytes: run again to resume from {part}")
    if have == 0:
        _remove(part)
        raise CheckpointError(f"download of {entry.name} from {source} gave an empty file")
    digest = verify_download(part, entry, source, sha256)
    _fsync_file(part)
    write_sidecar(target, digest)
    os.replace(part, target)
    _fsync_file(os.path.dirname(target))
    return target


def verify_download(part: str, entry: Entry, source: str,
                    sha256: Optional[str] = None) -> str:
    """Check a finished download before it enters the cache; returns its sha256.

    A wrong length the server announced, or a corrupted transfer, would otherwise be cached
    with a sidecar that vouches for it. Against ``sha256`` when known; a zip archive (the
    ``.pth`` format since torch 1.6) must have its central directory and the right CRC for
    every member. A damaged file is deleted: the next run downloads it afresh.
    """
    import zipfile

    digest = sha256_file(part)
    problem = None
    if sha256 and digest != sha256.lower():
        problem = f"sha256 {digest[:16]}..., expected {sha256.lower()[:16]}..."
    else:
        with open(part, "rb") as handle:
            is_zip_start = handle.read(2) == b"PK"
        if is_zip_start:
            try:
                with zipfile.ZipFile(part) as archive:
                    bad = archive.testzip()
                if bad is not None:
                    problem = f"zip member {bad} fails its CRC check"
            except (zipfile.BadZipFile, OSError, EOFError) as error:
                problem = f"not a whole zip archive: {_reason(error)}"
    if problem:
        _remove(part)
        raise CheckpointError(f"download of {entry.name} from {source} is damaged ({problem}): "
                              f"discarded it; run again, or download it yourself and pass "
                              f"--checkpoint PATH")
    return digest


def _fsync_file(path: str) -> None:
    """Flush a file (or a folder's entries) to disk; a filesystem that refuses is not fatal."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _reason(error: BaseException) -> str:
    if isinstance(error, urllib.error.HTTPError):
        lines = str(error.reason).strip().splitlines()  # a redirect loop's has several
        return f"HTTP {error.code} {lines[0] if lines else ''}".strip()
    if isinstance(error, urllib.error.URLError):
        lines = str(error.reason).strip().splitlines()
        return lines[0] if lines else type(error).__name__
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


# --- the default HTTP downloader (urllib only) -----------------------------------------------

def fetch_to_part(url: str, part_path: str, progress: bool = True, timeout: float = TIMEOUT_S,
                  opener: Optional[urllib.request.OpenerDirector] = None) -> Optional[int]:
    """Download ``url`` into ``part_path``, resuming what is already there; returns the full
    size the server announced (None if it did not).

    Resumes with ``Range: bytes=N-``; a server that ignores it (200) restarts the file, a 416
    for a complete file is accepted. An HTML answer is taken for Google Drive's confirmation
    page (large files): its download form, its ``confirm=`` link or its ``download_warning``
    cookie gives the real address. Network errors propagate (urllib's own types).
    """
    jar = http.cookiejar.CookieJar()
    if opener is None:
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    current = url
    for _ in range(MAX_PAGES + 2):
        offset = os.path.getsize(part_path) if os.path.exists(part_path) else 0
        response = _open(opener, current, offset, timeout)
        with response:
            status = response.getcode()
            headers = response.headers
            if status == 416:  # nothing left after `offset`: complete, or a stale part
                total = _range_total(headers.get("Content-Range"))
                if total is not None and total == offset:
                    return total
                _remove(part_path)
                continue
            if headers.get_content_type() == "text/html":
                page = response.read(CHUNK_BYTES).decode("utf-8", "replace")
                following = _confirmation_url(page, response.geturl(), jar)
                if following is None:
                    raise CheckpointError(_web_page_message(url, page))
                current = following
                continue
            length = headers.get("Content-Length")
            if status == 206:
                start, total = _content_range(headers.get("Content-Range"))
                if start != offset:  # not the range asked for: start over
                    _remove(part_path)
                    continue
                if total is None and length is not None:
                    total = offset + int(length)
                mode = "ab"
            else:  # the whole file (no Range sent, or the server ignored it)
                offset, mode = 0, "wb"
                total = int(length) if length is not None else None
            _stream(response, part_path, mode, offset, total, progress)
            return total
    raise CheckpointError(f"{url}: no file after {MAX_PAGES} confirmation pages: download it in "
                          f"a browser and pass --checkpoint PATH")


def _open(opener, url: str, offset: int, timeout: float):
    headers = {"User-Agent": "videomae-convert"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416:
            return error  # an HTTPError is also a response; the caller reads its headers
        raise


def _stream(response, part_path: str, mode: str, offset: int, total: Optional[int],
            progress: bool) -> None:
    from tqdm.auto import tqdm

    with open(part_path, mode) as handle, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=os.path.basename(part_path), disable=not progress, file=sys.stderr) as bar:
        while True:
            block = response.read(CHUNK_BYTES)
            if not block:
                break
            handle.write(block)
            bar.update(len(block))


def _content_range(value: Optional[str]) -> Tuple[Optional[int], Optional[int]]:
    """(first byte, total) of ``bytes START-END/TOTAL``; TOTAL may be ``*``."""
    found = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not found:
        return None, None
    total = found.group(3)
    return int(found.group(1)), (int(total) if total != "*" else None)


def _range_total(value: Optional[str]) -> Optional[int]:
    found = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", value or "")
    return int(found.group(1)) if found else None


def _attributes(tag_body: str) -> Dict[str, str]:
    return {name.lower(): html.unescape(value)
            for name, value in re.findall(r'([\w-]+)\s*=\s*"([^"]*)"', tag_body)}


def _confirmation_url(page: str, base_url: str,
                      jar: Optional[http.cookiejar.CookieJar]) -> Optional[str]:
    """The real download address behind a Google Drive confirmation page, or None."""
    for form in re.finditer(r"<form\b([^>]*)>(.*?)</form>", page, re.S | re.I):
        action = _attributes(form.group(1)).get("action")
        if not action:
            continue
        fields: List[Tuple[str, str]] = []
        for tag in re.findall(r"<input\b([^>]*)>", form.group(2), re.I):
            attrs = _attributes(tag)
            if attrs.get("type", "").lower() == "hidden" and "name" in attrs:
                fields.append((attrs["name"], attrs.get("value", "")))
        if "download" in action or any(name == "confirm" for name, _ in fields):
            target = urllib.parse.urljoin(base_url, action)
            if fields:
                target += ("&" if "?" in target else "?") + urllib.parse.urlencode(fields)
            return target
    link = re.search(r'href="([^"]*[?&](?:amp;)?confirm=[^"]*)"', page)
    if link:
        return urllib.parse.urljoin(base_url, html.unescape(link.group(1)))
    for cookie in jar or ():
        if cookie.name.startswith("download_warning"):
            return f"{base_url}{'&' if '?' in base_url else '?'}confirm={cookie.value}"
    return None


def _web_page_message(url: str, page: str) -> str:
    lowered = page.lower()
    if "quota" in lowered or "too many users" in lowered:
        why = "Google Drive refuses the download for now (download quota exceeded)"
    else:
        why = "the server sent a web page, not the checkpoint"
    return f"{url}: {why}: download it in a browser and pass --checkpoint PATH"

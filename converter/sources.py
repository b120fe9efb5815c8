"""Where a checkpoint comes from when ``--checkpoint`` is omitted.

Upstream's files live on Google Drive (ids in the zoo). ``resolve_checkpoint`` keeps them in a
local cache folder (``~/.cache/videomae-convert``, or ``$VIDEOMAE_CONVERT_CACHE``, or an
explicit folder) as ``{entry.name}.pth`` with a ``.sha256`` sidecar, through the project's one
downloader (``tf_models.artifacts.download``: resumed ``.part`` files, size and sha256 checks,
a lock against a second process, fsync, rename). This module adds what only upstream files
need: a zip's CRC check before a file enters the cache, Google Drive's confirmation pages,
and errors that say where to get the file and where to put it (offline, or when the network
is unreachable).

A transformers-format copy (a hub snapshot folder) is passed with ``--checkpoint``;
``converter.checkpoint.read_checkpoint`` reads it.
"""

from __future__ import annotations

import html
import http.cookiejar
import os
import re
import urllib.parse
import urllib.request
from functools import partial
from typing import Dict, List, Optional, Tuple

from tf_models.artifacts import download
from tf_models.artifacts.checksums import read_sidecar, sidecar_path, write_sidecar  # noqa: F401
from tf_models.artifacts.download import (CachedFileChanged, DownloadDamaged, DownloadError,
                                          Fetch, OfflineError, is_offline, reason_of)

from .errors import CheckpointError
from .zoo import Entry

CACHE_STORE = "checkpoints"
CACHE_ENV = download.CACHES[CACHE_STORE][0]
OFFLINE_ENVS = download.OFFLINE_ENVS
# A downloader writes (or resumes) ``url`` into ``part_path`` and returns the file's full size
# in bytes as the server announced it, or None when it did not say.
Downloader = Fetch

__all__ = ["resolve_checkpoint", "resolve_cache_dir", "cached_checkpoint_path", "is_offline",
           "fetch_to_part", "DownloadInterrupted"]


class DownloadInterrupted(CheckpointError):
    """The transfer stopped part-way; the ``.part`` file is kept and the next try resumes it."""


def resolve_cache_dir(cache_dir: Optional[str] = None) -> str:
    """The cache folder: ``cache_dir`` if given, else ``$VIDEOMAE_CONVERT_CACHE``, else
    ``~/.cache/videomae-convert``."""
    return download.cache_dir(CACHE_STORE, cache_dir)


def upstream_file_name(entry: Entry) -> str:
    """The entry name the upstream file is cached under: an encoder-only variant
    (``NAME_encoder``) converts the same file as ``NAME``, a mapped head (``..._K710toK400_...``)
    the file of the entry whose head it maps (``entry.upstream``)."""
    return entry.upstream.name


def cached_checkpoint_path(entry: Entry, cache_dir: Optional[str] = None) -> str:
    """Where the upstream file for ``entry`` lives in the cache (whether or not it is there)."""
    return os.path.join(resolve_cache_dir(cache_dir), f"{upstream_file_name(entry)}.pth")


def _missing_message(entry: Entry, url: str, target: str, why: str = "") -> str:
    hub = f" (a transformers-format copy is on the hub as {entry.hub_id})" if entry.hub_id else ""
    return (f"no cached checkpoint for {entry.name}{why}: download {url} and pass "
            f"--checkpoint PATH, or put it at {target}{hub}")


def resolve_checkpoint(entry: Entry, checkpoint: Optional[str] = None,
                       cache_dir: Optional[str] = None, offline: Optional[bool] = None,
                       downloader: Optional[Downloader] = None, force_download: bool = False,
                       progress: bool = True, url: Optional[str] = None,
                       sha256: Optional[str] = None) -> str:
    """The checkpoint file to convert for ``entry``.

    ``checkpoint`` given: returned as is (nothing else is touched). Otherwise the cached
    ``{entry.name}.pth`` (verified against its sha256 sidecar), or a fresh download of the
    upstream file (``url`` overrides the zoo's) into the cache (``fetch_file``).
    ``force_download`` fetches afresh. ``downloader(url, part_path) -> total bytes or None``
    replaces the HTTP client (tests pass a fake). ``sha256``, when known, must match the
    download (and the cached copy). A download is checked before it enters the cache: a zip
    (every ``.pth`` upstream wrote) must be whole with every member's CRC right. Raises
    CheckpointError with one line when offline and nothing is cached, when the network is
    unreachable, when a download is damaged or not the expected file, or when a cached file
    changed.
    """
    if checkpoint is not None:
        return os.fspath(checkpoint)
    target = cached_checkpoint_path(entry, cache_dir)
    source = url or entry.source_url
    if source is None and (force_download or not os.path.isfile(target)):
        how = entry.access or "no upstream download is known for it: pass --checkpoint PATH"
        raise CheckpointError(f"no checkpoint for {entry.name}: {how} (or put it at {target})")
    try:
        return download.fetch_file(source, target, sha256, offline=is_offline(offline),
                                   progress=progress, force=force_download,
                                   fetch=downloader or partial(fetch_to_part, progress=progress),
                                   check=zip_problem)
    except CachedFileChanged as error:
        what = ("changed since it was downloaded" if error.against_sidecar
                else "is not the expected file")
        also = f" and {os.path.basename(sidecar_path(target))}" if error.against_sidecar else ""
        raise CheckpointError(
            f"{target}: cached checkpoint for {entry.name} {what} (sha256 {error.digest[:16]}..., "
            f"{'recorded' if error.against_sidecar else 'expected'} {error.expected[:16]}...): "
            f"delete it{also}, or re-download with --force-download") from None
    except OfflineError:
        raise CheckpointError(_missing_message(entry, source, target)) from None
    except download.DownloadInterrupted as error:
        if error.expected is not None:
            raise DownloadInterrupted(f"download of {entry.name} stopped at {error.have} of "
                                      f"{error.expected} bytes: run again to resume from "
                                      f"{error.part}") from None
        raise DownloadInterrupted(
            f"download of {entry.name} stopped after {error.have} bytes ({error.reason}): run "
            f"again to resume from {error.part}, or download {source} and pass --checkpoint "
            f"PATH") from None
    except download.DownloadTooLarge as error:
        raise CheckpointError(f"download of {entry.name} from {source}: {error.problem}; "
                              f"stopped and discarded it (no upstream checkpoint is that "
                              f"large: check the URL, or download it yourself and pass "
                              f"--checkpoint PATH)") from None
    except DownloadDamaged as error:
        raise CheckpointError(f"download of {entry.name} from {source} is damaged "
                              f"({error.problem}): discarded it; run again, or download it "
                              f"yourself and pass --checkpoint PATH") from None
    except DownloadError as error:
        raise CheckpointError(_missing_message(entry, source, target, f" and the download "
                                               f"failed ({error.reason})")) from None
    except OSError as error:  # the cache folder cannot be made or written
        raise CheckpointError(f"{os.path.dirname(target)}: cannot use it as the checkpoint "
                              f"cache ({error.strerror or error}); pass --cache-dir DIR or set "
                              f"VIDEOMAE_CONVERT_CACHE") from None


def zip_problem(path: str) -> Optional[str]:
    """What is wrong with a finished download that starts like a zip (the ``.pth`` format
    since torch 1.6): no central directory, or a member failing its CRC; None if whole."""
    import zipfile

    with open(path, "rb") as handle:
        if handle.read(2) != b"PK":
            return None
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError, EOFError) as error:
        return f"not a whole zip archive: {reason_of(error)}"
    return None if bad is None else f"zip member {bad} fails its CRC check"


# --- Google Drive ------------------------------------------------------------------------------

def fetch_to_part(url: str, part_path: str, progress: bool = True,
                  timeout: Optional[float] = None,
                  opener: Optional[urllib.request.OpenerDirector] = None,
                  max_bytes: Optional[int] = None) -> Optional[int]:
    """``download.fetch_to_part`` with Google Drive's confirmation pages followed: an HTML
    answer (large files) gives the real address through its download form, its ``confirm=``
    link or its ``download_warning`` cookie; any other page is a CheckpointError. The zoo
    records no upstream file's size: ``max_bytes`` defaults to ``download.MAX_BYTES``."""
    jar = http.cookiejar.CookieJar()
    if opener is None:
        opener = download.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def on_page(page: str, page_url: str) -> str:
        following = _confirmation_url(page, page_url, jar)
        if following is None:
            raise CheckpointError(_web_page_message(url, page))
        return following
    return download.fetch_to_part(url, part_path, progress, timeout, opener, on_page,
                                  max_bytes=max_bytes)


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

"""The one downloader of the project's own URLs (upstream checkpoints, the release's assets).

``fetch_file(url, dest, sha256)`` returns a verified local copy at ``dest``:

- the transfer goes to ``dest.part`` first and resumes it with ``Range: bytes=N-`` when an
  earlier try left one (a server that ignores Range restarts it; a 416 for a complete part is
  accepted);
- it never grows past the most bytes it may take (``max_bytes``: the caller's known size, or
  the ``MAX_BYTES`` ceiling when nothing is known; a smaller size the server announced
  tightens it): past that the transfer stops, the part is discarded, DownloadTooLarge;
- it is checked against the size the server announced, against ``sha256`` when known and
  against the caller's own ``check`` (a zip's CRCs), and discarded when damaged;
- it is fsync'd, its sha256 recorded in a sidecar ``dest.sha256``, renamed into place, and
  the folder fsync'd: nothing unverified ever sits under ``dest``;
- a lock file ``dest.part.lock`` makes a second process fetching the same asset wait, then
  take the verified file the first one left (one download, no error); it is removed after;
- the cache policy: a cached copy is used only when it matches its sidecar and ``sha256``;
  one that does not is never used (``CachedFileChanged``); ``force`` fetches afresh.

Offline (``offline=True``, or any of ``OFFLINE_ENVS`` set to 1/true/yes/on, any case) nothing
is downloaded. Cache folders: ``CACHES``. Handles that keras-hub serves (``hf://``,
``kaggle://``) use its own clients and caches, not this. Torch-free, Keras-free.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Callable, Optional, Tuple

from .checksums import read_sidecar, sha256_file, sidecar_path, write_sidecar
from .files import FileLock, fsync_dir, fsync_quietly, open_no_follow

# store -> (environment variable naming its folder, default folder under ~/.cache)
CACHES = {"checkpoints": ("VIDEOMAE_CONVERT_CACHE", "videomae-convert"),
          "release": ("VIDEOMAE_CACHE", "videomae-keras")}
# any of these set to a true word means: never touch the network (the first is the project's
# switch; the others are the names it had before, and the hub's)
OFFLINE_ENVS = ("VIDEOMAE_OFFLINE", "VIDEOMAE_CONVERT_OFFLINE", "HF_HUB_OFFLINE")
TRUE_WORDS = ("1", "true", "yes", "on")
CHUNK_BYTES = 1 << 20
TIMEOUT_S = 60.0  # read at call time, so a caller (a test) may lower it
MAX_PAGES = 3     # web pages a caller's ``on_page`` may follow before the file comes
WEB_SCHEMES = ("http", "https")  # the only addresses a web page may lead to
# The most bytes a download whose size nobody knows may write (an upstream checkpoint: the zoo
# records no sizes; a server that sends no Content-Length, or an endless chunked body): the
# largest file the project fetches is a ViT-g checkpoint (about 1.0e9 parameters, ~4 GB in
# fp32; 12 GB even with an optimizer's two moments beside it), so 16 GiB leaves room for any
# of them while a hostile server cannot fill the disk. A caller that knows the size passes it.
MAX_BYTES = 16 << 30

# ``fetch(url, part_path) -> the full size the server announced, or None``: writes (or resumes)
# ``url`` into ``part_path``; ``fetch_to_part`` is the real one, tests pass others
Fetch = Callable[[str, str], Optional[int]]
# ``on_page(page_text, page_url) -> the address to follow``; raises when the page is no
# confirmation page (Google Drive's "can't scan for viruses" page, for instance)
OnPage = Callable[[str, str], str]


class DownloadError(OSError):
    """A download that did not give the file: ``str()`` is one line naming the URL."""

    def __init__(self, message: str, url: str = "", reason: str = ""):
        super().__init__(message)
        self.url = url
        self.reason = reason

    def __str__(self) -> str:
        return self.args[0]


class DownloadInterrupted(DownloadError):
    """The transfer stopped part-way; ``part`` (``have`` bytes) is kept and the next try
    resumes it. ``expected``: the announced size, when the server said it."""

    def __init__(self, message: str, url: str, reason: str, part: str, have: int,
                 expected: Optional[int] = None):
        super().__init__(message, url, reason)
        self.part, self.have, self.expected = part, have, expected


class DownloadDamaged(DownloadError):
    """The transfer ended but is not the file (``problem``); it was discarded."""

    def __init__(self, message: str, url: str, problem: str):
        super().__init__(message, url, problem)
        self.problem = problem


class DownloadTooLarge(DownloadDamaged):
    """The server sent more than the most bytes the file may have (``limit``); the transfer
    was stopped there and its part discarded."""

    def __init__(self, message: str, url: str, problem: str, limit: int):
        super().__init__(message, url, problem)
        self.limit = limit


def _too_large(url: str, part: str, limit: int, found: str) -> DownloadTooLarge:
    """The part of ``url`` discarded, and the error saying it is over ``limit`` bytes."""
    _discard(part)
    problem = f"expected at most {limit} bytes, found {found}"
    return DownloadTooLarge(f"{url}: {problem}; stopped and discarded it (not the file asked "
                            f"for: a wrong or hostile server, check the URL)", url, problem,
                            limit)


class OfflineError(DownloadError):
    """Offline mode, and the file is not cached."""


class CachedFileChanged(DownloadError):
    """A cached copy no longer matches its sidecar (``against_sidecar``) or the expected
    sha256; it is left as it is and not used."""

    def __init__(self, message: str, path: str, digest: str, expected: str,
                 against_sidecar: bool):
        super().__init__(message, "", "")
        self.path, self.digest, self.expected = path, digest, expected
        self.against_sidecar = against_sidecar


def is_true(value: Optional[str]) -> bool:
    """Whether an environment value says yes: 1, true, yes or on, in any case."""
    return (value or "").strip().lower() in TRUE_WORDS


def is_offline(offline: Optional[bool] = None) -> bool:
    """``offline`` if given, else whether any of ``OFFLINE_ENVS`` says yes."""
    if offline is not None:
        return bool(offline)
    return any(is_true(os.environ.get(name)) for name in OFFLINE_ENVS)


def cache_dir(store: str, folder: Optional[str] = None) -> str:
    """The cache folder of ``store`` (a key of ``CACHES``): ``folder`` if given, else its
    environment variable, else ``~/.cache/DEFAULT``; absolute."""
    variable, default = CACHES[store]
    chosen = folder or os.environ.get(variable) or os.path.join("~", ".cache", default)
    return os.path.abspath(os.path.expanduser(os.fspath(chosen)))


def part_path(dest: str) -> str:
    return f"{dest}.part"


def reason_of(error: BaseException) -> str:
    """One line saying why a transfer failed (``HTTP 404 Not Found``, ``timed out``...)."""
    if isinstance(error, urllib.error.HTTPError):
        lines = str(error.reason).strip().splitlines()  # a redirect loop's has several
        return f"HTTP {error.code} {lines[0] if lines else ''}".strip()
    if isinstance(error, urllib.error.URLError):
        lines = str(error.reason).strip().splitlines()
        return lines[0] if lines else type(error).__name__
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def _size(path: str) -> int:
    return os.path.getsize(path) if os.path.exists(path) else 0


def _discard(*paths: str) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            os.remove(path)


# --- the cache entry: lock, cached copy, transfer, checks, rename ------------------------------

def fetch_file(url: str, dest: str, sha256: Optional[str] = None, *,
               offline: Optional[bool] = None, progress: bool = True, force: bool = False,
               fetch: Optional[Fetch] = None,
               check: Optional[Callable[[str], Optional[str]]] = None,
               max_bytes: Optional[int] = None) -> str:
    """A verified copy of ``url`` at ``dest`` (see the module text); returns ``dest``.

    ``sha256``: the expected digest, when known. ``force``: ignore a cached copy and an old
    part, fetch afresh (the cached copy is replaced only by a verified one). ``fetch``
    replaces the HTTP transfer (``fetch_to_part``). ``check(part) -> problem or None``: the
    caller's own test of a finished transfer. ``max_bytes``: the file's size or the most it
    may have, when known (else ``MAX_BYTES``). Raises OfflineError, CachedFileChanged,
    DownloadInterrupted (part kept), DownloadDamaged (part discarded; DownloadTooLarge past
    ``max_bytes``) or DownloadError.
    """
    expected = sha256.lower() if sha256 else None
    limit = MAX_BYTES if max_bytes is None else max_bytes
    if is_offline(offline) and (force or not os.path.isfile(dest)):
        raise OfflineError(f"{dest}: not cached, and offline mode never downloads "
                           f"(unset {' / '.join(OFFLINE_ENVS)} to download {url})", url)
    folder = os.path.dirname(os.path.abspath(dest))
    part = part_path(dest)
    try:
        os.makedirs(folder, exist_ok=True)
        lock = FileLock(f"{part}.lock").acquire()  # a second process waits, then finds the file
    except OSError as error:
        # a cache this process cannot write (a shared, read-only one): a cached copy is still
        # verified and used, without the lock (no download can be under way from here);
        # anything to fetch raises the OSError, which the callers word for their cache
        unwritable = isinstance(error, PermissionError) or error.errno == errno.EROFS
        if unwritable and not force and os.path.isfile(dest):
            return _cached(dest, expected)
        raise
    try:
        if force:
            _discard(part)
        elif os.path.isfile(dest):
            return _cached(dest, expected)
        # with a known digest a malformed Content-Length is no risk: the digest proves the file
        total = _transfer(url, part, fetch or (lambda u, p: fetch_to_part(
            u, p, progress, lenient_length=expected is not None, max_bytes=limit)))
        install_verified(part, dest, _verified_part(url, part, total, expected, check, limit))
    finally:
        lock.release()
    return dest


def install_verified(temporary: str, dest: str, digest: str) -> None:
    """``temporary``, verified to have sha256 ``digest``, becomes ``dest``: fsync'd, its
    digest recorded in the sidecar, renamed into place, the folder fsync'd."""
    fsync_quietly(temporary)
    write_sidecar(dest, digest)
    os.replace(temporary, dest)
    with contextlib.suppress(OSError):
        fsync_dir(os.path.dirname(os.path.abspath(dest)))


def cached_copy(dest: str, sha256: Optional[str]) -> str:
    """``dest``, a cached copy that matches its sidecar and ``sha256`` (when given); never
    downloads. CachedFileChanged when it does not match, FileNotFoundError when absent."""
    return _cached(dest, sha256.lower() if sha256 else None)


def _cached(dest: str, expected: Optional[str]) -> str:
    digest = sha256_file(dest)
    recorded = read_sidecar(dest)
    if recorded is None:  # put there by hand: recorded now, so a later change is caught
        with contextlib.suppress(OSError):  # a read-only cache still works
            write_sidecar(dest, digest)
    elif recorded != digest:
        raise CachedFileChanged(
            f"{dest}: changed since it was downloaded (sha256 {digest[:16]}..., recorded "
            f"{recorded[:16]}...): delete it and {os.path.basename(sidecar_path(dest))}",
            dest, digest, recorded, against_sidecar=True)
    if expected and digest != expected:
        raise CachedFileChanged(
            f"{dest}: cached copy is not the expected file (sha256 {digest[:16]}..., expected "
            f"{expected[:16]}...)", dest, digest, expected, against_sidecar=False)
    return dest


def _transfer(url: str, part: str, fetch: Fetch) -> Optional[int]:
    """Run ``fetch`` and turn a network failure into a DownloadError (one that left bytes
    into DownloadInterrupted)."""
    try:
        return fetch(url, part)
    except DownloadError:
        raise
    except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as error:
        # ValueError: a malformed header (Content-Length, Content-Range) from the server
        reason = reason_of(error)
        if os.path.islink(part):  # planted (never written through): no resume can help
            raise DownloadError(f"{part}: a symbolic link where the download's own file goes, "
                                f"never written through; remove it", url, reason) from None
        have = _size(part)
        if have:
            raise DownloadInterrupted(f"{url}: download stopped after {have} bytes ({reason}); "
                                      f"run again to resume from {part}", url, reason, part,
                                      have) from None
        raise DownloadError(f"{url}: {reason}", url, reason) from None


def _verified_part(url: str, part: str, total: Optional[int], expected: Optional[str],
                   check: Optional[Callable[[str], Optional[str]]], limit: int) -> str:
    """The finished part's sha256, once its size, digest and ``check`` agree."""
    have = _size(part)
    if have > limit:  # a caller's own ``fetch`` that wrote past it (``fetch_to_part`` stops)
        raise _too_large(url, part, limit, f"{have} bytes")
    if total is not None and have < total:
        raise DownloadInterrupted(f"{url}: download stopped at {have} of {total} bytes; run "
                                  f"again to resume from {part}", url, "short", part, have,
                                  total)
    problem = None
    if total is not None and have > total:
        problem = f"{have} bytes, more than the {total} announced"
    elif have == 0:
        problem = "an empty file"
    digest = sha256_file(part) if problem is None else ""
    if problem is None and expected and digest != expected:
        problem = f"sha256 {digest[:16]}..., expected {expected[:16]}..."
    if problem is None and check is not None:
        problem = check(part)
    if problem:
        _discard(part)
        raise DownloadDamaged(f"{url}: download is damaged ({problem}); discarded it, run "
                              f"again", url, problem)
    return digest


# --- the HTTP transfer (urllib only) -----------------------------------------------------------

def fetch_to_part(url: str, part: str, progress: bool = True, timeout: Optional[float] = None,
                  opener: Optional[urllib.request.OpenerDirector] = None,
                  on_page: Optional[OnPage] = None,
                  lenient_length: bool = False,
                  max_bytes: Optional[int] = None) -> Optional[int]:
    """Download ``url`` into ``part``, resuming what is already there; returns the full size
    the server announced (None if it did not).

    Resumes with ``Range: bytes=N-``; a server that ignores it (200) restarts the file, a 416
    for a complete file is accepted. A web page (``text/html``) goes to ``on_page``, which
    names the address to follow; without one it is a DownloadError. A Content-Length that is
    no number is a ValueError, or with ``lenient_length`` an unknown size (for a caller that
    checks the digest). ``max_bytes``: the file's size or the most it may have (else
    ``MAX_BYTES``); a file announced larger, or a body that runs past it (no Content-Length,
    chunked), is DownloadTooLarge with the part discarded, nothing written past the limit.
    Network errors propagate (urllib's own types).
    """
    opener = opener or build_opener()
    limit = MAX_BYTES if max_bytes is None else max_bytes
    timeout = TIMEOUT_S if timeout is None else timeout
    current = url
    for _ in range(MAX_PAGES + 2):
        offset = _size(part)
        response = _open(opener, current, offset, timeout)
        with response:
            status, headers = response.getcode(), response.headers
            if status == 416:  # nothing left after `offset`: complete, or a stale part
                total = _range_total(headers.get("Content-Range"))
                if total is not None and total == offset:
                    return total
                _discard(part)
                continue
            if headers.get_content_type() == "text/html":
                page = response.read(CHUNK_BYTES).decode("utf-8", "replace")
                if on_page is None:
                    raise DownloadError(f"{url}: the server sent a web page, not the file", url,
                                        "a web page")
                current = on_page(page, response.geturl())
                scheme = urllib.parse.urlparse(current).scheme
                if scheme not in WEB_SCHEMES:
                    # as urllib refuses a redirect to file://: a page never reads local files
                    why = f"its web page leads to a {scheme or 'schemeless'}: address, not http(s)"
                    raise DownloadError(f"{url}: {why} ({current[:80]!r}); download the file "
                                        f"in a browser", url, why)
                continue
            length = _length(headers.get("Content-Length"), lenient_length)
            if status == 206:
                start, total = _content_range(headers.get("Content-Range"))
                if start != offset:  # not the range asked for: start over
                    _discard(part)
                    continue
                if total is None and length is not None:
                    total = offset + length
                mode = "ab"
            else:  # the whole file (no Range sent, or the server ignored it)
                offset, mode = 0, "wb"
                total = length
            if total is not None and total > limit:
                raise _too_large(url, part, limit, f"{total} bytes announced")
            if not _stream(response, part, mode, offset, total, progress,
                           limit if total is None else total):
                raise _too_large(url, part, limit if total is None else total, "more")
            return total
    raise DownloadError(f"{url}: no file after {MAX_PAGES} web pages", url, "web pages")


class WebRedirects(urllib.request.HTTPRedirectHandler):
    """urllib's redirects, to ``WEB_SCHEMES`` addresses only: urllib refuses ``file://`` but
    follows ``ftp://``, which would fetch from any FTP server the redirect names (one on the
    user's own network too) into the cache."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        scheme = urllib.parse.urlparse(newurl).scheme
        if scheme not in WEB_SCHEMES:
            raise urllib.error.HTTPError(newurl, code, f"redirect to a {scheme}: address, not "
                                         f"http(s)", headers, fp)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def build_opener(*handlers) -> urllib.request.OpenerDirector:
    """``urllib.request.build_opener(*handlers)`` whose redirects stay on http(s)."""
    return urllib.request.build_opener(WebRedirects, *handlers)


def _open(opener, url: str, offset: int, timeout: float):
    headers = {"User-Agent": "videomae-convert"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        return opener.open(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416:
            return error  # an HTTPError is also a response; the caller reads its headers
        raise


def _stream(response, part: str, mode: str, offset: int, total: Optional[int],
            progress: bool, limit: int) -> bool:
    """Write ``response``'s body into ``part`` after its first ``offset`` bytes; False, with
    nothing written past it, as soon as the body would take the part past ``limit`` bytes."""
    from ..progress import progress_bar

    name = os.path.basename(part)[: -len(".part")] if part.endswith(".part") else part
    # never through a link planted in a shared cache folder (it would write where it points)
    with open_no_follow(part, mode, 0o644) as handle, progress_bar(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=os.path.basename(name), disable=not progress, file=sys.stderr,
            leave=False) as bar:
        have = offset
        while True:
            block = response.read(CHUNK_BYTES)
            if not block:
                return True
            have += len(block)
            if have > limit:
                return False
            handle.write(block)
            bar.update(len(block))


def _length(value: Optional[str], lenient: bool) -> Optional[int]:
    if value is None or (lenient and not value.strip().isdigit()):
        return None
    if not value.strip().isdigit():
        raise ValueError(f"malformed Content-Length {value[:40]!r}")
    return int(value)


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

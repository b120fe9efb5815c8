"""sha256 of files and folders, and ``SHA256SUMS`` files (the format ``sha256sum`` writes and
``sha256sum -c`` reads): a release's list, and a cached download's one-line sidecar."""

from __future__ import annotations

import hashlib
import os
import re
from typing import Callable, Dict, List, Optional, Tuple

from .files import open_no_follow

SUMS = "SHA256SUMS"
CHUNK_BYTES = 1 << 20
_HEX = re.compile(r"[0-9a-f]{64}")


class ChecksumError(ValueError):
    """A checksum file that cannot be read: one line naming it."""


class HashStopped(Exception):
    """Raised by ``sha256_file`` / ``tree_sha256`` when their ``stop()`` said so."""


def sha256_file(path: str, chunk: int = CHUNK_BYTES,
                stop: Optional[Callable[[], bool]] = None) -> str:
    """Hex sha256 of a file, read in chunks; ``stop()``, asked before each chunk, ends it
    early with HashStopped (a hash running in another thread that is no longer wanted)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            if stop is not None and stop():
                raise HashStopped(path)
            digest.update(block)
    return digest.hexdigest()


def tree_sha256(path: str, stop: Optional[Callable[[], bool]] = None) -> str:
    """sha256 of a file, or of a folder's files (relative names and contents, sorted)."""
    if os.path.isfile(path):
        return sha256_file(path, stop=stop)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(
                f"{os.path.relpath(full, path)}\0{sha256_file(full, stop=stop)}\n".encode())
    return digest.hexdigest()


def tree_stamp(path: str) -> Tuple[Tuple[str, int, int], ...]:
    """(relative name, size, mtime in ns) of a file or of every file below a folder, sorted:
    what says that a tree hashed earlier has not been written since."""
    if os.path.isfile(path):
        info = os.stat(path)
        return (("", info.st_size, info.st_mtime_ns),)
    stamp = []
    for root, _, files in os.walk(path):
        for name in files:
            full = os.path.join(root, name)
            info = os.stat(full)
            stamp.append((os.path.relpath(full, path), info.st_size, info.st_mtime_ns))
    return tuple(sorted(stamp))


def parse_sums_lines(text: str) -> Tuple[Dict[str, str], List[int]]:
    """``HEX  NAME`` lines (``HEX *NAME`` too) -> ({name: hex}, numbers of malformed lines);
    a blank line is malformed, as ``sha256sum -c`` says."""
    sums: Dict[str, str] = {}
    bad: List[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        digest, _, name = line.partition(" ")
        name = name.strip().lstrip("*")
        if not _HEX.fullmatch(digest) or not name:
            bad.append(number)
            continue
        sums[name] = digest
    return sums, bad


def bad_line_message(where: str, number: int) -> str:
    return f"{where}: line {number} is not 'SHA256  NAME'"


def is_plain_name(name: str) -> bool:
    """A file name of the listing's own folder: no path separator, no ``.`` or ``..``. A
    release's ``SHA256SUMS`` lists only such names; any other would send a download (whose
    destination is the cache folder joined with the name) outside the cache."""
    return (name not in ("", ".", "..") and "/" not in name and "\\" not in name
            and os.sep not in name and (os.altsep is None or os.altsep not in name))


def parse_sums(text: str, where: str) -> Dict[str, str]:
    """``SHA256SUMS`` text -> {name: hex}; ChecksumError naming ``where`` at a malformed line
    or at a name that is not a plain file name (``is_plain_name``)."""
    sums, bad = parse_sums_lines(text)
    if bad:
        raise ChecksumError(bad_line_message(where, bad[0]))
    for name in sums:
        if not is_plain_name(name):
            raise ChecksumError(f"{where}: lists {name!r}, a path; a release lists the files "
                                f"of its own folder by name, so this list is not one to trust")
    return sums


def read_sums(path: str) -> Dict[str, str]:
    """The ``SHA256SUMS`` file at ``path`` -> {name: hex}; ChecksumError when unreadable."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except (OSError, UnicodeDecodeError) as error:
        raise ChecksumError(f"{path}: cannot be read ({getattr(error, 'strerror', None) or error})"
                            ) from None
    return parse_sums(text, path)


def write_sums(path: str, sums: Dict[str, str]) -> None:
    """Write ``{name: hex}`` as ``HEX  NAME`` lines (sorted), through a temporary file (never
    written through a link planted under its name in a shared cache: an OSError)."""
    tmp = f"{path}.tmp"
    with open_no_follow(tmp) as handle:
        handle.writelines(f"{sums[name]}  {name}\n" for name in sorted(sums))
    os.replace(tmp, path)


def write_folder_sums(folder: str) -> Dict[str, str]:
    """``folder/SHA256SUMS`` listing every other file in ``folder``; returns what it lists."""
    sums = {name: sha256_file(os.path.join(folder, name))
            for name in sorted(os.listdir(folder)) if name != SUMS}
    write_sums(os.path.join(folder, SUMS), sums)
    return sums


# --- a cached file's sidecar: ``FILE.sha256``, one ``HEX  FILE`` line ------------------------

def sidecar_path(path: str) -> str:
    return f"{path}.sha256"


def read_sidecar(path: str) -> "str | None":
    """The sha256 recorded for ``path`` in its sidecar, or None when there is none (or it is
    not one)."""
    try:
        with open(sidecar_path(path), encoding="utf-8") as handle:  # as write_sums writes
            words = handle.read().split()
    except (OSError, UnicodeDecodeError):
        return None
    if words and _HEX.fullmatch(words[0].lower()):
        return words[0].lower()
    return None


def write_sidecar(path: str, digest: str) -> None:
    """Record ``digest`` as the sha256 of ``path`` (the sidecar ``path.sha256``)."""
    write_sums(sidecar_path(path), {os.path.basename(path): digest})

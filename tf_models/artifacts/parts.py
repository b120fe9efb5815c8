"""Release assets shipped in numbered parts, for hosts that cap a file's size (GitHub: 2 GiB
per release asset; ViT-H's and ViT-g's fp32 assets are 2.4-4 GB).

An asset ``NAME`` over the release's part size ships as ``NAME.part-001-of-003``,
``NAME.part-002-of-003``, ... (at least three digits, all of one width, so they sort), each
listed in ``SHA256SUMS`` (``sha256sum -c`` still checks the folder), and ``cat NAME.part-*``
is the file. The whole file's sha256 and size stay in the manifest's record of ``NAME``, with
the part names under ``PARTS_KEY``: ``SplitAsset.from_manifest`` reads them. A consumer's
``join_parts`` fetches each part (resumable, verified against ``SHA256SUMS``), appends it to the
whole file's temporary name and drops it (peak disk use: the whole and one part), checks the
whole against the manifest and renames it into place.
Torch-free, Keras-free.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from typing import Callable, Iterable, List, Optional, Tuple

from .checksums import CHUNK_BYTES
from .download import install_verified
from .files import FileLock, open_no_follow, read_json, remove_path, save_json

PARTS_KEY = "parts"    # manifest.json: assets[NAME][PARTS_KEY] = [part names, in order]
JOINING = ".joining"   # the whole file while it is written: never under its final name
_PART = re.compile(r"(?P<name>.+)\.part-(?P<index>\d{3,})-of-(?P<count>\d{3,})")
# --part-size units (a bare number is bytes)
SIZE_UNITS = {"": 1, "B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "KiB": 2**10,
              "MiB": 2**20, "GiB": 2**30}


def part_names(name: str, count: int) -> List[str]:
    """The names of ``count`` parts of asset ``name``, in order."""
    width = max(3, len(str(count)))
    return [f"{name}.part-{index:0{width}d}-of-{count:0{width}d}"
            for index in range(1, count + 1)]


def parse_size(text: str) -> int:
    """A byte count written as a number and an optional unit (``1900MiB``, ``2GB``,
    ``65536``); ValueError (one line) for anything else, or for less than one byte."""
    found = re.fullmatch(r"\s*(\d+)\s*([A-Za-z]*)\s*", text or "")
    units = {unit.lower(): factor for unit, factor in SIZE_UNITS.items()}
    if not found or found.group(2).lower() not in units or int(found.group(1)) < 1:
        raise ValueError(f"expected a positive whole number of bytes with an optional unit "
                         f"({', '.join(u for u in SIZE_UNITS if u)}), e.g. 1900MiB, found "
                         f"{text!r}")
    return int(found.group(1)) * units[found.group(2).lower()]


def split_file(path: str, part_size: int) -> List[str]:
    """Cut the file at ``path`` into parts of ``part_size`` bytes (the last one shorter)
    beside it, named by ``part_names``; the whole file is removed. Returns the parts' paths."""
    size = os.path.getsize(path)
    count = max(1, -(-size // part_size))
    paths = [os.path.join(os.path.dirname(path), name)
             for name in part_names(os.path.basename(path), count)]
    with open(path, "rb") as source:
        for part in paths:
            left = part_size
            with open(part, "wb") as out:
                while left:
                    block = source.read(min(CHUNK_BYTES, left))
                    if not block:
                        break
                    out.write(block)
                    left -= len(block)
    os.remove(path)
    return paths


def parts_listed(names: Iterable[str], name: str) -> Optional[List[str]]:
    """The parts of asset ``name`` among ``names`` (a ``SHA256SUMS`` listing), in order; None
    when none is listed; ValueError (one line) when they are not one complete set."""
    found = {}
    for listed in names:
        match = _PART.fullmatch(listed)
        if match and match.group("name") == name:
            found[listed] = (int(match.group("index")), int(match.group("count")))
    if not found:
        return None
    counts = {count for _, count in found.values()}
    expected = part_names(name, max(counts))
    missing = [part for part in expected if part not in found]
    extra = sorted(set(found) - set(expected))
    if missing or extra:
        what = (f"missing {missing[0]}" if missing else f"an extra part {extra[0]}")
        raise ValueError(f"expected the parts {expected[0]} to {expected[-1]} of {name}, found "
                         f"{what}")
    return expected


def whole_names(names: Iterable[str]) -> List[str]:
    """The asset names among ``names`` (a ``SHA256SUMS`` listing), each asset shipped in
    parts named once by its whole name; sorted."""
    found = set()
    for name in names:
        match = _PART.fullmatch(name)
        found.add(match.group("name") if match else name)
    return sorted(found)


@dataclass
class SplitAsset:
    """What the manifest records of an asset shipped in parts: the whole file's sha256 and
    size, and its parts' names in order."""

    name: str
    sha256: str
    bytes: int
    parts: List[str]

    @classmethod
    def from_manifest(cls, manifest, name: str) -> "SplitAsset":
        """The record of ``name`` in a release manifest (a parsed ``manifest.json``);
        ValueError (one line) when it has none, or a malformed one."""
        asset = (manifest.get("assets") or {}).get(name) if isinstance(manifest, dict) else None
        if not isinstance(asset, dict):
            raise ValueError(f"lists no asset {name}")
        digest, size, parts = asset.get("sha256"), asset.get("bytes"), asset.get(PARTS_KEY)
        if not (isinstance(digest, str) and re.fullmatch(r"[0-9a-f]{64}", digest)
                and isinstance(size, int) and not isinstance(size, bool) and size >= 0
                and isinstance(parts, list) and parts and all(isinstance(p, str) for p in parts)):
            raise ValueError(f"expected assets[{name!r}] to hold the whole file's sha256 and "
                             f"bytes and its {PARTS_KEY}, found {sorted(asset)}")
        return cls(name, digest, size, list(parts))


class JoinedReader:
    """The concatenation of files, read in order (``read(n)``): for hashing parts as one file,
    or reading a split tar as a stream (``tarfile.open(fileobj=..., mode="r|")``)."""

    def __init__(self, paths: List[str]):
        self.paths = list(paths)
        self.handle = None

    def read(self, size: int = -1) -> bytes:
        chunks = []
        while size != 0:
            if self.handle is None:
                if not self.paths:
                    break
                self.handle = open(self.paths.pop(0), "rb")
            block = self.handle.read(size if size > 0 else -1)
            if not block:
                self.handle.close()
                self.handle = None
                continue
            chunks.append(block)
            if size > 0:
                size -= len(block)
        return b"".join(chunks)

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()
            self.handle = None

    def __enter__(self) -> "JoinedReader":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def joined_sha256(paths: List[str]) -> Tuple[str, int]:
    """(sha256, size) of the concatenation of ``paths``."""
    digest, size = hashlib.sha256(), 0
    with JoinedReader(paths) as reader:
        for block in iter(lambda: reader.read(CHUNK_BYTES), b""):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


class JoinDamaged(ValueError):
    """The joined parts are not the file the manifest records (one line); nothing was kept."""


def join_parts(parts: List[str], dest: str, sha256: str, size: int, *,
               fetch: Optional[Callable[[str], str]] = None,
               drop: Optional[Callable[[str], None]] = None) -> str:
    """``dest``, the concatenation of ``parts``, once it is ``size`` bytes with ``sha256``.

    Each part is appended to ``dest.joining`` as it comes (``fetch(part) -> a verified local
    path``; without ``fetch``, ``parts`` are the paths), which is fsync'd and recorded in
    ``dest.joining.json`` (the parts it holds, their bytes and sha256), and then ``drop(part)``
    may delete it: the disk holds the growing whole and one part, never all parts beside the
    whole. A run cut short resumes after the parts the record names, once the ``.joining``
    file (cut back to the recorded bytes) shows the recorded sha256; otherwise it restarts
    from the first part. The whole is checked against ``size`` and ``sha256``, its digest
    recorded in the sidecar ``dest.sha256`` and renamed into place: an unverified file never
    sits under ``dest``. A lock file ``dest.joining.lock`` makes a second process wait, then
    take the file the first one joined. JoinDamaged when the joined bytes are not the recorded
    file (nothing is kept); ``fetch``'s errors pass through, the ``.joining`` file kept."""
    folder = os.path.dirname(os.path.abspath(dest))
    temporary, record = dest + JOINING, dest + JOINING + ".json"
    names = [os.path.basename(part) for part in parts]
    os.makedirs(folder, exist_ok=True)
    lock = FileLock(temporary + ".lock").acquire()
    try:
        if os.path.isfile(dest):  # joined by another process while this one waited
            for stale in (temporary, record):  # a run killed after its rename left these
                remove_path(stale)
            return dest
        digest, written, held = _resume_join(temporary, record, names, sha256, size)
        for part in parts[:held] if drop else ():  # killed between its record and its drop
            drop(part)
        with open_no_follow(temporary, "ab", 0o644) as out:
            for index in range(held, len(parts)):
                if written > size:
                    break
                with open(fetch(parts[index]) if fetch else parts[index], "rb") as source:
                    for block in iter(lambda: source.read(CHUNK_BYTES), b""):
                        out.write(block)
                        digest.update(block)
                        written += len(block)
                out.flush()
                os.fsync(out.fileno())
                save_json(record, {"sha256": sha256, "bytes": size,
                                   "parts": names[:index + 1], "joined_bytes": written,
                                   "joined_sha256": digest.hexdigest()})
                if drop:
                    drop(parts[index])
        found = digest.hexdigest()
        if written != size or found != sha256:
            for damaged in (temporary, record):
                remove_path(damaged)
            raise JoinDamaged(f"{dest}: its parts joined are {written} bytes with sha256 "
                              f"{found[:16]}..., the manifest records {size} bytes with "
                              f"{sha256[:16]}...")
        install_verified(temporary, dest, found)
        remove_path(record)
    finally:
        lock.release()
    return dest


def _resume_join(temporary: str, record: str, names: List[str], sha256: str, size: int):
    """(running sha256, bytes, parts held) of the ``.joining`` file a cut-short join left,
    cut back to what its record names once those bytes show the recorded sha256; else an
    empty ``.joining`` file and no record: (a fresh sha256, 0, 0)."""
    digest, done = hashlib.sha256(), read_json(record)
    held = done.get("parts") if isinstance(done, dict) else None
    joined = done.get("joined_bytes") if isinstance(done, dict) else None
    if (isinstance(held, list) and held == names[:len(held)] and done.get("sha256") == sha256
            and done.get("bytes") == size and isinstance(joined, int)
            and not os.path.islink(temporary) and os.path.isfile(temporary)
            and 0 <= joined <= os.path.getsize(temporary)):
        with open(temporary, "r+b") as handle:
            handle.truncate(joined)  # bytes appended after the record: that part again
            for block in iter(lambda: handle.read(CHUNK_BYTES), b""):
                digest.update(block)
        if digest.hexdigest() == done.get("joined_sha256"):
            return digest, joined, len(held)
    for stale in (temporary, record):
        remove_path(stale)
    return hashlib.sha256(), 0, 0

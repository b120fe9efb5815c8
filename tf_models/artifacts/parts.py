"""Release assets shipped in numbered parts, for hosts that cap a file's size (GitHub: 2 GiB
per release asset; ViT-H's and ViT-g's fp32 assets are 2.4-4 GB).

An asset ``NAME`` over the release's part size ships as ``NAME.part-001-of-003``,
``NAME.part-002-of-003``, ... (at least three digits, all of one width, so they sort), each
listed in ``SHA256SUMS`` (``sha256sum -c`` still checks the folder), and ``cat NAME.part-*``
is the file. The whole file's sha256 and size stay in the manifest's record of ``NAME``, with
the part names under ``PARTS_KEY``: ``SplitAsset.from_manifest`` reads them. A consumer
fetches each part (resumable, verified against ``SHA256SUMS``), then ``join_parts`` writes the
whole file through a temporary name, checks it against the manifest and renames it into place.
Torch-free, Keras-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
from dataclasses import dataclass
from typing import Iterable, List, Optional, Tuple

from .checksums import CHUNK_BYTES
from .download import install_verified
from .files import FileLock

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


def join_parts(paths: List[str], dest: str, sha256: str, size: int) -> str:
    """``dest``, the concatenation of ``paths``, once it is ``size`` bytes with ``sha256``.

    Written to ``dest.joining`` first (a join cut short restarts from the first part), then
    fsync'd, its digest recorded in the sidecar ``dest.sha256`` and renamed into place: an
    unverified file never sits under ``dest``. A lock file ``dest.joining.lock`` makes a
    second process wait, then take the file the first one joined. JoinDamaged when the joined
    bytes are not the recorded file."""
    folder = os.path.dirname(os.path.abspath(dest))
    temporary = dest + JOINING
    os.makedirs(folder, exist_ok=True)
    lock = FileLock(temporary + ".lock").acquire()
    try:
        if os.path.isfile(dest):  # joined by another process while this one waited
            return dest
        digest, written = hashlib.sha256(), 0
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(temporary, flags, 0o644), "wb") as out, \
                JoinedReader(paths) as reader:
            for block in iter(lambda: reader.read(CHUNK_BYTES), b""):
                out.write(block)
                digest.update(block)
                written += len(block)
        found = digest.hexdigest()
        if written != size or found != sha256:
            with contextlib.suppress(FileNotFoundError):
                os.remove(temporary)
            raise JoinDamaged(f"{dest}: its parts joined are {written} bytes with sha256 "
                              f"{found[:16]}..., the manifest records {size} bytes with "
                              f"{sha256[:16]}...")
        install_verified(temporary, dest, found)
    finally:
        lock.release()
    return dest

"""A sharded, memory-mapped store of float16 mels: what `data/prepare.py` caches a training folder in.

Layout of a store folder (one per mel config and preprocessing version):

    index.json        {"version", "n_mels", "shards": {name: {"bytes", "sha256", "mtime_ns"}},
                       "entries": {file: {"size", "mtime_ns"} + {"shard", "offset", "frames"} or {"skipped"}}}
    shard-P-0000.bin  raw little-endian float16; a file's mel is `frames` rows of n_mels values (time-major),
    shard-P-0001.bin  so a crop is one contiguous byte range, starting `offset` values into the shard

Shards are written once (to a temporary name, synced, renamed; up to ~SHARD_BYTES each; P names the
writer, so that preparation workers write their own) and never changed; adding files writes new
shards, removing files only drops their index entries (a shard left with no entry is deleted). The
index (replaced atomically) names only finished shards, so an interrupted or failed preparation
keeps everything the index had saved; shard files it does not name are deleted at the next start.
A shard's SHA-256 is verified again at a start only when its mtime differs from the one recorded when
it was last verified (any write to it changes that): damage from writes, truncation and deletion are
found at every start without reading gigabytes of unchanged shards each time.
Reading maps the shards (np.memmap): a batch touches only the pages of its crops, and processes on
one machine share them through the page cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..files import write_text

FORMAT_VERSION = 1
SHARD_BYTES = 256 * 2**20
INDEX = "index.json"
SHARD_NAME = re.compile(r"shard-[0-9a-f]+-[0-9]+-[0-9]+\.bin")  # what ShardWriter names its shards, nothing else


def valid_index(index: dict, n_mels: int) -> bool:
    """Whether an index.json read from disk is one this code wrote: every shard a plain name of SHARD_NAME's form
    with whole non-negative sizes, every entry in a known shard at a whole non-negative offset. A run folder can
    come from someone else, and the store deletes and maps the shards its index names."""
    shards, entries = index.get("shards"), index.get("entries")
    if index.get("version") != FORMAT_VERSION or index.get("n_mels") != n_mels:
        return False
    if not isinstance(shards, dict) or not isinstance(entries, dict):
        return False
    whole = lambda v: type(v) is int and v >= 0  # noqa: E731
    for name, info in shards.items():
        if not SHARD_NAME.fullmatch(name) or not isinstance(info, dict) or not whole(info.get("bytes")):
            return False
    for record in entries.values():
        if not isinstance(record, dict):
            return False
        if "shard" in record and (record["shard"] not in shards or not whole(record.get("offset"))
                                  or not whole(record.get("frames"))):
            return False
    return True


@dataclass
class Store:
    """The index of one store folder; `entries` maps a file (path relative to the data folder) to its record."""

    root: Path
    n_mels: int
    entries: dict[str, dict] = field(default_factory=dict)
    shards: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path, n_mels: int) -> Store:
        """The store in `root`, or an empty one if there is none (or an unreadable, foreign or crafted index: see
        valid_index; its shards are then prepared again, and files in `root` it named are not touched)."""
        try:
            index = json.loads((root / INDEX).read_text())
            if isinstance(index, dict) and valid_index(index, n_mels):
                return cls(root, n_mels, index["entries"], index["shards"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return cls(root, n_mels)

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        index = {"version": FORMAT_VERSION, "n_mels": self.n_mels, "shards": self.shards, "entries": self.entries}
        write_text(self.root / INDEX, json.dumps(index, separators=(",", ":")))

    def merge(self, entries: dict[str, dict], shards: dict[str, dict]) -> None:
        """Take in what a ShardWriter finished (the caller saves the index)."""
        self.shards.update(shards)
        self.entries.update(entries)

    def damaged(self, checksums: bool = True) -> list[str]:
        """Shards that are missing, of the wrong size or (checksums=True) fail their SHA-256, which is computed
        only for shards whose mtime changed since they were last verified (a shard that passes gets its new
        mtime recorded; the caller saves the index)."""
        bad = []
        for name, info in self.shards.items():
            try:
                st = (self.root / name).stat()
            except OSError:
                bad.append(name)
                continue
            if st.st_size != info["bytes"]:
                bad.append(name)
            elif checksums and st.st_mtime_ns != info.get("mtime_ns"):
                if _sha256(self.root / name) != info["sha256"]:
                    bad.append(name)
                else:
                    info["mtime_ns"] = st.st_mtime_ns
        return bad

    def drop_shards(self, names: list[str]) -> list[str]:
        """Forget shards and every entry stored in them; returns those entries' files (to prepare again)."""
        gone = set(names)
        lost = [f for f, e in self.entries.items() if e.get("shard") in gone]
        for f in lost:
            del self.entries[f]
        for name in gone:
            self.shards.pop(name, None)
            (self.root / name).unlink(missing_ok=True)
        return lost

    def tidy(self) -> bool:
        """Delete shards no entry points to, and shard files the index does not know (left by a crash or a full
        disk). Returns whether the index changed."""
        live = {e["shard"] for e in self.entries.values() if "shard" in e}
        dead = [s for s in self.shards if s not in live]
        self.drop_shards(dead)
        if self.root.is_dir():
            for path in [*self.root.glob("shard-*"), *self.root.glob(".shard-*")]:
                if path.name not in self.shards:
                    path.unlink(missing_ok=True)
        return bool(dead)

    def maps(self) -> dict[str, np.ndarray]:
        """Every shard mapped read-only: {name: float16 [values]}."""
        return {name: np.memmap(self.root / name, dtype="<f2", mode="r") for name, info in self.shards.items()
                if info["bytes"]}


class ShardWriter:
    """Streams mels into new shards `shard-{prefix}-{k}.bin` of ~shard_bytes in `root` (any process may run one, with
    its own prefix). Each shard is written to a temporary name, synced and renamed when full or at `close`; then
    `entries` and `shards` hold the index records of what is finished, for `Store.merge`."""

    def __init__(self, root: Path, n_mels: int, prefix: str, shard_bytes: int = SHARD_BYTES) -> None:
        self.root, self.n_mels, self.prefix, self.shard_bytes = root, n_mels, prefix, shard_bytes
        self.entries: dict[str, dict] = {}
        self.shards: dict[str, dict] = {}
        self.count = 0
        self.file = None

    def add(self, file: str, record: dict, mel: np.ndarray | None) -> None:
        """Append one file's mel, float16 [frames, n_mels] (time-major); `record` holds its size and mtime_ns.
        mel=None records a file with no data (a skipped file: the record says why)."""
        if mel is None:
            self.entries[file] = record
            return
        if mel.dtype != np.float16 or mel.ndim != 2 or mel.shape[1] != self.n_mels:
            raise ValueError(f"{file}: expected float16 [frames, {self.n_mels}], got {mel.dtype} {mel.shape}")
        if self.file is None:
            self._start()
        data = np.ascontiguousarray(mel, dtype="<f2").tobytes()
        self.file.write(data)
        self.digest.update(data)
        self.pending[file] = {**record, "shard": self.name, "offset": self.offset, "frames": mel.shape[0]}
        self.offset += mel.size
        if self.offset * 2 >= self.shard_bytes:
            self.close()

    def _start(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        self.name = f"shard-{self.prefix}-{self.count:04d}.bin"
        self.tmp = self.root / f".{self.name}.tmp"
        self.file = open(self.tmp, "wb")
        self.digest, self.offset, self.pending = hashlib.sha256(), 0, {}

    def close(self) -> None:
        """Finish the open shard, if any: sync it, give it its name, record it."""
        if self.file is None:
            return
        try:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
            os.replace(self.tmp, self.root / self.name)
            mtime_ns = (self.root / self.name).stat().st_mtime_ns
        except OSError:
            self.abort()
            raise
        self.shards[self.name] = {"bytes": self.offset * 2, "sha256": self.digest.hexdigest(), "mtime_ns": mtime_ns}
        self.entries.update(self.pending)
        self.file, self.count = None, self.count + 1

    def abort(self) -> None:
        """Drop the open shard (its temporary file); finished shards stay."""
        if self.file is not None:
            self.file.close()
            self.tmp.unlink(missing_ok=True)
            self.file = None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**24):
            h.update(chunk)
    return h.hexdigest()

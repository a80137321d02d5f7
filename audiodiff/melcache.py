"""A sharded, memory-mapped store of float16 mels: what `data.py` caches a training folder in.

Layout of a store folder (one per mel config and preprocessing version):

    index.json        {"version", "n_mels", "shards": {name: {"bytes", "sha256"}},
                       "entries": {file: {"size", "mtime_ns"} + {"shard", "offset", "frames"} or {"skipped"}}}
    shard-000000.bin  raw little-endian float16; a file's mel is `frames` rows of n_mels values (time-major),
    shard-000001.bin  so a crop is one contiguous byte range, starting `offset` values into the shard

Shards are written once (atomically, ~SHARD_BYTES each) and never changed; adding files writes new
shards, removing files only drops their index entries (a shard left with no entry is deleted). The
index is replaced atomically after every finished shard, so an interrupted or failed preparation
keeps everything finished before it. Reading maps the shards (np.memmap): a batch touches only the
pages of its crops, and processes on one machine share them through the page cache.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .files import atomic_path, write_text

FORMAT_VERSION = 1
SHARD_BYTES = 256 * 2**20
INDEX = "index.json"


@dataclass
class Store:
    """The index of one store folder; `entries` maps a file (path relative to the data folder) to its record."""

    root: Path
    n_mels: int
    entries: dict[str, dict] = field(default_factory=dict)
    shards: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def open(cls, root: Path, n_mels: int) -> Store:
        """The store in `root`, or an empty one if there is none (or an unreadable or foreign index)."""
        try:
            index = json.loads((root / INDEX).read_text())
            if index["version"] == FORMAT_VERSION and index["n_mels"] == n_mels:
                return cls(root, n_mels, index["entries"], index["shards"])
        except (OSError, ValueError, KeyError, TypeError):
            pass
        return cls(root, n_mels)

    def save(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        index = {"version": FORMAT_VERSION, "n_mels": self.n_mels, "shards": self.shards, "entries": self.entries}
        write_text(self.root / INDEX, json.dumps(index, separators=(",", ":")))

    def damaged(self, checksums: bool = True) -> list[str]:
        """Shards that are missing, of the wrong size or (checksums=True) fail their SHA-256."""
        bad = []
        for name, info in self.shards.items():
            path = self.root / name
            if not path.is_file() or path.stat().st_size != info["bytes"]:
                bad.append(name)
            elif checksums and _sha256(path) != info["sha256"]:
                bad.append(name)
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
    """Appends mels to new shards of a store; each full shard is written, then recorded in the index and saved."""

    def __init__(self, store: Store, shard_bytes: int = SHARD_BYTES) -> None:
        self.store, self.shard_bytes = store, shard_bytes
        taken = [int(name[6:12]) for name in store.shards]
        self.number = max(taken, default=-1) + 1
        self.pending: list[tuple[str, dict, np.ndarray]] = []  # (file, stat record, float16 [frames, n_mels])
        self.pending_bytes = 0

    def add(self, file: str, record: dict, mel: np.ndarray | None) -> None:
        """Queue one file's mel, float16 [frames, n_mels] (time-major); `record` holds its size and mtime_ns.
        mel=None records a file with no data (a skipped file: the record says why)."""
        if mel is None:
            self.store.entries[file] = record
            return
        if mel.dtype != np.float16 or mel.ndim != 2 or mel.shape[1] != self.store.n_mels:
            raise ValueError(f"{file}: expected float16 [frames, {self.store.n_mels}], got {mel.dtype} {mel.shape}")
        self.pending.append((file, record, mel))
        self.pending_bytes += mel.nbytes
        if self.pending_bytes >= self.shard_bytes:
            self.flush()

    def flush(self) -> None:
        """Write the queued mels as one shard, then save the index that points at them."""
        if not self.pending:
            return
        name = f"shard-{self.number:06d}.bin"
        self.store.root.mkdir(parents=True, exist_ok=True)
        digest, offset, placed = hashlib.sha256(), 0, {}
        with atomic_path(self.store.root / name) as tmp, open(tmp, "wb") as f:
            for file, record, mel in self.pending:
                data = np.ascontiguousarray(mel, dtype="<f2").tobytes()
                f.write(data)
                digest.update(data)
                placed[file] = {**record, "shard": name, "offset": offset, "frames": mel.shape[0]}
                offset += mel.size
        self.store.shards[name] = {"bytes": offset * 2, "sha256": digest.hexdigest()}
        self.store.entries.update(placed)
        self.store.save()
        self.number += 1
        self.pending, self.pending_bytes = [], 0


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(2**24):
            h.update(chunk)
    return h.hexdigest()

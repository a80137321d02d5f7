"""Checkpoint files: tensors in safetensors plus JSON metadata; written atomically, never unpickled.

Files are written through `files.atomic_path`: a crash or a full disk leaves the old file or the
new one, never a torn one. The SHA-256 stored in the metadata covers the tensors (names, dtypes,
shapes, bytes) and every other metadata entry (the config included), so accidental damage anywhere
is detected; being stored in the file itself, it does not stop deliberate tampering. Files written
before the metadata was covered (no "checksum_covers" entry) are checked on their tensors alone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor

from .config import differences
from .files import atomic_path

COVERS = "tensors+metadata"


class CheckpointError(ValueError):
    """A missing, truncated, tampered or incompatible checkpoint; the message names the path."""


def write(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Atomically write `tensors` and `meta` (each value JSON-encoded) to `path`."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    meta = {**meta, "checksum_covers": COVERS}
    meta["sha256"] = _digest(tensors, meta)
    try:
        with atomic_path(path) as tmp:
            save_file(tensors, tmp, metadata={k: json.dumps(v) for k, v in meta.items()})
    except OSError as e:
        raise OSError(e.errno, f"{path}: cannot write checkpoint ({os.strerror(e.errno) if e.errno else e})") from None


def read(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a file written by `write`. Raises CheckpointError with the path and the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError, OverflowError, MemoryError) as e:
        raise CheckpointError(f"{path}: unreadable or damaged checkpoint ({_short(e)})") from None
    if not isinstance(meta, dict) or "sha256" not in meta:
        raise CheckpointError(f"{path}: not an audiodiff checkpoint, or damaged (no checksum in its metadata)")
    if meta["sha256"] != _digest(tensors, meta if meta.get("checksum_covers") == COVERS else None):
        raise CheckpointError(f"{path}: damaged or tampered checkpoint (contents do not match the checksum)")
    return tensors, meta


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a checkpoint file alone, without reading or checking its tensors (CheckpointError if it is
    not one)."""
    try:
        with safe_open(Path(path), framework="pt") as f:
            return {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
    except (OSError, SafetensorError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable checkpoint ({_short(e)})") from None


def _digest(tensors: dict[str, Tensor], meta: dict[str, Any] | None) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of all tensors, in name order, then over the metadata
    (all entries but the checksum, as canonical JSON) unless meta is None (files of the older format)."""
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    if meta is not None:
        h.update(json.dumps({k: v for k, v in meta.items() if k != "sha256"}, sort_keys=True).encode())
    return h.hexdigest()


def split(tensors: dict[str, Tensor], prefix: str) -> dict[str, Tensor]:
    """The entries under `prefix.`, with the prefix removed."""
    n = len(prefix) + 1
    return {k[n:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}


def join(prefix: str, tensors: dict[str, Tensor]) -> dict[str, Tensor]:
    return {f"{prefix}.{k}": v for k, v in tensors.items()}


def load_weights(model: torch.nn.Module, weights: dict[str, Tensor], path: Path | str) -> None:
    """Load weights, naming the first missing, unexpected or mis-shaped tensor if they do not fit."""
    own = model.state_dict()
    missing = sorted(set(own) - set(weights))
    extra = sorted(set(weights) - set(own))
    shapes = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or extra or shapes:
        what = (f"missing {missing[0]!r}" if missing else f"unexpected {extra[0]!r}" if extra
                else f"{shapes[0]!r} has shape {tuple(weights[shapes[0]].shape)}, the config builds {tuple(own[shapes[0]].shape)}")
        raise CheckpointError(f"{path}: weights do not fit the model its config builds ({what})")
    model.load_state_dict(weights)


def _short(e: BaseException) -> str:
    text = str(e).strip()
    return text[:200] if text else type(e).__name__


def check_same(stored: dict[str, dict], wanted: dict[str, dict], keys: tuple[str, ...], what: str,
               holder: str = "the run") -> None:
    """CheckpointError naming every field in which two configs' to_dict()s differ over `keys` (sections, or
    "section.field"): a run continued, a base fine-tuned, a second model to guide with."""
    diffs = [f"{name}: {a!r} in {holder}, {b!r} asked for" for name, a, b in differences(stored, wanted, keys)]
    if diffs:
        raise CheckpointError(f"{what}: incompatible config: {'; '.join(diffs)}")

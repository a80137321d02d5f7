"""Checkpoint files: tensors in safetensors plus JSON metadata; written atomically, never unpickled.

A file is written to a temporary name in the same folder, flushed to disk, then renamed over the
target, so a crash at any moment leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file
from torch import Tensor


class CheckpointError(ValueError):
    """A missing, truncated, tampered or incompatible checkpoint; the message names the path."""


def write(path: str | Path, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """Atomically write `tensors` and `meta` (each value JSON-encoded) to `path`."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tensors = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
    try:
        save_file(tensors, tmp, metadata={k: json.dumps(v) for k, v in meta.items()})
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def read(path: str | Path, device: str | torch.device = "cpu") -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Read a file written by `write`. Raises CheckpointError with the path and the reason."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        with safe_open(path, framework="pt", device=str(device)) as f:
            meta = {k: json.loads(v) for k, v in (f.metadata() or {}).items()}
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: unreadable or damaged checkpoint ({e})") from None
    return tensors, meta


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

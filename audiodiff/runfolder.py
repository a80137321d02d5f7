"""Reading a run folder: its config and its checkpoints, and nothing that trains.

A run folder holds:
    config.toml                    the resolved Config (preset < --config file < flags, labels from the data)
    loss.csv                       step, loss, lr, grad_norm, samples_per_s, bad_steps (loss.replaced.csv: rows
                                   logged after the newest checkpoint by a run that then crashed)
    checkpoints/step_XXXXXXXX.safetensors   model, EMA, optimizer, RNG states + config (JSON metadata)
    samples/step_XXXXXXXX_K.{wav,png}       preview clips from the EMA model at each checkpoint
    generated/                     where `audiodiff generate RUN --out RUN/generated` puts clips (gallery)
    cache/                         the mel cache of the training data

A vocoder folder (`audiodiff vocoder train`) holds config.toml, vocoder.safetensors, loss.csv and checkpoints/.
The jobs that write these folders live in run/; generation and the gallery only read them, through this module.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import torch

from . import checkpoint
from .config import Config

CONFIG_FILE = "config.toml"
CLIP_FOLDERS = ("generated", "samples")  # where a run keeps clips: `generate --out RUN/generated`, previews


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:08d}.safetensors"


def checkpoints(run_dir: Path) -> list[Path]:
    """The checkpoint files of a run folder, oldest first."""
    return sorted((Path(run_dir) / "checkpoints").glob("step_*.safetensors"))


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = checkpoints(run_dir)
    return found[-1] if found else None


def find_checkpoint(run: str | Path) -> Path:
    """A checkpoint file itself, or the newest checkpoint of a run directory."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise checkpoint.CheckpointError(f"{run}: no such run directory or checkpoint file")
    found = latest_checkpoint(run)
    if found is None:
        raise checkpoint.CheckpointError(f"{run}: no checkpoint in {run / 'checkpoints'} (train first)")
    return found


def read_checkpoint(run: str | Path) -> tuple[Config, dict[str, torch.Tensor], dict[str, Any], Path]:
    """(config, tensors, metadata, file) of a run's newest checkpoint (or of a checkpoint file)."""
    path = find_checkpoint(run)
    tensors, meta = checkpoint.read(path)
    if "config" not in meta:
        raise checkpoint.CheckpointError(f"{path}: no config in the checkpoint metadata")
    try:
        return Config.from_dict(meta["config"]), tensors, meta, path
    except (ValueError, TypeError) as e:
        raise checkpoint.CheckpointError(f"{path}: bad config in checkpoint ({e})") from None


def run_config(run: str | Path) -> Config | None:
    """The config.toml of a run folder, or None if `run` is not one."""
    path = Path(run) / CONFIG_FILE
    return Config.from_toml(path) if path.is_file() else None


def csv_rows(path: Path) -> list[dict[str, str]]:
    """The rows of one of a run's CSV files (loss.csv, validation.csv) as dicts by column."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))

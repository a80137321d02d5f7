"""The models a studio serves: the run and exported-model folders it was given or found under --root, described from
their own files (config.toml, the newest checkpoint's metadata, loss.csv, validation.csv, samples/). Read only:
nothing here writes into a run folder."""

from __future__ import annotations

import csv
from pathlib import Path

from .. import checkpoint
from ..config import Config
from ..runfolder import CONFIG_FILE, csv_rows, latest_checkpoint, run_config

MAX_DEPTH = 3  # how deep under --root a model folder is looked for


def is_model(folder: Path) -> bool:
    return (folder / CONFIG_FILE).is_file() and latest_checkpoint(folder) is not None


def find_models(paths: list[Path], root: Path | None = None) -> dict[str, Path]:
    """{name: folder} of every model folder among `paths` and under `root` (MAX_DEPTH levels), in order; ValueError
    for a given path that is not one (a missing or damaged model is named, not skipped)."""
    found: dict[str, Path] = {}
    for p in paths:
        if not is_model(p):
            raise ValueError(f"{p}: not a run or exported model (no {CONFIG_FILE} with a checkpoint beside it)")
        found[str(p)] = p.resolve()
    if root is not None:
        if not root.is_dir():
            raise ValueError(f"--root {root}: not a folder")
        for config in sorted(root.rglob(CONFIG_FILE)):
            folder = config.parent
            if folder.resolve() not in found.values() and len(folder.relative_to(root).parts) <= MAX_DEPTH \
                    and is_model(folder):
                found[str(folder)] = folder.resolve()
    return found


def rows(path: Path) -> list[dict[str, str]]:
    """A CSV's rows ([] if it is missing or unreadable: a run still writing its first row)."""
    try:
        return csv_rows(path)
    except (OSError, csv.Error, UnicodeDecodeError):
        return []


def describe(folder: Path) -> str:
    """Markdown: the model's preset, size, labels, how long it trained and its newest scores."""
    config = run_config(folder)
    if config is None:
        raise ValueError(f"{folder}: no readable {CONFIG_FILE}")
    meta = checkpoint.read_meta(latest_checkpoint(folder))
    seconds = float(meta.get("seconds", 0.0))
    lines = [f"**{folder.name}**: preset `{config.preset}`, {config.mel.sample_rate} Hz, "
             f"{config.data.crop_seconds(config.mel):.2f} s clips, {config.data.channels} channel(s), vocoder "
             f"`{config.vocoder}`",
             f"trained {meta.get('step', '?')} of {config.train.steps} steps"
             + (f" in {seconds / 60:.1f} min" if seconds else "")
             + (f" (budget {config.train.minutes:g} min)" if config.train.minutes else "")]
    if config.data.labels:
        lines.append(f"labels ({len(config.data.labels)}): {', '.join(config.data.labels)}")
    loss, val = rows(folder / "loss.csv"), rows(folder / "validation.csv")
    if loss:
        lines.append(f"loss {float(loss[0]['loss']):.4f} at step {loss[0]['step']} -> {float(loss[-1]['loss']):.4f} "
                     f"at step {loss[-1]['step']}")
    if val:
        lines.append(f"validation FD {float(val[-1]['fd']):.1f} at step {val[-1]['step']} (floor "
                     f"{float(val[-1]['floor']):.1f})")
    return "\n\n".join(lines)


def labels(folder: Path) -> tuple[str, ...]:
    config = run_config(folder)
    return config.data.labels if config is not None else ()


def watch(folder: Path) -> tuple[str, list[dict[str, float]], list[dict[str, float]], list[Path]]:
    """What the Watch tab shows of a run that trains now (or finished): a status line (step of steps, the time left
    at the newest logged speed), the loss and validation rows, and the newest previews (WAVs, newest first)."""
    config: Config | None = run_config(folder)
    loss, val = rows(folder / "loss.csv"), rows(folder / "validation.csv")
    if config is None:
        return f"{folder}: no run here yet", [], [], []
    step = int(loss[-1]["step"]) if loss else 0
    status = f"step {step} of {config.train.steps}"
    speed = float(loss[-1]["samples_per_s"]) if loss else 0.0
    if speed > 0 and step < config.train.steps:
        left = (config.train.steps - step) * config.train.batch_size / speed
        status += f", about {left / 60:.1f} min left at {speed:.1f} samples/s"
    elif step >= config.train.steps:
        status += " (finished)"
    previews = sorted((folder / "samples").glob("step_*.wav"), reverse=True)
    return (status, [{"step": float(r["step"]), "loss": float(r["loss"])} for r in loss],
            [{"step": float(r["step"]), "fd": float(r["fd"]), "floor": float(r["floor"])} for r in val], previews)

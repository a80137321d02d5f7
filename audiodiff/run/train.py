"""`audiodiff train`: a run trained from a folder of audio, or continued."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import time
from pathlib import Path
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn

from .. import checkpoint
from ..audio.mel import MelSpectrogram
from ..config import Config
from ..data.datasets import MelDataset, holdout
from ..data.labels import file_labels, run_label_counts
from ..data.prepare import load_mels
from ..device import peak_memory, resolve_precision
from ..files import folder_lock, write_text
from ..presets import preset
from ..runfolder import CONFIG_FILE, latest_checkpoint
from ..training.diffusion import TrainState, check_same_model
from ..training.diffusion import train as train_model
from ..training.distributed import Dist, barrier, from_env, shutdown
from ..vocoders.registry import build_vocoder
from ..training.board import Board
from .budget import DEFAULT_CPU_MINUTES, SIZES, plan, replanner
from .inspect import default_size_line, estimate
from .previews import preview_writer
from .setup import Log, Session, board_for, changed, report_skipped, resolve_config
from .validation import Validator


def train(data_dir: str | Path, out: str | Path, *, config_file: Path | None = None, preset_name: str | None = None,
          overrides: dict[str, dict[str, Any]] | None = None, label_column: str | None = None,
          unconditional: bool = False, vocoder: str | None = None, resume: bool = False,
          session: Session = Session()) -> TrainState:
    """Train a run on every audio file under data_dir, or continue the run in `out`, as `audiodiff train` does.

    overrides: {"train": {"steps": 2000, ...}, "diffusion": {...}} on top of preset and config_file; train.minutes
    a time budget for the whole command (steps and schedule fitted to it, run/budget.py), train.steps without it
    exactly that many steps. With neither, and neither preset_name nor config_file, a new run on a CPU gets
    DEFAULT_CPU_MINUTES and the largest preset that fits them.
    Labels: first-level subfolders, or `label_column` of a metadata.csv (unconditional=True ignores them).
    vocoder: the run's default vocoder spec (a saved vocoder's folder is stored as an absolute path).
    session: how it runs (device, data workers, TensorBoard or not, progress bars, where its lines go).
    When started by torchrun, every rank calls this; rank 0 writes and logs. Returns the final TrainState.
    """
    started = time.perf_counter()
    data_dir, out, overrides = Path(data_dir), Path(out), _length(overrides)
    config, stored = resolve_config(out, config_file, preset_name, overrides, resume)
    if unconditional and label_column:
        raise ValueError("unconditional training and a label column contradict each other")
    config.check_sizes()
    if vocoder:
        config = dataclasses.replace(config, vocoder=str(Path(vocoder).resolve()) if Path(vocoder).is_dir() else vocoder)
    build_vocoder(config.vocoder, MelSpectrogram(config.mel))  # a bad spec (flag or file) fails now, not at a preview
    dist, dev = from_env(session.device)  # started by torchrun: one process per device, rank 0 writes
    sized = stored is None and preset_name is None and config_file is None and dev.type == "cpu"
    sizes: dict[str, Config] = {}
    if sized and not config.train.minutes and "steps" not in overrides.get("train", {}):
        config = config.replace("train", minutes=DEFAULT_CPU_MINUTES)
        sizes = {name: _as(preset(name), config, overrides) for name in SIZES}
    elif sized and dist.main and not config.train.minutes:
        _say_size(config, dev, session)
    barrier(dist)  # every rank has read the run's state before rank 0 writes anything
    with folder_lock(out) if dist.main else contextlib.nullcontext():  # rank 0 alone writes the folder
        return _prepare_and_train(config, stored, sizes, data_dir, out, dist, dev, unconditional, label_column,
                                  session, started)


def _length(overrides: dict[str, dict[str, Any]] | None) -> dict[str, dict[str, Any]]:
    """The overrides with the run's length made one thing: --steps alone means exactly that many steps (no budget,
    even one a continued run had), --minutes a budget; both at once are refused."""
    overrides = {k: dict(v) for k, v in (overrides or {}).items()}
    t = overrides.setdefault("train", {})
    if t.get("steps") is not None and t.get("minutes"):
        raise ValueError("--steps and --minutes both set how long the run trains: give one")
    if t.get("steps") is not None:
        t["minutes"] = 0.0
    return overrides


def _as(base: Config, like: Config, overrides: dict[str, dict[str, Any]]) -> Config:
    """Preset `base` with the same overrides, budget and vocoder as `like`: a size the budget may choose instead."""
    return dataclasses.replace(changed(base, None, overrides), vocoder=like.vocoder).replace(
        "train", minutes=like.train.minutes)


def _prepare_and_train(config: Config, stored: Config | None, sizes: dict[str, Config], data_dir: Path, out: Path,
                       dist: Dist, dev: torch.device, unconditional: bool, label_column: str | None,
                       session: Session, started: float) -> TrainState:
    """The part of `train` that writes (rank 0 holding the folder's lock, which made it): the mel cache, the labels,
    the held-out files, the budget's plan and config.toml, then training itself with previews and validation."""
    s = session
    say, warn = (s.log, s.warn) if dist.main else (lambda m: None, lambda m: None)
    if not dist.main:
        barrier(dist)  # rank 0 decodes the audio and fills the mel cache; the others then read the cache
    data, report = load_mels(data_dir, MelSpectrogram(config.mel), config.data.crop_frames, out / "cache",
                             s.progress and dist.main, workers=s.workers, prepare=dist.main,
                             channels=config.data.channels, skip=(out,))
    if dist.main:
        barrier(dist)
    report_skipped(report, warn)
    say(f"data: {report.summary()} in {time.perf_counter() - started:.1f} s")
    labelled = None if unconditional else file_labels(data_dir, data.files, label_column)
    names, labels = labelled if labelled else ((), None)
    kept, held = holdout(len(data), config.train.holdout, config.train.seed)
    split = _Split(data.subset(kept), data.subset(held), *(None, None) if labels is None else (labels[kept], labels[held]))
    counts = run_label_counts(stored, tuple(names), split.labels)
    config = _labelled(config, names, counts)
    sizes = {name: _labelled(c, names, counts) for name, c in sizes.items()}
    if stored is not None:
        check_same_model(stored, config, str(out))  # after flags and labels: the same command line may be re-run
    deadline, replan, new, validators = None, None, latest_checkpoint(out) is None, []

    def record(c: Config) -> None:  # the plan, and a budget's replan of it
        if dist.main:
            write_text(out / CONFIG_FILE, c.to_toml())
        for v in validators:
            v.steps = c.train.steps

    if config.train.minutes:
        config, deadline = plan(config, sizes, split.train, split.labels, out, dev, dist, started,
                                config.train.preview_count + len(held), say)
        replan = replanner(deadline.costs, started, dist, say, record) if new else None
    record(config)
    _say_start(config, names, split, dev, dist, out, say)
    board = board_for(out, s.log_to) if dist.main else None
    validator = _validator(config, split, out, board, say, warn) if dist.main and held else None
    validators += [validator] if validator else []
    try:
        state = train_model(config, split.train, out, dev, progress=s.progress, log=say, labels=split.labels,
                            dist=dist, on_checkpoint=_both(preview_writer(config, out, board), validator),
                            on_log=board and board.scalars, deadline=deadline, started=started, replan=replan)
        if validator is not None:
            validator.finish()
    finally:
        shutdown(dist)
        if board:
            board.close()
    say(f"done: step {state.step} in {time.perf_counter() - started:.0f} s, {peak_memory(dev)} (rank 0). "
        f"Previews in {out / 'samples'}; next: audiodiff generate {out} --out {out / 'generated'}")
    return state


@dataclass(frozen=True)
class _Split:
    """The data trained on and the files held out to score the run (with each file's class id, if labelled)."""

    train: MelDataset
    held: MelDataset
    labels: torch.Tensor | None
    held_labels: torch.Tensor | None


def _labelled(config: Config, names: list[str] | tuple[str, ...], counts: tuple[int, ...]) -> Config:
    return config.replace("data", labels=tuple(names), label_counts=counts).replace("unet", num_classes=len(names))


def _say_start(config: Config, names: tuple[str, ...], split: _Split, dev: torch.device, dist: Dist, out: Path,
               say: Log) -> None:
    if names:
        say(f"class-conditional on {len(names)} labels: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
    held = (f"{len(split.held)} files held out for validation" if len(split.held)
            else "no validation (too few files to hold some out)" if config.train.holdout else "no validation")
    where = f"{dist.world} processes ({dev.type})" if dist.active else str(dev)
    runs = resolve_precision(dev, config.train.precision)  # what the step runs in (a fallback is said below)
    say(f"training preset={config.preset} on {where} ({runs}), {config.train.steps} steps of "
        f"{config.train.batch_size} x {config.data.crop_seconds(config.mel):.2f} s crops from {len(split.train)} "
        f"files ({held}) -> {out}")


def _validator(config: Config, split: _Split, out: Path, board: Board | None, say: Log, warn: Log) -> Validator:
    latest = latest_checkpoint(out)
    meta = checkpoint.read_meta(latest) if latest else {}
    return Validator(config, split.held, split.held_labels, split.train, out, int(meta.get("step", 0)),
                     float(meta.get("seconds", 0.0)), board, say, warn)


Callback = Callable[[nn.Module, int], None]


def _both(previews: Callback, validator: Validator | None) -> Callback:
    """The checkpoint callback: previews, then (with held-out files) the validation score."""
    if validator is None:
        return previews

    def both(ema: nn.Module, step: int) -> None:
        previews(ema, step)
        validator(ema, step)

    return both


def _say_size(config: Config, dev: torch.device, session: Session) -> None:
    """A new run with no preset and no config file on a CPU says, before anything runs, what it will train and how
    long that takes here (three steps of its network timed on random crops; the run itself starts from its seed)."""
    session.log(default_size_line(estimate(config.preset, config, dev), datetime.datetime.now()))

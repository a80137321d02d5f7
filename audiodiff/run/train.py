"""`audiodiff train`: a run trained from a folder of audio, or continued."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import time
from pathlib import Path
from typing import Any

import torch

from ..audio.mel import MelSpectrogram
from ..config import Config
from ..data.labels import file_labels, run_label_counts
from ..data.prepare import load_mels
from ..device import peak_memory
from ..files import folder_lock, write_text
from ..runfolder import CONFIG_FILE
from ..training.diffusion import TrainState, check_same_model
from ..training.diffusion import train as train_model
from ..training.distributed import Dist, barrier, from_env, shutdown
from ..vocoders.registry import build_vocoder
from .inspect import default_size_line, estimate
from .previews import preview_writer
from .setup import Session, board_for, report_skipped, resolve_config


def train(data_dir: str | Path, out: str | Path, *, config_file: Path | None = None, preset_name: str | None = None,
          overrides: dict[str, dict[str, Any]] | None = None, label_column: str | None = None,
          unconditional: bool = False, vocoder: str | None = None, resume: bool = False,
          session: Session = Session()) -> TrainState:
    """Train a run on every audio file under data_dir, or continue the run in `out`, as `audiodiff train` does.

    overrides: {"train": {"steps": 2000, ...}, "diffusion": {...}} on top of preset and config_file.
    Labels: first-level subfolders, or `label_column` of a metadata.csv (unconditional=True ignores them).
    vocoder: the run's default vocoder spec (a saved vocoder's folder is stored as an absolute path).
    session: how it runs (device, data workers, TensorBoard or not, progress bars, where its lines go).
    When started by torchrun, every rank calls this; rank 0 writes and logs. Returns the final TrainState.
    """
    data_dir, out = Path(data_dir), Path(out)
    config, stored = resolve_config(out, config_file, preset_name, overrides, resume)
    if unconditional and label_column:
        raise ValueError("unconditional training and a label column contradict each other")
    config.check_sizes()
    if vocoder:
        config = dataclasses.replace(config, vocoder=str(Path(vocoder).resolve()) if Path(vocoder).is_dir() else vocoder)
    build_vocoder(config.vocoder, MelSpectrogram(config.mel))  # a bad spec (flag or file) fails now, not at a preview
    dist, dev = from_env(session.device)  # started by torchrun: one process per device, rank 0 writes
    if dist.main and stored is None and preset_name is None and config_file is None and dev.type == "cpu":
        _say_size(config, dev, session)
    barrier(dist)  # every rank has read the run's state before rank 0 writes anything
    with folder_lock(out) if dist.main else contextlib.nullcontext():  # rank 0 alone writes the folder
        return _prepare_and_train(config, stored, data_dir, out, dist, dev, unconditional, label_column, session)


def _prepare_and_train(config: Config, stored: Config | None, data_dir: Path, out: Path, dist: Dist,
                       dev: torch.device, unconditional: bool, label_column: str | None,
                       session: Session) -> TrainState:
    """The part of `train` that writes (rank 0 holding the folder's lock, which made it): the mel cache, the labels
    and config.toml, then training itself."""
    s = session
    say, warn = (s.log, s.warn) if dist.main else (lambda m: None, lambda m: None)
    t0 = time.perf_counter()
    if not dist.main:
        barrier(dist)  # rank 0 decodes the audio and fills the mel cache; the others then read the cache
    data, report = load_mels(data_dir, MelSpectrogram(config.mel), config.data.crop_frames, out / "cache",
                             s.progress and dist.main, workers=s.workers, prepare=dist.main,
                             channels=config.data.channels, skip=(out,))
    if dist.main:
        barrier(dist)
    report_skipped(report, warn)
    say(f"data: {report.summary()} in {time.perf_counter() - t0:.1f} s")
    labelled = None if unconditional else file_labels(data_dir, data.files, label_column)
    names, labels = labelled if labelled else ((), None)
    counts = run_label_counts(stored, tuple(names), labels)
    config = config.replace("data", labels=tuple(names), label_counts=counts).replace("unet", num_classes=len(names))
    if stored is not None:
        check_same_model(stored, config, str(out))  # after flags and labels: the same command line may be re-run
    if dist.main:
        write_text(out / CONFIG_FILE, config.to_toml())
    if names:
        say(f"class-conditional on {len(names)} labels: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
    where = f"{dist.world} processes ({dev.type})" if dist.active else str(dev)
    say(f"training preset={config.preset} on {where} ({config.train.precision}), {config.train.steps} steps of "
        f"{config.train.batch_size} x {config.data.crop_seconds(config.mel):.2f} s crops -> {out}")
    board = board_for(out, s.log_to) if dist.main else None
    try:
        state = train_model(config, data, out, dev, progress=s.progress, log=say, labels=labels, dist=dist,
                            on_checkpoint=preview_writer(config, out, board), on_log=board and board.scalars)
    finally:
        shutdown(dist)
        if board:
            board.close()
    say(f"done: step {state.step} in {time.perf_counter() - t0:.0f} s, {peak_memory(dev)} (rank 0). "
        f"Previews in {out / 'samples'}; next: audiodiff generate {out} --out {out / 'generated'}")
    return state


def _say_size(config: Config, dev: torch.device, session: Session) -> None:
    """A new run with no preset and no config file on a CPU says, before anything runs, what it will train and how
    long that takes here (three steps of its network timed on random crops; the run itself starts from its seed)."""
    session.log(default_size_line(estimate(config.preset, config, dev), datetime.datetime.now()))

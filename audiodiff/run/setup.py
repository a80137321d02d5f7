"""What every job does before it trains: the run's config resolved and checked, the folder made writable,
the data read and its skipped files reported, and training started with previews and TensorBoard."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from .. import checkpoint
from ..audio.mel import MelSpectrogram
from ..config import Config
from ..data.datasets import DataReport, MelDataset
from ..data.prepare import load_mels
from ..files import refuse_foreign, refuse_links
from ..model.unet import UNet
from ..presets import preset
from ..runfolder import CONFIG_FILE, latest_checkpoint, run_config
from ..training.board import Board
from ..training.diffusion import TrainState
from ..training.diffusion import train as train_model
from .previews import preview_writer

Log = Callable[[str], None]


@dataclass(frozen=True)
class Session:
    """How a job runs, whatever it trains: on which device ("auto": CUDA, then MPS, then CPU), how many processes
    prepare the mel cache (None: the cores), where the curves go besides loss.csv ("csv" or "tensorboard"),
    whether progress bars show, and where its lines (log) and warnings (warn) go."""

    device: str = "auto"
    workers: int | None = None
    log_to: str = "csv"
    progress: bool = True
    log: Log = print
    warn: Log = print

    def __post_init__(self) -> None:
        if self.log_to not in ("csv", "tensorboard"):
            raise ValueError(f"log_to: {self.log_to!r} is neither 'csv' nor 'tensorboard'")


def resolve_config(out: Path, config_file: Path | None = None, preset_name: str | None = None,
                   overrides: dict[str, dict[str, Any]] | None = None, resume: bool = False) -> tuple[Config, Config | None]:
    """(config to train with, the run's stored config or None): the run's own when continuing, else
    preset (default small) < TOML file < overrides {section: {field: value}}. Labels come later, from the data."""
    stored = run_config(out)
    if stored is None and resume:
        raise ValueError(f"{out}: --resume given but there is no run here (no {CONFIG_FILE})")
    refuse_other_folder(out, stored)
    config = changed(preset(preset_name) if preset_name else stored or preset("small"), config_file, overrides)
    latest = latest_checkpoint(out)
    if resume and latest is None:
        raise ValueError(f"{out}: resume asked for but no checkpoint yet in {out / 'checkpoints'}")
    if latest is not None and "optimizer_groups" not in checkpoint.read_meta(latest):
        raise checkpoint.CheckpointError(f"{out}: an exported run (EMA weights only) cannot be trained further; "
                                         "fine-tune it instead (audiodiff finetune RUN DATA_DIR --out NEW_RUN)")
    return config, stored


def refuse_other_folder(out: Path, stored: Config | None) -> None:
    """ValueError if `out` holds files but no run (stored None): nothing a user made is written over. A folder
    holding only a mel cache is one an earlier attempt left when it stopped after reading the data."""
    if stored is None:
        refuse_foreign(out, f"an audiodiff run (no {CONFIG_FILE})", ignore=("cache",))
    refuse_links(out, inside=("checkpoints", "cache", "samples", "generated"))


def changed(config: Config, config_file: Path | None, overrides: dict[str, dict[str, Any]] | None) -> Config:
    """config < the TOML file config_file < overrides {section: {field: value}} (empty sections ignored)."""
    if config_file:
        config = Config.from_toml(config_file, config)
    return Config.from_dict({section: changes for section, changes in (overrides or {}).items() if changes}, config)


def report_skipped(report: DataReport, warn: Log) -> None:
    for note in report.notes:
        warn(note)
    for path, reason in report.skipped[:10]:
        warn(f"warning: skipped {path}: {reason}")
    if len(report.skipped) > 10:
        warn(f"warning: ... and {len(report.skipped) - 10} more skipped files")


def one_process_data(config: Config, data_dir: Path, out: Path, workers: int | None, progress: bool, log: Log,
                      warn: Log) -> MelDataset:
    """The mels of data_dir from (and into) out's cache, for a run in one process (distill, finetune) that holds
    out's lock (files.folder_lock, which made the folder), with the data summary and skipped files reported."""
    t0 = time.perf_counter()
    data, report = load_mels(data_dir, MelSpectrogram(config.mel), config.data.crop_frames, out / "cache", progress,
                             workers=workers, channels=config.data.channels, skip=(out,))
    report_skipped(report, warn)
    log(f"data: {report.summary()} in {time.perf_counter() - t0:.1f} s")
    return data


def train_logged(config: Config, data: MelDataset, out: Path, dev: torch.device, labels: torch.Tensor | None,
                  log_to: str, progress: bool, log: Log, stop: Callable[[nn.Module, int], bool] | None = None,
                  **start: UNet) -> TrainState:
    """train_model in one process with previews and (log_to "tensorboard") event files, as distill and finetune
    run it; stop(ema, step) after the previews of each checkpoint: True ends training; start: teacher= (a
    distillation) or start= (a fine-tune)."""
    board = board_for(out, log_to)
    previews = preview_writer(config, out, board)

    def on_checkpoint(ema: nn.Module, step: int) -> bool:
        previews(ema, step)
        return stop is not None and stop(ema, step)

    try:
        return train_model(config, data, out, dev, progress=progress, log=log, labels=labels,
                           on_checkpoint=on_checkpoint, on_log=board and board.scalars, **start)
    finally:
        if board:
            board.close()


def board_for(out: Path, log_to: str) -> Board | None:
    """The TensorBoard writer of a run (log_to="tensorboard"), its events past the newest checkpoint dropped."""
    if log_to == "csv":
        return None
    latest = latest_checkpoint(out)
    return Board(out, int(latest.stem.split("_")[-1]) if latest else 0)

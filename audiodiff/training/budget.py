"""A time budget (`audiodiff train --minutes M`): what a step and a checkpoint cost on this machine, how many steps
fit, the schedule fitted to them, and the deadline that stops a run on time on a machine slower than measured.

The budget is the whole command's: the data preparation and everything before the first step count, and so do the
checkpoints with their previews and validation clips, the last one included.
"""

from __future__ import annotations

import math
import tempfile
import time
from pathlib import Path

import torch
from torch import Tensor

from ..config import Config
from ..data.datasets import MelDataset
from ..diffusion.schedule import GaussianSchedule
from ..model.conditioning import from_config as conditioning_of
from .diffusion import new_state, save_state, train_step
from .kit import Costs

CHECKPOINTS = 4  # a budgeted run's checkpoints (each with previews and scores); the last one ends the run
MARGIN = 0.03  # of the budget kept back for what is not measured (the first preview's vocoder set-up, exiting)
PER_PREVIEW = 0.5  # seconds a preview clip takes beyond sampling: its vocoder and its PNG, about, on a CPU
EMA_SHARE = 7.5  # the EMA's time constant is at most 1/EMA_SHARE of a budgeted run's steps


def fit_steps(budget: float, spent: float, costs: Costs, checkpoints: int = CHECKPOINTS) -> int:
    """The optimizer steps that fit in `budget` seconds of which `spent` are gone, with `checkpoints` checkpoints and
    MARGIN of the budget kept back; 0 when none fits."""
    left = budget * (1 - MARGIN) - spent - checkpoints * costs.checkpoint
    return max(0, math.floor(left / costs.step))


def fitted(config: Config, steps: int) -> Config:
    """`config` with its training fitted to `steps` optimizer steps: warm-up at most a twentieth of them, the EMA's
    time constant 1 / (1 - decay) at most 1/EMA_SHARE of them (never longer than the preset's), and CHECKPOINTS
    checkpoints, the last at the end."""
    c, steps = config.train, max(1, steps)
    horizon = min(1 / (1 - c.ema_decay), max(10.0, steps / EMA_SHARE))
    return config.replace("train", steps=steps, warmup_steps=min(c.warmup_steps, max(1, steps // 20)),
                          ema_decay=round(1 - 1 / horizon, 6), checkpoint_every=max(1, math.ceil(steps / CHECKPOINTS)))


def refit(config: Config, done: int, costs: Costs, budget: float, spent: float, checkpoints: int = CHECKPOINTS,
          since: int = 0) -> Config:
    """`config`, `done` steps into its run, fitted again to `budget` seconds of which `spent` are gone at the costs
    measured in training, with `checkpoints` checkpoints still to come, spaced evenly from step `since` (the last
    one) to the end: steps, EMA and checkpoint_every follow; the warm-up, under way, stays."""
    steps = max(done + 1, done + fit_steps(budget, spent, costs, checkpoints))
    every = max(1, math.ceil((steps - since) / max(1, checkpoints)))
    return fitted(config, steps).replace("train", warmup_steps=config.train.warmup_steps, checkpoint_every=every)


def calibrate(config: Config, data: MelDataset, labels: Tensor | None, device: torch.device, clips: int,
              steps: int = 5) -> Costs:
    """What a step and a checkpoint of `config` cost on `device`, measured on a throwaway training state (the run's
    own starts from its seed, untouched): the best of `steps` optimizer steps on crops of the run's data after one
    untimed; a checkpoint as writing one plus preview_steps network calls on `clips` clips at once."""
    state, schedule = new_state(config, device), GaussianSchedule.from_config(config.diffusion)
    cond, generator = conditioning_of(config), torch.Generator().manual_seed(0)
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        files = data.sample_files(config.train.batch_size, generator)
        y = None if cond is None else labels[files].to(device)
        train_step(state, config, schedule, data.crops(files, generator).to(device), y)
        _sync(device)
        times.append(time.perf_counter() - t0)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        save_state(state, config, Path(tmp))
    save = time.perf_counter() - t0
    x = torch.zeros((max(1, clips), *config.crop_shape()), device=device)
    t = torch.full((len(x),), schedule.num_steps // 2, device=device)
    y = None if cond is None else torch.zeros(len(x), dtype=torch.long, device=device)
    with torch.no_grad():
        state.ema(x, t, y)  # the first call at a new batch size sets kernels up: not what the rest cost
        _sync(device)
        t0 = time.perf_counter()
        state.ema(x, t, y)
        _sync(device)
    sampling = config.train.preview_steps * (time.perf_counter() - t0)
    return Costs(min(times[1:]), save + sampling + PER_PREVIEW * config.train.preview_count)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()

"""A run fitted to its time budget (`audiodiff train --minutes M`) and, with no --preset on a CPU, its size: what it
measured, what it chose and when it will end, said in one line before the first step."""

from __future__ import annotations

import datetime
import time
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from .. import checkpoint
from ..config import Config
from ..data.datasets import MelDataset
from ..model.unet import UNet
from ..runfolder import latest_checkpoint
from ..training.budget import CHECKPOINTS, MARGIN, calibrate, fit_steps, fitted, refit
from ..training.diffusion import Replan
from ..training.distributed import Dist, largest
from ..training.kit import Costs, Deadline, Pace
from .inspect import duration
from .setup import Log

DEFAULT_CPU_MINUTES = 30.0  # the budget of `audiodiff train DATA --out RUN` on a CPU, with no --preset or --steps
SIZES = ("small", "tiny")  # tried largest first for that run
# small is chosen only where it gets a fifth of its preset's 50,000 steps: with fewer, tiny scored better at equal
# training time (experiments/LOG.md, "Quality per compute")
MIN_STEPS = {"small": 10000}


def plan(config: Config, sizes: dict[str, Config], data: MelDataset, labels: Tensor | None, out: Path, dev: torch.device,
         dist: Dist, started: float, clips: int, log: Log) -> tuple[Config, Deadline]:
    """The run's config fitted to config.train.minutes, and its deadline. A new run measures its step and checkpoint
    costs here (every rank; the slowest rank's figures are the plan on all) and fits its steps and schedule; given
    `sizes` ({preset: config}, largest first), it takes the largest that gets its MIN_STEPS. A continued run keeps
    its plan and spends what is left of the budget; one that finished its plan trains on if the budget was raised."""
    budget, latest = config.train.minutes * 60, latest_checkpoint(out)
    if latest is not None:
        return _continued(config, latest, data, labels, dev, dist, started, clips, log)
    tried = []
    for name, candidate in (sizes or {config.preset: config}).items():
        costs, elapsed = _measured(candidate, data, labels, dev, dist, started, clips)
        steps = fit_steps(budget, elapsed, costs)
        tried.append((name, candidate, costs, steps))
        if steps >= MIN_STEPS.get(name, 0):
            break
    name, config, costs, steps = tried[-1]
    if steps < 1:
        raise ValueError(f"--minutes {config.train.minutes:g}: not even one step fits after {elapsed:.0f} s of "
                         f"preparation and {costs.checkpoint:.1f} s per checkpoint; give more minutes")
    config = fitted(config, steps)
    log(_line(config, costs, elapsed, tried[:-1] if sizes else [], bool(sizes)))
    return config, Deadline(started + budget * (1 - MARGIN / 2), costs)


def replanner(costs: Costs, started: float, dist: Dist, log: Log, write: Callable[[Config], None]) -> Replan:
    """The trainer's replan for a new budgeted run: a twentieth in and after each checkpoint but the last, the steps
    fitted again to the step time measured since the last plan and the checkpoints' measured cost (the calibrated
    one before the first; the slowest rank's figures on every rank), so that a machine that slows down or speeds
    up still ends at the budget. The first plan is said, later ones when they move the end by a fiftieth or more;
    each is written (`write`)."""

    def replan(config: Config, done: int, pace: Pace) -> Config:
        measured = costs.checkpoint if pace.checkpoint is None else pace.checkpoint
        seconds, checkpoint_cost, elapsed = largest([pace.step, measured, time.perf_counter() - started], dist)
        left = max(1, CHECKPOINTS - pace.checkpoints)
        new = refit(config, done, Costs(seconds, checkpoint_cost), config.train.minutes * 60, elapsed, left, pace.last)
        if pace.checkpoints == 0:
            log(f"budget: a step takes {seconds:.2f} s in training ({costs.step:.2f} s measured before it): "
                f"{config.train.steps} -> {new.train.steps} steps, a checkpoint every {new.train.checkpoint_every}")
        elif abs(new.train.steps - config.train.steps) >= config.train.steps / 50:
            log(f"budget: at step {done}, {seconds:.2f} s a step and {checkpoint_cost:.1f} s a checkpoint: "
                f"{config.train.steps} -> {new.train.steps} steps")
        write(new)
        return new

    return replan


def _measured(config: Config, data: MelDataset, labels: Tensor | None, dev: torch.device, dist: Dist, started: float,
              clips: int) -> tuple[Costs, float]:
    """(costs, seconds since the command started), the same on every rank: each figure the largest over the ranks."""
    costs = calibrate(config, data, labels, dev, clips)
    step, ckpt, elapsed = largest([costs.step, costs.checkpoint, time.perf_counter() - started], dist)
    return Costs(step, ckpt), elapsed


def _continued(config: Config, latest: Path, data: MelDataset, labels: Tensor | None, dev: torch.device, dist: Dist,
               started: float, clips: int, log: Log) -> tuple[Config, Deadline]:
    meta = checkpoint.read_meta(latest)
    spent, done = float(meta.get("seconds", 0.0)), int(meta["step"])
    budget, before = config.train.minutes * 60, float(meta.get("config", {}).get("train", {}).get("minutes", 0.0))
    costs, elapsed = _measured(config, data, labels, dev, dist, started, clips)
    if done >= config.train.steps and config.train.minutes > before:  # a raised budget trains on
        more = fit_steps(budget, spent + elapsed, costs, checkpoints=1)
        config = config.replace("train", steps=done + more) if more else config
    left = max(0.0, budget - spent - elapsed)
    if done < config.train.steps and left < costs.step + costs.checkpoint:  # no step fits: the run ends where it is
        config = config.replace("train", steps=done)
    log(f"budget: {duration(left)} of {config.train.minutes:g} min left after {duration(spent)} spent; "
        + (f"training from step {done} to {config.train.steps}" if config.train.steps > done
           else f"nothing to train (step {done} of {config.train.steps}; a larger --minutes trains on)"))
    return config, Deadline(started + budget * (1 - MARGIN / 2) - spent, costs)


def _line(config: Config, costs: Costs, elapsed: float, passed_over: list, chose: bool) -> str:
    """The budget line: the preset, its steps at the measured step time, the checkpoints, the expected end; when the
    size was chosen, why (the larger presets passed over and the steps they would have got)."""
    c = config.train
    ends = datetime.datetime.now() + datetime.timedelta(seconds=c.minutes * 60 - elapsed)
    params = sum(p.numel() for p in _network(config).parameters()) / 1e6
    head = (f"size: no --preset on a CPU, so a {c.minutes:g} min budget (--minutes to change it): preset "
            f"{config.preset}" if chose else f"budget: {c.minutes:g} min for preset {config.preset}")
    why = "".join(f"; {name} ({sum(p.numel() for p in _network(cand).parameters()) / 1e6:.1f} M) would get only "
                  f"{steps} of the {MIN_STEPS[name]} steps it needs" for name, cand, _, steps in passed_over)
    return (f"{head} ({params:.1f} M parameters): {c.steps} steps x {costs.step:.2f} s measured here and "
            f"{-(-c.steps // c.checkpoint_every)} checkpoints x {costs.checkpoint:.1f} s, after {elapsed:.0f} s of "
            f"preparation; warm-up {c.warmup_steps}, EMA {c.ema_decay:g}; ending about {ends:%H:%M}{why}")


def _network(config: Config) -> torch.nn.Module:
    return UNet(config.unet)

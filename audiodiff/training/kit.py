"""What every trainer shares: the training loop itself (`loop`), pruning a run folder's checkpoints, the loss
log, optimizer state in checkpoints, the EMA with warm-up, and the rule for skipped (non-finite) steps.

Trainers (diffusion.py, vocoder.py, embedder.py) import this module, never each other.
"""

from __future__ import annotations

import csv
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import checkpoint
from ..files import atomic_path
from ..runfolder import checkpoint_path, checkpoints

MAX_BAD_STEPS = 20  # consecutive skipped steps (non-finite loss or gradients) before training stops


def prune(run_dir: Path, keep: int) -> None:
    """Delete all but the newest `keep` checkpoints of run_dir; the newest is always kept, whatever `keep`."""
    found = checkpoints(run_dir)
    for old in found[: max(0, len(found) - max(1, keep))]:
        old.unlink(missing_ok=True)


class LossLog:
    """loss.csv, cut back to the resumed step so a resumed curve continues without duplicates.

    Rows past the resumed step (logged after the newest checkpoint, then lost to a crash) are not
    deleted: they are appended to `loss.replaced.csv` beside it, so nothing a run logged is lost.
    Each row is appended with one write call; a row torn by a crash is dropped when the log reopens.
    """

    header = ["step", "loss", "lr", "grad_norm", "samples_per_s", "bad_steps"]

    def __init__(self, path: Path, resume_step: int, header: list[str] | None = None) -> None:
        self.path = path
        self.header = header or self.header
        rows = []
        if path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if self._complete(r)]
        kept = [r for r in rows if int(r["step"]) <= resume_step]
        replaced = [r for r in rows if int(r["step"]) > resume_step]
        if replaced:
            self._append_rows(path.with_name(path.stem + ".replaced.csv"), replaced)
        # A kill -9 can leave a half-written last line; rewriting keeps only complete rows, atomically.
        with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, self.header)
            w.writeheader()
            w.writerows(kept)

    def _complete(self, row: dict) -> bool:
        return None not in row and all(row.get(k) not in (None, "") for k in self.header) and row["step"].isdigit()

    def _append_rows(self, path: Path, rows: list[dict]) -> None:
        new = not path.exists()
        with open(path, "a", newline="") as f:
            w = csv.DictWriter(f, self.header, extrasaction="ignore")
            if new:
                w.writeheader()
            w.writerows(rows)

    def append(self, **row: Any) -> None:
        line = ",".join(str(row[k]) for k in self.header) + "\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
        try:
            os.write(fd, line.encode())  # one write of the whole row: a crash leaves it whole or torn at the end
        finally:
            os.close(fd)


def flatten_optimizer(opt: torch.optim.Optimizer, prefix: str = "optim") -> tuple[dict[str, Tensor], list[dict[str, Any]]]:
    """An optimizer's state as checkpoint tensors under `prefix.` and its param groups (JSON metadata)."""
    sd = opt.state_dict()
    tensors = {f"{prefix}.{i}.{k}": v for i, s in sd["state"].items() for k, v in s.items()}
    return tensors, sd["param_groups"]


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], groups: list, path: Path,
                   prefix: str = "optim") -> None:
    """The inverse of `flatten_optimizer`; CheckpointError naming `path` if the state does not fit."""
    state: dict[int, dict[str, Tensor]] = {}
    for key, value in checkpoint.split(tensors, prefix).items():
        i, name = key.split(".", 1)
        state.setdefault(int(i), {})[name] = value
    try:
        opt.load_state_dict({"state": state, "param_groups": groups})
    except (ValueError, KeyError) as e:
        raise checkpoint.CheckpointError(f"{path}: optimizer state does not fit ({e})") from None


def adamw(params: Iterable[torch.nn.Parameter], device: torch.device, **kwargs: Any) -> torch.optim.AdamW:
    """torch.optim.AdamW on torch's fused kernel where it has one (CPU, CUDA): one pass over all parameters instead
    of a dozen small ops per tensor (experiments/LOG.md, "CPU step parts"). Runs keep the choice they were saved
    with when they continue."""
    return torch.optim.AdamW(params, fused=device.type in ("cpu", "cuda"), **kwargs)


def warmup_cosine(step: int, lr: float, warmup_steps: int, steps: int, floor: float) -> float:
    """Learning rate after `step` steps: linear warm-up from 0 over warmup_steps, then a half cosine from lr down
    to floor * lr at `steps`, held there if training goes on."""
    if step < warmup_steps:
        return lr * (step + 1) / warmup_steps
    progress = min(1.0, (step - warmup_steps) / max(1, steps - warmup_steps))
    return lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress)))


def ema_decay_at(step: int, decay: float) -> float:
    """EMA decay after `step` optimizer steps, with warm-up (as in many DDPM codebases): early averages
    do not drag in the random init."""
    return min(decay, (1 + step) / (10 + step))


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p, 1.0 - decay)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)


def skip_step(state: Any) -> None:
    """Count a skipped step on a trainer's state (fields optimizer, bad_steps, bad_run) and drop its gradients."""
    state.optimizer.zero_grad(set_to_none=True)
    state.bad_steps += 1
    state.bad_run += 1


def check_bad_run(consecutive: int, total: int, where: Path | str, step: int, hint: str) -> None:
    """Stop training after MAX_BAD_STEPS skipped steps in a row (a good step resets the count)."""
    if consecutive >= MAX_BAD_STEPS:
        raise FloatingPointError(
            f"{where}: loss or gradients were NaN/inf {consecutive} times in a row ({total} skipped steps in all); "
            f"stopping at step {step}. {hint} The last checkpoint is intact."
        )


def state_tensors(state: Any) -> dict[str, Tensor]:
    """The random-number states of a trainer's state (field generator: its CPU data generator), for a checkpoint."""
    tensors = {"rng.data": state.generator.get_state(), "rng.torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    return tensors


def state_meta(state: Any) -> dict[str, Any]:
    """The counters of a trainer's state (fields step, bad_steps, bad_run), for a checkpoint's metadata."""
    return {"step": state.step, "bad_steps": state.bad_steps, "bad_run": state.bad_run}


def restore_state(state: Any, tensors: dict[str, Tensor], meta: dict[str, Any]) -> None:
    """The inverse of `state_tensors` and `state_meta`: random-number states and counters, for an exact resume."""
    state.generator.set_state(tensors["rng.data"])
    torch.set_rng_state(tensors["rng.torch"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])
    state.step, state.bad_steps = int(meta["step"]), int(meta.get("bad_steps", 0))
    state.bad_run = int(meta.get("bad_run", 0))


def write_checkpoint(run_dir: Path, step: int, tensors: dict[str, Tensor], meta: dict[str, Any]) -> Path:
    path = checkpoint_path(run_dir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write(path, tensors, meta)
    return path


Row = dict[str, float]


@dataclass(frozen=True)
class Costs:
    """Seconds per optimizer step and per checkpoint (writing it, sampling its previews and validation clips)."""

    step: float
    checkpoint: float


@dataclass(frozen=True)
class Deadline:
    """When a run must be done (a time.perf_counter() value), and what its next step and last checkpoint cost
    (training/budget.py makes one)."""

    at: float
    costs: Costs

    def passed(self, now: float) -> bool:
        """Whether one more step and the final checkpoint would end after the deadline."""
        return now + self.costs.step + self.costs.checkpoint > self.at


@dataclass(frozen=True)
class Loop:
    """What a trainer gives the kit's loop: its step and how it logs and checkpoints.

    step(): one optimizer step on the trainer's state; returns its figures ({"loss": ..., ...}); a NaN loss means
        the step was skipped (the state counts it: skip_step).
    log_row(rows, speed): the loss.csv row (and the progress bar's postfix) from the figures of the steps since the
        last row and the throughput over them (units_per_step per step per second).
    checkpoint(): write a checkpoint; True asks training to stop after it.
    stop(): asked after every step; True makes that step the last (logged and checkpointed), e.g. at a deadline.
    replan(pace): called replan_at steps into this command and again after each checkpoint but the last, with what
    the loop measured (Pace); returns the new (steps, checkpoint_every), the next checkpoint coming checkpoint_every
    steps after the last one (pace.last), e.g. a time budget fitted again.
    """

    step: Callable[[], Row]
    log_row: Callable[[list[Row], float], tuple[dict[str, Any], dict[str, str]]]
    checkpoint: Callable[[], bool]
    steps: int
    log_every: int
    checkpoint_every: int
    units_per_step: float
    where: Path | str  # named when steps keep failing
    hint: str  # what to try then
    stop: Callable[[], bool] | None = None
    replan: Callable[[Pace], tuple[int, int]] | None = None
    replan_at: int = 0


@dataclass(frozen=True)
class Pace:
    """What the loop has measured when it asks for a new plan (Loop.replan)."""

    step: float  # seconds per optimizer step since the last plan, checkpoints left out
    checkpoint: float | None  # seconds per checkpoint so far in this command; None before the first
    checkpoints: int  # checkpoints written in this command
    last: int  # the step of the last checkpoint, or the one before this command's first step


def loop(state: Any, spec: Loop, loss_log: LossLog | None, progress: bool, on_log: Callable[[dict], None] | None = None,
         desc: str | None = None) -> None:
    """The one training loop: step until state.step reaches spec.steps (or spec.stop says so), a loss.csv row every
    log_every steps (and at the end), a checkpoint every checkpoint_every steps (and at the end), skipped steps counted and a run of them
    stopped (check_bad_run). `state` has step, bad_steps and bad_run; loss_log None logs nothing (other ranks)."""
    bar = tqdm(total=spec.steps, initial=state.step, disable=not progress, unit="step", dynamic_ncols=True, desc=desc)
    rows: list[Row] = []
    t0, n0 = time.perf_counter(), state.step
    steps, every, first = spec.steps, spec.checkpoint_every, state.step
    last_at = state.step // every * every  # checkpoints fall every `every` steps from here
    stepping, stepped, saving, saved = 0.0, 0, 0.0, 0  # seconds and counts since the last plan; all checkpoints

    def replan() -> None:
        nonlocal steps, every, stepping, stepped
        steps, every = spec.replan(Pace(stepping / stepped, saving / saved if saved else None, saved, last_at))
        stepping, stepped, bar.total = 0.0, 0, steps

    while state.step < steps:
        t_step = time.perf_counter()
        row = spec.step()
        if row["loss"] != row["loss"]:
            check_bad_run(state.bad_run, state.bad_steps, spec.where, state.step, spec.hint)
            continue
        rows.append(row)
        bar.update(1)
        stepping, stepped = stepping + time.perf_counter() - t_step, stepped + 1
        if spec.replan is not None and state.step - first == spec.replan_at:
            replan()
        last = state.step >= steps or (spec.stop is not None and spec.stop())
        if loss_log is not None and (state.step % spec.log_every == 0 or last):
            speed = (state.step - n0) * spec.units_per_step / (time.perf_counter() - t0)
            line, postfix = spec.log_row(rows, speed)
            loss_log.append(**line)
            if on_log is not None:
                on_log(line)
            bar.set_postfix(**postfix)
            rows, t0, n0 = [], time.perf_counter(), state.step
        if state.step >= last_at + every or last:
            t_save = time.perf_counter()
            if spec.checkpoint() or last:
                break
            saving, saved, last_at = saving + time.perf_counter() - t_save, saved + 1, state.step
            if spec.replan is not None and state.step - first > spec.replan_at:
                replan()
            t0 = time.perf_counter()  # keep checkpoint and preview time out of the throughput
    bar.close()


def mean_rows(rows: list[Row]) -> Row:
    """The mean of each figure over the rows, in their order."""
    return {k: sum(r[k] for r in rows) / len(rows) for k in rows[0]}


def cosine(step: int, lr: float, steps: int) -> float:
    """Learning rate after `step` of `steps` steps: a half cosine from lr to 0, no warm-up (the embedder's)."""
    return lr * 0.5 * (1 + math.cos(math.pi * step / steps))

"""Where a run stands while it trains: at every checkpoint, clips sampled from the EMA model are scored against the
files held out of the user's own folder (`train.holdout`), beside the floor that real training clips reach against
them. Scores go to RUN_DIR/validation.csv (and TensorBoard), a short line is printed, a warning comes when the score
stalls or the clips are still noise, and at the end the curve is drawn in RUN_DIR/validation.png.

The score is melstats FD (evaluation/features.py): weight-free, cheap, and computed on the sampled log-mels, so no
vocoder runs for it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from ..config import Config
from ..data.datasets import MelDataset
from ..diffusion.denoiser import for_sampling
from ..diffusion.sampling import sample
from ..diffusion.schedule import GaussianSchedule
from ..evaluation.distances import frechet_distance
from ..evaluation.features import clip_features
from ..files import atomic_path
from ..model.conditioning import from_config as conditioning_of
from ..model.conditioning import guided
from ..runfolder import csv_rows
from ..training.board import Board
from ..training.kit import LossLog
from .inspect import duration
from .setup import Log

FILE, PLOT = "validation.csv", "validation.png"
HEADER = ["step", "minutes", "fd", "floor", "noise_fd", "fd_to_noise"]
SEED = 5000  # the sampled clips' seeds: SEED + i, the same at every checkpoint, so the curve is the model's
STALL_SHARE, NOISE_SHARE = 1 / 3, 1 / 5  # of the run: no better over the last third; still noise past a fifth
STALL_GAIN = 0.02  # better means FD at least this share below the best before


@dataclass(frozen=True)
class Score:
    step: int
    fd: float
    fd_to_noise: float  # the clips' FD to Gaussian-noise log-mels: below fd, they are nearer noise than the data


def warnings(scores: list[Score], steps: int, floor: float) -> dict[str, str]:
    """What the newest score of a run of `steps` steps warns of, one line per kind ("stalled", "noise"): no better
    than before over the last STALL_SHARE of the run, or still nearer noise than the held-out clips past
    NOISE_SHARE of it. A run whose recent scores reach the floor does not stall: the held-out files can tell it
    no better."""
    if not scores:
        return {}
    now, found = scores[-1], {}
    before = [s.fd for s in scores if s.step < now.step - STALL_SHARE * steps]
    recent = [s.fd for s in scores if s.step >= now.step - STALL_SHARE * steps]
    if before and min(recent) > min(before) * (1 - STALL_GAIN) and min(recent) > floor:
        found["stalled"] = (f"warning: validation FD has not improved over the last third of the run (best {min(before):.1f}"
                              f" before step {now.step - int(STALL_SHARE * steps)}, {min(recent):.1f} since; floor "
                              f"{floor:.1f}): more steps of this run will not help much; try more data, a larger "
                              "preset or a "
                              "lower --lr")
    if now.step > NOISE_SHARE * steps and now.fd_to_noise < now.fd:
        found["noise"] = (f"warning: at step {now.step} of {steps} the sampled clips are still nearer noise than "
                          "your held-out clips: check the data with `audiodiff inspect DATA_DIR`, or try a lower --lr")
    return found


def line(scores: list[Score], steps: int, left: float | None, floor: float) -> str:
    """"validation: step 900/1400, 3.2 min left, FD 61.0 -> 48.2, floor 40.1"."""
    first, now = scores[0], scores[-1]
    trend = f"FD {first.fd:.1f} -> {now.fd:.1f}" if len(scores) > 1 else f"FD {now.fd:.1f}"
    return (f"validation: step {now.step}/{steps}" + (f", {duration(left)} left" if left is not None else "")
            + f", {trend}, floor {floor:.1f}")


def features(logmels: Tensor) -> np.ndarray:
    """melstats of each clip's first channel: [B, C, F, N] -> [B, D]."""
    return np.stack([clip_features(m[0].float().cpu().numpy()) for m in logmels])


class Validator:
    """A checkpoint callback (EMA model, step) scoring sampled clips against the held-out files, and `finish()`,
    which draws the curve. spent: the run's wall seconds before this command's validator was made (the "minutes"
    column counts from there). Clips: one per held-out file, with its label on a conditional run, DDIM with the run's
    preview steps, no guidance (as the previews)."""

    def __init__(self, config: Config, held: MelDataset, held_labels: Tensor | None, train: MelDataset, run_dir: Path,
                 resume_step: int, spent: float, board: Board | None, log: Log, warn: Log) -> None:
        self.config, self.run_dir, self.board, self.log, self.warn = config, run_dir, board, log, warn
        self.steps = config.train.steps  # the run's planned steps (a budget's replan changes them: run/train.py)
        self.labels, self.n = held_labels, len(held)
        crops = held.crops(torch.arange(self.n), torch.Generator().manual_seed(0))
        self.reference = features(crops)
        self.mu, self.sd = self.reference.mean(0), self.reference.std(0) + 1e-6
        real = features(train.sample(self.n, torch.Generator().manual_seed(1)))
        noise = features(torch.randn(crops.shape, generator=torch.Generator().manual_seed(2)).clamp(-1, 1))
        self.noise = self._std(noise)
        self.floor, self.noise_fd = self._fd(real), self._fd(noise)
        self.csv = LossLog(run_dir / FILE, resume_step, HEADER)
        self.scores = [Score(int(r["step"]), float(r["fd"]), float(r["fd_to_noise"])) for r in csv_rows(run_dir / FILE)]
        self.said: set[str] = set()
        self.clock, self.start, self.spent = time.perf_counter(), resume_step, spent

    def _std(self, x: np.ndarray) -> np.ndarray:
        return (x - self.mu) / self.sd

    def _fd(self, x: np.ndarray) -> float:
        return frechet_distance(self._std(self.reference), self._std(x))

    def clips(self, ema: nn.Module) -> Tensor:
        device = next(ema.parameters()).device
        model, cond = for_sampling(ema, self.config.diffusion), conditioning_of(self.config)
        if cond is not None:
            model = guided(model, cond, self.labels.to(device), 0.0)
        with torch.no_grad():
            return sample(model, GaussianSchedule.from_config(self.config.diffusion), "ddim", self.config.crop_shape(),
                          [SEED + i for i in range(self.n)], self.config.train.preview_steps, device)

    def __call__(self, ema: nn.Module, step: int) -> None:
        gen = features(self.clips(ema))
        spent_minutes = (self.spent + time.perf_counter() - self.clock) / 60
        score = Score(step, self._fd(gen), frechet_distance(self.noise, self._std(gen)))
        self.scores.append(score)
        self.csv.append(step=step, minutes=f"{spent_minutes:.2f}", fd=f"{score.fd:.3f}", floor=f"{self.floor:.3f}",
                        noise_fd=f"{self.noise_fd:.3f}", fd_to_noise=f"{score.fd_to_noise:.3f}")
        if self.board is not None:
            self.board.validation(step, score.fd, self.floor)
        steps = self.steps
        done = step - self.start
        left = (time.perf_counter() - self.clock) / done * (steps - step) if done > 0 and step < steps else None
        self.log(line(self.scores, steps, left, self.floor))
        for kind, text in warnings(self.scores, steps, self.floor).items():
            if kind not in self.said:  # each kind of warning once per command
                self.said.add(kind)
                self.warn(text)

    def finish(self) -> None:
        """validation.png: FD against steps with the floor, and a closing line."""
        if not self.scores:
            return
        plot(self.run_dir / PLOT, self.scores, self.floor, self.noise_fd)
        first, best = self.scores[0], min(self.scores, key=lambda s: s.fd)
        self.log(f"validation: FD {first.fd:.1f} at step {first.step} -> {self.scores[-1].fd:.1f} at step "
                 f"{self.scores[-1].step} (best {best.fd:.1f} at step {best.step}; floor {self.floor:.1f}, noise "
                 f"{self.noise_fd:.1f}); curve in {self.run_dir / PLOT}")


def plot(path: Path, scores: list[Score], floor: float, noise_fd: float) -> None:
    """The validation curve as a PNG: FD per checkpoint step, the real-vs-real floor as a line (log scale)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5.0, 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot([s.step for s in scores], [s.fd for s in scores], "o-", label="sampled clips")
    ax.axhline(floor, color="green", linestyle="--", label="floor (training clips)")
    ax.axhline(noise_fd, color="grey", linestyle=":", label="noise")
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("melstats FD to held-out clips")
    ax.legend(fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")

"""What a run shows of itself at each checkpoint: preview clips, and for a fine-tune, how many samples are
near-copies of its training clips."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import nn

from ..audio.io import save
from ..audio.plot import save_spectrogram
from ..config import Config
from ..data.datasets import MelDataset
from ..diffusion.denoiser import for_sampling
from ..diffusion.sampling import sample
from ..diffusion.schedule import GaussianSchedule
from ..evaluation.distances import near_copies, standardize
from ..evaluation.features import clip_features
from ..generation.representation import for_run
from ..model.conditioning import from_config as conditioning_of
from ..model.conditioning import guided
from ..training.board import Board

PREVIEW_SEED = 1234


def preview_writer(config: Config, run_dir: Path, board: Board | None = None) -> Callable[[nn.Module, int], None]:
    """A callback (EMA model, step) that samples config.train.preview_count clips with DDIM (a distilled run: its
    consistency steps; conditional runs: cycling through the classes, no guidance beyond a distilled one's) and
    writes them as WAV + PNG under run_dir/samples, and to `board` if given."""
    c, names = config.train, config.data.labels
    seeds = [PREVIEW_SEED + i for i in range(c.preview_count)]
    cond = conditioning_of(config)
    schedule, reps = GaussianSchedule.from_config(config.diffusion), {}  # once per run
    sampler, steps = config.default_sampling()
    steps = c.preview_steps if sampler == "ddim" else steps

    def write(ema: nn.Module, step: int) -> None:
        if not seeds:
            return
        device = next(ema.parameters()).device
        rep = reps.get(device) or reps.setdefault(device, for_run(config, device))
        model = for_sampling(ema, config.diffusion)
        if cond is not None:
            model = guided(model, cond, torch.arange(len(seeds), device=device) % len(names), 0.0)
        with torch.no_grad():
            logmel = sample(model, schedule, sampler, config.crop_shape(), seeds,
                            steps, device)
            wav = rep.decode(logmel, seeds)
        out = run_dir / "samples"
        out.mkdir(exist_ok=True)
        for i, s in enumerate(seeds):
            stem = out / f"step_{step:08d}_{i}"
            save(stem.with_suffix(".wav"), wav[i].cpu().numpy(), config.mel.sample_rate)
            if board is not None:
                board.preview(step, i, wav[i].cpu().numpy(), config.mel.sample_rate, logmel[i, 0].cpu().numpy())
            save_spectrogram(stem.with_suffix(".png"), logmel[i, 0].cpu().numpy(), config.mel,
                             f"step {step}, {sampler} {steps} steps, seed {s}"
                             + (f", label {names[i % len(names)]}" if names else ""))

    return write


COPY_CLIPS = 16  # clips sampled for a fine-tune's memorization check


def copies_share(ema: nn.Module, config: Config, data: MelDataset, labels: torch.Tensor | None,
                 n: int = COPY_CLIPS) -> float | None:
    """The share of n clips sampled from `ema` (DDIM 25, no guidance, cycling through the data's labels) that are
    near-copies of a training clip (evaluate.near_copies on melstats features); None with < 2 training clips."""
    if len(data) < 2:
        return None
    device = next(ema.parameters()).device
    model, cond = for_sampling(ema, config.diffusion), conditioning_of(config)
    if cond is not None:
        present = torch.unique(labels)
        model = guided(model, cond, present[torch.arange(n) % len(present)].to(device), 0.0)
    with torch.no_grad():
        logmel = sample(model, GaussianSchedule.from_config(config.diffusion), "ddim",
                        config.crop_shape(), list(range(n)), 25, device)
    crop = config.data.crop_frames
    train = np.stack([clip_features(data.file_mel(i)[0, :, :crop].numpy()) for i in range(len(data))])
    gen = np.stack([clip_features(m[0].float().cpu().numpy()) for m in logmel])
    return near_copies(*standardize(train, gen))["too_close"]


def copies_line(share: float | None) -> str:
    if share is None:
        return "memorization: not measured (fewer than 2 training clips)"
    return (f"memorization: {share * 100:.0f}% of {COPY_CLIPS} sampled clips are near-copies of a training clip "
            f"(nearer than 95% of training clips are to each other; about 5% for new clips, near 100% for copies)")

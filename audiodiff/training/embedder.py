"""Training the evaluation embedder (model/embedder.py) on the kit's loop.

With labels it learns to classify (cross-entropy); without labels by contrast (NT-Xent, Chen et al. 2020): two
random crops of the same file, each with a random gain and frequency mask, are pulled together and crops of other
files pushed apart. A cosine learning-rate decay to 0, so that a short run ends settled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ..audio.mel import SILENCE
from ..config import MelConfig
from ..data.datasets import MelDataset
from ..model.embedder import Embedder
from .kit import Loop, cosine, loop, skip_step


@dataclass
class EmbedderState:
    """What changes while the embedder trains (the kit's loop counts steps and skipped steps on it)."""

    optimizer: torch.optim.Optimizer
    step: int = 0
    bad_steps: int = 0
    bad_run: int = 0


def _augment(x: Tensor, g: torch.Generator, mel: MelConfig) -> Tensor:
    """Random gain (+-12 dB, in normalized units) and one random band of mel bins masked to silence."""
    b, _, f, _ = x.shape
    units = 12.0 * 2 / (mel.max_db - mel.min_db)  # 12 dB on the normalized scale (0.2 for the default 120 dB range)
    gain = (torch.rand(b, 1, 1, 1, generator=g) * 2 - 1) * units
    x = (x + gain).clamp_min(SILENCE)
    lo = torch.randint(0, f - f // 8, (b,), generator=g)
    bins = torch.arange(f)[None, :]
    mask = (bins >= lo[:, None]) & (bins < lo[:, None] + f // 8)
    return x.masked_fill(mask[:, None, :, None], SILENCE)


def nt_xent(z1: Tensor, z2: Tensor, temperature: float) -> Tensor:
    """NT-Xent loss of paired projections [B, D]: each view must pick its partner among 2B - 1."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(-math.inf)
    b = len(z1)
    target = torch.cat([torch.arange(b, 2 * b), torch.arange(0, b)])
    return F.cross_entropy(sim, target)


def train_embedder(model: Embedder, data: MelDataset, labels: Tensor | None, progress: bool = True) -> dict[str, float]:
    """Train in place. labels: long [num_files] (classifier) or None (contrastive). Returns the final loss/accuracy
    (means over the last 50 steps)."""
    c = model.config
    torch.manual_seed(c.seed)
    g = torch.Generator().manual_seed(c.seed)
    state = EmbedderState(torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=1e-4))
    model.train()
    recent: list[tuple[float, float]] = []

    def step() -> dict[str, float]:
        files = data.sample_files(c.batch_size, g)
        x = data.crops(files, g)
        if labels is not None:
            logits = model(_augment(x, g, model.mel_config))
            loss = F.cross_entropy(logits, labels[files])
            acc = float((logits.argmax(-1) == labels[files]).float().mean())
        else:
            z1 = model(_augment(x, g, model.mel_config))  # in this order: both draw from g
            z2 = model(_augment(data.crops(files, g), g, model.mel_config))
            loss = nt_xent(z1, z2, c.temperature)
            acc = float("nan")
        if not torch.isfinite(loss):
            skip_step(state)
            return {"loss": float("nan")}
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        for group in state.optimizer.param_groups:
            group["lr"] = cosine(state.step, c.lr, c.steps)
        state.optimizer.step()
        state.step, state.bad_run = state.step + 1, 0
        recent[:] = (recent + [(float(loss.detach()), acc)])[-50:]
        return {"loss": recent[-1][0]}

    loop(state, Loop(step, lambda rows, speed: ({}, {}), lambda: False, c.steps, c.steps, c.steps, c.batch_size,
                     "the embedder", "Try a lower learning rate."), None, progress, desc="embedder")
    model.eval()
    return {"loss": sum(r[0] for r in recent) / len(recent), "train_accuracy": sum(r[1] for r in recent) / len(recent)}

"""An audio embedder that audiodiff trains itself, for evaluation without downloaded weights.

A small CNN on normalized log-mel crops [B, 1, F, crop_frames] -> embedding [B, dim]. With labels
it is a classifier (cross-entropy; its softmax gives IS, modified IS and class accuracy, as in
DiffWave's SC09 protocol); without labels it learns by contrast (NT-Xent, Chen et al. 2020): two
random crops of the same file, each with a random gain and frequency mask, are pulled together and
crops of other files pushed apart.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm.auto import tqdm

from .. import checkpoint
from ..audio.mel import SILENCE
from ..config import EmbedderConfig, MelConfig
from ..data.datasets import MelDataset


class Embedder(nn.Module):
    """Conv (stride 2) + GroupNorm + SiLU blocks, global mean pool -> [B, channels[-1]]; a linear head."""

    def __init__(self, config: EmbedderConfig, mel: MelConfig, labels: list[str]) -> None:
        super().__init__()
        self.config, self.mel_config, self.labels = config, mel, labels
        layers, prev = [], 1
        for c in config.channels:
            layers += [nn.Conv2d(prev, c, 3, stride=2, padding=1), nn.GroupNorm(min(8, c), c), nn.SiLU(),
                       nn.Conv2d(c, c, 3, padding=1), nn.GroupNorm(min(8, c), c), nn.SiLU()]
            prev = c
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(prev, len(labels)) if labels else nn.Sequential(
            nn.Linear(prev, prev), nn.SiLU(), nn.Linear(prev, prev))

    def embed(self, x: Tensor) -> Tensor:
        """Normalized log-mel float [B, 1, F, N] -> embedding float [B, channels[-1]]."""
        return self.body(x).mean(dim=(-2, -1))

    def forward(self, x: Tensor) -> Tensor:
        """Class logits [B, len(labels)], or the contrastive projection [B, dim] without labels."""
        return self.head(self.embed(x))

    def embed_clip(self, logmel: Tensor) -> tuple[Tensor, Tensor | None]:
        """One clip's log-mel [F, N] -> (embedding [dim], class probabilities [C] or None).

        The clip is cut into crop_frames windows (the last padded with silence, -1); embeddings and
        probabilities are averaged over the windows.
        """
        n = self.config.crop_frames
        padded = F.pad(logmel, (0, -logmel.shape[-1] % n), value=-1.0)
        windows = padded.unfold(-1, n, n).permute(1, 0, 2).unsqueeze(1)  # [W, 1, F, n]
        emb = self.embed(windows)
        probs = self.head(emb).softmax(-1).mean(0) if self.labels else None
        return emb.mean(0), probs

    def save(self, path: Path, meta: dict) -> None:
        meta = {**meta, "embedder": self.config.__dict__, "mel": self.mel_config.__dict__, "labels": self.labels}
        checkpoint.write(path, self.state_dict(), meta)

    @classmethod
    def load(cls, path: str | Path) -> Embedder:
        path = Path(path)
        if path.is_dir():
            path = path / "embedder.safetensors"
        tensors, meta = checkpoint.read(path)
        try:
            config = EmbedderConfig(**{**meta["embedder"], "channels": tuple(meta["embedder"]["channels"])})
            model = cls(config, MelConfig(**meta["mel"]), list(meta["labels"]))
        except (KeyError, TypeError, ValueError) as e:
            raise checkpoint.CheckpointError(f"{path}: not an audiodiff embedder ({e})") from None
        checkpoint.load_weights(model, tensors, path)
        return model.eval()


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
    """Train in place. labels: long [num_files] (classifier) or None (contrastive). Returns the final loss/accuracy."""
    c = model.config
    torch.manual_seed(c.seed)
    g = torch.Generator().manual_seed(c.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=c.lr, weight_decay=1e-4)
    model.train()
    recent: list[tuple[float, float]] = []
    for step in tqdm(range(c.steps), desc="embedder", disable=not progress, unit="step"):
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
        opt.zero_grad(set_to_none=True)
        loss.backward()
        for group in opt.param_groups:  # cosine decay: a short run should end settled
            group["lr"] = c.lr * 0.5 * (1 + math.cos(math.pi * step / c.steps))
        opt.step()
        recent = (recent + [(float(loss.detach()), acc)])[-50:]
    model.eval()
    return {"loss": sum(r[0] for r in recent) / len(recent), "train_accuracy": sum(r[1] for r in recent) / len(recent)}


def inception_score(probs: Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) for class probabilities [N, C] (Salimans et al. 2016)."""
    p_y = probs.mean(0, keepdim=True)
    return float(torch.exp((probs * (probs.clamp_min(1e-12).log() - p_y.clamp_min(1e-12).log())).sum(-1).mean()))


def modified_inception_score(probs: Tensor) -> float:
    """exp(E_{x, x'} KL(p(y|x) || p(y|x'))) (Gurumurthy et al. 2017): also rewards within-class diversity."""
    logp = probs.clamp_min(1e-12).log()
    kl = (probs * logp).sum(-1)[:, None] - probs @ logp.T  # [i, j] = KL(p_i || p_j)
    return float(torch.exp(kl.mean()))

"""The small audio embedder that audiodiff trains itself, for evaluation without downloaded weights.

A CNN on normalized log-mel crops [B, 1, F, crop_frames] -> embedding [B, dim]; with labels a classifier head
(its softmax gives IS, modified IS and class accuracy, as in DiffWave's SC09 protocol), without them a contrastive
projection. training/embedder.py trains it; evaluation/ uses it.
"""

from __future__ import annotations

from pathlib import Path

import torch.nn.functional as F
from torch import Tensor, nn

from .. import checkpoint
from ..config import EmbedderConfig, MelConfig


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

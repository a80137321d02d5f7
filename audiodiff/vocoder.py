"""Vocoder stage: normalized log-mel [B, 1, F, N] -> waveform [B, T], behind one small interface.

A vocoder is made for one MelConfig and refuses any other (`check`): mel mismatches are the most
common silent failure of vocoders. Later vocoders (PGHI, neural) implement the same interface.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .config import MelConfig
from .mel import MelSpectrogram, check_mel_config


class Vocoder(nn.Module):
    """Interface: `forward(logmel, generator=None) -> wav`, with `mel` the MelSpectrogram it was made for."""

    name = "vocoder"

    def __init__(self, mel: MelSpectrogram) -> None:
        super().__init__()
        self.mel = mel

    def check(self, config: MelConfig) -> None:
        """Raise ValueError naming the differing fields if this vocoder was made for another mel config."""
        check_mel_config(self.mel.config, config, f"vocoder {self.name!r}")

    def forward(self, logmel: Tensor, generator: torch.Generator | None = None) -> Tensor:
        raise NotImplementedError


class GriffinLim(Vocoder):
    """Fast Griffin-Lim (Perraudin, Balazs & Sondergaard 2013): alternating projections with momentum.

    Notation: P1 sets the magnitude to the target |X|, P2 = stft(istft(.)) projects onto consistent
    spectrograms; c_n = P1(P2(t_{n-1})), t_n = c_n + alpha (c_n - c_{n-1}). alpha = 0 is plain
    Griffin-Lim (1984). The magnitude comes from the mel by least squares (`MelSpectrogram.magnitude`).
    """

    name = "griffinlim"

    def __init__(self, mel: MelSpectrogram, n_iter: int = 32, momentum: float = 0.99) -> None:
        super().__init__(mel)
        self.n_iter = n_iter
        self.momentum = momentum

    def forward(self, logmel: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """logmel float [B, 1, F, N] normalized -> wav float [B, (N - 1) * hop_length]."""
        mag = self.mel.magnitude(self.mel.denormalize(logmel))
        return self.phase_retrieval(mag, generator)

    def phase_retrieval(self, mag: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Linear magnitude [B, K, N] -> wav float [B, (N - 1) * hop_length]; random initial phase."""
        length = self.mel.num_samples(mag.shape[-1])
        phase = torch.rand(mag.shape, generator=generator, dtype=torch.float32) * 2 * torch.pi
        t = torch.polar(mag, phase.to(mag.device))
        c_prev = t
        for _ in range(self.n_iter):
            rebuilt = self.mel.stft(self.mel.istft(t, length))  # P2
            c = mag * torch.sgn(rebuilt)  # P1
            t = c + self.momentum * (c - c_prev)
            c_prev = c
        return self.mel.istft(mag * torch.sgn(t), length)


def build_vocoder(name: str, mel: MelSpectrogram, **options: int | float) -> Vocoder:
    """Vocoders by name, for the CLI. `options` are passed to the vocoder's constructor."""
    if name == "griffinlim":
        return GriffinLim(mel, **options)
    raise ValueError(f"unknown vocoder {name!r} (available: griffinlim)")

"""Vocoder stage: normalized log-mel [B, 1, F, N] -> waveform [B, T], behind one small interface.

A vocoder is made for one MelConfig and refuses any other (`check`): mel mismatches are the most
common silent failure of vocoders. This module holds the interface and the phase-retrieval vocoders
(Griffin-Lim, PGHI); the trained vocoder (vocos.py) implements the same interface, and registry.py
builds any of them by name or from a saved folder.
"""

from __future__ import annotations

import heapq

import numba
import numpy as np
import torch
from torch import Tensor, nn

from ..audio.mel import MelSpectrogram, check_mel_config
from ..config import MelConfig


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

    def spec(self) -> str:
        """The string that rebuilds this vocoder with `vocoders.build_vocoder` (a name, or a folder)."""
        return self.name


class GriffinLim(Vocoder):
    """Fast Griffin-Lim (Perraudin, Balazs & Sondergaard 2013): alternating projections with momentum.

    Notation: P1 sets the magnitude to the target |X|, P2 = stft(istft(.)) projects onto consistent
    spectrograms; c_n = P1(P2(t_{n-1})), t_n = c_n + alpha (c_n - c_{n-1}). alpha = 0 is plain
    Griffin-Lim (1984). The magnitude comes from the mel by non-negative least squares ("nnls", default)
    or the clamped pseudo-inverse ("pinv"), see `MelSpectrogram.magnitude`.
    """

    name = "griffinlim"

    def __init__(self, mel: MelSpectrogram, n_iter: int = 32, momentum: float = 0.99, magnitude: str = "nnls") -> None:
        super().__init__(mel)
        self.n_iter = n_iter
        self.momentum = momentum
        self.magnitude = magnitude  # how the STFT magnitude is estimated from the mel (`MelSpectrogram.magnitude`)

    def spec(self) -> str:
        return f"{self.name}-{self.n_iter}/{self.magnitude}"

    def forward(self, logmel: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """logmel float [B, 1, F, N] normalized -> wav float [B, (N - 1) * hop_length]."""
        mag = self.mel.magnitude(self.mel.denormalize(logmel), self.magnitude)
        return self.phase_retrieval(mag, generator)

    def phase_retrieval(self, mag: Tensor, generator: torch.Generator | None = None,
                        phase: Tensor | None = None) -> Tensor:
        """Linear magnitude [B, K, N] -> wav float [B, (N - 1) * hop_length]; initial phase `phase` [B, K, N]
        (radians) or random."""
        length = self.mel.num_samples(mag.shape[-1])
        if phase is None:
            phase = torch.rand(mag.shape, generator=generator, dtype=torch.float32) * 2 * torch.pi
        t = torch.polar(mag, phase.to(mag.device, torch.float32))
        c_prev = t
        for _ in range(self.n_iter):
            rebuilt = self.mel.stft(self.mel.istft(t, length))  # P2
            c = mag * torch.sgn(rebuilt)  # P1
            t = c + self.momentum * (c - c_prev)
            c_prev = c
        return self.mel.istft(mag * torch.sgn(t), length)


class PGHI(GriffinLim):
    """Phase-gradient heap integration (Prusa, Balazs & Sondergaard 2017) as the initial phase, then
    `n_iter` fast Griffin-Lim iterations (0: PGHI alone).

    For a Gaussian window exp(-pi t^2 / gamma) the STFT phase gradient follows from the log-magnitude
    slog: with hop a, FFT size M and frequency bin m, in torch.stft's frame-local phase convention
        time direction:      phi_t = 2 pi a m / M + (a M / gamma) d slog / dm
        frequency direction: phi_w = -(gamma / (a M)) d slog / dn - pi     (-pi: frames are centered)
    (checked against the true phase of a sinusoid and an impulse). A Hann window of length L is close to
    gamma = 0.25645 L^2. The phase is integrated from the largest bins outwards along a max-heap (trapezoid
    rule between neighbours); bins more than `floor_db` below the clip's peak get random phase.
    """

    name = "pghi"

    def __init__(self, mel: MelSpectrogram, n_iter: int = 16, momentum: float = 0.99, magnitude: str = "nnls",
                 floor_db: float = 50.0) -> None:
        super().__init__(mel, n_iter, momentum, magnitude)
        self.floor_db = floor_db

    def forward(self, logmel: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """logmel float [B, 1, F, N] normalized -> wav float [B, (N - 1) * hop_length]."""
        mag = self.mel.magnitude(self.mel.denormalize(logmel), self.magnitude)
        rand = torch.rand(mag.shape, generator=generator, dtype=torch.float64) * 2 * np.pi
        phase = torch.stack([torch.from_numpy(pghi_phase(m.double().cpu().numpy(), self.mel.config.hop_length,
                                                         self.mel.config.n_fft, self.floor_db, r.numpy()))
                             for m, r in zip(mag, rand)])
        return self.phase_retrieval(mag, generator, phase)


def pghi_phase(mag: np.ndarray, hop: int, n_fft: int, floor_db: float, random_phase: np.ndarray) -> np.ndarray:
    """Linear magnitude float64 [K, N] (K = n_fft // 2 + 1) -> phase float64 [K, N] by heap integration."""
    gamma = 0.25645 * n_fft**2
    slog = np.log(np.maximum(mag, 1e-12))
    m = np.arange(mag.shape[0])[:, None]
    tgrad = 2 * np.pi * hop * m / n_fft + (hop * n_fft / gamma) * np.gradient(slog, axis=0)
    fgrad = -(gamma / (hop * n_fft)) * np.gradient(slog, axis=1) - np.pi
    significant = slog > slog.max() - floor_db / 20 * np.log(10)
    return _integrate(slog, tgrad, fgrad, significant, random_phase.copy())


@numba.njit(cache=False)
def _integrate(slog: np.ndarray, tgrad: np.ndarray, fgrad: np.ndarray, todo: np.ndarray,
               phase: np.ndarray) -> np.ndarray:
    """Heap integration: repeatedly start at the largest bin not yet reached (phase kept as given), then
    spread to its unreached significant neighbours, always from the largest bin reached so far."""
    todo = todo.copy()
    k, n = slog.shape
    order = np.argsort(-slog.ravel())
    for start in order:
        i0, j0 = start // n, start % n
        if not todo[i0, j0]:
            continue
        todo[i0, j0] = False
        heap = [(-slog[i0, j0], i0, j0)]
        while heap:
            _, i, j = heapq.heappop(heap)
            for di, dj in ((0, 1), (0, -1), (1, 0), (-1, 0)):
                a, b = i + di, j + dj
                if a < 0 or a >= k or b < 0 or b >= n or not todo[a, b]:
                    continue
                if dj != 0:
                    phase[a, b] = phase[i, j] + dj * (tgrad[i, j] + tgrad[a, b]) / 2
                else:
                    phase[a, b] = phase[i, j] + di * (fgrad[i, j] + fgrad[a, b]) / 2
                todo[a, b] = False
                heapq.heappush(heap, (-slog[a, b], a, b))
    return phase

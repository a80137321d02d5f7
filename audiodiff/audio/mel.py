"""The only mel code: waveform [B, T] -> normalized log-mel [B, 1, F, N] and back to magnitude.

Matches `librosa.feature.melspectrogram(y, sr=sample_rate, n_fft, hop_length, n_mels, fmin=f_min,
fmax=f_max, center=True, pad_mode="constant", power=2.0)` (Slaney mel scale and filter norm):
frames N = 1 + T // hop_length. Everyone who needs a mel (data, vocoder, plots, metrics) gets it
from here and checks that the configs match.
"""

from __future__ import annotations

import dataclasses

import librosa
import numpy as np
import torch
from torch import Tensor, nn

from ..config import MelConfig, differences

SILENCE = -1.0  # the normalized log-mel of digital silence (min_db)


def to_db(logmel: Tensor | np.ndarray, config: MelConfig) -> Tensor | np.ndarray:
    """Normalized log-mel (tensor or array, any shape) -> dB: the affine map `normalize` applies, undone."""
    return (logmel + 1.0) / 2.0 * (config.max_db - config.min_db) + config.min_db


class MelSpectrogram(nn.Module):
    """Log-mel front end holding its STFT window and mel filterbank as (non-persistent) buffers."""

    def __init__(self, config: MelConfig) -> None:
        super().__init__()
        self.config = config
        c = config
        fb = librosa.filters.mel(sr=c.sample_rate, n_fft=c.n_fft, n_mels=c.n_mels, fmin=c.f_min, fmax=c.f_max)
        self.register_buffer("filterbank", torch.from_numpy(fb).float(), persistent=False)  # [F, K]
        self.register_buffer("window", torch.hann_window(c.n_fft), persistent=False)  # periodic Hann

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.config.hop_length

    def num_samples(self, num_frames: int) -> int:
        return (num_frames - 1) * self.config.hop_length

    def band_bins(self, lo_hz: float, hi_hz: float) -> tuple[int, int]:
        """Mel bins lo..hi-1 whose center frequencies lie in [lo_hz, hi_hz] (at least the one nearest to each end)."""
        c = self.config
        centers = librosa.mel_frequencies(c.n_mels + 2, fmin=c.f_min, fmax=c.f_max)[1:-1]
        lo = int(abs(centers - lo_hz).argmin())
        hi = int(abs(centers - hi_hz).argmin())
        return min(lo, hi), max(lo, hi) + 1

    def stft(self, wav: Tensor) -> Tensor:
        """wav float [B, T] -> complex STFT [B, K = n_fft // 2 + 1, N], zero-padded, centred frames."""
        c = self.config
        return torch.stft(wav.float(), c.n_fft, c.hop_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True)

    def istft(self, spec: Tensor, length: int | None = None) -> Tensor:
        """Complex STFT [B, K, N] -> wav float [B, T]; the exact inverse of `stft` (least squares)."""
        c = self.config
        return torch.istft(spec, c.n_fft, c.hop_length, window=self.window, center=True, length=length)

    def power_mel(self, wav: Tensor) -> Tensor:
        """wav float [B, T] in [-1, 1] -> power mel spectrogram float [B, F, N], >= 0."""
        spec = self.stft(wav)
        return self.filterbank @ (spec.real.square() + spec.imag.square())  # |X|^2 without abs's square root

    def normalize(self, power_mel: Tensor) -> Tensor:
        """Power mel [B, F, N] -> normalized log-mel [B, 1, F, N] in [-1, ~1].

        dB = 10 log10(P + P_min) with P_min = 10^(min_db / 10): a smooth floor (silence -> exactly -1)
        that `denormalize` undoes exactly, so silence comes back as silence. max_db -> +1.
        """
        c = self.config
        db = 10.0 * torch.log10(power_mel + 10.0 ** (c.min_db / 10.0))
        return (2.0 * (db - c.min_db) / (c.max_db - c.min_db) - 1.0).unsqueeze(1)

    def denormalize(self, logmel: Tensor) -> Tensor:
        """Normalized log-mel [B, 1, F, N] -> power mel [B, F, N] >= 0; the exact inverse of `normalize` above -1."""
        c = self.config
        db = to_db(logmel.squeeze(1).float(), c)
        return (torch.pow(10.0, db / 10.0) - 10.0 ** (c.min_db / 10.0)).clamp_min(0.0)

    def forward(self, wav: Tensor) -> Tensor:
        """wav float [B, T] in [-1, 1] -> normalized log-mel float [B, 1, F, N], mostly in [-1, 1]."""
        return self.normalize(self.power_mel(wav))

    def per_channel(self, wav: Tensor) -> Tensor:
        """wav float [B, C, T] -> normalized log-mel float [B, C, F, N], each channel on its own."""
        b, c, t = wav.shape
        out = self(wav.reshape(b * c, t))
        return out.reshape(b, c, *out.shape[-2:])

    def magnitude(self, power_mel: Tensor, method: str = "pinv", iters: int = 200) -> Tensor:
        """Power mel [B, F, N] -> linear STFT magnitude [B, K, N].

        "pinv": least-squares inverse, clamped >= 0. "nnls": non-negative least squares,
        min ||fb S - P|| over S >= 0 by `iters` multiplicative updates (Lee & Seung 2001),
        S <- S * fb^T P / (fb^T fb S), started from the clamped least-squares inverse.
        """
        pinv = torch.linalg.pinv(self.filterbank.double()).float()  # [K, F]
        power = (pinv @ power_mel).clamp_min(0.0)
        if method == "nnls":
            fb = self.filterbank  # [F, K]
            rhs = fb.T @ power_mel  # [B, K, N]
            power = power + 1e-3 * power.amax(dim=(-2, -1), keepdim=True) + 1e-20  # no bin stuck at 0
            for _ in range(iters):
                power = power * rhs / (fb.T @ (fb @ power) + 1e-20)
        elif method != "pinv":
            raise ValueError(f"unknown magnitude method {method!r} (pinv, nnls)")
        return power.sqrt()



def check_mel_config(have: MelConfig, want: MelConfig, what: str) -> None:
    """Raise ValueError naming every field where `what` (built for `have`) differs from `want`."""
    found = differences({"mel": dataclasses.asdict(have)}, {"mel": dataclasses.asdict(want)}, ("mel",))
    diffs = [f"{name.removeprefix('mel.')}={a!r} (expected {b!r})" for name, a, b in found]
    if diffs:
        raise ValueError(f"{what} was made for another mel config: {', '.join(diffs)}")

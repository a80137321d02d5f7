"""Trained vocoder, Vocos-style (Siuzdenko 2023): normalized log-mel frames -> ConvNeXt blocks -> per-frame
STFT magnitude and phase -> inverse STFT with the mel's own n_fft and hop_length.

Every layer runs at the frame rate (62.5 frames/s at 16 kHz, hop 256) and the waveform comes from one
inverse FFT per frame, so it is fast on a CPU. A trained vocoder is a folder (`audiodiff vocoder train`)
whose `vocoder.safetensors` holds the EMA weights, the VocoderConfig (mel config included) and its kind,
"vocos" (`vocoders.load_vocoder` reads it); it refuses any other mel config (`Vocoder.check`).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import checkpoint
from ..audio.mel import MelSpectrogram
from ..config import VocoderConfig, VocosConfig
from .base import Vocoder

WEIGHTS_FILE = "vocoder.safetensors"  # in a saved vocoder's folder (of any kind): weights, config and kind
MAX_LOG_MAGNITUDE = 10.0  # |S| <= e^10: an unnormalized full-scale sine peaks near n_fft / 4 = 256 (e^5.5)


class ConvNeXtBlock(nn.Module):
    """Depthwise conv over time, LayerNorm, pointwise MLP (GELU), layer scale, residual. [B, C, N] -> same."""

    def __init__(self, dim: int, intermediate: int, kernel_size: int, layer_scale: float) -> None:
        super().__init__()
        self.dwconv = nn.Conv1d(dim, dim, kernel_size, padding=kernel_size // 2, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, intermediate)
        self.pw2 = nn.Linear(intermediate, dim)
        self.gamma = nn.Parameter(torch.full((dim,), layer_scale))

    def forward(self, x: Tensor) -> Tensor:
        h = self.dwconv(x).transpose(1, 2)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).transpose(1, 2)


class VocosNet(nn.Module):
    """Normalized log-mel [B, 1, F, N] -> complex STFT [B, n_fft // 2 + 1, N] (complex64)."""

    def __init__(self, n_mels: int, n_fft: int, config: VocosConfig) -> None:
        super().__init__()
        c = config
        self.embed = nn.Conv1d(n_mels, c.dim, c.kernel_size, padding=c.kernel_size // 2)
        self.norm = nn.LayerNorm(c.dim)
        self.blocks = nn.ModuleList(ConvNeXtBlock(c.dim, c.intermediate, c.kernel_size, 1.0 / c.layers)
                                    for _ in range(c.layers))
        self.final_norm = nn.LayerNorm(c.dim)
        self.head = nn.Linear(c.dim, n_fft + 2)  # log-magnitude and phase of K = n_fft / 2 + 1 bins

    def forward(self, logmel: Tensor) -> Tensor:
        return torch.polar(*self.magnitude_phase(logmel))

    def magnitude_phase(self, logmel: Tensor) -> tuple[Tensor, Tensor]:
        """Normalized log-mel [B, 1, F, N] -> (|S|, phase in radians, unwrapped), each float32 [B, K, N]."""
        x = self.embed(logmel.squeeze(1))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)
        for block in self.blocks:
            x = block(x)
        out = self.head(self.final_norm(x.transpose(1, 2))).transpose(1, 2).float()
        log_mag, phase = out.chunk(2, dim=1)
        # phase as a free angle: polar's cos/sin keep its gradient smooth across the +-pi wrap
        return log_mag.clamp(max=MAX_LOG_MAGNITUDE).exp(), phase


class NeuralVocoder(Vocoder):
    """A trained VocosNet behind the Vocoder interface; deterministic (the generator is ignored)."""

    name = "vocos"

    def __init__(self, mel: MelSpectrogram, net: VocosNet, source: str = "") -> None:
        super().__init__(mel)
        self.net = net
        self.source = source  # the folder it was loaded from: the spec that rebuilds it
        self.record: dict = {}  # how it was trained (step, seconds, hardware), when loaded from a folder

    def forward(self, logmel: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """logmel float [B, 1, F, N] normalized -> wav float [B, (N - 1) * hop_length]."""
        return self.mel.istft(self.net(logmel.float()), self.mel.num_samples(logmel.shape[-1]))

    def spec(self) -> str:
        return self.source or self.name


def build_net(config: VocoderConfig) -> VocosNet:
    return VocosNet(config.mel.n_mels, config.mel.n_fft, config.model)


def save_vocoder(path: Path, net: nn.Module, config: VocoderConfig, training: dict) -> None:
    """The shippable file: network weights (the EMA), the config that builds them, its kind for
    `vocoders.load_vocoder`, and `training` (step, seconds, hardware: how long it trained on what)."""
    meta = {"kind": NeuralVocoder.name, "config": config.to_dict(), "training": training}
    checkpoint.write(path, checkpoint.join("net", net.state_dict()), meta)


def from_checkpoint(file: Path, tensors: dict[str, Tensor], meta: dict, source: str) -> NeuralVocoder:
    """The vocoder saved by `save_vocoder` in `file` (already read and checksummed), on CPU in eval mode."""
    try:
        config = VocoderConfig.from_dict(meta["config"])
    except (KeyError, ValueError, TypeError) as e:
        raise checkpoint.CheckpointError(f"{file}: not a vocoder checkpoint ({e})") from None
    net = build_net(config)
    checkpoint.load_weights(net, checkpoint.split(tensors, "net"), file)
    vocoder = NeuralVocoder(MelSpectrogram(config.mel), net, source).eval()
    vocoder.record = meta.get("training", {})
    return vocoder

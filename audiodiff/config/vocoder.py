"""A trained vocoder's configuration: its network, its training, and the mel it inverts. No torch here."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .base import check_ranges, merge, read_toml
from .run import Config, MelConfig


@dataclass(frozen=True)
class VocosConfig:
    """Neural vocoder network (Vocos, Siuzdenko 2023): log-mel frames -> ConvNeXt blocks -> per-frame
    STFT magnitude and phase -> inverse STFT with the mel's own n_fft and hop_length."""

    dim: int = 256
    intermediate: int = 768
    layers: int = 8
    kernel_size: int = 7

    def __post_init__(self) -> None:
        check_ranges("model", self, {"dim": ">=1", "intermediate": ">=1", "layers": ">=1", "kernel_size": ">=1"})


@dataclass(frozen=True)
class VocoderTrainConfig:
    steps: int = 20000
    batch_size: int = 16
    segment_frames: int = 32  # training segments of segment_frames * hop_length samples (0.51 s at 16 kHz)
    lr: float = 5e-4
    warmup_steps: int = 200
    ema_decay: float = 0.999
    mel_weight: float = 1.0  # weight of the log-mel L1 next to the multi-resolution STFT loss
    phase_weight: float = 1.0  # weight of the phase-derivative losses (group delay + instantaneous frequency); 0: off
    adversarial: bool = False  # add multi-period + multi-resolution discriminators (hinge + feature matching)
    adversarial_start: int = 0  # generator-only steps before the discriminators join
    gain_db: float = 12.0  # random gain in [-gain_db, 0] dB per segment, so any level vocodes alike
    precision: str = "bf16"
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 2

    def __post_init__(self) -> None:
        if self.precision not in ("bf16", "fp32"):
            raise ValueError(f"vocoder train: unknown precision {self.precision!r} (bf16, fp32)")
        if self.segment_frames < 2:
            raise ValueError(f"vocoder train: segment_frames must be at least 2, got {self.segment_frames}")
        check_ranges("train", self, {
            "steps": ">=1", "batch_size": ">=1", "lr": ">0", "warmup_steps": ">=0", "ema_decay": "[0,1)",
            "mel_weight": ">=0", "phase_weight": ">=0", "adversarial_start": ">=0", "gain_db": ">=0",
            "log_every": ">=1", "checkpoint_every": ">=1", "keep_checkpoints": ">=1"})


@dataclass(frozen=True)
class VocoderConfig:
    """Everything that describes a trained vocoder: the mel it inverts, its network and its training."""

    mel: MelConfig = field(default_factory=MelConfig)
    model: VocosConfig = field(default_factory=VocosConfig)
    train: VocoderTrainConfig = field(default_factory=VocoderTrainConfig)

    to_dict = Config.to_dict
    to_toml = Config.to_toml

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: VocoderConfig | None = None) -> VocoderConfig:
        return merge(base or cls(), d, "")

    @classmethod
    def from_toml(cls, path: str | Path, base: VocoderConfig | None = None) -> VocoderConfig:
        return read_toml(cls, path, base)

    replace = Config.replace

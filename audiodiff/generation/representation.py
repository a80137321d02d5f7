"""What the diffusion model sees of audio, behind one interface, so that samplers, editing and the pipeline
never assume a log-mel:

    encode(wav) -> x [1, C, F, N]     decode(x, seeds) -> wav [B, T]     shape(frames) -> (C, F, N)
    frames_for(seconds), samples_for(frames), context_frames(samples)   frames <-> samples
    silence, value_range                                                 what x looks like
    band(lo_hz, hi_hz)                                                   rows of x for a frequency band

`MelRepresentation` (normalized log-mel + a vocoder) is the first implementation; it models mono (C = 1) or
stereo (C = 2, config.data.channels). A latent representation (an autoencoder's frames) is one class with these
members plus one `register` line; the model then learns on whatever `encode` gives.

Stereo is modelled as a log-mel of the left and of the right channel, and decoded with one phase for both. A
log-mel keeps no phase, and every vocoder rebuilds it channel by channel: left and right vocoded apart get
phases that drift apart, which smears sounds across the field. So each channel is vocoded (with the item's
seed), then keeps its own STFT magnitude and takes the phase of the two channels' sum: a centred or panned sound
is in phase on both sides, and its level on each side is its own. Mid/side, the other layout tried, keeps the
correlation but loses the sign of side against mid in a magnitude, so a sound panned right can come back left.
Figures: experiments/LOG.md, "Stereo". Content in antiphase between the sides (L = -R) is not representable
either way: it comes back in phase.
"""

from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from ..audio.mel import SILENCE, MelSpectrogram
from ..config import Config
from ..vocoders.base import Vocoder
from ..vocoders.registry import build_vocoder

MAX_SECONDS = 3600.0  # the longest clip asked for at once: an hour


class MelRepresentation:
    """Normalized log-mel [B, C, n_mels, frames] in [-1, 1] (audio/mel.py) of mono (C = 1) or left/right (C = 2) audio,
    made audible by a vocoder (vocoders/registry.py) channel by channel, stereo with one phase for both sides."""

    kind = "mel"
    value_range = (-1.0, 1.0)
    silence = SILENCE  # digital silence: min_db, normalized

    def __init__(self, config: Config, device: torch.device, vocoder: Vocoder | None = None) -> None:
        self.config = config.mel
        self.channels = config.data.channels
        self.device = device
        self.mel = MelSpectrogram(config.mel).to(device)
        self.vocoder = (vocoder or build_vocoder(config.vocoder, self.mel)).to(device)
        self.vocoder.check(config.mel)

    def use_vocoder(self, spec: str) -> None:
        """Switch the vocoder by spec, e.g. "griffinlim", "pghi", a trained vocoder's folder (`vocoders.build_vocoder`)."""
        self.vocoder = build_vocoder(spec, self.mel).to(self.device)

    @property
    def sample_rate(self) -> int:
        return self.config.sample_rate

    def shape(self, frames: int) -> tuple[int, int, int]:
        """(C, F, N) of one item of `frames` frames."""
        return (self.channels, self.config.n_mels, frames)

    def frames_for(self, seconds: float) -> int:
        """Frames whose decoded audio, (frames - 1) * hop samples, covers `seconds`."""
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS}], got {seconds}")
        return 1 + math.ceil(round(seconds * self.sample_rate) / self.config.hop_length)

    def samples_for(self, frames: int) -> int:
        return self.mel.num_samples(frames)

    def context_frames(self, num_samples: int) -> int:
        """Frames of a clip of num_samples whose STFT window lies inside it: the last ones see the zero padding
        past its end and would tell the model that the sound stops there."""
        return max(1, (num_samples - self.config.n_fft // 2) // self.config.hop_length + 1)

    def frame_of(self, seconds: float, up: bool = False) -> int:
        """The frame at a time (rounded down, or up)."""
        f = seconds * self.sample_rate / self.config.hop_length
        return math.ceil(f) if up else math.floor(f)

    def band(self, lo_hz: float, hi_hz: float) -> tuple[int, int]:
        return self.mel.band_bins(lo_hz, hi_hz)

    def audio(self, wav: np.ndarray) -> np.ndarray:
        """Float audio as this representation's: [T] for mono, [2, T] (left, right) for stereo, which takes mono
        audio as both sides; float32."""
        wav = np.asarray(wav, dtype=np.float32)
        if self.channels == 2 and wav.ndim == 1:
            wav = np.stack([wav, wav])
        if wav.shape[:-1] != ((2,) if self.channels == 2 else ()):
            raise ValueError(f"input audio of shape {wav.shape}: this run takes "
                             + ("[2, T] or [T]" if self.channels == 2 else "mono [T]"))
        return wav

    def encode(self, wav: np.ndarray) -> Tensor:
        """Float audio at sample_rate (`audio`: [T], or [2, T] for stereo) -> x [1, C, F, 1 + T // hop] on the
        device."""
        wav = self.audio(wav)
        if wav.shape[-1] < self.config.hop_length:
            raise ValueError(f"need audio of at least {self.config.hop_length} samples, got shape {wav.shape}")
        wav = torch.from_numpy(np.ascontiguousarray(wav)).to(self.device)
        with torch.inference_mode():
            return self.mel(wav[None]) if self.channels == 1 else self.mel.per_channel(wav[None])

    def decode(self, x: Tensor, seeds: list[int]) -> Tensor:
        """x [B, C, F, N] -> wav float32 [B, (N - 1) * hop] (mono) or [B, 2, (N - 1) * hop] (left, right); the
        vocoder's randomness for item i from seeds[i], the same for each of its channels."""
        wavs = torch.stack([torch.cat([self.vocoder(m[c][None, None], torch.Generator().manual_seed(s))
                                       for c in range(len(m))]) for m, s in zip(x, seeds)])  # [B, C, T]
        return wavs[:, 0] if self.channels == 1 else self.shared_phase(wavs)

    def shared_phase(self, wavs: Tensor) -> Tensor:
        """wav [B, 2, T] -> [B, 2, T]: each channel keeps its STFT magnitude and takes the phase of the channels'
        sum (the module docstring says why)."""
        b, c, t = wavs.shape
        spec = self.mel.stft(wavs.reshape(b * c, t))  # [B * 2, K, N]
        spec = spec.reshape(b, c, *spec.shape[-2:])
        out = torch.polar(spec.abs(), torch.angle(spec.sum(1, keepdim=True)).expand_as(spec))
        return self.mel.istft(out.reshape(b * c, *out.shape[-2:]), length=t).reshape(b, c, t)


KINDS: dict[str, Callable[..., MelRepresentation]] = {MelRepresentation.kind: MelRepresentation}


def register(kind: str, factory: Callable[..., MelRepresentation]) -> None:
    KINDS[kind] = factory


def for_run(config: Config, device: torch.device, vocoder: Vocoder | None = None, kind: str = "mel") -> MelRepresentation:
    """The representation a run was trained on (every run so far: "mel")."""
    if kind not in KINDS:
        raise ValueError(f"unknown representation {kind!r} (known: {', '.join(KINDS)})")
    return KINDS[kind](config, device, vocoder)

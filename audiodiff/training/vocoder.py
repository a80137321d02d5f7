"""Training the Vocos-style vocoder (vocos.py) on a folder of audio: wav segment -> mel -> net -> inverse
STFT -> multi-resolution STFT + log-mel L1 losses, optionally with multi-period and multi-resolution
discriminators (hinge + feature matching, as in HiFi-GAN / Vocos). EMA, warm-up + cosine learning rate,
bf16 autocast, atomic checkpoints and exact resume, as for the diffusion model.

A vocoder folder holds:
    config.toml                          the VocoderConfig (mel, model, train)
    vocoder.safetensors                  EMA weights + config: what `--vocoder VOC_DIR` loads
    loss.csv                             step, loss, mel_l1, mr_stft, phase, disc, lr, grad_norm, audio_s_per_s
    checkpoints/step_XXXXXXXX.safetensors  everything needed to resume
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import checkpoint
from ..audio.mel import MelSpectrogram
from ..audio.metrics import log_mel_distance, mr_stft_distance
from ..config import VocoderConfig
from ..data.datasets import WaveDataset
from ..device import autocast, describe_hardware
from ..runfolder import latest_checkpoint
from ..vocoders.vocos import WEIGHTS_FILE, VocosNet, build_net, save_vocoder
from .kit import (
    Loop,
    LossLog,
    ema_decay_at,
    ema_update,
    flatten_optimizer,
    load_optimizer,
    loop,
    mean_rows,
    prune,
    restore_state,
    skip_step,
    state_meta,
    state_tensors,
    warmup_cosine,
    write_checkpoint,
)

LOSS_SCALES = (0.5, 1.0, 2.0)  # loss STFT resolutions: the mel's n_fft and hop times these (512/128 .. 2048/512)
ADV_RECON_WEIGHT = 45.0  # weight of the reconstruction loss next to the adversarial terms (HiFi-GAN's mel weight)
LOG_HEADER = ["step", "loss", "mel_l1", "mr_stft", "phase", "disc", "lr", "grad_norm", "audio_s_per_s"]


class PeriodDiscriminator(nn.Module):
    """HiFi-GAN's period discriminator: wav [B, T] folded to [B, 1, T / p, p], convolved along time only."""

    def __init__(self, period: int, channels: tuple[int, ...] = (32, 64, 128, 256)) -> None:
        super().__init__()
        self.period = period
        sizes = (1,) + channels
        self.convs = nn.ModuleList(nn.Conv2d(a, b, (5, 1), (3, 1), padding=(2, 0)) for a, b in zip(sizes, channels))
        self.out = nn.Conv2d(channels[-1], 1, (3, 1), padding=(1, 0))

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        x = F.pad(wav, (0, -wav.shape[-1] % self.period), mode="reflect")
        return _conv_stack(self.convs, self.out, x.view(x.shape[0], 1, -1, self.period))


class ResolutionDiscriminator(nn.Module):
    """A 2D conv net on the compressed magnitude STFT log(1 + |S|), as [B, 1, N frames, K bins], at one
    resolution (UnivNet / Vocos); it strides along frequency."""

    def __init__(self, n_fft: int, hop_length: int, channels: int = 32) -> None:
        super().__init__()
        self.n_fft, self.hop_length = n_fft, hop_length
        self.register_buffer("window", torch.hann_window(n_fft), persistent=False)
        self.convs = nn.ModuleList([nn.Conv2d(1, channels, (3, 9), padding=(1, 4))] + [
            nn.Conv2d(channels, channels, (3, 9), (1, 2), padding=(1, 4)) for _ in range(3)])
        self.out = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, wav: Tensor) -> tuple[Tensor, list[Tensor]]:
        spec = torch.stft(wav.float(), self.n_fft, self.hop_length, window=self.window, return_complex=True).abs()
        return _conv_stack(self.convs, self.out, torch.log1p(spec).unsqueeze(1).transpose(-2, -1))


def _conv_stack(convs: nn.ModuleList, out: nn.Module, x: Tensor) -> tuple[Tensor, list[Tensor]]:
    """Leaky-ReLU conv layers then the output conv: (logits, every layer's output for feature matching)."""
    feats = []
    for conv in convs:
        x = F.leaky_relu(conv(x), 0.1)
        feats.append(x)
    x = out(x)
    return x, feats + [x]


class Discriminators(nn.Module):
    """Multi-period (2, 3, 5, 7, 11) and multi-resolution discriminators; wav [B, T] -> [(logits, features)]."""

    def __init__(self, resolutions: tuple[tuple[int, int], ...]) -> None:
        super().__init__()
        self.nets = nn.ModuleList([PeriodDiscriminator(p) for p in (2, 3, 5, 7, 11)]
                                  + [ResolutionDiscriminator(n, h) for n, h in resolutions])

    def forward(self, wav: Tensor) -> list[tuple[Tensor, list[Tensor]]]:
        return [net(wav) for net in self.nets]


@dataclass
class VocoderState:
    net: VocosNet
    ema: VocosNet
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # CPU generator for segments and gains
    disc: Discriminators | None = None
    disc_optimizer: torch.optim.Optimizer | None = None
    step: int = 0
    bad_steps: int = 0  # steps skipped so far (non-finite loss or gradients)
    bad_run: int = 0  # of those, how many in a row up to now
    seconds: float = 0.0  # training wall time so far, over all resumed sessions


def loss_resolutions(config: VocoderConfig) -> tuple[tuple[int, int], ...]:
    """(n_fft, hop_length) of the multi-resolution STFT loss and discriminators, around the mel's own
    (Parallel WaveGAN's 512/1024/2048 for the default 1024/256 mel)."""
    return tuple((int(config.mel.n_fft * s), int(config.mel.hop_length * s)) for s in LOSS_SCALES)


def lr_at(step: int, config: VocoderConfig) -> float:
    """Linear warm-up, then cosine decay to a tenth of the peak at config.train.steps."""
    c = config.train
    return warmup_cosine(step, c.lr, c.warmup_steps, c.steps, 0.1)


def new_state(config: VocoderConfig, device: torch.device) -> VocoderState:
    torch.manual_seed(config.train.seed)
    net = build_net(config).to(device)
    ema = copy.deepcopy(net).requires_grad_(False).eval()
    opt = torch.optim.AdamW(net.parameters(), lr=config.train.lr, betas=(0.8, 0.99))
    state = VocoderState(net, ema, opt, torch.Generator().manual_seed(config.train.seed))
    if config.train.adversarial:
        state.disc = Discriminators(loss_resolutions(config)).to(device)
        state.disc_optimizer = torch.optim.AdamW(state.disc.parameters(), lr=config.train.lr, betas=(0.8, 0.99))
    return state


def save_state(state: VocoderState, config: VocoderConfig, out: Path) -> Path:
    tensors = {**checkpoint.join("net", state.net.state_dict()), **checkpoint.join("ema", state.ema.state_dict()),
               **state_tensors(state)}
    opt_tensors, groups = flatten_optimizer(state.optimizer)
    tensors.update(opt_tensors)
    meta = {"config": config.to_dict(), **state_meta(state), "seconds": state.seconds, "optimizer_groups": groups}
    if state.disc is not None:
        tensors.update(checkpoint.join("disc", state.disc.state_dict()))
        disc_tensors, meta["disc_optimizer_groups"] = flatten_optimizer(state.disc_optimizer, "optim_d")
        tensors.update(disc_tensors)
    return write_checkpoint(out, state.step, tensors, meta)


def load_state(path: Path, config: VocoderConfig, device: torch.device) -> VocoderState:
    """Rebuild a VocoderState from `save_state`'s file; refuses another mel or model config. Discriminators
    are restored when the checkpoint has them and config.train.adversarial is set (fresh ones otherwise)."""
    tensors, meta = checkpoint.read(path)
    check_same_vocoder(VocoderConfig.from_dict(meta.get("config", {})), config, str(path))
    state = new_state(config, device)
    checkpoint.load_weights(state.net, checkpoint.split(tensors, "net"), path)
    checkpoint.load_weights(state.ema, checkpoint.split(tensors, "ema"), path)
    load_optimizer(state.optimizer, tensors, meta["optimizer_groups"], path)
    if state.disc is not None and "disc_optimizer_groups" in meta:
        checkpoint.load_weights(state.disc, checkpoint.split(tensors, "disc"), path)
        load_optimizer(state.disc_optimizer, tensors, meta["disc_optimizer_groups"], path, "optim_d")
    restore_state(state, tensors, meta)
    state.seconds = float(meta.get("seconds", 0.0))
    return state


def check_same_vocoder(stored: VocoderConfig, wanted: VocoderConfig, what: str) -> None:
    """Refuse to continue a vocoder whose mel or network settings differ; name the fields."""
    checkpoint.check_same(stored.to_dict(), wanted.to_dict(), ("mel", "model"), what, "the vocoder")


def _hinge_d(real: list, fake: list) -> Tensor:
    return sum(F.relu(1 - r).mean() + F.relu(1 + f).mean() for (r, _), (f, _) in zip(real, fake))


def _generator_adv(real: list, fake: list) -> Tensor:
    """Hinge generator loss + L1 feature matching against the (detached) real features."""
    adv = sum(F.relu(1 - f).mean() for f, _ in fake)
    fm = sum((a.detach() - b).abs().mean() for (_, fr), (_, ff) in zip(real, fake) for a, b in zip(fr, ff))
    return adv + fm


def _wrap(x: Tensor) -> Tensor:
    """Anti-wrapping: the distance of a phase difference to the nearest multiple of 2 pi, in [0, pi]."""
    return (x - 2 * math.pi * torch.round(x / (2 * math.pi))).abs()


def phase_derivative_loss(phase: Tensor, ref: Tensor) -> Tensor:
    """Anti-wrapped errors of group delay (phase difference between neighbouring bins) and instantaneous
    frequency (between neighbouring frames), as in APNet (Ai & Ling 2023), each weighted by the smaller
    reference magnitude of the pair: phase is only heard where there is energy.

    phase: predicted phase float [B, K, N] (radians, any winding); ref: the real complex STFT [B, K, N].
    """
    ref_phase, w = ref.angle(), ref.abs()
    total = phase.new_zeros(())
    for dim in (1, 2):
        err = _wrap(torch.diff(phase, dim=dim) - torch.diff(ref_phase, dim=dim))
        pair = torch.minimum(w.narrow(dim, 1, w.shape[dim] - 1), w.narrow(dim, 0, w.shape[dim] - 1))
        total = total + (err * pair).sum() / pair.sum().clamp_min(1e-8)
    return total


def vocoder_step(state: VocoderState, config: VocoderConfig, mel: MelSpectrogram, wav: Tensor) -> dict[str, float]:
    """One optimizer step on real audio segments wav float [B, T] (T a multiple of hop_length). Returns the
    logged figures; a non-finite loss or gradient norm skips the step (counted in state.bad_steps and
    state.bad_run) and returns loss = nan."""
    c, device = config.train, wav.device
    with torch.no_grad():
        logmel = mel(wav)
    with autocast(device, c.precision):
        mag, phase = state.net.magnitude_phase(logmel)
    est = mel.istft(torch.polar(mag, phase), wav.shape[-1])
    mel_l1 = log_mel_distance(wav, est, mel)
    stft = mr_stft_distance(wav, est, loss_resolutions(config), pooled=True)
    loss, disc_loss, phase_l = stft + c.mel_weight * mel_l1, float("nan"), torch.zeros(())
    if c.phase_weight > 0:
        phase_l = phase_derivative_loss(phase, mel.stft(wav))
        loss = loss + c.phase_weight * phase_l
    if state.disc is not None and state.step >= c.adversarial_start:
        disc_loss = _discriminator_step(state, wav, est.detach(), config)
        with autocast(device, c.precision):
            real, fake = state.disc(wav), state.disc(est)
        loss = ADV_RECON_WEIGHT * loss + _generator_adv(real, fake)
    state.optimizer.zero_grad(set_to_none=True)
    if not torch.isfinite(loss):
        return _skip(state)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(state.net.parameters(), 10.0)
    if not torch.isfinite(grad_norm):
        return _skip(state)
    state.bad_run = 0
    for group in state.optimizer.param_groups:
        group["lr"] = lr_at(state.step, config)
    state.optimizer.step()
    state.step += 1
    ema_update(state.ema, state.net, ema_decay_at(state.step, c.ema_decay))
    return {"loss": float(loss.detach()), "mel_l1": float(mel_l1.detach()), "mr_stft": float(stft.detach()),
            "phase": float(phase_l.detach()), "disc": disc_loss,
            "grad_norm": float(grad_norm)}


def _skip(state: VocoderState) -> dict[str, float]:
    skip_step(state)
    return {"loss": float("nan")}


def _discriminator_step(state: VocoderState, real: Tensor, fake: Tensor, config: VocoderConfig) -> float:
    with autocast(real.device, config.train.precision):
        loss = _hinge_d(state.disc(real), state.disc(fake))
    state.disc_optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(state.disc.parameters(), 10.0)
    for group in state.disc_optimizer.param_groups:
        group["lr"] = lr_at(state.step, config)
    state.disc_optimizer.step()
    return float(loss.detach())


def random_gain(wav: Tensor, gain_db: float, generator: torch.Generator) -> Tensor:
    """Scale each segment [B, T] by a gain drawn uniformly in [-gain_db, 0] dB."""
    db = -gain_db * torch.rand(wav.shape[0], 1, generator=generator)
    return wav * 10 ** (db / 20)


def train_vocoder(config: VocoderConfig, data: WaveDataset, out: Path, device: torch.device, progress: bool = True,
                  log: Callable[[str], None] = print) -> VocoderState:
    """Train (or continue) the vocoder in folder `out` up to config.train.steps. Returns the final state."""
    c = config.train
    out.mkdir(parents=True, exist_ok=True)
    mel = MelSpectrogram(config.mel).to(device)
    latest = latest_checkpoint(out)
    state = load_state(latest, config, device) if latest else new_state(config, device)
    if latest:
        log(f"resuming from {latest} (step {state.step})")
    state.net.train()
    loss_log = LossLog(out / "loss.csv", state.step, LOG_HEADER)
    length = c.segment_frames * config.mel.hop_length
    started, before = time.perf_counter(), state.seconds

    def step() -> dict[str, float]:
        wav = random_gain(data.segments(c.batch_size, length, state.generator), c.gain_db, state.generator)
        return vocoder_step(state, config, mel, wav.to(device))

    def log_row(rows: list[dict[str, float]], speed: float) -> tuple[dict, dict]:
        mean = mean_rows(rows)
        row = dict(step=state.step, loss=f"{mean['loss']:.5f}", mel_l1=f"{mean['mel_l1']:.4f}",
                   mr_stft=f"{mean['mr_stft']:.4f}", phase=f"{mean['phase']:.4f}", disc=f"{mean['disc']:.4f}",
                   lr=f"{lr_at(state.step - 1, config):.3g}", grad_norm=f"{mean['grad_norm']:.3f}",
                   audio_s_per_s=f"{speed:.1f}")
        return row, dict(mel_l1=f"{mean['mel_l1']:.3f}", mr_stft=f"{mean['mr_stft']:.3f}")

    def write() -> bool:
        state.seconds = before + time.perf_counter() - started
        save_state(state, config, out)
        save_vocoder(out / WEIGHTS_FILE, state.ema, config,
                     {"step": state.step, "seconds": round(state.seconds, 3), "hardware": describe_hardware(device)})
        prune(out, c.keep_checkpoints)
        return False

    loop(state, Loop(step, log_row, write, c.steps, c.log_every, c.checkpoint_every,
                     c.batch_size * length / config.mel.sample_rate, out, "Try a lower --lr."), loss_log, progress)
    return state

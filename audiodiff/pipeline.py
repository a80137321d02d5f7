"""Load a trained run and generate audio: noise -> sampler(unet, schedule) -> mel inverse -> vocoder -> audio.

    >>> from audiodiff import SpectrogramDiffusion
    >>> pipe = SpectrogramDiffusion.load("runs/notes")
    >>> out = pipe.generate(4, steps=50, seed=0)      # out.audio: float32 [4, T], out.sample_rate
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import torch
from torch import Tensor

from . import checkpoint
from .audio import save
from .config import Config, MelConfig
from .device import resolve_device
from .mel import MelSpectrogram
from .plot import save_spectrogram
from .sampling import Model, get_sampler, guided, sample
from .schedule import GaussianSchedule
from .unet import UNet
from .vocoder import GriffinLim, Vocoder


class Generated(NamedTuple):
    audio: Tensor  # float32 [N, T] in [-1, 1], on CPU
    sample_rate: int
    logmel: Tensor  # float32 [N, 1, F, frames], normalized log-mel, on CPU


def find_checkpoint(run: str | Path) -> Path:
    """A checkpoint file itself, or the newest checkpoint of a run directory."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise checkpoint.CheckpointError(f"{run}: no such run directory or checkpoint file")
    found = sorted((run / "checkpoints").glob("step_*.safetensors"))
    if not found:
        raise checkpoint.CheckpointError(f"{run}: no checkpoint in {run / 'checkpoints'} (train first)")
    return found[-1]


class SpectrogramDiffusion:
    """A trained spectrogram diffusion model (EMA weights) with its schedule, mel front end and vocoder."""

    def __init__(self, model: UNet, config: Config, vocoder: Vocoder | None = None,
                 device: str | torch.device | None = None, step: int = 0) -> None:
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.config = config
        self.step = step
        self.model = model.to(self.device).eval()
        self.schedule = GaussianSchedule.from_config(config.diffusion)
        self.mel = MelSpectrogram(config.mel).to(self.device)
        self.vocoder = (vocoder or GriffinLim(self.mel)).to(self.device)
        self.vocoder.check(config.mel)

    @classmethod
    def load(cls, run: str | Path, device: str | torch.device | None = None,
             vocoder: Vocoder | None = None) -> SpectrogramDiffusion:
        """Rebuild the model from a run directory (newest checkpoint) or a checkpoint file alone."""
        path = find_checkpoint(run)
        tensors, meta = checkpoint.read(path)
        if "config" not in meta:
            raise checkpoint.CheckpointError(f"{path}: no config in the checkpoint metadata")
        try:
            config = Config.from_dict(meta["config"])
        except (ValueError, TypeError) as e:
            raise checkpoint.CheckpointError(f"{path}: bad config in checkpoint ({e})") from None
        model = UNet(config.unet)
        checkpoint.load_weights(model, checkpoint.split(tensors, "ema"), path)
        return cls(model, config, vocoder, device, int(meta.get("step", 0)))

    @property
    def sample_rate(self) -> int:
        return self.config.mel.sample_rate

    def frames_for(self, seconds: float | None) -> int:
        """Mel frames covering `seconds` (default: the training crop)."""
        if seconds is None:
            return self.config.data.crop_frames
        if not seconds > 0:
            raise ValueError(f"seconds must be positive, got {seconds}")
        # enough frames that the vocoder's (frames - 1) * hop samples cover the request; cut back after
        return 1 + math.ceil(round(seconds * self.sample_rate) / self.config.mel.hop_length)

    def generate(self, n: int = 1, steps: int = 50, sampler: str = "ddim", seed: int = 0,
                 seconds: float | None = None, batch_size: int = 8, progress: bool = False,
                 label: str | None = None, guidance: float = 0.0, **sampler_options: float | bool) -> Generated:
        """n clips; clip i depends only on seed + i (and steps, sampler, seconds), not on batch_size.

        label: a class name of a conditional run (None: unconditional); guidance: classifier-free
        guidance weight w, (1 + w) conditional - w unconditional (0: plain conditional).
        """
        get_sampler(sampler)
        model = self._conditioned(label, guidance)
        frames = self.frames_for(seconds)
        # Sample on a length the UNet divides evenly, then cut back: no padding inside the network.
        f = self.config.unet.downsample_factor
        shape = (1, self.config.mel.n_mels, -(-frames // f) * f)
        mels, wavs = [], []
        for start in range(0, n, batch_size):
            seeds = [seed + i for i in range(start, min(n, start + batch_size))]
            with torch.inference_mode():
                logmel = sample(model(len(seeds)), self.schedule, sampler, shape, seeds, steps, self.device,
                                progress=progress, **sampler_options)[..., :frames]
                wav = self.vocode(logmel, seeds)
            mels.append(logmel.cpu())
            wavs.append(wav.cpu())
        audio = torch.cat(wavs)
        if seconds is not None:
            audio = audio[:, : round(seconds * self.sample_rate)]
        return Generated(audio, self.sample_rate, torch.cat(mels))

    def _conditioned(self, label: str | None, guidance: float) -> Callable[[int], Model]:
        """batch size -> the model to sample from, for this label and guidance."""
        names = self.config.data.labels
        if label is None:
            if guidance:
                raise ValueError("--guidance needs --label: guidance pulls samples towards a class")
            return lambda b: self.model
        if not names:
            raise ValueError(f"--label {label!r}: this run is unconditional (trained without labels)")
        if label not in names:
            raise ValueError(f"--label {label!r}: not a label of this run (labels: {', '.join(names)})")
        y = names.index(label)
        return lambda b: guided(self.model, torch.full((b,), y, device=self.device), guidance)

    def vocode(self, logmel: Tensor, seeds: list[int]) -> Tensor:
        """Normalized log-mel [B, 1, F, N] -> wav float32 [B, (N - 1) * hop]; vocoder randomness from seeds."""
        return torch.cat([self.vocoder(m[None], torch.Generator().manual_seed(s)) for m, s in zip(logmel, seeds)])


def reconstruct(wav: np.ndarray, mel: MelSpectrogram, vocoder: Vocoder, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Round-trip float audio [T] through the mel front end and the vocoder.

    Returns (reconstructed wav float32 [T], normalized log-mel [1, 1, F, N]) on CPU.
    """
    vocoder.check(mel.config)
    device = mel.filterbank.device
    x = torch.from_numpy(wav).to(device)[None]
    with torch.inference_mode():
        logmel = mel(x)
        out = vocoder(logmel, torch.Generator().manual_seed(seed))[0]
    n = min(len(wav), out.shape[-1])
    out = torch.nn.functional.pad(out[:n], (0, len(wav) - n))
    return out.cpu(), logmel.cpu()


def write_clips(out_dir: Path, generated: Generated, mel: MelConfig, prefix: str = "sample",
                titles: list[str] | None = None) -> list[Path]:
    """Write each clip as out_dir/{prefix}_{i:03d}.wav with a spectrogram PNG beside it."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (wav, logmel) in enumerate(zip(generated.audio, generated.logmel)):
        path = out_dir / f"{prefix}_{i:03d}.wav"
        save(path, wav.numpy(), generated.sample_rate)
        save_spectrogram(path.with_suffix(".png"), logmel[0].numpy(), mel, titles[i] if titles else path.name)
        paths.append(path)
    return paths


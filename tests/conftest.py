"""Tiny synthetic data and configs so the whole suite runs in a couple of minutes on 2 CPU cores."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.config import Config, DataConfig, DiffusionConfig, MelConfig, TrainConfig, UNetConfig

SR = 8000


def _device_params() -> list:
    """CPU always; CUDA and MPS when present, else reported as skipped with the reason."""
    cuda = torch.cuda.is_available()
    mps = torch.backends.mps.is_available()
    return [pytest.param("cpu", id="cpu"),
            pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(not cuda, reason="no CUDA device on this machine")),
            pytest.param("mps", id="mps", marks=pytest.mark.skipif(not mps, reason="no Apple MPS device on this machine"))]


@pytest.fixture(params=_device_params())
def device(request) -> torch.device:
    """Each test that takes `device` runs once per device: `pytest -m device -k cuda` runs the CUDA cases alone."""
    return torch.device(request.param)


def pytest_collection_modifyitems(items: list) -> None:
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)


def tolerance(device: torch.device, cpu: float, gpu: float) -> float:
    """Absolute tolerance for a comparison on `device`. GPUs differ from CPU references by more: TF32 matmuls
    and convolutions (10-bit mantissa, allowed by default on Ampere and newer), and cuDNN and MPS kernels
    that sum in another order."""
    return cpu if device.type == "cpu" else gpu


def tone(freq: float, seconds: float, sr: int = SR, amp: float = 0.5, decay: float = 3.0) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t) * np.exp(-decay * t)).astype(np.float32)


@pytest.fixture
def tiny_config() -> Config:
    """A model small enough to train a few steps in a second."""
    return Config(
        mel=MelConfig(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, f_min=0.0, f_max=4000.0),
        unet=UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), head_channels=8),
        diffusion=DiffusionConfig(num_steps=100),
        data=DataConfig(crop_frames=16),
        train=TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=2, log_every=1, checkpoint_every=2,
                          keep_checkpoints=5, preview_count=1, preview_steps=3, precision="fp32"),
        preset="test",
    )


@pytest.fixture
def audio_dir(tmp_path: Path) -> Path:
    """Six good files in mixed formats, rates and channel counts, in nested folders."""
    d = tmp_path / "audio"
    (d / "a" / "b").mkdir(parents=True)
    sf.write(d / "one.wav", tone(440, 0.5), SR, subtype="PCM_16")
    sf.write(d / "two.flac", tone(660, 0.4, sr=16000), 16000, subtype="PCM_24")
    sf.write(d / "a" / "three.ogg", tone(330, 0.6, sr=22050), 22050)
    stereo = np.stack([tone(550, 0.5, sr=44100), tone(550, 0.5, sr=44100, amp=0.2)], axis=1)
    sf.write(d / "a" / "four.wav", stereo, 44100, subtype="FLOAT")
    sf.write(d / "a" / "b" / "five.wav", tone(880, 0.3), SR, subtype="PCM_32")
    sf.write(d / "a" / "b" / "six.wav", tone(220, 0.05), SR, subtype="PCM_16")  # shorter than a crop
    (d / "notes.txt").write_text("not audio, ignored")
    return d

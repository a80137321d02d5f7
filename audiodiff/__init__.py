"""audiodiff: diffusion models on log-mel spectrograms, trained and sampled on CPU or GPU."""

import importlib
from typing import Any

from .audio.io import AudioError
from .audio.mel import MelSpectrogram
from .checkpoint import CheckpointError
from .config import (
    Config,
    DataConfig,
    DiffusionConfig,
    MelConfig,
    TrainConfig,
    UNetConfig,
    VocoderConfig,
    VocoderTrainConfig,
    VocosConfig,
)
from .diffusion.editing import ddim_invert, inpaint, slerp
from .diffusion.sampling import ddim, ddpm, dpmpp_2m, heun, sample
from .diffusion.schedule import GaussianSchedule
from .generation import representation
from .generation.options import Generated, Options
from .generation.pipeline import SpectrogramDiffusion
from .model import conditioning
from .model.unet import UNet
from .presets import preset
from .vocoders.base import PGHI, GriffinLim, Vocoder
from .vocoders.registry import build_vocoder, load_vocoder, reconstruct, register_kind, register_spec
from .vocoders.vocos import NeuralVocoder

__all__ = [
    "AudioError", "CheckpointError", "Config", "DataConfig", "DiffusionConfig", "MelConfig", "TrainConfig",
    "UNetConfig", "preset", "MelSpectrogram", "Generated", "Options", "SpectrogramDiffusion", "reconstruct",
    "ddim", "ddpm", "dpmpp_2m", "heun", "ddim_invert", "inpaint", "slerp", "sample", "GaussianSchedule", "UNet",
    "GriffinLim", "PGHI", "Vocoder", "build_vocoder", "NeuralVocoder", "load_vocoder", "register_spec",
    "register_kind", "VocoderConfig", "VocoderTrainConfig", "VocosConfig", "run", "conditioning",
    "representation",
]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """`audiodiff.run` (the training jobs) is imported when first used, so that generating never loads a trainer."""
    if name == "run":
        return importlib.import_module(".run", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""audiodiff: diffusion models on log-mel spectrograms, trained and sampled on CPU or GPU."""

from . import conditioning, representation, run
from .audio import AudioError
from .checkpoint import CheckpointError
from .config import (Config, DataConfig, DiffusionConfig, MelConfig, TrainConfig, UNetConfig, VocoderConfig,
                     VocoderTrainConfig, VocosConfig, preset)
from .editing import ddim_invert, inpaint, slerp
from .mel import MelSpectrogram
from .pipeline import Generated, Options, SpectrogramDiffusion
from .sampling import ddim, ddpm, dpmpp_2m, heun, sample
from .schedule import GaussianSchedule
from .unet import UNet
from .vocoder import PGHI, GriffinLim, Vocoder
from .vocoders import build_vocoder, load_vocoder, reconstruct, register_kind, register_spec
from .vocos import NeuralVocoder

__all__ = [
    "AudioError", "CheckpointError", "Config", "DataConfig", "DiffusionConfig", "MelConfig", "TrainConfig",
    "UNetConfig", "preset", "MelSpectrogram", "Generated", "Options", "SpectrogramDiffusion", "reconstruct",
    "ddim", "ddpm", "dpmpp_2m", "heun", "ddim_invert", "inpaint", "slerp", "sample", "GaussianSchedule", "UNet",
    "GriffinLim", "PGHI", "Vocoder", "build_vocoder", "NeuralVocoder", "load_vocoder", "register_spec",
    "register_kind", "VocoderConfig", "VocoderTrainConfig", "VocosConfig", "run", "conditioning",
    "representation",
]
__version__ = "0.1.0"

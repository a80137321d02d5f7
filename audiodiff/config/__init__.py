"""Frozen configuration dataclasses and their TOML round trips. No torch here.

run.py describes a diffusion run (`Config`), vocoder.py a trained vocoder (`VocoderConfig`), base.py what both
share: range rules, TOML merging and `differences`, the one config diff. The named presets live in presets.py.
"""

from .base import check_ranges, differences
from .run import (
                  DISTILL_METHODS,
                  LABEL_MIXES,
                  LORA_LAYERS,
                  PREDICTIONS,
                  Config,
                  DataConfig,
                  DiffusionConfig,
                  DistillConfig,
                  EmbedderConfig,
                  FinetuneConfig,
                  MelConfig,
                  SampleConfig,
                  TrainConfig,
                  UNetConfig,
)
from .vocoder import VocoderConfig, VocoderTrainConfig, VocosConfig

__all__ = ["DISTILL_METHODS", "LABEL_MIXES", "LORA_LAYERS", "PREDICTIONS", "Config", "DataConfig", "DiffusionConfig",
           "DistillConfig", "EmbedderConfig", "FinetuneConfig", "MelConfig", "SampleConfig", "TrainConfig",
           "UNetConfig", "VocoderConfig", "VocoderTrainConfig", "VocosConfig", "check_ranges", "differences"]

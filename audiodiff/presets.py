"""The named presets: a whole Config each, from a few minutes on a laptop CPU (tiny) to GPU-sized (base).

A run stores its resolved config, so changing a preset here never changes a run made with it.
"""

from __future__ import annotations

from typing import Any

from .config import Config, DataConfig, MelConfig, SampleConfig, TrainConfig, UNetConfig


def _preset(name: str, unet: UNetConfig, mel: MelConfig = MelConfig(), data: DataConfig = DataConfig(),
            sample: SampleConfig = SampleConfig(), **train: Any) -> Config:
    """A preset's Config; every preset holds out a tenth of the data folder to score its previews on."""
    train = {"holdout": HOLDOUT, **train}
    return Config(mel=mel, unet=unet, data=data, train=TrainConfig(**train), sample=sample, preset=name)


HOLDOUT = 0.1


PRESETS: dict[str, Config] = {
    # Minutes on a CPU; learns coarse spectral envelopes, not fine detail. 16 channels beat the 32-channel shape it
    # replaced at equal training time (experiments/LOG.md, "Quality per compute"), and the same network on 2 x 2
    # patches (half the resolution at every level: several times the steps in the same minutes) beat it unpatched
    # at a five-minute budget (experiments/LOG.md, "A patched tiny"). Old tiny runs keep their config.
    "tiny": _preset(
        "tiny",
        UNetConfig(channels=16, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(2,), head_channels=32,
                   patch=2),
        # With labels (the main job's --label-column family), light guidance at middle noise levels only kept the
        # embedder FD of plain conditional sampling and raised the inception score; strong guidance at every step
        # made it worse (experiments/LOG.md, "Levers on the main job at 600 steps").
        sample=SampleConfig(guidance=0.5, guidance_interval=(174.0, 884.0)),
        steps=1500, batch_size=16, lr=1e-3, warmup_steps=50, ema_decay=0.995,
        checkpoint_every=500, preview_count=2, preview_steps=25,
    ),
    # A real model for a CPU-day or a GPU-hour. Thin at full resolution (32 channels, narrow upsampling),
    # 128-256 channels below: faster per step and better at equal training time than diffusers' 64-128-128-256
    # layout at the same parameter count (experiments/LOG.md, "A lean shape").
    "small": _preset(
        "small",
        UNetConfig(channels=32, channel_mult=(1, 4, 4, 8), num_res_blocks=2, attention_levels=(2, 3),
                   narrow_upsample=True),
        steps=50000, batch_size=16, lr=2e-4, warmup_steps=500, checkpoint_every=2000,
    ),
    # Music: 44.1 kHz, 128 mel bins up to 16 kHz from 2048-point FFTs every 512 samples, crops of 512 frames (a bar
    # or two at most tempi). Attention only at the coarsest level and in the middle: at full resolution a crop has
    # 64 times the positions. Mono by default; add --channels 2 for stereo.
    "music": _preset(
        "music",
        UNetConfig(channels=32, channel_mult=(1, 2, 4, 4), num_res_blocks=2, attention_levels=(3,),
                   narrow_upsample=True),
        mel=MelConfig(sample_rate=44100, n_fft=2048, hop_length=512, n_mels=128, f_max=16000.0),
        data=DataConfig(crop_frames=512),
        steps=50000, batch_size=8, lr=2e-4, warmup_steps=500, checkpoint_every=2000,
    ),
    # GPU-sized.
    "base": _preset(
        "base",
        UNetConfig(channels=128, channel_mult=(1, 1, 2, 2, 4), num_res_blocks=2, attention_levels=(3, 4)),
        steps=200000, batch_size=32, lr=1e-4, warmup_steps=1000, checkpoint_every=5000,
    ),
}


def preset(name: str) -> Config:
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} (choose from {', '.join(PRESETS)})")
    return PRESETS[name]

"""How a class-conditional run is sampled by default: its labels in turn, with the guidance its config names."""

import dataclasses

import pytest
import torch

from audiodiff.config import SampleConfig
from audiodiff.pipeline import EACH_LABEL, Options, SpectrogramDiffusion
from audiodiff.sampling import spaced_timesteps
from audiodiff.unet import UNet


def _pipe(tiny_config, sample: SampleConfig) -> SpectrogramDiffusion:
    config = tiny_config.replace("data", labels=("a", "b", "c")).replace("unet", num_classes=3)
    config = dataclasses.replace(config, sample=sample)
    torch.manual_seed(0)
    model = UNet(config.unet)
    for p in model.parameters():  # an untrained net outputs zeros from its zero-initialised last layers
        torch.nn.init.normal_(p, std=0.05)
    return SpectrogramDiffusion(model, config, device="cpu")


def test_options_take_the_runs_guidance_and_interval(tiny_config):
    pipe = _pipe(tiny_config, SampleConfig(guidance=0.5, guidance_interval=(10.0, 20.0)))
    o = pipe.options(label="a")
    assert (o.guidance, o.guidance_interval) == (0.5, (10.0, 20.0))
    assert pipe.options(label="a", guidance=2.0, guidance_interval=(0.0, 99.0)).guidance_interval == (0.0, 99.0)
    assert pipe.options().guidance is None  # no label: nothing to guide towards
    assert pipe.generate_options().label == EACH_LABEL and pipe.generate_options().guidance == 0.5
    assert pipe.generate_options(unconditional=True).label is None
    assert [pipe.clip_label(pipe.generate_options(), s) for s in range(4, 8)] == ["b", "c", "a", "b"]
    with pytest.raises(ValueError, match="0 <= t_lo <= t_hi"):
        Options(guidance_interval=(30.0, 20.0))


def test_clips_without_a_label_take_the_labels_in_turn(tiny_config):
    pipe = _pipe(tiny_config, SampleConfig(guidance=0.5, guidance_interval=(0.0, 99.0)))
    each = pipe.generate(3, steps=3, seed=4, batch_size=1).logmel
    for i, label in enumerate(["b", "c", "a"]):
        alone = pipe.generate(1, steps=3, seed=4 + i, batch_size=1, label=label, guidance=0.5).logmel
        torch.testing.assert_close(each[i : i + 1], alone)
    null = pipe.generate(1, steps=3, seed=4, batch_size=1, unconditional=True).logmel
    assert not torch.allclose(null, each[:1], atol=1e-4)


def test_the_runs_guidance_interval_is_honoured(tiny_config):
    steps = 3
    times = spaced_timesteps(tiny_config.diffusion.num_steps, steps)
    outside = (times[-1] + 1.0, times[-2] - 1.0)  # between two sampled timesteps: guidance never applies
    pipe = _pipe(tiny_config, SampleConfig(guidance=3.0, guidance_interval=outside))
    default = pipe.generate(1, steps=steps, label="a").logmel
    torch.testing.assert_close(default, pipe.generate(1, steps=steps, label="a", guidance=0.0).logmel)
    everywhere = pipe.generate(1, steps=steps, label="a", guidance_interval=(0.0, 99.0)).logmel
    assert not torch.allclose(default, everywhere, atol=1e-4)

"""How a class-conditional run is sampled by default: its labels in turn (or in the training proportions), with
the guidance its config names."""

import dataclasses

import pytest
import torch

from audiodiff.config import DataConfig, SampleConfig
from audiodiff.data.labels import data_label, label_counts
from audiodiff.diffusion.sampling import spaced_timesteps
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.generation.options import EACH_LABEL, Options
from audiodiff.model.unet import UNet


def _pipe(tiny_config, sample: SampleConfig, counts: tuple[int, ...] = ()) -> SpectrogramDiffusion:
    config = tiny_config.replace("data", labels=("a", "b", "c"), label_counts=counts).replace("unet", num_classes=3)
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


@pytest.mark.parametrize("counts", [(1, 3, 0, 6), (5, 5), (2, 0, 97, 1)])
def test_data_label_follows_the_counts(counts):
    for start in (0, 12345):
        for n in (50, 1000):
            drawn = torch.bincount(torch.tensor([data_label(s, counts) for s in range(start, start + n)]),
                                   minlength=len(counts))
            expected = torch.tensor(counts, dtype=torch.float64) * n / sum(counts)
            assert (drawn - expected).abs().max() <= 3  # a Weyl sequence: a few clips off at most, at any n
            assert all(drawn[k] == 0 for k, c in enumerate(counts) if c == 0)
    assert [data_label(s, counts) for s in range(20)] == [data_label(s, counts) for s in range(20)]


def test_label_counts_leave_out_the_no_label_class():
    assert label_counts(torch.tensor([0, 2, 2, 3, 1, 2]), 3) == (1, 1, 3)  # 3: a fine-tune's unlabelled clips
    assert label_counts(None, 0) == ()
    with pytest.raises(ValueError, match="one count >= 0 per label"):
        DataConfig(labels=("a", "b"), label_counts=(1,))
    with pytest.raises(ValueError, match="label_mix = 'most'"):
        SampleConfig(label_mix="most")
    with pytest.raises(ValueError, match="label_mix must be one of even, data"):
        Options(label_mix="most")


def test_the_data_mix_draws_labels_as_trained_and_samples_them(tiny_config):
    pipe = _pipe(tiny_config, SampleConfig(guidance=0.5, label_mix="data"), counts=(0, 1, 3))
    o = pipe.generate_options()
    assert o.label == EACH_LABEL and o.label_mix == "data"
    drawn = [pipe.clip_label(o, s) for s in range(40)]
    assert drawn.count("a") == 0 and abs(drawn.count("c") - 30) <= 2
    even = pipe.generate_options(label_mix="even")
    assert [pipe.clip_label(even, s) for s in range(3)] == ["a", "b", "c"]
    each = pipe.generate(3, steps=3, seed=4, batch_size=1).logmel
    for i in range(3):
        alone = pipe.generate(1, steps=3, seed=4 + i, batch_size=1, label=drawn[4 + i], guidance=0.5).logmel
        torch.testing.assert_close(each[i : i + 1], alone)
    for counts in ((), (0, 0, 0)):  # a run made before the counts, or a fine-tune on unlabelled clips only
        with pytest.raises(ValueError, match="this run has no label counts"):
            _pipe(tiny_config, SampleConfig(label_mix="data"), counts).generate_options()

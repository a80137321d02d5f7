from pathlib import Path

import pytest

from audiodiff.config import Config
from audiodiff.presets import PRESETS, preset


def test_toml_round_trip(tmp_path):
    for name in PRESETS:
        c = preset(name)
        path = tmp_path / f"{name}.toml"
        path.write_text(c.to_toml())
        assert Config.from_toml(path) == c


def test_partial_toml_overrides_base(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[train]\nsteps = 7\nlr = 1\n[unet]\nchannel_mult = [1, 2]\nattention_levels = [1]\n")
    c = Config.from_toml(path, preset("tiny"))
    assert c.train.steps == 7 and c.train.lr == 1.0 and c.unet.channel_mult == (1, 2)
    assert c.train.batch_size == preset("tiny").train.batch_size


@pytest.mark.parametrize("text,match", [("[train]\nstepz = 1\n", "unknown config key 'train.stepz'"),
                                        ("[train]\nsteps = 'many'\n", "'train.steps' must be int"),
                                        ("[diffusion]\nschedule = 'sigmoid'\n", "unknown schedule"),
                                        ("[train\n", "cannot read config")])
def test_bad_toml_errors_name_file_and_key(tmp_path, text, match):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as e:
        Config.from_toml(path)
    assert "bad.toml" in str(e.value)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        preset("huge")


@pytest.mark.parametrize("section,field,value,allowed", [
    ("train", "keep_checkpoints", 0, "at least 1"), ("train", "checkpoint_every", 0, "at least 1"),
    ("train", "log_every", 0, "at least 1"), ("train", "lr", -1e-3, "above 0"), ("train", "ema_decay", 1.0, "in [0, 1)"),
    ("train", "label_dropout", 1.5, "in [0, 1)"), ("train", "steps", 0, "at least 1"), ("train", "grad_clip", 0.0, "above 0"),
    ("train", "lr", float("nan"), "above 0"), ("mel", "hop_length", 0, "at least 1"), ("unet", "channel_mult", [1, 0], "at least 1"),
    ("unet", "dropout", -0.1, "in [0, 1)"), ("diffusion", "num_steps", 0, "at least 1"), ("data", "crop_frames", 0, "at least 1"),
])
def test_numeric_fields_are_range_checked(section, field, value, allowed):
    with pytest.raises(ValueError) as e:
        Config.from_dict({section: {field: value}})
    message = str(e.value)
    assert message.startswith(f"{section}.{field} = ") and f"must be {allowed}" in message and "\n" not in message


def test_vocoder_and_embedder_fields_are_range_checked():
    from audiodiff.config import EmbedderConfig, VocoderConfig

    with pytest.raises(ValueError, match=r"train.keep_checkpoints = 0 is out of range: must be at least 1"):
        VocoderConfig.from_dict({"train": {"keep_checkpoints": 0}})
    with pytest.raises(ValueError, match=r"embedder.temperature = 0 is out of range: must be above 0"):
        EmbedderConfig(temperature=0)


def test_sample_section_defaults_and_checks(tmp_path):
    from audiodiff.config import SampleConfig

    old = tmp_path / "old.toml"  # a run's config written before [sample] existed: guidance 1.5 at every step
    old.write_text("[train]\nsteps = 3\n")
    assert Config.from_toml(old).sample == SampleConfig(1.5, ()) and SampleConfig().interval() is None
    assert preset("tiny").sample.interval() == (174.0, 884.0) and preset("tiny").sample.guidance == 0.5
    assert preset("small").sample == SampleConfig()
    for bad, match in (({"guidance": -1}, "sample.guidance = -1.0 is out of range"),
                       ({"guidance_interval": [5, 1]}, "t_lo <= t_hi"), ({"guidance_interval": [1, 2, 3]}, "t_lo <= t_hi"),
                       ({"guidance_interval": [-1, 2]}, "sample.guidance_interval = .* out of range")):
        with pytest.raises(ValueError, match=match):
            Config.from_dict({"sample": bad})


@pytest.mark.parametrize("recipe", ["notes", "digits", "drums", "loops"])
def test_recipe_configs_load(recipe):
    path = Path(__file__).parent.parent / "recipes" / recipe / "config.toml"
    config = Config.from_toml(path, preset("small"))  # as `audiodiff train --config` reads it
    assert config.preset == f"recipe-{recipe}"
    if recipe in ("drums", "notes"):  # labels in the training proportions, lightly guided (2026-12-05, -06)
        assert (config.sample.label_mix, config.sample.guidance, config.sample.guidance_interval) == (
            "data", 0.5, (174.0, 884.0))


def test_a_run_can_name_its_own_sampler_and_steps(tmp_path):
    from audiodiff.config import Config, SampleConfig
    from audiodiff.config.run import SAMPLER_NAMES
    from audiodiff.diffusion.sampling import SAMPLERS

    assert SAMPLER_NAMES == tuple(SAMPLERS)
    assert Config().default_sampling() == ("ddim", 50)  # runs made before [sample] sampler and steps
    own = Config(sample=SampleConfig(sampler="dpmpp-2m", steps=20))
    assert own.default_sampling() == ("dpmpp-2m", 20)
    (tmp_path / "c.toml").write_text(own.to_toml())
    assert Config.from_toml(tmp_path / "c.toml").default_sampling() == ("dpmpp-2m", 20)
    assert Config(sample=SampleConfig(steps=10)).default_sampling() == ("ddim", 10)
    student = own.replace("distill", method="cd", teacher="t.safetensors", teacher_sha256="0" * 64)
    assert student.default_sampling() == ("consistency", student.distill.sampling_steps)  # not its teacher's
    with pytest.raises(ValueError, match="sample.sampler = 'euler'"):
        SampleConfig(sampler="euler")
    with pytest.raises(ValueError, match="steps"):
        SampleConfig(steps=-1)


def test_sizes_count_the_patch():
    """The tiny preset's patches of 2 and three levels need multiples of 8, and the error says why."""
    tiny = preset("tiny")
    assert tiny.unet.downsample_factor == 8
    tiny.check_sizes()  # 80 mels, 64 frames
    with pytest.raises(ValueError, match=r"mel.n_mels = 84 is not a multiple of 8 \(the UNet folds it into patches "
                                         r"of 2, then its 3 levels halve it 2 times\): use 80 or 88"):
        tiny.replace("mel", n_mels=84).check_sizes()

import pytest

from audiodiff.config import PRESETS, Config, preset


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

"""Autoguidance (Karras et al. 2024): guiding a run with a weaker model of the same data."""

from __future__ import annotations

import pytest
import torch

from audiodiff.diffusion.denoiser import autoguided
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.generation.options import Options

from .test_cli import invoke, run  # noqa: F401  (the tiny trained run fixture)


class Affine(torch.nn.Module):
    def __init__(self, scale: float, shift: float) -> None:
        super().__init__()
        self.scale, self.shift = scale, shift

    def forward(self, x, t, y=None):
        return self.scale * x + self.shift + (0 if y is None else y.view(-1, 1, 1, 1).float())


def test_autoguided_extrapolates_away_from_the_weak_model():
    good, weak = Affine(2.0, 0.5), Affine(1.0, -0.5)
    x, t = torch.randn(3, 1, 4, 4), torch.tensor([10, 10, 10])
    torch.testing.assert_close(autoguided(good, weak, 1.5)(x, t), 2.5 * good(x, t) - 1.5 * weak(x, t))
    torch.testing.assert_close(autoguided(good, weak, 0.0)(x, t), good(x, t))
    torch.testing.assert_close(autoguided(good, good, 3.0)(x, t), good(x, t))  # a model guiding itself: no change
    c = torch.tensor([1, 2, 3])
    torch.testing.assert_close(autoguided(good, weak, 1.0, c)(x, t), 2 * good(x, t, c) - weak(x, t, c))


def test_generate_with_an_earlier_checkpoint_as_the_weak_model(tmp_path, run):  # noqa: F811
    checkpoints = sorted((run / "checkpoints").glob("*.safetensors"))
    assert len(checkpoints) >= 2
    pipe = SpectrogramDiffusion.load(run)
    plain = pipe.generate(2, steps=3, seed=5).logmel
    guided = pipe.generate(2, steps=3, seed=5, autoguide_from=checkpoints[0], autoguidance=1.0).logmel
    itself = pipe.generate(2, steps=3, seed=5, autoguide_from=checkpoints[-1], autoguidance=1.0).logmel
    assert guided.shape == plain.shape and torch.isfinite(guided).all()
    assert not torch.allclose(guided, plain, atol=1e-4)
    torch.testing.assert_close(itself, plain, atol=1e-5, rtol=1e-5)  # the newest checkpoint is the model itself
    with pytest.raises(ValueError, match="replaces classifier-free guidance"):
        Options(autoguide_from=checkpoints[0], guidance=1.0)
    with pytest.raises(ValueError, match="autoguidance must be >= 0"):
        Options(autoguidance=-1.0)


def test_a_weak_model_of_another_mel_is_refused(tmp_path, run, audio_dir, tiny_config):  # noqa: F811
    other = tiny_config.replace("mel", n_mels=24).replace("train", steps=1)
    cfg = tmp_path / "other.toml"
    cfg.write_text(other.to_toml())
    assert invoke("train", str(audio_dir), "--out", str(tmp_path / "other"), "--config", str(cfg),
                  "--no-progress").exit_code == 0
    res = invoke("generate", str(run), "--out", str(tmp_path / "g"), "-n", "1", "--steps", "2", "--no-progress",
                 "--autoguide-from", str(tmp_path / "other"))
    assert res.exit_code == 1 and "cannot guide with it: its settings differ from this run's in mel" in res.output
    res = invoke("generate", str(run), "--out", str(tmp_path / "g"), "-n", "1", "--steps", "2", "--no-progress",
                 "--autoguide-from", str(run), "--autoguidance", "2")
    assert res.exit_code == 0 and (tmp_path / "g" / "sample_000.wav").exists()

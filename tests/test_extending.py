"""Extending audiodiff from outside the package: a new vocoder, by name and as a saved kind, is one
class plus one registry line, and every command that takes a vocoder then accepts it."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from audiodiff import checkpoint
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.config import MelConfig
from audiodiff.vocoders import registry as vocoders
from audiodiff.vocoders.base import Vocoder
from audiodiff.vocoders.registry import WEIGHTS_FILE

from .conftest import SR, tone

MEL = MelConfig(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, f_min=0.0, f_max=4000.0)


class Hum(Vocoder):
    """A toy vocoder: a sine at `freq` Hz whose loudness follows the mel's frame energy."""

    name = "hum"

    def __init__(self, mel: MelSpectrogram, freq: float = 110.0) -> None:
        super().__init__(mel)
        self.freq = freq

    def forward(self, logmel: Tensor, generator: torch.Generator | None = None) -> Tensor:
        n = self.mel.num_samples(logmel.shape[-1])
        loud = (logmel.mean(dim=(1, 2)) + 1) / 2  # [B, N] in [0, 1]
        env = torch.nn.functional.interpolate(loud[:, None], size=n, mode="linear")[:, 0]
        t = torch.arange(n, device=logmel.device) / self.mel.config.sample_rate
        return env * torch.sin(2 * torch.pi * self.freq * t)

    def spec(self) -> str:
        return f"hum-{self.freq:g}"


@pytest.fixture
def registered():
    vocoders.register_spec("hum", lambda mel, options: Hum(mel, float(options.removeprefix("-") or 110)))
    vocoders.register_kind("hum", lambda file, tensors, meta, folder: Hum(MelSpectrogram(MelConfig(**meta["mel"])),
                                                                         float(tensors["freq"])))
    yield
    vocoders.SPECS.pop("hum")
    vocoders.KINDS.pop("hum")


def test_a_vocoder_registered_by_name(registered):
    mel = MelSpectrogram(MEL)
    voc = vocoders.build_vocoder("hum-220", mel)
    assert isinstance(voc, Hum) and voc.freq == 220 and vocoders.describe(voc) == "hum-220"
    wav, logmel = vocoders.reconstruct(tone(440, 0.5), mel, voc)
    assert wav.shape == (4000,) and logmel.shape[:3] == (1, 1, 16) and wav.abs().max() > 0


def test_a_saved_vocoder_of_a_registered_kind(tmp_path, registered):
    import dataclasses

    folder = tmp_path / "hum"
    folder.mkdir()
    checkpoint.write(folder / WEIGHTS_FILE, {"freq": torch.tensor(330.0)},
                     {"kind": "hum", "mel": dataclasses.asdict(MEL)})
    voc = vocoders.build_vocoder(str(folder), MelSpectrogram(MEL))
    assert isinstance(voc, Hum) and voc.freq == 330
    other = dataclasses.replace(MEL, n_mels=32)
    with pytest.raises(ValueError, match="n_mels"):  # a saved vocoder still refuses another mel
        vocoders.build_vocoder(str(folder), MelSpectrogram(other))


def test_unknown_kinds_and_names_are_refused(tmp_path):
    folder = tmp_path / "v"
    folder.mkdir()
    checkpoint.write(folder / WEIGHTS_FILE, {"x": torch.zeros(1)}, {"kind": "nope"})
    with pytest.raises(checkpoint.CheckpointError, match="kind 'nope', which nothing registered"):
        vocoders.load_vocoder(folder)
    with pytest.raises(ValueError, match="unknown vocoder 'hum'"):
        vocoders.build_vocoder("hum", MelSpectrogram(MEL))


class Loudness:
    """A toy conditioning signal: one number per clip (its loudness in [0, 1]); NaN means "told nothing"."""

    kind = "loudness"

    def encode(self, value: float, batch: int, device: torch.device) -> Tensor:
        if not 0 <= value <= 1:
            raise ValueError(f"loudness {value}: must be in [0, 1]")
        return torch.full((batch,), float(value), device=device)

    def null(self, batch: int, device: torch.device) -> Tensor:
        return torch.full((batch,), float("nan"), device=device)

    def drop(self, c: Tensor, p: float, generator: torch.Generator) -> Tensor:
        return c.masked_fill(torch.rand(c.shape, generator=generator) < p, float("nan"))

    def embedding(self, dim: int) -> torch.nn.Module:
        class Embed(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.proj = torch.nn.Linear(2, dim)

            def forward(self, c: Tensor) -> Tensor:  # (value, is-null) -> [B, dim]
                told = ~torch.isnan(c)
                return self.proj(torch.stack([torch.where(told, c, 0.0), (~told).float()], dim=1))

        return Embed()


def test_a_conditioning_signal_registered_from_outside(tiny_config):
    from audiodiff.diffusion.sampling import sample
    from audiodiff.diffusion.schedule import GaussianSchedule
    from audiodiff.model import conditioning
    from audiodiff.model.conditioning import guided
    from audiodiff.model.unet import UNet
    from audiodiff.training.diffusion import TrainState, train_step

    conditioning.register("loudness", Loudness)
    try:
        cond = conditioning.build("loudness")
        torch.manual_seed(0)
        model = UNet(tiny_config.unet, cond)
        ema = UNet(tiny_config.unet, cond).requires_grad_(False)
        ema.load_state_dict(model.state_dict())
        state = TrainState(model, ema, torch.optim.AdamW(model.parameters(), lr=1e-3),
                           torch.Generator().manual_seed(0), "fp32", torch.amp.GradScaler("cpu", enabled=False))
        schedule = GaussianSchedule.from_config(tiny_config.diffusion)
        x0 = torch.rand(4, 1, 16, 16) * 2 - 1
        c = cond.drop(torch.tensor([0.1, 0.5, 0.9, 0.3]), 0.5, torch.Generator().manual_seed(1))
        assert torch.isnan(c).any() and not torch.isnan(c).all()  # some dropped to "told nothing", not all
        before = model.label_emb.proj.weight.clone()
        loss, _ = train_step(state, tiny_config, schedule, x0, c)
        assert loss == loss and not torch.equal(before, model.label_emb.proj.weight)  # the signal's embedding learns
        for p in model.parameters():  # wake the zero-initialized output so the condition shows
            torch.nn.init.normal_(p, std=0.05)
        x, t = torch.randn(2, 1, 16, 16), torch.tensor([10, 60])
        loud, quiet = cond.encode(0.9, 2, x.device), cond.encode(0.1, 2, x.device)
        assert not torch.allclose(model(x, t, loud), model(x, t, quiet))
        plain, uncond = model(x, t, loud), model(x, t)  # no condition given = its null value
        torch.testing.assert_close(guided(model, cond, loud, 2.0)(x, t), 3 * plain - 2 * uncond, atol=1e-5, rtol=1e-4)
        out = sample(guided(model, cond, loud, 1.5), schedule, "ddim", (1, 16, 16), [0, 1], 3, torch.device("cpu"))
        assert out.shape == (2, 1, 16, 16) and torch.isfinite(out).all()
    finally:
        conditioning.KINDS.pop("loudness")

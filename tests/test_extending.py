"""Extending audiodiff from outside the package: a new vocoder, by name and as a saved kind, is one
class plus one registry line, and every command that takes a vocoder then accepts it."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from audiodiff import checkpoint, vocoders
from audiodiff.config import MelConfig
from audiodiff.mel import MelSpectrogram
from audiodiff.vocoder import WEIGHTS_FILE, Vocoder

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

import dataclasses

import librosa
import numpy as np
import pytest
import torch

from audiodiff.audio.mel import MelSpectrogram, check_mel_config
from audiodiff.config import MelConfig

from .conftest import tolerance


@pytest.mark.parametrize("config", [MelConfig(), MelConfig(sample_rate=22050, n_fft=2048, hop_length=512,
                                                           n_mels=128, f_min=30.0, f_max=11025.0)])
def test_power_mel_matches_librosa(config, device):
    rng = np.random.default_rng(0)
    y = (0.3 * rng.standard_normal(config.sample_rate) + 0.2 * np.sin(np.arange(config.sample_rate) * 0.05)).astype(np.float32)
    ref = librosa.feature.melspectrogram(y=y, sr=config.sample_rate, n_fft=config.n_fft, hop_length=config.hop_length,
                                         n_mels=config.n_mels, fmin=config.f_min, fmax=config.f_max, center=True,
                                         pad_mode="constant", power=2.0)
    ours = MelSpectrogram(config).to(device).power_mel(torch.from_numpy(y)[None].to(device))[0].cpu().numpy()
    assert ours.shape == ref.shape == (config.n_mels, 1 + len(y) // config.hop_length)
    np.testing.assert_allclose(ours, ref, rtol=tolerance(device, 1e-3, 1e-2), atol=1e-6 * ref.max())


def test_normalization_closed_form_and_round_trip():
    c = MelConfig()
    mel = MelSpectrogram(c)
    floor = 10 ** (c.min_db / 10)
    power = torch.tensor([0.0, floor, 10 ** (c.max_db / 10) - floor, 10 ** ((c.max_db + 6) / 10)])
    x = mel.normalize(power[None, None])
    want = [-1.0, -1 + 2 * 10 * np.log10(2) / 120, 1.0, 1 + 2 * 6 / 120]
    np.testing.assert_allclose(x.flatten().numpy(), want, atol=1e-3)
    torch.testing.assert_close(mel.denormalize(x)[0, 0], power, rtol=1e-4, atol=1e-12)
    power = torch.rand(2, c.n_mels, 7) * 10 ** (torch.rand(2, c.n_mels, 7) * 12 - 9)  # -90 dB .. +30 dB
    torch.testing.assert_close(mel.denormalize(mel.normalize(power)), power, rtol=1e-3, atol=1e-11)
    assert float(mel.denormalize(torch.full((1, 1, 1, 1), -1.5))) == 0.0  # below the floor: silence


def test_shapes_and_loudness_kept():
    mel = MelSpectrogram(MelConfig())
    wav = 0.5 * torch.sin(torch.arange(16000) * 0.1)[None].repeat(2, 1)
    wav[1] *= 0.1  # 20 dB quieter
    x = mel(wav)
    assert x.shape == (2, 1, 80, 63) and x.dtype == torch.float32
    peak_db = (x.amax(dim=(1, 2, 3)) + 1) / 2 * 120 - 90
    assert abs(float(peak_db[0] - peak_db[1]) - 20.0) < 0.1  # no per-clip normalization


def test_stft_istft_round_trip(device):
    mel = MelSpectrogram(MelConfig()).to(device)
    wav = torch.randn(2, 8000, device=device) * 0.1
    back = mel.istft(mel.stft(wav), length=8000)
    torch.testing.assert_close(back, wav, atol=1e-5, rtol=0)


def test_magnitude_is_a_least_squares_inverse_of_the_filterbank():
    mel = MelSpectrogram(MelConfig())
    torch.manual_seed(0)
    power = mel.power_mel(torch.randn(1, 4000) * 0.1)
    mag = mel.magnitude(power)
    assert mag.shape == (1, 513, 16) and (mag >= 0).all()
    rebuilt = mel.filterbank @ mag.square()  # back onto the mel: equal but for the clamp at zero
    assert float((rebuilt - power).norm() / power.norm()) < 0.05


def test_mismatched_config_named():
    a, b = MelConfig(), dataclasses.replace(MelConfig(), n_mels=64)
    check_mel_config(a, a, "thing")
    with pytest.raises(ValueError, match=r"n_mels=80 \(expected 64\)"):
        check_mel_config(a, b, "vocoder")


def test_invalid_config():
    with pytest.raises(ValueError, match="f_max"):
        MelConfig(sample_rate=16000, f_max=9000.0)

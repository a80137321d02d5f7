import dataclasses

import numpy as np
import pytest
import torch

from audiodiff.config import MelConfig
from audiodiff.mel import MelSpectrogram
from audiodiff.metrics import mel_l1, mr_stft, snr_db
from audiodiff.vocoder import GriffinLim, build_vocoder

from .conftest import tone

CONFIG = MelConfig(sample_rate=8000, n_fft=256, hop_length=64, n_mels=40, f_max=4000.0)


def spectral_convergence(mel, wav, est):
    a, b = mel.stft(wav).abs(), mel.stft(est).abs()
    return float((a - b).norm() / a.norm())


def test_output_length_and_determinism():
    mel = MelSpectrogram(CONFIG)
    voc = GriffinLim(mel, n_iter=4)
    logmel = mel(torch.from_numpy(tone(440, 0.5))[None])
    a = voc(logmel, torch.Generator().manual_seed(0))
    b = voc(logmel, torch.Generator().manual_seed(0))
    assert a.shape == (1, (logmel.shape[-1] - 1) * CONFIG.hop_length)
    assert torch.equal(a, b)


def test_iterations_and_momentum_improve_consistency():
    mel = MelSpectrogram(CONFIG)
    wav = torch.from_numpy(tone(440, 0.5) + tone(1250, 0.5, amp=0.2))[None]
    mag = mel.stft(wav).abs()
    sc = {}
    for name, n_iter, momentum in [("0", 0, 0.0), ("plain32", 32, 0.0), ("fast32", 32, 0.99)]:
        est = GriffinLim(mel, n_iter, momentum).phase_retrieval(mag, torch.Generator().manual_seed(0))
        sc[name] = spectral_convergence(mel, wav[:, : est.shape[-1]], est)
    assert sc["plain32"] < 0.7 * sc["0"]
    assert sc["fast32"] < sc["plain32"]  # Perraudin et al.: momentum converges faster


def test_refuses_other_mel_config():
    voc = build_vocoder("griffinlim", MelSpectrogram(CONFIG), n_iter=2)
    voc.check(CONFIG)
    with pytest.raises(ValueError, match="vocoder 'griffinlim' was made for another mel config: hop_length=64"):
        voc.check(dataclasses.replace(CONFIG, hop_length=128))
    with pytest.raises(ValueError, match="unknown vocoder"):
        build_vocoder("hifigan", MelSpectrogram(CONFIG))


def test_metrics_known_answers():
    mel = MelSpectrogram(CONFIG)
    x = torch.from_numpy(tone(440, 0.5) + 0.01 * np.random.default_rng(0).standard_normal(4000).astype(np.float32))
    assert mel_l1(x, x, mel) == 0.0 and mr_stft(x, x) == pytest.approx(0.0, abs=1e-6)
    assert snr_db(x, 0.5 * x) == pytest.approx(20 * np.log10(2), abs=1e-4)
    noisy = x + 0.1 * torch.randn(4000, generator=torch.Generator().manual_seed(1))
    assert mel_l1(x, noisy, mel) > 0.1 and mr_stft(x, noisy) > 0.1
    assert mr_stft(x, noisy) < mr_stft(x, torch.randn(4000, generator=torch.Generator().manual_seed(2)))

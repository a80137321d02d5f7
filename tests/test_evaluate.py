import json

import numpy as np
import pytest
import scipy.linalg
import soundfile as sf
from click.testing import CliRunner

from audiodiff.cli import main
from audiodiff.config import MelConfig
from audiodiff.evaluate import (bootstrap_interval, clip_features, evaluate_generated, folder_features,
                                frechet_distance, kernel_distance, memorization)
from audiodiff.mel import MelSpectrogram
from audiodiff.metrics import log_spectral_distance

from .conftest import SR, tone

MEL = MelSpectrogram(MelConfig(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, f_max=4000.0))


def gaussian(n, d, shift=0.0, scale=1.0, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)) * scale + shift


def test_frechet_matches_the_scipy_sqrtm_formula():
    a, b = gaussian(300, 6, seed=1), gaussian(200, 6, shift=0.5, scale=1.5, seed=2)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real)
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # closed form for isotropic Gaussians: d * shift^2 + d * (1 - scale)^2
    big_a, big_b = gaussian(20000, 3, seed=3), gaussian(20000, 3, shift=1.0, scale=2.0, seed=4)
    assert frechet_distance(big_a, big_b) == pytest.approx(3 * 1.0 + 3 * 1.0, rel=0.05)


def test_kernel_distance_unbiased_and_growing_with_shift():
    a, b = gaussian(400, 8, seed=5), gaussian(400, 8, seed=6)
    same = kernel_distance(a, b)
    assert abs(same) < 0.05
    shifted = [kernel_distance(a, gaussian(400, 8, shift=s, seed=7)) for s in (0.5, 1.0, 2.0)]
    assert same < shifted[0] < shifted[1] < shifted[2]


def test_bootstrap_interval_brackets_the_estimate():
    a, b = gaussian(100, 4, seed=8), gaussian(100, 4, shift=1.0, seed=9)
    lo, hi = bootstrap_interval(frechet_distance, a, b, rounds=100)
    assert lo < frechet_distance(a, b) < hi


def test_memorization_flags_copies():
    train, ref = gaussian(200, 5, seed=10), gaussian(100, 5, seed=11)
    copies = train[:50] + 1e-3
    fresh = gaussian(50, 5, seed=12)
    assert memorization(copies, ref, train)["too_close"] == 1.0
    assert memorization(fresh, ref, train)["too_close"] < 0.25


def test_features_shape_and_values():
    logmel = np.tile(np.linspace(-1, 1, 16)[:, None], (1, 10))
    f = clip_features(logmel)
    assert f.shape == (2 * 16 + 2 * 16,)  # min(20, n_mels) MFCCs
    np.testing.assert_allclose(f[:16], np.linspace(-1, 1, 16))
    np.testing.assert_allclose(f[16:32], 0.0, atol=1e-12)  # constant over time: zero std


def _tone_folder(path, seed, n=24, kind="tone"):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        if kind == "tone":
            x = tone(rng.uniform(200, 900), 0.5, amp=rng.uniform(0.2, 0.6)) + tone(rng.uniform(1000, 2000), 0.5, amp=0.1)
        elif kind == "noise":
            x = rng.uniform(-0.5, 0.5, SR // 2).astype(np.float32)
        else:
            x = np.zeros(SR // 2, dtype=np.float32)
        sf.write(path / f"{i:02d}.wav", x, SR)
    return path


def test_silence_and_noise_score_far_worse_than_real(tmp_path):
    ref, _ = folder_features(_tone_folder(tmp_path / "ref", 1), MEL)
    train, _ = folder_features(_tone_folder(tmp_path / "train", 2, n=60), MEL)
    real, _ = folder_features(_tone_folder(tmp_path / "real", 3), MEL)
    noise, _ = folder_features(_tone_folder(tmp_path / "noise", 4, kind="noise"), MEL)
    silence, _ = folder_features(_tone_folder(tmp_path / "silence", 5, kind="silence"), MEL)
    scores = {k: evaluate_generated(v, ref, train, rounds=20) for k, v in
              {"real": real, "noise": noise, "silence": silence}.items()}
    real_fd = scores["real"]["generated"]["fd"]
    assert real_fd < 3 * scores["real"]["floor"]["fd"] + 1.0
    for bad in ("noise", "silence"):
        assert scores[bad]["generated"]["fd"] > 20 * real_fd
        assert scores[bad]["generated"]["kid"] > 20 * max(scores["real"]["generated"]["kid"], 1e-3)


def test_log_spectral_distance_known_answer():
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    assert log_spectral_distance(x, x) == 0.0
    assert log_spectral_distance(x, 0.5 * x) == pytest.approx(20 * np.log10(2), abs=1e-3)


def test_cli_evaluate_generated_and_vocoder(tmp_path):
    _tone_folder(tmp_path / "ref", 1, n=12)
    _tone_folder(tmp_path / "gen", 2, n=12)
    _tone_folder(tmp_path / "train", 3, n=20)
    res = CliRunner().invoke(main, ["evaluate", "generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"),
                                    "--train", str(tmp_path / "train"), "--bootstrap", "10", "--sample-rate", str(SR),
                                    "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)
    assert out["generated"]["clips"] == 12 and out["floor"]["clips"] == 12 and "too_close" in out["memorization"]
    res = CliRunner().invoke(main, ["evaluate", "vocoder", "--data", str(tmp_path / "ref"), "--clips", "3",
                                    "--iters", "0", "--iters", "8"])
    assert res.exit_code == 0, res.output
    assert "griffinlim-0" in res.output and "griffinlim-8" in res.output

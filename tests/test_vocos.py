"""The trained vocoder: network shapes, learning, exact resume, refusal of other mel configs, CLI."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from audiodiff import checkpoint
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.audio.metrics import mr_stft_distance
from audiodiff.cli import main
from audiodiff.config import MelConfig, VocoderConfig, VocoderTrainConfig, VocosConfig
from audiodiff.data.datasets import load_waves
from audiodiff.training.vocoder import lr_at, phase_derivative_loss, train_vocoder
from audiodiff.vocoders.registry import build_vocoder, describe, load_vocoder
from audiodiff.vocoders.vocos import NeuralVocoder, build_net

from .conftest import SR, tolerance, tone

MEL = MelConfig(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, f_min=0.0, f_max=4000.0)


def voc_config(steps=4, **train) -> VocoderConfig:
    return VocoderConfig(mel=MEL, model=VocosConfig(dim=32, intermediate=64, layers=2),
                         train=VocoderTrainConfig(steps=steps, batch_size=4, segment_frames=8, lr=2e-3, warmup_steps=2,
                                                  log_every=1, checkpoint_every=2, precision="fp32", **train))


@pytest.fixture
def tones(tmp_path):
    d = tmp_path / "tones"
    d.mkdir()
    for i, f in enumerate((220, 330, 440, 550, 700)):
        sf.write(d / f"t{i}.wav", tone(f, 0.6), SR)
    return d


def test_network_shapes_and_interface():
    torch.manual_seed(0)
    mel = MelSpectrogram(MEL)
    voc = NeuralVocoder(mel, build_net(voc_config()))
    logmel = torch.rand(3, 1, MEL.n_mels, 11) * 2 - 1
    spec = voc.net(logmel)
    assert spec.shape == (3, MEL.n_fft // 2 + 1, 11) and spec.dtype == torch.complex64
    wav = voc(logmel)
    assert wav.shape == (3, 10 * MEL.hop_length) and torch.isfinite(wav).all()
    assert torch.equal(voc(logmel), wav)  # deterministic: the generator is not used


def test_training_learns_and_resume_is_exact(tmp_path, tones):
    mel = MelSpectrogram(MEL)
    data, report = load_waves(tones, mel, progress=False)
    assert report.used == 5 and data.wav.shape == (5 * int(0.6 * SR),)
    train_vocoder(voc_config(steps=120), data, tmp_path / "long", torch.device("cpu"), progress=False)
    rows = (tmp_path / "long" / "loss.csv").read_text().splitlines()[1:]
    first, last = (float(r.split(",")[2]) for r in (rows[0], rows[-1]))  # mel_l1 column
    assert len(rows) == 120 and last < 0.6 * first, (first, last)

    straight = train_vocoder(voc_config(steps=4), data, tmp_path / "a", torch.device("cpu"), progress=False)
    train_vocoder(voc_config(steps=2), data, tmp_path / "b", torch.device("cpu"), progress=False)
    resumed = train_vocoder(voc_config(steps=4), data, tmp_path / "b", torch.device("cpu"), progress=False,
                            log=lambda s: None)
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert torch.equal(a, b)
    logged = [[r.rsplit(",", 1)[0] for r in (tmp_path / d / "loss.csv").read_text().splitlines()] for d in "ab"]
    assert logged[0] == logged[1] and len(logged[0]) == 5  # header + 4 steps, all but the timing column


def test_trained_vocoder_steps_and_resumes_on_each_device(tmp_path, tones, device):
    mel = MelSpectrogram(MEL)
    data, _ = load_waves(tones, mel, progress=False)
    straight = train_vocoder(voc_config(steps=4), data, tmp_path / "a", device, progress=False)
    train_vocoder(voc_config(steps=2), data, tmp_path / "b", device, progress=False)
    resumed = train_vocoder(voc_config(steps=4), data, tmp_path / "b", device, progress=False, log=lambda s: None)
    assert straight.step == resumed.step == 4
    for a, b in zip(straight.ema.state_dict().values(), resumed.ema.state_dict().values()):
        assert a.device.type == device.type and torch.isfinite(a).all()
        torch.testing.assert_close(a, b, atol=tolerance(device, 0.0, 1e-4), rtol=0)
    voc = build_vocoder(str(tmp_path / "a"), MelSpectrogram(MEL).to(device))
    wav = voc(torch.rand(1, 1, MEL.n_mels, 9, device=device) * 2 - 1)
    assert wav.shape == (1, 8 * MEL.hop_length) and torch.isfinite(wav).all()


def test_saved_vocoder_round_trip_and_mel_refusal(tmp_path, tones):
    mel = MelSpectrogram(MEL)
    data, _ = load_waves(tones, mel, progress=False)
    state = train_vocoder(voc_config(), data, tmp_path / "v", torch.device("cpu"), progress=False)
    voc = build_vocoder(str(tmp_path / "v"), mel)
    assert isinstance(voc, NeuralVocoder) and describe(voc) == str(tmp_path / "v")
    assert voc.training is False and voc.record["step"] == 4  # eval mode; the training record apart from it
    logmel = mel(torch.from_numpy(tone(300, 0.3))[None])
    with torch.no_grad():
        expected = mel.istft(state.ema(logmel), mel.num_samples(logmel.shape[-1]))
    assert torch.allclose(voc(logmel), expected, atol=1e-6)
    other = MelSpectrogram(MelConfig(sample_rate=SR, n_fft=256, hop_length=64, n_mels=20, f_max=4000.0))
    with pytest.raises(ValueError, match="n_mels=16 \\(expected 20\\)"):
        build_vocoder(str(tmp_path / "v"), other)
    with pytest.raises(checkpoint.CheckpointError, match="mel.n_mels: 16 in the vocoder, 20 asked for"):
        train_vocoder(VocoderConfig(mel=other.config, model=voc_config().model, train=voc_config(steps=6).train),
                      data, tmp_path / "v", torch.device("cpu"), progress=False)
    with pytest.raises(checkpoint.CheckpointError, match="not a trained vocoder"):
        load_vocoder(tones)


def test_adversarial_option_trains_and_resumes(tmp_path, tones):
    mel = MelSpectrogram(MEL)
    data, _ = load_waves(tones, mel, progress=False)
    cfg = voc_config(steps=2, adversarial=True, phase_weight=1.0)
    train_vocoder(cfg, data, tmp_path / "g", torch.device("cpu"), progress=False)
    rows = (tmp_path / "g" / "loss.csv").read_text().splitlines()[1:]
    assert all(0 < float(r.split(",")[4]) < 2 * np.pi for r in rows)  # the phase loss ran
    disc = [float(r.split(",")[5]) for r in rows]
    assert len(disc) == 2 and all(np.isfinite(disc)) and abs(disc[0] - 16.0) < 1.0  # 8 hinge terms of ~2 at init
    tensors, meta = checkpoint.read(tmp_path / "g" / "checkpoints" / "step_00000002.safetensors")
    assert any(k.startswith("disc.") for k in tensors) and "disc_optimizer_groups" in meta
    state = train_vocoder(voc_config(steps=3, adversarial=True, phase_weight=1.0), data, tmp_path / "g", torch.device("cpu"),
                          progress=False, log=lambda s: None)
    assert state.step == 3 and state.disc is not None


def test_lr_schedule():
    cfg = voc_config(steps=102)  # warm-up 2 steps, then cosine over 100 down to a tenth
    assert lr_at(0, cfg) == pytest.approx(1e-3) and lr_at(1, cfg) == pytest.approx(2e-3)
    assert lr_at(52, cfg) == pytest.approx(2e-3 * 0.55) and lr_at(102, cfg) == pytest.approx(2e-4)


def test_pooled_spectral_convergence_survives_silence():
    torch.manual_seed(0)
    ref = torch.randn(2, 2048) * torch.tensor([[1.0], [0.0]])  # the second clip is digital silence
    est = (ref + 0.1 * torch.randn(2, 2048)).requires_grad_()
    pooled = mr_stft_distance(ref, est, ((256, 64),), pooled=True)
    pooled.backward()
    assert torch.isfinite(est.grad).all()
    per_clip = mr_stft_distance(ref, est.detach(), ((256, 64),))
    assert per_clip > 100 * pooled  # the silent clip's own ratio is huge
    w = torch.hann_window(256)
    a, b = (torch.stft(x, 256, 64, window=w, return_complex=True).abs().clamp_min(1e-5) for x in (ref, est.detach()))
    closed = torch.linalg.norm(a - b) / torch.linalg.norm(a) + (a.log() - b.log()).abs().mean(dim=(-2, -1)).mean()
    assert float(pooled.detach()) == pytest.approx(float(closed), rel=1e-5)


def test_cli_vocoder_train_generate_evaluate(tmp_path, tones, tiny_config):
    runner = CliRunner()
    cfg = tmp_path / "voc.toml"
    cfg.write_text(voc_config().to_toml())
    voc_dir = tmp_path / "voc"
    res = runner.invoke(main, ["vocoder", "train", str(tones), "--out", str(voc_dir), "--config", str(cfg),
                               "--steps", "3", "--no-progress", "--device", "cpu"])
    assert res.exit_code == 0, res.output
    assert "5 of 5 audio files used" in res.output and (voc_dir / "vocoder.safetensors").exists()
    assert VocoderConfig.from_toml(voc_dir / "config.toml").train.steps == 3
    res = runner.invoke(main, ["evaluate", "vocoder", "--data", str(tones), "--vocoder", str(voc_dir),
                               "--vocoder", "griffinlim-4", "--json"])
    assert res.exit_code == 0, res.output
    rows = json.loads(res.output)
    assert set(rows) == {str(voc_dir), "griffinlim-4/nnls"} and rows[str(voc_dir)]["clips"] == 5
    assert "training" not in rows["griffinlim-4/nnls"]
    training = rows[str(voc_dir)]["training"]
    assert training["step"] == 3 and training["seconds"] > 0 and training["hardware"].startswith("cpu: ")
    res = runner.invoke(main, ["evaluate", "vocoder", "--data", str(tones), "--vocoder", str(voc_dir), "--clips", "2"])
    assert res.exit_code == 0 and f"{voc_dir}: trained 3 steps in" in res.output, res.output
    res = runner.invoke(main, ["reconstruct", str(tones / "t0.wav"), "--out", str(tmp_path / "r.wav"),
                               "--vocoder", str(voc_dir)])
    assert res.exit_code == 0 and f"vocoder {voc_dir}" in res.output, res.output

    run_cfg = tmp_path / "run.toml"
    run_cfg.write_text(tiny_config.to_toml())
    res = runner.invoke(main, ["train", str(tones), "--out", str(tmp_path / "run"), "--config", str(run_cfg),
                               "--steps", "2", "--no-progress", "--vocoder", str(voc_dir)])
    assert res.exit_code == 0, res.output
    res = runner.invoke(main, ["generate", str(tmp_path / "run"), "--out", str(tmp_path / "gen"), "-n", "1",
                               "--steps", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    wav, sr = sf.read(tmp_path / "gen" / "sample_000.wav")
    assert sr == SR and len(wav) > 0 and np.isfinite(wav).all()

    bad = tmp_path / "bad.toml"
    bad.write_text(voc_config().to_toml().replace("n_mels = 16", "n_mels = 20"))
    res = runner.invoke(main, ["vocoder", "train", str(tones), "--out", str(voc_dir), "--config", str(bad),
                               "--no-progress"])
    assert res.exit_code == 1 and "mel.n_mels: 16 in the vocoder, 20 asked for" in res.output


def test_phase_derivative_loss_closed_form():
    torch.manual_seed(0)
    ref = torch.polar(torch.rand(2, 9, 7) + 0.1, torch.rand(2, 9, 7) * 6.28 - 3.14)
    phase = ref.angle()
    assert float(phase_derivative_loss(phase, ref)) == pytest.approx(0.0, abs=1e-5)
    k, n = torch.meshgrid(torch.arange(9.0), torch.arange(7.0), indexing="ij")
    # a constant offset and whole turns per bin and frame leave both derivatives unchanged
    assert float(phase_derivative_loss(phase + 1.0 + 2 * torch.pi * (3 * k - 2 * n), ref)) == pytest.approx(0.0, abs=1e-4)
    # a quarter turn more per bin and per frame: each derivative is off by pi / 2 everywhere
    assert float(phase_derivative_loss(phase + torch.pi / 2 * (k + n), ref)) == pytest.approx(torch.pi, abs=1e-4)
    # three quarters of a turn wraps to a quarter
    assert float(phase_derivative_loss(phase + 1.5 * torch.pi * k, ref)) == pytest.approx(torch.pi / 2, abs=1e-4)

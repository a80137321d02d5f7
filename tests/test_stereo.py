"""Stereo (issue 21): channel layouts, mid/side mels in the data, vocoding per channel, and a stereo run end to end."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from audiodiff.audio.io import load, read, save, to_channels
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.cli import main
from audiodiff.config import Config
from audiodiff.data.prepare import load_mels
from audiodiff.evaluation.features import stereo_image
from audiodiff.generation.representation import MelRepresentation
from audiodiff.presets import preset

from .conftest import SR, tone


def invoke(*args):
    return CliRunner().invoke(main, [*args, "--device", "cpu"], catch_exceptions=False)


def test_channel_layouts():
    x = np.random.default_rng(0).standard_normal((100, 6)).astype(np.float32)
    assert np.array_equal(to_channels(x[:, :1], 2), x[:, [0, 0]])  # mono: the same on both sides
    assert np.allclose(to_channels(x[:, :2], 1)[:, 0], x[:, :2].mean(1))
    assert np.array_equal(to_channels(x[:, :2], 2), x[:, :2])
    assert np.allclose(to_channels(x[:, :4], 2), x[:, :4].mean(1, keepdims=True).repeat(2, 1))
    # 5.1 (FL, FR, FC, LFE, BL, BR), ITU-R BS.775 at -3 dB, scaled by 1 / (1 + 2 * 0.7071); LFE dropped
    unit = np.eye(6, dtype=np.float32)
    k = 1 / 2.4142
    assert np.allclose(to_channels(unit, 2), k * np.array([[1, 0], [0, 1], [0.7071, 0.7071], [0, 0], [0.7071, 0],
                                                            [0, 0.7071]]), atol=1e-6)
    assert np.abs(to_channels(np.ones((10, 6), np.float32), 2)).max() <= 1.0
    with pytest.raises(ValueError, match="1 or 2"):
        to_channels(x, 3)


def test_stereo_files_save_and_load(tmp_path):
    lr = np.stack([tone(440, 0.3), tone(660, 0.3, amp=0.2)])
    save(tmp_path / "s.wav", lr, SR)
    info = sf.info(tmp_path / "s.wav")
    assert (info.channels, info.samplerate) == (2, SR)
    back, n = read(tmp_path / "s.wav", SR, channels=2)
    assert n == 2 and back.shape == lr.shape and np.abs(back - lr).max() < 1e-4
    assert np.abs(load(tmp_path / "s.wav", SR) - lr.mean(0)).max() < 1e-4  # a mono reader mixes down
    up, n = read(tmp_path / "s.wav", 2 * SR, channels=2)  # resampled channel by channel
    assert n == 2 and up.shape == (2, 2 * lr.shape[1])


@pytest.fixture
def stereo_dir(tmp_path):
    d = tmp_path / "stereo"
    d.mkdir()
    left, right = tone(440, 0.6), tone(440, 0.6, amp=0.1)
    sf.write(d / "panned.wav", np.stack([left, right], 1), SR, subtype="FLOAT")
    sf.write(d / "wide.wav", np.stack([tone(330, 0.6), tone(990, 0.6)], 1), SR, subtype="FLOAT")
    sf.write(d / "mono.wav", tone(550, 0.6), SR, subtype="FLOAT")
    six = np.zeros((int(0.6 * SR), 6), np.float32)
    six[:, 0] = tone(770, 0.6)
    sf.write(d / "surround.wav", six, SR, subtype="FLOAT")
    return d


def test_stereo_dataset_holds_left_and_right(tmp_path, stereo_dir, tiny_config):
    mel = MelSpectrogram(tiny_config.mel)
    data, report = load_mels(stereo_dir, mel, 16, tmp_path / "cache", progress=False, channels=2)
    assert (report.duplicated, report.mixed_down) == (1, 1)
    assert "1 mono (copied to both channels), 1 with more than 2 channels (mixed down" in report.summary()
    i = data.files.index("panned.wav")
    lr = torch.from_numpy(load(stereo_dir / "panned.wav", SR, channels=2))
    lr = lr - lr.mean(-1, keepdim=True)  # the data removes DC per channel
    want = mel.per_channel(lr[None])[0]
    got = data.file_mel(i)
    assert got.shape == (2, 16, want.shape[-1])
    assert torch.allclose(got, want, atol=2e-3)  # float16 storage
    copied = data.file_mel(data.files.index("mono.wav"))
    assert torch.equal(copied[0], copied[1]) and not torch.equal(got[0], got[1])
    assert data.sample(3, torch.Generator().manual_seed(0)).shape == (3, 2, 16, 16)
    mono, mono_report = load_mels(stereo_dir, mel, 16, tmp_path / "cache", progress=False)  # its own cache
    assert mono.file_mel(i).shape == (1, 16, want.shape[-1]) and mono_report.prepared == 4
    assert (mono_report.duplicated, mono_report.mixed_down) == (0, 0)


def _rep(config: Config, channels: int = 2) -> MelRepresentation:
    return MelRepresentation(config.with_channels(channels), torch.device("cpu"))


@pytest.mark.parametrize("vocoder", ["griffinlim", "pghi"])
def test_decoding_keeps_the_stereo_image(tiny_config, vocoder):
    rep = _rep(tiny_config)
    rep.use_vocoder(vocoder)
    lead, bass = tone(440, 0.5), tone(150, 0.5, amp=0.3)
    for side in (1, -1):  # the lead panned left (the right 6 dB down), then right; the bass centred
        lr = np.stack([lead, 0.5 * lead] if side > 0 else [0.5 * lead, lead]) + bass
        x = rep.encode(lr)
        assert x.shape == (1, 2, 16, 1 + lr.shape[1] // 64)
        out = rep.decode(x, [0])[0]
        assert out.shape == (2, (x.shape[-1] - 1) * 64)
        corr, level = stereo_image(out.numpy())
        corr_in, level_in = stereo_image(lr)  # 0.94, +-3.5 dB
        assert abs(level - level_in) < 0.5 and corr > corr_in - 0.05  # one phase for both sides
    centred = rep.decode(rep.encode(lead), [3])[0]  # mono input: left = right
    assert torch.equal(centred[0], centred[1])
    # what the shared phase prevents: each side vocoded on its own drifts apart
    apart = torch.cat([rep.vocoder(x[:, c : c + 1], torch.Generator().manual_seed(0)) for c in range(2)])
    assert stereo_image(apart.numpy())[0] < corr - 0.3  # 0.46 (Griffin-Lim), 0.08 (PGHI)
    with pytest.raises(ValueError, match=r"\[2, T\] or \[T\]"):
        rep.encode(np.zeros((3, 1000), np.float32))


def test_config_channels(tmp_path):
    assert Config.from_dict({"data": {"channels": 2}}).unet.in_channels == 2
    with pytest.raises(ValueError, match="unet.in_channels = 1 but data.channels = 2"):
        Config.from_dict({"data": {"channels": 2}, "unet": {"in_channels": 1}})
    with pytest.raises(ValueError, match="must be 1 \\(mono\\) or 2"):
        Config.from_dict({"data": {"channels": 6}})
    assert preset("music").with_channels(2).crop_shape() == (2, 128, 512)


def test_sizes_the_unet_cannot_divide_fail_before_training(tmp_path, stereo_dir, tiny_config):
    cfg = tmp_path / "odd.toml"
    cfg.write_text(tiny_config.replace("mel", n_mels=20).replace("unet", channel_mult=(1, 2, 2, 2)).to_toml())
    res = CliRunner().invoke(main, ["train", str(stereo_dir), "--out", str(tmp_path / "r"), "--config", str(cfg)])
    assert res.exit_code != 0
    assert "mel.n_mels = 20 is not a multiple of 8 (the UNet's 4 levels halve it 3 times): use 16 or 24" in res.output
    assert not (tmp_path / "r").exists()


def test_stereo_run_end_to_end(tmp_path, stereo_dir, tiny_config):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    run = tmp_path / "run"
    res = invoke("train", str(stereo_dir), "--out", str(run), "--config", str(cfg), "--channels", "2", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "1 mono (copied to both channels)" in res.output
    config = Config.from_toml(run / "config.toml")
    assert (config.data.channels, config.unet.in_channels) == (2, 2)
    assert sf.info(next((run / "samples").glob("*.wav"))).channels == 2
    clip = tmp_path / "in.wav"
    sf.write(clip, np.stack([tone(440, 0.4), tone(660, 0.4)], 1), SR)
    commands = {
        "gen": ["generate", str(run), "-n", "1", "--seconds", "0.5", "--steps", "2"],  # longer than a crop: 2 windows
        "loop": ["generate", str(run), "-n", "1", "--loop", "--steps", "2"],
        "vary": ["vary", str(run), str(clip), "--strength", "0.5", "--steps", "2"],
        "inpaint": ["inpaint", str(run), str(clip), "--start", "0.1", "--end", "0.2", "--steps", "2"],
        "continue": ["continue", str(run), str(clip), "--seconds", "0.2", "--steps", "2"],
        "interp": ["interpolate", str(run), str(clip), str(stereo_dir / "mono.wav"), "--frames", "2", "--steps", "2"],
    }
    for name, args in commands.items():
        res = invoke(*args, "--out", str(tmp_path / name), "--no-progress")
        assert res.exit_code == 0, (name, res.output)
        for wav in (tmp_path / name).glob("*.wav"):
            info = sf.info(wav)
            assert (info.channels, info.samplerate) == (2, SR), (name, wav)
    assert sf.info(tmp_path / "gen" / "sample_000.wav").frames == round(0.5 * SR)
    res = CliRunner().invoke(main, ["evaluate", "generated", str(tmp_path / "interp"), "--reference", str(stereo_dir),
                                    "--sample-rate", str(SR)], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "stereo image, mean [5%, 95%]" in res.output  # panned (correlation 1) and wide (0); mono and 5.1 left out
    assert "reference      0.500 [0.050, 0.950], 6.99 [0.70, 13.28] dB (2 clips)" in res.output
    kept, _ = sf.read(tmp_path / "inpaint" / "inpaint_000.wav")
    original, _ = sf.read(clip)
    assert np.abs(kept[-200:] - original[-200:]).max() < 1e-3  # both channels kept outside the span


def test_stereo_image():
    from audiodiff.evaluation.features import stereo_image

    x = tone(440, 0.5)
    assert stereo_image(np.stack([x, x])) == pytest.approx((1.0, 0.0))
    corr, level = stereo_image(np.stack([x, 0.5 * x]))
    assert corr == pytest.approx(1.0) and level == pytest.approx(20 * np.log10(2))
    assert stereo_image(np.stack([x, -x]))[0] == pytest.approx(-1.0)


def test_outpaint_windows_cover_the_clip():
    from audiodiff.diffusion.editing import outpaint_windows

    plan = outpaint_windows(56, 300, 64, 0.5)
    assert plan[0] == (24, 32, False)  # keeps the last 32 frames of the first window's 56
    have = 56
    for start, k, last in plan:
        assert start == have - k and k == 32
        have = start + (64 if last else 56)
    assert plan[-1][2] and have >= 300 and not any(last for _, _, last in plan[:-1])
    assert outpaint_windows(300, 300, 64) == []
    with pytest.raises(ValueError, match="overlap"):
        outpaint_windows(56, 300, 64, 0.9)


def test_music_preset_stereo_run_generates_30_seconds(tmp_path):
    """The issue's command pair on a small generated stereo set: --preset music --channels 2, then 30 s."""
    data = tmp_path / "loops"
    data.mkdir()
    rate = 44100
    for i, f in enumerate((110.0, 165.0)):
        t = np.arange(6 * rate) / rate
        beat = (np.sin(2 * np.pi * 2 * t) > 0).astype(np.float32)
        left, right = 0.3 * np.sin(2 * np.pi * f * t) * beat, 0.2 * np.sin(2 * np.pi * 1.5 * f * t) * (1 - beat)
        sf.write(data / f"loop{i}.wav", np.stack([left, right], 1).astype(np.float32), rate)
    small = tmp_path / "cpu.toml"
    small.write_text("[train]\npreview_count = 0\n")  # the preset's own sizes; previews left out to save time
    run = tmp_path / "run"
    res = invoke("train", str(data), "--out", str(run), "--preset", "music", "--channels", "2", "--config", str(small),
                 "--steps", "1", "--batch-size", "1", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "training preset=music" in res.output and "1 x 5.94 s crops" in res.output
    res = invoke("generate", str(run), "--out", str(tmp_path / "gen"), "-n", "1", "--seconds", "30", "--steps", "1",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    info = sf.info(tmp_path / "gen" / "sample_000.wav")
    assert (info.channels, info.samplerate, info.frames) == (2, 44100, 30 * 44100)

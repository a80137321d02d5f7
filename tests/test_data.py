import numpy as np
import pytest
import soundfile as sf
import torch

from audiodiff.audio.io import load
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.data.folders import find_audio_files
from audiodiff.data.prepare import load_mels

from .conftest import SR, tone


def test_builds_from_mixed_folder_and_caches(tmp_path, audio_dir, tiny_config):
    mel = MelSpectrogram(tiny_config.mel)
    data, report = load_mels(audio_dir, mel, 16, tmp_path / "cache", progress=False)
    assert report.found == 6 and report.used == 6 and not report.skipped and report.padded == 1
    assert len(data) == 6 and all(c.dtype == np.float16 for c in data.chunks)
    batch = data.sample(5, torch.Generator().manual_seed(0))
    assert batch.shape == (5, 1, 16, 16) and batch.min() >= -1.0
    # the cached copy is used and identical
    again, report2 = load_mels(audio_dir, mel, 16, tmp_path / "cache", progress=False)
    assert report2.from_cache and again.files == data.files
    assert all(torch.equal(again.file_mel(i), data.file_mel(i)) for i in range(len(data)))
    assert torch.equal(again.sample(5, torch.Generator().manual_seed(0)), batch)


def test_crops_come_from_the_file(tmp_path, tiny_config):
    d = tmp_path / "d"
    d.mkdir()
    x = tone(500, 2.0)
    sf.write(d / "long.wav", x, SR)
    mel = MelSpectrogram(tiny_config.mel)
    data, _ = load_mels(d, mel, 16, None, progress=False)
    wav = load(d / "long.wav", SR)
    full = mel(torch.from_numpy(wav - wav.mean())[None])[0, 0].half().float()  # the loader removes DC
    crop = data.sample(1, torch.Generator().manual_seed(3))[0, 0]
    matches = [s for s in range(full.shape[1] - 15) if torch.equal(full[:, s : s + 16], crop)]
    assert matches, "a crop must be a contiguous window of the file's mel"


def test_bad_files_skipped_with_reasons(tmp_path, audio_dir, tiny_config, capsys):
    (audio_dir / "empty.wav").write_bytes(b"")
    (audio_dir / "fake.flac").write_text("definitely not flac")
    sf.write(audio_dir / "silent.wav", np.zeros(4000, dtype=np.float32), SR)
    sf.write(audio_dir / "tiny.wav", tone(440, 0.01), SR)
    nan = tone(440, 0.2)
    nan[5] = np.inf
    sf.write(audio_dir / "inf.wav", nan, SR, subtype="FLOAT")
    data, report = load_mels(audio_dir, MelSpectrogram(tiny_config.mel), 16, None, progress=False)
    assert report.used == 6 and len(report.skipped) == 5
    reasons = dict((p.rsplit("/", 1)[-1], r) for p, r in report.skipped)
    assert reasons["silent.wav"].startswith("silent") and reasons["tiny.wav"].startswith("too short")
    assert "NaN or infinite" in reasons["inf.wav"] and "cannot read audio" in reasons["empty.wav"]
    assert "5 skipped" in report.summary()


def test_folder_errors(tmp_path, tiny_config):
    mel = MelSpectrogram(tiny_config.mel)
    with pytest.raises(ValueError, match="nowhere: not a folder"):
        load_mels(tmp_path / "nowhere", mel, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="empty: no audio files found"):
        load_mels(tmp_path / "empty", mel, 16)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.wav").write_bytes(b"junk")
    sf.write(bad / "b.wav", np.zeros(1000, dtype=np.float32), SR)
    with pytest.raises(ValueError, match=r"bad: none of the 2 audio files is usable \(.*a.wav: cannot read"):
        load_mels(bad, mel, 16, progress=False)


def test_cache_is_rebuilt_when_the_preprocessing_changes(tmp_path, audio_dir, tiny_config, monkeypatch):
    from audiodiff.data import prepare as data_module

    mel = MelSpectrogram(tiny_config.mel)
    load_mels(audio_dir, mel, 16, tmp_path / "cache", progress=False)
    assert load_mels(audio_dir, mel, 16, tmp_path / "cache", progress=False)[1].from_cache
    monkeypatch.setattr(data_module, "PREPROCESS_VERSION", data_module.PREPROCESS_VERSION + 1)
    assert not load_mels(audio_dir, mel, 16, tmp_path / "cache", progress=False)[1].from_cache


def test_find_audio_files_order_and_what_it_skips(tmp_path):
    names = ["a/b.wav", "a-b/c.wav", "a/B.FLAC", "a.b/z.wav", "z.wav", "a/d/e.ogg", ".hidden/x.wav", "a/.y.wav",
             "notes.txt", "deep/er/est/f.wav"]
    for n in names:
        (tmp_path / n).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / n).write_bytes(b"")
    (tmp_path / "linked.wav").symlink_to(tmp_path / "a", target_is_directory=True)  # not followed, not a file
    found = find_audio_files(tmp_path)
    expected = [tmp_path / n for n in names if not n.startswith(".") and "/." not in n and n.endswith(("wav", "FLAC", "ogg"))]
    assert found == sorted(expected)  # the order of sorted Paths ("a/..." before "a-b/..."), not of strings
    assert [str(p.relative_to(tmp_path)) for p in found][:3] == ["a/B.FLAC", "a/b.wav", "a/d/e.ogg"]

import numpy as np
import pytest
import soundfile as sf

from audiodiff.audio.io import AudioError, load, save

from .conftest import tone


@pytest.mark.parametrize("subtype,fmt", [("PCM_16", "WAV"), ("PCM_24", "FLAC"), ("FLOAT", "WAV"), ("PCM_32", "WAV"),
                                         ("VORBIS", "OGG")])
def test_formats_resample_and_mono(tmp_path, subtype, fmt):
    x = tone(440, 0.5, sr=22050)
    stereo = np.stack([x, 0.5 * x], axis=1)
    path = tmp_path / f"f.{fmt.lower()}"
    sf.write(path, stereo, 22050, subtype=subtype, format=fmt)
    y = load(path, 16000)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - 8000) <= 1
    ref = 0.75 * tone(440, 0.5, sr=16000)  # the mean of the two channels
    tol = 0.05 if subtype == "VORBIS" else 0.01
    assert np.abs(y[100:-100] - ref[100 : len(y) - 100]).max() < tol


def test_save_round_trip_and_clipping(tmp_path):
    x = np.array([0.0, 0.5, -0.5, 2.0, -2.0], dtype=np.float32)
    save(tmp_path / "a.wav", x, 8000)
    y, sr = sf.read(tmp_path / "a.wav", dtype="float32")
    assert sr == 8000
    np.testing.assert_allclose(y, [0.0, 0.5, -0.5, 1.0, -1.0], atol=1e-4)
    assert [p.name for p in tmp_path.iterdir()] == ["a.wav"]  # no temp file left


@pytest.mark.parametrize("content,reason", [(b"", "cannot read audio"), (b"RIFF\x10\x00\x00\x00WAVEfmt ", "cannot read audio"),
                                            (b"hello, not audio at all" * 10, "cannot read audio")])
def test_unreadable_files_named(tmp_path, content, reason):
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(AudioError, match=f"bad.wav: {reason}"):
        load(path, 16000)


def test_nan_samples_rejected(tmp_path):
    x = tone(440, 0.1)
    x[10] = np.nan
    sf.write(tmp_path / "nan.wav", x, 8000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: contains NaN"):
        load(tmp_path / "nan.wav", 8000)

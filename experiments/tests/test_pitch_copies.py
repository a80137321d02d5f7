"""experiments/pitch_copies.py: a shift of s semitones multiplies a tone's frequency by 2^(s/12) at the same length,
and the copies carry the original's labels in metadata.csv."""

import csv
import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

spec = importlib.util.spec_from_file_location(
    "pitch_copies", Path(__file__).resolve().parents[1] / "pitch_copies.py")
copies = importlib.util.module_from_spec(spec)
spec.loader.exec_module(copies)

SR = 16000


def _peak_hz(wav: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(wav * np.hanning(len(wav)), n=8 * len(wav)))
    return float(np.argmax(spectrum)) * SR / (8 * len(wav))


def test_shift_moves_the_pitch_by_the_semitones_and_keeps_the_length():
    t = np.arange(SR) / SR
    tone = (0.5 * np.sin(2 * np.pi * 440.0 * t) * (t < 0.75)).astype(np.float32)  # held 0.75 s, then silence
    for s in (-1.0, 1.0, 12.0):
        out = copies.shifted(tone, SR, s)
        assert out.shape == tone.shape
        assert abs(_peak_hz(out) - 440.0 * 2 ** (s / 12)) < 2.0
        held = np.flatnonzero(np.abs(out) > 0.05)[-1] / SR  # the note now lasts 0.75 / 2^(s/12) s
        assert abs(held - min(1.0, 0.75 / 2 ** (s / 12))) < 0.01


def test_copies_keep_their_labels(tmp_path, monkeypatch):
    notes = tmp_path / "notes"
    (notes / "train").mkdir(parents=True)
    tone = 0.3 * np.sin(2 * np.pi * 330.0 * np.arange(4000) / SR)
    for name in ("a_0", "b_0"):
        sf.write(notes / "train" / f"{name}.flac", tone, SR)
    (notes / "metadata.csv").write_text("path,family\ntrain/a_0.flac,a\ntrain/b_0.flac,b\nheldout/c.flac,c\n")
    monkeypatch.setattr(sys, "argv", ["pitch_copies", str(notes), str(tmp_path / "out"), "--shifts", "-1", "2"])
    copies.main()
    rows = list(csv.DictReader(open(tmp_path / "out" / "metadata.csv")))
    assert [(r["path"], r["family"]) for r in rows] == [
        ("train/a_0.flac", "a"), ("train/a_0_-1st.flac", "a"), ("train/a_0_+2st.flac", "a"),
        ("train/b_0.flac", "b"), ("train/b_0_-1st.flac", "b"), ("train/b_0_+2st.flac", "b")]
    assert all((tmp_path / "out" / r["path"]).is_file() for r in rows)
    assert sf.info(tmp_path / "out" / "train" / "b_0_+2st.flac").frames == 4000


def test_a_zero_or_repeated_shift_is_refused(tmp_path, monkeypatch, capsys):
    for shifts in (["0", "1"], ["1", "1"]):
        monkeypatch.setattr(sys, "argv", ["pitch_copies", str(tmp_path), str(tmp_path / "out"), "--shifts", *shifts])
        with pytest.raises(SystemExit):
            copies.main()
        assert "each shift once, none 0" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()

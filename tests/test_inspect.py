"""`audiodiff inspect`: every bad-file kind of a small corpus is reported, and the time estimates add up."""

from __future__ import annotations

import numpy as np
import soundfile as sf
import torch
from click.testing import CliRunner

from audiodiff.cli import main
from audiodiff.data.survey import survey
from audiodiff.presets import PRESETS
from audiodiff.run.inspect import Estimate, duration, estimates, report

from .conftest import tone

SR = 16000


def corpus(root):
    """Labelled by subfolder: good notes, and one file of each kind inspect must name."""
    good, odd = root / "good", root / "odd"
    good.mkdir(parents=True)
    odd.mkdir()
    for k in range(3):
        sf.write(good / f"note{k}.wav", tone(220 * (k + 2), 1.5, sr=SR), SR)
    sf.write(odd / "copy.wav", tone(440, 1.5, sr=SR), SR)  # identical to good/note0.wav
    sf.write(odd / "loud.wav", np.clip(4 * tone(330, 1.5, sr=SR), -1, 1), SR)  # clipped
    sf.write(odd / "brief.wav", tone(330, 0.3, sr=SR), SR)  # usable, shorter than a crop
    sf.write(odd / "blip.wav", tone(330, 0.01, sr=SR), SR)  # shorter than one FFT window
    sf.write(odd / "quiet.wav", np.zeros(SR, dtype=np.float32), SR)  # silent
    sf.write(odd / "stereo48.wav", np.stack([tone(300, 1.5, sr=48000)] * 2, axis=1), 48000)
    (odd / "empty.wav").write_bytes(b"")
    (odd / "text.flac").write_text("not audio")
    nan = tone(330, 1.5, sr=SR)
    nan[100] = np.nan
    sf.write(odd / "nan.wav", nan, SR, subtype="FLOAT")
    return root


def test_inspect_names_every_kind_of_file(tmp_path):
    res = CliRunner().invoke(main, ["inspect", str(corpus(tmp_path / "data")), "--no-timing", "--no-progress"])
    out = res.output
    assert res.exit_code == 0, out
    assert "12 audio files, 7 usable, 5 skipped" in out
    assert "skipped odd/blip.wav: too short" in out and "skipped odd/quiet.wav: silent" in out
    assert "skipped odd/empty.wav: cannot read audio" in out and "skipped odd/text.flac: cannot read audio" in out
    assert "skipped odd/nan.wav: contains NaN or infinite samples" in out
    assert "clipping (more than 0.1% of samples at full scale): 1: odd/loud.wav" in out
    assert "identical files: 1: good/note0.wav = odd/copy.wav" in out
    assert "shorter than a crop (padded with silence): 1: odd/brief.wav" in out
    assert "sample rates: 16000 Hz x 9, 48000 Hz x 1" in out and "channels: 1 x 9, 2 x 1" in out
    assert "loudness: RMS -120 to" in out  # the silent file's floor, not minus infinity
    assert "labels: good 3, odd 4" in out
    assert "training time" not in out


def test_survey_counts_and_the_labels_of_a_folder_without_them(tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    sf.write(flat / "a.wav", tone(440, 1.5, sr=SR), SR)
    found = survey(flat, PRESETS["small"].mel, 64, progress=False)
    assert found.found == 1 and not found.skipped and found.labels.startswith("none")


def test_estimates_are_steps_times_the_measured_step(tmp_path):
    [tiny] = estimates(torch.device("cpu"), ("tiny",))
    assert tiny.steps == PRESETS["tiny"].train.steps and tiny.step_seconds > 0
    assert tiny.seconds == tiny.steps * tiny.step_seconds and 0.2e6 < tiny.parameters < 0.4e6
    assert [e.step_seconds for e in estimates(torch.device("cpu"), ("base",))] == [None]  # GPU-sized


def test_report_lines_for_the_presets(tmp_path):
    found = survey(corpus(tmp_path / "data"), PRESETS["small"].mel, 64, progress=False)
    text = report(tmp_path / "data", found, [Estimate("tiny", 300000, 1500, 0.2), Estimate("small", 17e6, 50000, 2.0),
                                             Estimate("base", 80e6, 200000, None)], torch.device("cpu"), 3.0)
    assert "tiny     0.30 M  1500 steps x 0.20 s = 5.0 min" in text
    assert "small   17.00 M  50000 steps x 2.00 s = 1.2 days   <- `audiodiff train` without --preset" in text
    assert "base    80.00 M  not timed on a CPU (GPU-sized)" in text
    assert [duration(s) for s in (3, 90, 7200, 172800)] == ["3 s", "1.5 min", "2.0 h", "2.0 days"]


def test_the_default_size_line_names_preset_time_and_end():
    import datetime

    from audiodiff.run.inspect import default_size_line

    line = default_size_line(Estimate("small", 17_330_000, 50000, 0.9), datetime.datetime(2026, 12, 7, 8, 0))
    assert line.startswith("size: preset small (17.3 M parameters), the default without --preset: "
                           "50000 steps x 0.90 s measured on this machine = 12.5 h, ending about Mon 20:30")
    assert "--preset tiny (1500 steps)" in line and "audiodiff inspect" in line


def test_a_bare_train_on_a_cpu_says_its_size_before_anything_runs(tmp_path, audio_dir, monkeypatch):
    """Only a new run without --preset or --config says it (the timing is stubbed; training is not run here). With
    --steps it is this line; without, the run gets a budget and the line of run/budget.py (tests/test_budget.py)."""
    import importlib

    from audiodiff.run import Session

    job = importlib.import_module("audiodiff.run.train")  # the module (the package's `train` is the function)

    monkeypatch.setattr(job, "estimate", lambda name, config, dev: Estimate(name, 17_330_000, config.train.steps, 0.5))
    monkeypatch.setattr(job, "_prepare_and_train", lambda *a, **k: None)
    said = []
    quiet = Session(device="cpu", progress=False, log=said.append, warn=said.append)
    job.train(audio_dir, tmp_path / "bare", overrides={"train": {"steps": 50000}}, session=quiet)
    assert len(said) == 1 and said[0].startswith("size: preset small") and "x 0.50 s" in said[0]
    said.clear()
    job.train(audio_dir, tmp_path / "tiny", preset_name="tiny", session=quiet)
    assert said == []

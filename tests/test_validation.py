"""Where a run stands while it trains: the held-out split, validation.csv, the printed line, the warnings (on scripted
score sequences) and the curve."""

import csv
import importlib

import numpy as np
import pytest
import soundfile as sf

from audiodiff.data.datasets import MAX_HELD, MIN_HELD, holdout
from audiodiff.run import Session
from audiodiff.run.validation import FILE, PLOT, Score, line, warnings

from .conftest import SR, tone

job = importlib.import_module("audiodiff.run.train")


def test_holdout_is_seeded_disjoint_and_bounded():
    kept, held = holdout(100, 0.1, seed=0)
    assert len(held) == 10 and sorted(kept + held) == list(range(100)) and not set(kept) & set(held)
    assert holdout(100, 0.1, seed=0) == (kept, held) and holdout(100, 0.1, seed=1)[1] != held
    assert holdout(10 * MIN_HELD - 10, 0.1, 0)[1] == []  # fewer than MIN_HELD: nothing held out
    assert len(holdout(10_000, 0.1, 0)[1]) == MAX_HELD
    assert holdout(100, 0.0, 0) == (list(range(100)), [])  # runs made before validation train on every file


def scores(*fds, steps=900, noise=1e9):
    n = len(fds)
    return [Score(step=steps * (i + 1) // n, fd=fd, fd_to_noise=noise) for i, fd in enumerate(fds)]


def test_no_warning_while_the_score_improves():
    assert warnings(scores(300, 200, 150, 120, 100, 90), 900, floor=40) == {}
    assert warnings([], 900, 40) == {}


def test_a_score_that_stalls_over_the_last_third_warns():
    found = warnings(scores(300, 200, 150, 151, 150.5, 152), 900, floor=40)
    assert list(found) == ["stalled"] and "best 150.0 before step 600" in found["stalled"]
    # one point better within the last third is enough to keep quiet
    assert warnings(scores(300, 200, 150, 151, 140, 152), 900, floor=40) == {}
    # level at the floor or under it is as good as the held-out files can tell: no warning
    assert warnings(scores(300, 200, 150, 151, 150.5, 152), 900, floor=151) == {}
    assert list(warnings(scores(300, 200, 150, 151, 150.5, 152), 900, floor=150)) == ["stalled"]


def test_clips_still_nearer_noise_past_a_fifth_warn():
    early = [Score(100, 500.0, 300.0)]  # a ninth of the run: too early to judge
    assert warnings(early, 900, 40) == {}
    late = [Score(100, 500.0, 300.0), Score(200, 480.0, 320.0)]  # past a fifth, nearer noise (320 < 480)
    assert list(warnings(late, 900, 40)) == ["noise"] and "step 200 of 900" in warnings(late, 900, 40)["noise"]
    assert warnings([Score(100, 500.0, 300.0), Score(200, 200.0, 900.0)], 900, 40) == {}  # nearer the data now


def test_the_line_shows_step_time_left_trend_and_floor():
    got = line([Score(300, 61.04, 1e3), Score(900, 48.2, 1e3)], 1400, 190.0, 40.14)
    assert got == "validation: step 900/1400, 3.2 min left, FD 61.0 -> 48.2, floor 40.1"
    assert line([Score(1400, 48.2, 1e3)], 1400, None, 40.0) == "validation: step 1400/1400, FD 48.2, floor 40.0"


@pytest.fixture
def many_files(tmp_path):
    d = tmp_path / "many"
    d.mkdir()
    for i in range(80):
        sf.write(d / f"{i:02d}.wav", tone(200 + 10 * i, 0.3), SR)
    return d


def test_a_run_scores_each_checkpoint_against_its_held_out_files(tmp_path, many_files, tiny_config):
    cfg, out, said = tmp_path / "tiny.toml", tmp_path / "run", []
    cfg.write_text(tiny_config.replace("train", holdout=0.1).to_toml())
    job.train(many_files, out, config_file=cfg, session=Session(device="cpu", progress=False, log=said.append,
                                                                 warn=said.append))
    assert any("from 72 files (8 files held out for validation)" in s for s in said)
    with open(out / FILE, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [2, 4]  # one row per checkpoint
    for r in rows:
        assert np.isfinite([float(r[k]) for k in ("fd", "floor", "noise_fd", "fd_to_noise", "minutes")]).all()
        assert float(r["floor"]) < float(r["noise_fd"])  # real training clips are nearer the held-out ones than noise
    assert [s for s in said if s.startswith("validation: step")][-1].startswith("validation: step 4/4, FD ")
    assert (out / PLOT).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert any(s.startswith("validation: FD ") and "curve in" in s for s in said)

    said.clear()  # continuing: the rows before the resumed step stay, one new row per new checkpoint
    job.train(many_files, out, overrides={"train": {"steps": 6}}, session=Session(device="cpu", progress=False,
                                                                                  log=said.append, warn=said.append))
    with open(out / FILE, newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [2, 4, 6]


def test_too_few_files_train_on_all_of_them(tmp_path, audio_dir, tiny_config):
    cfg, said = tmp_path / "tiny.toml", []
    cfg.write_text(tiny_config.replace("train", holdout=0.1).to_toml())
    job.train(audio_dir, tmp_path / "run", config_file=cfg, session=Session(device="cpu", progress=False,
                                                                           log=said.append, warn=said.append))
    assert any("no validation (too few files to hold some out)" in s for s in said)
    assert not (tmp_path / "run" / FILE).exists()

"""`audiodiff train --minutes M`: the budget arithmetic, the fitted schedule, the deadline, resume, the size chosen for a
bare run on a CPU, and two ranks agreeing. Step costs are stubbed where a test depends on them: no test asserts
wall-clock times."""

import importlib
import math

import pytest
import torch

from audiodiff import checkpoint
from audiodiff.config import Config
from audiodiff.presets import preset
from audiodiff.run import Session
from audiodiff.runfolder import latest_checkpoint, run_config
from audiodiff.training import budget as budget_module
from audiodiff.training.budget import CHECKPOINTS, MARGIN, fit_steps, fitted
from audiodiff.training.diffusion import train as train_model
from audiodiff.training.kit import Costs, Deadline, Loop, loop

from .test_distributed import torchrun
from .test_train import data  # noqa: F401 - the fixture

job = importlib.import_module("audiodiff.run.train")  # the module (the package's `train` is the function)
plan = importlib.import_module("audiodiff.run.budget")


def test_fit_steps_closed_form():
    costs = Costs(step=0.2, checkpoint=2.0)
    assert fit_steps(300, 10, costs) == math.floor((300 * (1 - MARGIN) - 10 - CHECKPOINTS * 2.0) / 0.2)
    assert fit_steps(300, 10, costs, checkpoints=1) == math.floor((300 * (1 - MARGIN) - 10 - 2.0) / 0.2)
    assert fit_steps(10, 9, costs) == 0  # nothing fits: 0, never negative


def test_fitted_schedule_follows_the_steps():
    tiny = preset("tiny")  # warm-up 50, EMA 0.995 (a time constant of 200 steps)
    short = fitted(tiny, 400).train
    assert (short.steps, short.warmup_steps, short.checkpoint_every) == (400, 20, 100)
    assert short.ema_decay == pytest.approx(1 - 7.5 / 400, abs=1e-6)  # time constant 400 / 7.5
    long = fitted(tiny, 6000).train
    assert (long.warmup_steps, long.ema_decay, long.checkpoint_every) == (50, 0.995, 1500)  # the preset's, no longer
    assert fitted(tiny, 3).train.ema_decay == pytest.approx(0.9)  # never under 10 steps


def test_refit_keeps_the_warm_up_under_way():
    tiny = fitted(preset("tiny"), 400)
    again = budget_module.refit(tiny, 20, Costs(step=0.1, checkpoint=1.0), budget=300, spent=10)
    assert again.train.steps == 20 + fit_steps(300, 10, Costs(0.1, 1.0))
    assert again.train.warmup_steps == tiny.train.warmup_steps == 20
    assert again.train.checkpoint_every == math.ceil(again.train.steps / CHECKPOINTS)
    assert budget_module.refit(tiny, 20, Costs(10.0, 1.0), 300, 299).train.steps == 21  # at least one more step


def checkpoint_steps(run_dir):
    return [int(p.stem.split("_")[-1]) for p in sorted(run_dir.glob("checkpoints/step_*.safetensors"))]


def test_refit_spaces_the_checkpoints_left_from_the_last():
    tiny = fitted(preset("tiny"), 400)
    again = budget_module.refit(tiny, 150, Costs(0.1, 1.0), budget=300, spent=100, checkpoints=2, since=150)
    assert again.train.steps == 150 + fit_steps(300, 100, Costs(0.1, 1.0), checkpoints=2)
    assert again.train.checkpoint_every == math.ceil((again.train.steps - 150) / 2)  # one halfway, one at the end


class Counter:
    def __init__(self):
        self.step, self.bad_run, self.bad_steps = 0, 0, 0


def test_the_loop_replans_a_twentieth_in_and_after_each_checkpoint_but_the_last():
    """A scripted plan: the loop asks at replan_at steps and after each checkpoint that is not the last, says what it
    measured, and puts the next checkpoint checkpoint_every steps after the last one."""
    state, saved, asked = Counter(), [], []
    plans = iter([(30, 10), (30, 10), (26, 16)])  # the third moves the end and the last checkpoint with it

    def step():
        state.step += 1
        return {"loss": 0.0}

    def replan(pace):
        asked.append((state.step, pace.checkpoints, pace.last, pace.checkpoint is None, pace.step >= 0))
        return next(plans)

    spec = Loop(step, lambda rows, speed: ({}, {}), lambda: saved.append(state.step) is not None, 20, 100, 5, 1.0,
                "here", "", replan=replan, replan_at=2)
    loop(state, spec, None, progress=False)
    assert saved == [10, 20, 26] and state.step == 26
    assert asked == [(2, 0, 0, True, True), (10, 1, 10, False, True), (20, 2, 20, False, True)]


def test_deadline_closed_form():
    d = Deadline(at=100.0, costs=Costs(step=1.0, checkpoint=4.0))
    assert not d.passed(95.0) and d.passed(95.5)


def test_a_past_deadline_makes_the_next_step_the_last(tmp_path, data, tiny_config):  # noqa: F811
    said = []
    config = tiny_config.replace("train", steps=50, checkpoint_every=100)
    state = train_model(config, data, tmp_path / "r", torch.device("cpu"), progress=False, log=said.append,
                        deadline=Deadline(at=float("-inf"), costs=Costs(0.0, 0.0)))
    assert state.step == 1 and latest_checkpoint(tmp_path / "r").name.endswith("00000001.safetensors")
    assert any("the time is up at step 1 of 50" in s for s in said)
    assert checkpoint.read_meta(latest_checkpoint(tmp_path / "r"))["seconds"] > 0  # the run's wall time so far


def quiet(said: list) -> Session:
    return Session(device="cpu", progress=False, log=said.append, warn=said.append)


def test_budget_recorded_and_resume_spends_what_is_left(tmp_path, audio_dir, tiny_config, monkeypatch):
    monkeypatch.setattr(plan, "calibrate", lambda *a, **k: Costs(step=0.05, checkpoint=0.0))
    cfg, out, said = tmp_path / "tiny.toml", tmp_path / "run", []
    cfg.write_text(tiny_config.to_toml())
    state = job.train(audio_dir, out, config_file=cfg, overrides={"train": {"minutes": 0.05}}, session=quiet(said))
    stored = run_config(out)
    assert stored.train.minutes == 0.05 and stored.train.steps > 0
    assert any(s.startswith("budget: 0.05 min for preset test") for s in said)
    # a twentieth in, the steps were fitted again to the step time measured in training (the stub said 0.05 s), and
    # again after each checkpoint: the stored plan is the last one said, and no more checkpoints than planned
    [again_line] = [s for s in said if s.startswith("budget: a step takes")]
    assert "(0.05 s measured before it)" in again_line
    plans = [s for s in said if s.startswith("budget: a step takes") or s.startswith("budget: at step")]
    said_steps = int(plans[-1].split(" -> ")[1].split()[0])  # a later plan is said when it moves the end by 1/50
    assert abs(stored.train.steps - said_steps) <= said_steps / 50
    assert 1 <= len(checkpoint_steps(out)) <= CHECKPOINTS
    spent = checkpoint.read_meta(latest_checkpoint(out))["seconds"]
    assert 0 < spent and state.step <= stored.train.steps

    said.clear()  # the same command again: the plan is kept and nothing more than the plan is trained
    again = job.train(audio_dir, out, config_file=cfg, overrides={"train": {"minutes": 0.05}}, session=quiet(said))
    assert any(s.startswith("budget: ") and "left after" in s for s in said)
    assert again.step == state.step or run_config(out).train.steps == stored.train.steps

    said.clear()  # a larger budget trains on
    more = job.train(audio_dir, out, overrides={"train": {"minutes": 0.1}}, session=quiet(said))
    assert more.step > again.step and run_config(out).train.minutes == 0.1
    assert any("training from step" in s for s in said)


def test_steps_and_minutes_are_one_or_the_other(tmp_path, audio_dir, tiny_config):
    with pytest.raises(ValueError, match="--steps and --minutes both"):
        job.train(audio_dir, tmp_path / "r", overrides={"train": {"steps": 5, "minutes": 1.0}}, session=quiet([]))
    assert job._length({"train": {"steps": 5}})["train"]["minutes"] == 0.0  # --steps alone: exactly that, no budget


def test_bare_train_on_a_cpu_chooses_the_size_for_its_budget(tmp_path, audio_dir, monkeypatch):
    """small would get far fewer than its MIN_STEPS in the (shortened) default budget: tiny is chosen, and said why."""
    measured = []
    monkeypatch.setattr(job, "DEFAULT_CPU_MINUTES", 0.05)

    def costs(config, *a, **k):
        measured.append(config.preset)
        return Costs(step=0.5, checkpoint=0.0)

    monkeypatch.setattr(plan, "calibrate", costs)
    said = []
    job.train(audio_dir, tmp_path / "bare", session=quiet(said))
    assert measured == ["small", "tiny"] and run_config(tmp_path / "bare").preset == "tiny"
    [line] = [s for s in said if s.startswith("size:")]
    assert "a 0.05 min budget" in line and "preset tiny" in line and "small (17.3 M) would get only" in line
    assert "of the 10000 steps it needs" in line and "ending about" in line


def test_a_budget_with_no_room_for_a_step_is_refused(tmp_path, audio_dir, tiny_config, monkeypatch):
    monkeypatch.setattr(plan, "calibrate", lambda *a, **k: Costs(step=100.0, checkpoint=0.0))
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    with pytest.raises(ValueError, match="not even one step fits"):
        job.train(audio_dir, tmp_path / "r", config_file=cfg, overrides={"train": {"minutes": 0.05}},
                  session=quiet([]))


def test_two_ranks_agree_on_the_plan(tmp_path, audio_dir, tiny_config):
    """Each rank measures its own costs; the plan takes the largest of each, so both train the same steps (the
    trainer checks that the ranks' weights are identical at the end)."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.replace("train", preview_count=0).to_toml())
    proc = torchrun("train", str(audio_dir), "--out", str(tmp_path / "ddp"), "--config", str(cfg), "--minutes", "0.1",
                    "--device", "cpu", "--no-progress")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("budget: 0.1 min") == 1 and "2 processes: weights identical on every rank" in proc.stdout
    assert Config.from_toml(tmp_path / "ddp" / "config.toml").train.minutes == 0.1


def test_largest_is_the_identity_in_one_process():
    from audiodiff.training.distributed import Dist, largest

    assert largest([1.0, 2.5], Dist()) == [1.0, 2.5]
    assert budget_module.CHECKPOINTS >= 2  # the first checkpoint comes before the end, to score the run midway

"""--log tensorboard: event files beside loss.csv, read back with tensorboard's own reader."""

import sys

import pytest

from .test_cli import invoke

accumulator = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")


def read_events(folder):
    events = accumulator.EventAccumulator(str(folder), size_guidance={"scalars": 0, "audio": 0, "images": 0})
    events.Reload()
    return events


def train(audio_dir, out, cfg, *extra):
    res = invoke("train", str(audio_dir), "--out", str(out), "--config", str(cfg), "--device", "cpu", "--no-progress",
                 "--log", "tensorboard", *extra)
    assert res.exit_code == 0, res.output


def test_tensorboard_has_the_curves_and_previews_and_resumes_cleanly(tmp_path, audio_dir, tiny_config):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())  # 4 steps, a row every step, checkpoints (and a preview) every 2
    out = tmp_path / "run"
    train(audio_dir, out, cfg)
    train(audio_dir, out, cfg, "--steps", "6")
    events = read_events(out / "tensorboard")
    assert {"train/loss", "train/lr", "train/grad_norm", "train/samples_per_s", "train/bad_steps"} <= set(
        events.Tags()["scalars"])
    rows = (out / "loss.csv").read_text().splitlines()[1:]
    csv_loss = {int(r.split(",")[0]): float(r.split(",")[1]) for r in rows}
    board_loss = {e.step: e.value for e in events.Scalars("train/loss")}
    assert sorted(board_loss) == sorted(csv_loss) == [1, 2, 3, 4, 5, 6]  # the resume left no duplicate step
    assert all(abs(board_loss[s] - csv_loss[s]) < 1e-6 for s in csv_loss)
    assert [e.step for e in events.Audio("preview/0")] == [2, 4, 6]
    assert [e.step for e in events.Images("preview/0_mel")] == [2, 4, 6]
    audio = events.Audio("preview/0")[0]
    assert audio.sample_rate == tiny_config.mel.sample_rate and audio.length_frames > 0


def test_without_tensorboard_installed_it_is_one_clear_error(tmp_path, audio_dir, tiny_config, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # import now fails as if not installed
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    res = invoke("train", str(audio_dir), "--out", str(tmp_path / "r"), "--config", str(cfg), "--device", "cpu",
                 "--no-progress", "--log", "tensorboard")
    assert res.exit_code != 0 and "needs the tensorboard package: pip install 'audiodiff[tensorboard]'" in res.output

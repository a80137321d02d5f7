"""experiments/average_checkpoints.py: the EMA weights averaged over checkpoints, everything else the last one's;
checkpoints of different runs, a single checkpoint, or an output that would overwrite an input are refused."""

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from audiodiff import checkpoint

spec = importlib.util.spec_from_file_location(
    "average_checkpoints", Path(__file__).resolve().parents[1] / "average_checkpoints.py")
avg = importlib.util.module_from_spec(spec)
spec.loader.exec_module(avg)


def _ckpt(path: Path, step: int, ema: float, model: float, config: dict | None = None) -> Path:
    tensors = {"ema.w": torch.full((2, 3), ema), "ema.b": torch.tensor([ema, -ema]),
               "model.w": torch.full((2, 3), model)}
    checkpoint.write(path, tensors, {"step": step, "config": config or {"unet": {"channels": 16}}})
    return path


def test_ema_weights_are_the_mean_and_the_rest_is_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    # a run continued from 2250 to 3000 steps: its checkpoints' configs differ in train.steps only
    paths = [_ckpt(tmp_path / f"{s}.safetensors", s, ema, model,
                   config={"unet": {"channels": 16}, "train": {"steps": s}})
             for s, ema, model in ((2250, 1.0, 10.0), (2500, 2.0, 20.0), (3000, 6.0, 30.0))]
    out = tmp_path / "avg" / "checkpoints" / "step_00003000.safetensors"
    monkeypatch.setattr(sys, "argv", ["avg", str(out), *map(str, paths)])
    avg.main()
    tensors, meta = checkpoint.read(out)  # a valid checkpoint: its checksum covers the new weights
    assert torch.equal(tensors["ema.w"], torch.full((2, 3), 3.0))
    assert torch.equal(tensors["ema.b"], torch.tensor([3.0, -3.0]))
    assert torch.equal(tensors["model.w"], torch.full((2, 3), 30.0))  # the raw weights are not averaged
    assert meta["step"] == 3000 and meta["config"] == {"unet": {"channels": 16}, "train": {"steps": 3000}}
    assert "averaged, step 3000" in capsys.readouterr().out


def test_checkpoints_of_another_run_are_refused(tmp_path):
    a = _ckpt(tmp_path / "a.safetensors", 500, 1.0, 1.0)
    b = _ckpt(tmp_path / "b.safetensors", 1000, 2.0, 2.0, config={"unet": {"channels": 32}})
    with pytest.raises(SystemExit, match="not a checkpoint of the same run"):
        avg.average([a, b])


@pytest.mark.parametrize("case", ["one", "overwrite"])
def test_one_checkpoint_or_an_input_as_output_is_refused(tmp_path, monkeypatch, case):
    a = _ckpt(tmp_path / "a.safetensors", 500, 1.0, 1.0)
    b = _ckpt(tmp_path / "b.safetensors", 1000, 2.0, 2.0)
    argv = [str(tmp_path / "out.safetensors"), str(a)] if case == "one" else [str(b), str(a), str(b)]
    monkeypatch.setattr(sys, "argv", ["avg", *argv])
    with pytest.raises(SystemExit, match="at least two" if case == "one" else "would overwrite"):
        avg.main()
    assert checkpoint.read(b)[0]["ema.w"][0, 0] == 2.0


def test_an_existing_output_is_kept_unless_forced(tmp_path, monkeypatch):
    a = _ckpt(tmp_path / "a.safetensors", 500, 1.0, 1.0)
    b = _ckpt(tmp_path / "b.safetensors", 1000, 3.0, 3.0)
    out = _ckpt(tmp_path / "out.safetensors", 10, 9.0, 9.0)
    monkeypatch.setattr(sys, "argv", ["avg", str(out), str(a), str(b)])
    with pytest.raises(SystemExit, match="exists; pass --force"):
        avg.main()
    assert checkpoint.read(out)[0]["ema.w"][0, 0] == 9.0
    monkeypatch.setattr(sys, "argv", ["avg", str(out), str(a), str(b), "--force"])
    avg.main()
    assert checkpoint.read(out)[0]["ema.w"][0, 0] == 2.0

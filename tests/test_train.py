import math

import numpy as np
import pytest
import torch

from audiodiff import checkpoint
from audiodiff import device as devices
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.data.datasets import MelDataset
from audiodiff.data.prepare import load_mels
from audiodiff.device import resolve_precision
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.runfolder import latest_checkpoint
from audiodiff.training.diffusion import load_state, lr_at, train
from audiodiff.training.kit import MAX_BAD_STEPS

from .conftest import tolerance


@pytest.fixture
def data(audio_dir, tiny_config):
    return load_mels(audio_dir, MelSpectrogram(tiny_config.mel), tiny_config.data.crop_frames, progress=False)[0]


def with_steps(config, steps, **kw):
    return config.replace("train", steps=steps, **kw)


def test_lr_warmup_closed_form(tiny_config):
    c = tiny_config.replace("train", lr=1e-3, warmup_steps=4)
    assert [lr_at(s, c) for s in range(6)] == pytest.approx([2.5e-4, 5e-4, 7.5e-4, 1e-3, 1e-3, 1e-3])


def test_lr_cosine_closed_form(tiny_config):
    # warm-up 4 steps, then a half cosine over the 8 steps to `steps` = 12, from 1e-3 down to a floor of 1e-4
    c = tiny_config.replace("train", lr=1e-3, warmup_steps=4, steps=12, lr_schedule="cosine", lr_floor=0.1)
    assert lr_at(1, c) == pytest.approx(5e-4)
    assert lr_at(4, c) == pytest.approx(1e-3)
    assert lr_at(8, c) == pytest.approx(1e-4 + 9e-4 * 0.5)  # halfway: the mean of peak and floor
    assert lr_at(6, c) == pytest.approx(1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi / 4)))
    assert lr_at(12, c) == pytest.approx(1e-4) and lr_at(40, c) == pytest.approx(1e-4)  # held past `steps`
    with pytest.raises(ValueError, match="lr_schedule"):
        c.replace("train", lr_schedule="linear")
    with pytest.raises(ValueError, match="lr_floor"):
        c.replace("train", lr_floor=1.5)


def test_bf16_falls_back_to_fp32_on_a_cpu_without_it(monkeypatch, tmp_path, data, tiny_config):
    """Emulated bf16 (an AVX2-only x86) made a training step 8x slower than fp32: there the default bf16 trains in fp32, says
    so, and autocast is a no-op; where the CPU has it, bf16 stays bf16."""
    cpu = torch.device("cpu")
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: False)
    assert resolve_precision(cpu, "bf16") == "fp32" and resolve_precision(cpu, "fp16") == "fp16"
    with devices.autocast(cpu, "bf16"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.float32
    said = []
    state = train(with_steps(tiny_config.replace("train", precision="bf16", preview_count=0), 1), data,
                  tmp_path / "run", cpu, progress=False, log=said.append)
    assert state.precision == "fp32" and any("no native bf16 support, training in fp32" in s for s in said)
    monkeypatch.setattr(devices, "cpu_has_bf16", lambda: True)
    assert resolve_precision(cpu, "bf16") == "bf16"
    with devices.autocast(cpu, "bf16"):
        assert torch.ones(2, 2).matmul(torch.ones(2, 2)).dtype == torch.bfloat16


@pytest.mark.parametrize("precision", ["fp32", "bf16", "fp16"])
def test_resume_continues_exactly(tmp_path, data, tiny_config, device, precision):
    """2 + 2 resumed steps equal 4 straight ones: bit for bit on CPU, in every precision (bf16 is the default;
    fp16 also carries its loss scale). On a GPU cuDNN may pick other convolution algorithms in the second
    process and sum in another order, so there the check is to a tolerance."""
    config = tiny_config.replace("train", precision=precision, preview_count=0)
    straight = train(config, data, tmp_path / "a", device, progress=False, log=lambda s: None)
    train(with_steps(config, 2), data, tmp_path / "b", device, progress=False)
    resumed = train(config, data, tmp_path / "b", device, progress=False, log=lambda s: None)
    assert straight.step == resumed.step == 4 and straight.precision == resolve_precision(device, precision)
    (a, meta_a), (b, meta_b) = (checkpoint.read(latest_checkpoint(tmp_path / d)) for d in "ab")
    assert a.keys() == b.keys() and any(k.startswith("optim.") for k in a)
    assert meta_a["grad_scaler"] == meta_b["grad_scaler"] and bool(meta_a["grad_scaler"]) == (precision == "fp16")
    for k in a:
        if device.type == "cpu" or k.startswith("rng."):
            assert torch.equal(a[k], b[k]), k  # model, EMA, optimizer and RNG state bit-identical
        else:
            torch.testing.assert_close(a[k], b[k], atol=1e-4, rtol=1e-3, msg=k)
    losses = [[row.split(",")[1] for row in (tmp_path / r / "loss.csv").read_text().splitlines()] for r in "ab"]
    assert len(losses[0]) == 5  # header + steps 1..4, no duplicates
    if device.type == "cpu":
        assert losses[0] == losses[1]
    assert all(torch.isfinite(p).all() for p in resumed.model.parameters())


def test_runs_keep_their_optimizer_kernel_when_continued(tmp_path, data, tiny_config, monkeypatch):
    """New runs use fused AdamW; a run saved with the per-tensor AdamW (older runs) continues with it."""
    cpu = torch.device("cpu")
    assert train(with_steps(tiny_config, 1), data, tmp_path / "new", cpu, progress=False).optimizer.defaults["fused"]
    with monkeypatch.context() as m:
        m.setattr("audiodiff.training.diffusion.adamw", lambda params, device, **kw: torch.optim.AdamW(params, **kw))
        straight = train(tiny_config, data, tmp_path / "a", cpu, progress=False)
        train(with_steps(tiny_config, 2), data, tmp_path / "b", cpu, progress=False)
    resumed = train(tiny_config, data, tmp_path / "b", cpu, progress=False)
    assert not resumed.optimizer.param_groups[0]["fused"]
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_checkpoints_pruned_and_previews_written(tmp_path, data, tiny_config):
    from audiodiff.run.previews import preview_writer

    config = with_steps(tiny_config, 6, keep_checkpoints=2)
    train(config, data, tmp_path, torch.device("cpu"), progress=False, on_checkpoint=preview_writer(config, tmp_path))
    assert [p.name for p in sorted((tmp_path / "checkpoints").iterdir())] == [
        "step_00000004.safetensors", "step_00000006.safetensors"]
    assert (tmp_path / "samples" / "step_00000006_0.wav").exists()
    assert (tmp_path / "samples" / "step_00000006_0.png").exists()


def test_incompatible_config_refused(tmp_path, data, tiny_config):
    train(tiny_config, data, tmp_path, torch.device("cpu"), progress=False)
    other = tiny_config.replace("unet", channels=16)
    with pytest.raises(checkpoint.CheckpointError, match=r"incompatible config: unet.channels: 8 in the run, 16"):
        load_state(latest_checkpoint(tmp_path), other, torch.device("cpu"))


def test_damaged_checkpoints_give_clear_errors(tmp_path, data, tiny_config):
    train(tiny_config, data, tmp_path, torch.device("cpu"), progress=False)
    path = latest_checkpoint(tmp_path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(checkpoint.CheckpointError, match="step_00000004.safetensors: unreadable or damaged"):
        SpectrogramDiffusion.load(path)
    tensors, meta = checkpoint.read(tmp_path / "checkpoints" / "step_00000002.safetensors")
    del tensors["ema.conv_in.weight"]
    checkpoint.write(tmp_path / "x.safetensors", tensors, meta)
    with pytest.raises(checkpoint.CheckpointError, match="missing 'conv_in.weight'"):
        SpectrogramDiffusion.load(tmp_path / "x.safetensors")
    (tmp_path / "empty").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="no checkpoint in"):
        SpectrogramDiffusion.load(tmp_path / "empty")


def test_pipeline_rebuilds_from_checkpoint_alone(tmp_path, data, tiny_config):
    train(tiny_config, data, tmp_path, torch.device("cpu"), progress=False)
    pipe = SpectrogramDiffusion.load(latest_checkpoint(tmp_path), device="cpu")
    assert pipe.config == tiny_config and pipe.step == 4
    out = pipe.generate(3, steps=4, seed=7, seconds=0.3, batch_size=2)
    assert out.audio.shape == (3, 2400) and out.sample_rate == 8000 and torch.isfinite(out.audio).all()
    assert out.logmel.shape == (3, 1, 16, 1 + 38)  # 1 + ceil(2400 / hop 64) frames cover 0.3 s
    again = pipe.generate(3, steps=4, seed=7, seconds=0.3, batch_size=3)
    # clip i depends on seed + i only, up to float rounding (conv kernels block differently per batch size)
    torch.testing.assert_close(again.logmel, out.logmel, atol=1e-4, rtol=0)
    same_batch = pipe.generate(3, steps=4, seed=7, seconds=0.3, batch_size=2)
    assert torch.equal(same_batch.audio, out.audio)
    more = pipe.generate(5, steps=4, seed=7, seconds=0.3, batch_size=8)  # -n 5: clips 0-2 in a batch of 5, not 2 + 1
    torch.testing.assert_close(more.logmel[:3], out.logmel, atol=1e-4, rtol=0)
    assert not torch.allclose(more.logmel[3], more.logmel[4])


def test_loss_decreases(tmp_path, data, tiny_config):
    config = with_steps(tiny_config, 150, checkpoint_every=150, log_every=10, preview_count=0)
    train(config, data, tmp_path, torch.device("cpu"), progress=False)
    losses = [float(r.split(",")[1]) for r in (tmp_path / "loss.csv").read_text().splitlines()[1:]]
    assert losses[-1] < 0.5 * losses[0]


def test_nan_losses_stop_training_with_clear_error(tmp_path, tiny_config):
    mels = torch.full((1, 16, 40), float("nan"), dtype=torch.float16)
    data = MelDataset.from_mels([mels], ["nan.wav"], 16)
    with pytest.raises(FloatingPointError, match=f"NaN/inf {MAX_BAD_STEPS} times"):
        train(tiny_config, data, tmp_path, torch.device("cpu"), progress=False)
    assert latest_checkpoint(tmp_path) is None


def test_single_nan_batch_is_skipped_and_counted(tmp_path, data, tiny_config, monkeypatch):
    real_crops, calls = data.crops, []

    def sometimes_nan(files, generator):
        batch = real_crops(files, generator)
        calls.append(1)
        return torch.full_like(batch, float("nan")) if len(calls) == 2 else batch

    monkeypatch.setattr(data, "crops", sometimes_nan)
    state = train(tiny_config, data, tmp_path, torch.device("cpu"), progress=False)
    assert state.step == 4 and state.bad_steps == 1 and len(calls) == 5
    rows = (tmp_path / "loss.csv").read_text().splitlines()
    assert rows[-1].endswith(",1")  # bad_steps column
    assert all(torch.isfinite(p).all() for p in state.model.parameters())


def test_min_snr_weighting_trains_and_changes_the_loss(tmp_path, data, tiny_config):
    plain = train(tiny_config, data, tmp_path / "a", torch.device("cpu"), progress=False)
    weighted = train(tiny_config.replace("train", min_snr_gamma=5.0), data, tmp_path / "b", torch.device("cpu"),
                     progress=False)
    la, lb = ((tmp_path / r / "loss.csv").read_text().splitlines()[1].split(",")[1] for r in "ab")
    assert la != lb and weighted.step == plain.step == 4  # same batches and noise, reweighted loss


def test_gradient_accumulation_takes_the_same_steps(tmp_path, data, tiny_config, device):
    one = train(tiny_config, data, tmp_path / "a", device, progress=False)
    acc = train(tiny_config.replace("train", grad_accum=2), data, tmp_path / "b", device, progress=False)
    assert acc.step == one.step == 4
    for p, q in zip(one.model.parameters(), acc.model.parameters()):
        torch.testing.assert_close(p, q, atol=tolerance(device, 1e-5, 1e-4), rtol=0)
    assert not torch.equal(one.model.conv_out.weight, torch.zeros_like(one.model.conv_out.weight))  # it trained
    # Adam hides a wrong gradient scale, the logged loss does not
    la, lb = ([float(r.split(",")[1]) for r in (tmp_path / d / "loss.csv").read_text().splitlines()[1:]] for d in "ab")
    assert len(la) == 4 and np.allclose(la, lb, atol=tolerance(device, 1e-5, 1e-4)), (la, lb)
    with pytest.raises(ValueError, match="grad_accum = 3"):
        train(tiny_config.replace("train", grad_accum=3, steps=5), data, tmp_path / "b", torch.device("cpu"),
              progress=False)


def test_compiled_training_matches_eager(tmp_path, data, tiny_config):
    """--compile changes how the step runs, not what it computes (fp32, so only op reordering differs)."""
    cfg = tiny_config.replace("train", steps=2, checkpoint_every=2, preview_count=0)
    eager = train(cfg, data, tmp_path / "a", torch.device("cpu"), progress=False)
    compiled = train(cfg.replace("train", compile=True), data, tmp_path / "b", torch.device("cpu"), progress=False)
    for p, q in zip(eager.model.parameters(), compiled.model.parameters()):
        torch.testing.assert_close(p, q, atol=1e-4, rtol=0)
    la, lb = ([float(r.split(",")[1]) for r in (tmp_path / d / "loss.csv").read_text().splitlines()[1:]] for d in "ab")
    assert np.allclose(la, lb, atol=1e-4), (la, lb)
    # the run's model config is untouched: a compiled run resumes without compiling, and vice versa
    assert latest_checkpoint(tmp_path / "b") is not None
    load_state(latest_checkpoint(tmp_path / "b"), cfg, torch.device("cpu"))


def test_prune_never_deletes_the_newest_checkpoint(tmp_path):
    from audiodiff.runfolder import checkpoint_path, checkpoints
    from audiodiff.training.kit import prune

    for step in (2, 4, 6):
        checkpoint_path(tmp_path, step).parent.mkdir(exist_ok=True)
        checkpoint_path(tmp_path, step).write_bytes(b"x")
    prune(tmp_path, 0)
    assert checkpoints(tmp_path) == [checkpoint_path(tmp_path, 6)]


def test_loss_log_keeps_the_rows_a_resume_replaces(tmp_path):
    from audiodiff.training.kit import LossLog

    path = tmp_path / "loss.csv"
    log = LossLog(path, 0)
    for step in (1, 2, 3):
        log.append(step=step, loss=0.5, lr=1e-3, grad_norm=1.0, samples_per_s=10, bad_steps=0)
    with open(path, "a") as f:
        f.write("4,0.4")  # torn by a crash
    LossLog(path, 1)  # resumed from the step-1 checkpoint
    assert [r.split(",")[0] for r in path.read_text().splitlines()] == ["step", "1"]
    assert [r.split(",")[0] for r in (tmp_path / "loss.replaced.csv").read_text().splitlines()] == ["step", "2", "3"]


def test_bad_steps_stop_training_only_when_consecutive(tmp_path, data, tiny_config, monkeypatch):
    """19 non-finite batches, one good one, 19 more: training goes on; the rule is MAX_BAD_STEPS in a row."""
    real_crops, calls = data.crops, []
    bad = set(range(MAX_BAD_STEPS - 1)) | set(range(MAX_BAD_STEPS, 2 * MAX_BAD_STEPS - 1))

    def crops(files, generator):
        batch = real_crops(files, generator)
        calls.append(1)
        return torch.full_like(batch, float("nan")) if len(calls) - 1 in bad else batch

    monkeypatch.setattr(data, "crops", crops)
    state = train(tiny_config.replace("train", preview_count=0), data, tmp_path, torch.device("cpu"), progress=False)
    assert state.step == 4 and state.bad_steps == 2 * (MAX_BAD_STEPS - 1) and state.bad_run == 0


def test_non_finite_gradients_skip_the_step(tmp_path, data, tiny_config, monkeypatch):
    """A finite loss whose gradients overflow must not reach the optimizer."""
    from audiodiff.training import diffusion as train_module

    class InfGrad(torch.autograd.Function):  # identity forward, infinite gradient backward
        @staticmethod
        def forward(ctx, x):
            return x.clone()

        @staticmethod
        def backward(ctx, grad):
            return torch.full_like(grad, float("inf"))

    real_loss, calls = train_module._loss, []

    def loss_with_inf_grad(net, *args, **kw):
        loss = real_loss(net, *args, **kw)
        calls.append(1)
        if len(calls) == 2:
            loss = loss + InfGrad.apply(next(net.parameters())).sum() * 0  # finite value, infinite gradient
            assert torch.isfinite(loss)
        return loss

    monkeypatch.setattr(train_module, "_loss", loss_with_inf_grad)
    state = train(tiny_config.replace("train", preview_count=0), data, tmp_path, torch.device("cpu"), progress=False)
    assert state.step == 4 and state.bad_steps == 1
    assert all(torch.isfinite(p).all() for p in state.model.parameters())


def test_fp16_overflow_lowers_the_loss_scale_and_skips_the_step(tmp_path, data, tiny_config, device):
    """fp16 autocast with dynamic loss scaling: a step whose scaled gradients overflow is skipped and halves the
    scale; the run continues (the scale's default start, 2^16, is far above what this tiny model tolerates)."""
    from audiodiff.diffusion.schedule import GaussianSchedule
    from audiodiff.training.diffusion import new_state, train_step

    config = tiny_config.replace("train", precision="fp16")
    state = new_state(config, device)
    assert state.scaler.is_enabled()
    state.scaler = torch.amp.GradScaler(device.type, init_scale=2.0**40)  # certain to overflow fp16 gradients
    schedule = GaussianSchedule.from_config(config.diffusion)
    x0 = data.crops(data.sample_files(4, state.generator), state.generator).to(device)
    loss, grad_norm = train_step(state, config, schedule, x0)
    assert loss != loss and state.step == 0 and state.bad_steps == 1 and state.scaler.get_scale() == 2.0**39
    for _ in range(60):  # halves on each overflow until the gradients fit
        loss, _ = train_step(state, config, schedule, x0)
        if loss == loss:
            break
    assert state.step == 1 and state.bad_run == 0 and state.scaler.get_scale() < 2.0**39
    assert all(torch.isfinite(p).all() for p in state.model.parameters())


def test_ema_follows_the_closed_form(device):
    """ema <- decay * ema + (1 - decay) * param, with the warm-up decay min(d, (1 + n) / (10 + n))."""
    from audiodiff.training.kit import ema_decay_at, ema_update

    ema, model = torch.nn.Linear(3, 2).to(device), torch.nn.Linear(3, 2).to(device)
    before = [p.detach().clone() for p in ema.parameters()]
    decay = ema_decay_at(1, 0.999)
    assert decay == pytest.approx(2 / 11) and ema_decay_at(10**6, 0.999) == 0.999
    ema_update(ema, model, decay)
    for e, b, p in zip(ema.parameters(), before, model.parameters()):
        torch.testing.assert_close(e, decay * b + (1 - decay) * p)

"""The diffusion training loop: mel crops -> schedule.q_sample -> unet -> loss, with EMA, warm-up,
gradient clipping, bf16/fp16 autocast, periodic atomic checkpoints and exact resume, on the loop of training/kit.py.

It writes loss.csv and checkpoints/ into the run folder; the jobs in run/ own the rest of the folder (config,
data, previews), and `audiodiff train` calls them.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor, nn

from .. import checkpoint
from ..config import Config
from ..data.datasets import MelDataset
from ..device import autocast, configure_for_training, grad_scaler, resolve_precision
from ..diffusion import consistency
from ..diffusion.denoiser import for_sampling
from ..diffusion.schedule import EDM, GaussianSchedule
from ..model.adapt import load_trained, trainable
from ..model.conditioning import from_config as conditioning_of
from ..model.conditioning import guided
from ..model.unet import UNet
from ..runfolder import latest_checkpoint
from .distributed import Dist, all_true, barrier, replicas_agree, wrap
from .kit import (
    Deadline,
    Loop,
    LossLog,
    Pace,
    adamw,
    ema_decay_at,
    ema_update,
    flatten_optimizer,
    load_optimizer,
    loop,
    prune,
    restore_state,
    skip_step,
    state_meta,
    state_tensors,
    warmup_cosine,
    write_checkpoint,
)

CHECKPOINT_FORMAT = 1
OnCheckpoint = Callable[[nn.Module, int], "bool | None"]  # True: stop training after this checkpoint
Replan = Callable[[Config, int, Pace], Config]  # (config, step, what the loop measured) -> the config to go on with


@dataclass
class TrainState:
    """Everything that changes during training; together with the Config it is a checkpoint."""

    model: UNet
    ema: UNet
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # CPU generator for data crops, timesteps and noise
    precision: str  # what the step runs in: config.train.precision, or fp16 where a GPU lacks bf16
    scaler: torch.amp.GradScaler  # loss scaling for fp16; disabled otherwise
    step: int = 0
    bad_steps: int = 0  # steps skipped so far (non-finite loss or gradients)
    bad_run: int = 0  # of those, how many in a row up to now (training stops at MAX_BAD_STEPS)
    teacher: UNet | None = None  # a distillation's teacher (EMA weights, frozen); not part of the checkpoint
    seconds: float = 0.0  # wall seconds the run's commands spent before this one (a checkpoint's "seconds")
    clock: float = field(default_factory=time.perf_counter)  # when this command started (its data preparation)

    def spent(self) -> float:
        """Wall seconds the run has taken so far, over every command that trained it."""
        return self.seconds + time.perf_counter() - self.clock


def lr_at(step: int, config: Config) -> float:
    """Linear warm-up from 0 over warmup_steps, then constant (as in ADM) or, with lr_schedule "cosine", a
    half cosine from lr down to lr_floor * lr at `steps` (held there if training goes on)."""
    c = config.train
    if c.lr_schedule == "constant":
        return c.lr * min(1.0, (step + 1) / max(1, c.warmup_steps))
    return warmup_cosine(step, c.lr, c.warmup_steps, c.steps, c.lr_floor)


def new_state(config: Config, device: torch.device, teacher: UNet | None = None, start: UNet | None = None) -> TrainState:
    """A fresh state; with a teacher (distillation), the model starts as a copy of it; with `start` (a fine-tune,
    model.adapt.start_network), as a copy of that network, training only its parameters that require grad."""
    torch.manual_seed(config.train.seed)
    model = (copy.deepcopy(start) if start is not None else UNet(config.unet, conditioning_of(config))).to(device)
    if teacher is not None:
        model.load_state_dict(teacher.state_dict())
    ema = copy.deepcopy(model).requires_grad_(False).eval()
    opt = adamw([p for p in model.parameters() if p.requires_grad], device, lr=config.train.lr,
                weight_decay=config.train.weight_decay)
    precision = resolve_precision(device, config.train.precision)
    return TrainState(model, ema, opt, torch.Generator().manual_seed(config.train.seed), precision,
                      grad_scaler(device, precision), teacher=teacher)


def save_state(state: TrainState, config: Config, run_dir: Path) -> Path:
    """Write a checkpoint; a LoRA run's holds only its trained tensors (adapt.trainable), not its base's."""
    keep = set(trainable(state.model)) if config.finetune.lora_rank else None
    tensors = {
        **checkpoint.join("model", _kept(state.model.state_dict(), keep)),
        **checkpoint.join("ema", _kept(state.ema.state_dict(), keep)),
        **state_tensors(state),
    }
    opt_tensors, opt_groups = flatten_optimizer(state.optimizer)
    tensors.update(opt_tensors)
    meta = {"format": CHECKPOINT_FORMAT, "config": config.to_dict(), **state_meta(state), "seconds": state.spent(),
            "optimizer_groups": opt_groups, "grad_scaler": state.scaler.state_dict()}
    return write_checkpoint(run_dir, state.step, tensors, meta)


def _kept(weights: dict[str, Tensor], keep: set[str] | None) -> dict[str, Tensor]:
    return weights if keep is None else {k: v for k, v in weights.items() if k in keep}


def load_state(path: Path, config: Config, device: torch.device, teacher: UNet | None = None,
               start: UNet | None = None) -> TrainState:
    """Rebuild a TrainState from a checkpoint written by `save_state` for the same config (and, for a LoRA run,
    the same `start` network its base gives)."""
    tensors, meta = checkpoint.read(path)
    if "optimizer_groups" not in meta:
        raise checkpoint.CheckpointError(f"{path}: an exported run (EMA weights only) cannot be trained further; "
                                         "fine-tune it instead (audiodiff finetune RUN DATA_DIR --out NEW_RUN)")
    stored = Config.from_dict(meta.get("config", {}))
    check_same_model(stored, config, str(path))
    state = new_state(config, device, start=start)
    state.teacher = teacher
    if config.finetune.lora_rank:  # the EMA copy requires no grad: the model's trainable names are its too
        names = trainable(state.model)
        load_trained(state.model, checkpoint.split(tensors, "model"), path, names)
        load_trained(state.ema, checkpoint.split(tensors, "ema"), path, names)
    else:
        checkpoint.load_weights(state.model, checkpoint.split(tensors, "model"), path)
        checkpoint.load_weights(state.ema, checkpoint.split(tensors, "ema"), path)
    load_optimizer(state.optimizer, tensors, meta["optimizer_groups"], path)
    restore_state(state, tensors, meta)
    state.seconds = float(meta.get("seconds", 0.0))
    if state.scaler.is_enabled() and meta.get("grad_scaler"):  # the loss scale of an fp16 run continues
        state.scaler.load_state_dict(meta["grad_scaler"])
    return state


def check_same_model(stored: Config, wanted: Config, what: str) -> None:
    """Refuse to continue a run whose model, mel, diffusion, data or distillation settings differ; name the fields."""
    checkpoint.check_same(stored.to_dict(), wanted.to_dict(), ("mel", "unet", "diffusion", "data", "distill", "finetune"),
                          what)


def train_step(state: TrainState, config: Config, schedule: GaussianSchedule, x0: Tensor,
               y: Tensor | None = None, net: nn.Module | None = None, dist: Dist = Dist()) -> tuple[float, float]:
    """One optimizer step on clean log-mels x0 [B, 1, F, N] (class ids y [B] if conditional). Returns (loss, grad_norm).

    net: the module to call (DistributedDataParallel around state.model when distributed). x0 is the
    global batch; timesteps and noise are drawn for all of it, each rank trains on its share, in
    config.train.grad_accum micro-batches. A non-finite loss or gradient norm on any rank skips the update
    on all (counted in state.bad_steps and state.bad_run), returning (nan, nan).
    """
    c, device = config.train, x0.device
    g = state.generator
    t = noise_levels(config, schedule, x0.shape[0], g).to(device)
    noise = torch.randn(x0.shape, generator=g).to(device)
    parts = [dist.share(v) for v in (x0, t, noise) + ((y,) if y is not None else ())]
    net, k = (state.model if net is None else net), c.grad_accum
    if parts[0].shape[0] % k:
        raise ValueError(f"batch share {parts[0].shape[0]} does not divide into grad_accum = {k} micro-batches")
    state.optimizer.zero_grad(set_to_none=True)
    total = 0.0
    for i, micro in enumerate(zip(*(v.chunk(k) for v in parts))):
        # DDP averages gradients over ranks once, in the backward of the last micro-batch
        sync = i == k - 1 or not hasattr(net, "no_sync")
        with contextlib.nullcontext() if sync else net.no_sync():
            loss = _loss(net, schedule, config, state, *micro) / k
            if not all_true(bool(torch.isfinite(loss)), dist):
                return _skip(state)
            state.scaler.scale(loss).backward()
        total += float(loss.detach())
    state.scaler.unscale_(state.optimizer)
    grad_norm = float(torch.nn.utils.clip_grad_norm_(state.model.parameters(), c.grad_clip))
    if not all_true(math.isfinite(grad_norm), dist):  # a finite loss can still give inf/nan gradients
        state.scaler.update()  # fp16: an overflow lowers the loss scale
        return _skip(state)
    state.bad_run = 0
    for group in state.optimizer.param_groups:
        group["lr"] = lr_at(state.step, config)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.step += 1
    ema_update(state.ema, state.model, ema_decay_at(state.step, c.ema_decay))
    return total, grad_norm


def _skip(state: TrainState) -> tuple[float, float]:
    skip_step(state)
    return float("nan"), float("nan")


def noise_levels(config: Config, schedule: GaussianSchedule, n: int, generator: torch.Generator) -> Tensor:
    """n training noise levels on the CPU: timesteps long [n] uniform in 0..T-1, or for an edm run sigmas
    float32 [n] with ln sigma ~ N(p_mean, p_std^2)."""
    if config.distill.method:
        return consistency.sample_sigma(config.distill, schedule, n, generator).float()
    if config.diffusion.prediction == "edm":  # float32: MPS has no float64
        return EDM.from_config(config.diffusion).sample_sigma(n, generator).float()
    return torch.randint(0, schedule.num_steps, (n,), generator=generator)


def _loss(net: nn.Module, schedule: GaussianSchedule, config: Config, state: TrainState, x0: Tensor, t: Tensor,
          noise: Tensor, y: Tensor | None = None) -> Tensor:
    """The (min-SNR weighted) MSE on the schedule's prediction target for clean x0 [b, 1, F, N] at timesteps t;
    for an edm run t holds sigmas and the loss is EDM's (the MSE on F's target); for a distillation t holds
    sigmas and the loss is the consistency loss (consistency.py) against state.teacher."""
    precision = state.precision
    if config.distill.method:
        return _consistency_loss(net, schedule, config, state, x0, t, noise, y)
    if config.diffusion.prediction == "edm":
        edm = EDM.from_config(config.diffusion)
        x = edm.noised(x0, t, noise)
        x_in, c_noise = edm.network_input(x, t)
        with autocast(x0.device, precision):
            out = net(x_in, c_noise, y)
        return (out.float() - edm.training_target(x0, x, t)).square().mean()
    x_t = schedule.q_sample(x0, t, noise)
    with autocast(x0.device, precision):
        out = net(x_t, t, y)
    per_sample = (out.float() - schedule.training_target(x0, t, noise)).square().mean(dim=(1, 2, 3))
    return (schedule.loss_weight(t, config.train.min_snr_gamma) * per_sample).mean()


def _consistency_loss(net: nn.Module, schedule: GaussianSchedule, config: Config, state: TrainState, x0: Tensor,
                      sigma: Tensor, noise: Tensor, y: Tensor | None) -> Tensor:
    """Consistency distillation (teacher's ODE steps, with its guidance folded in) or tuning (ct) at levels sigma [b]."""
    d = config.distill
    student = for_sampling(net, config.diffusion)
    teacher, cond = None, conditioning_of(config)
    if d.method == "cd":
        teacher = for_sampling(state.teacher, config.diffusion)
        teacher = teacher if cond is None else guided(teacher, cond, y, d.guidance)
    sigma = sigma.double().cpu()
    r = consistency.paired_level(d, schedule, sigma, state.step)
    with autocast(x0.device, state.precision):
        return consistency.loss(lambda x, t: student(x, t, y), schedule, d, x0, sigma, r, noise, teacher)


def train(config: Config, data: MelDataset, run_dir: Path, device: torch.device, progress: bool = True,
          log: Callable[[str], None] = print, labels: Tensor | None = None, dist: Dist = Dist(),
          on_checkpoint: OnCheckpoint | None = None, teacher: UNet | None = None,
          on_log: Callable[[dict], None] | None = None, start: UNet | None = None, deadline: Deadline | None = None,
          started: float | None = None, replan: Replan | None = None) -> TrainState:
    """Train (or continue training) the run in run_dir up to config.train.steps. Returns the final state.

    labels: long [len(data)] class id of each file, for a conditional config (config.data.labels set).
    dist: this process's rank when started by torchrun (distributed.py); rank 0 writes everything.
    on_checkpoint(ema, step): called on rank 0 after each checkpoint is written, e.g. to write previews
    (`run.previews.preview_writer`; `run.train` sets up the whole run folder); True stops every rank after it.
    teacher: a distillation's (config.distill.method set) teacher network, EMA weights; a new run starts as a copy.
    on_log(row): called on rank 0 with each loss.csv row (e.g. `training.board.Board.scalars`).
    start: a fine-tune's (config.finetune.base set) start network (model.adapt.start_network, with adapters for LoRA).
    deadline: a budget's (training/budget.py): the last step is the one after which another and the last checkpoint
    would pass it. started: the command's time.perf_counter() at its start, for the checkpoints' "seconds".
    replan(config, step, pace): a twentieth in and after each checkpoint but the last, the config to go on with (a
    budget fitted again to the pace measured, kit.Pace).
    """
    _check_inputs(config, labels, dist, teacher, start)
    c = config.train
    run_dir.mkdir(parents=True, exist_ok=True)
    configure_for_training(device)
    schedule = GaussianSchedule.from_config(config.diffusion)
    cond = conditioning_of(config)
    state = _start_or_resume(config, run_dir, device, log, teacher, start, started)
    state.model.train()
    net = wrap(state.model, dist, device)
    if c.compile:  # the compiled module shares state.model's parameters; checkpoints and EMA see no difference
        net = torch.compile(net)
    loss_log = LossLog(run_dir / "loss.csv", state.step) if dist.main else None

    def step() -> dict[str, float]:
        files = data.sample_files(c.batch_size, state.generator)
        x0 = data.crops(files, state.generator).to(device)
        # a label_dropout share is trained as "no label", so the model also learns p(x) (for guidance)
        y = None if cond is None else cond.drop(labels[files], c.label_dropout, state.generator).to(device)
        loss, grad_norm = train_step(state, config, schedule, x0, y, net, dist)
        return {"loss": loss, "grad_norm": grad_norm}

    def log_row(rows: list[dict[str, float]], speed: float) -> tuple[dict, dict]:
        mean = sum(r["loss"] for r in rows) / len(rows)  # rank 0's share of the batch
        row = dict(step=state.step, loss=f"{mean:.5f}", lr=f"{lr_at(state.step - 1, config):.3g}",
                   grad_norm=f"{rows[-1]['grad_norm']:.3f}", samples_per_s=f"{speed:.2f}", bad_steps=state.bad_steps)
        return row, dict(loss=f"{mean:.4f}", samples_s=f"{speed:.1f}")

    def checkpoint_and_ask() -> bool:
        return _checkpoint_everywhere(state, config, run_dir, on_checkpoint, dist, log)

    def refit(pace: Pace) -> tuple[int, int]:
        nonlocal config  # step, log_row and checkpoint_and_ask go on with the new one
        config = replan(config, state.step, pace)
        return config.train.steps, config.train.checkpoint_every

    at = max(10, c.steps // 20)
    loop(state, Loop(step, log_row, checkpoint_and_ask, c.steps, c.log_every, c.checkpoint_every, c.batch_size,
                     run_dir, "Try a lower learning rate or --precision fp32.", _out_of_time(deadline, dist),
                     refit if replan and state.step + at < c.steps else None, at), loss_log, progress and dist.main, on_log)
    _finished(state, config, deadline, dist, log)
    return state


def _checkpoint_everywhere(state: TrainState, config: Config, run_dir: Path, on_checkpoint: OnCheckpoint | None,
                           dist: Dist, log: Callable[[str], None]) -> bool:
    """A checkpoint written by rank 0, every rank waiting for it; True (on every rank) if its callback asks to stop."""
    stop = _checkpoint(state, config, run_dir, on_checkpoint) if dist.main else False
    barrier(dist)
    if not all_true(not stop, dist):
        log(f"stopped at step {state.step}: asked to by the checkpoint callback")
        return True
    return False


def _out_of_time(deadline: Deadline | None, dist: Dist) -> Callable[[], bool] | None:
    """The loop's stop for a deadline: every rank asks, and all stop together."""
    if deadline is None:
        return None
    return lambda: not all_true(not deadline.passed(time.perf_counter()), dist)


def _finished(state: TrainState, config: Config, deadline: Deadline | None, dist: Dist, log: Callable[[str], None]) -> None:
    """After the loop: say whether the budget ended the run early, and check that every rank holds the same weights."""
    if state.step < config.train.steps and deadline is not None:
        log(f"budget: the time is up at step {state.step} of {config.train.steps}; the run ends here (a larger "
            "--minutes continues it)")
    if not replicas_agree(state.model, dist):
        raise RuntimeError("distributed training: the ranks' weights differ (this is a bug; please report it)")
    if dist.active:
        log(f"{dist.world} processes: weights identical on every rank")


def _check_inputs(config: Config, labels: Tensor | None, dist: Dist, teacher: UNet | None, start: UNet | None) -> None:
    """ValueError unless the networks and labels given fit the config: a teacher exactly for a distillation, a start
    network exactly for a fine-tune, labels exactly for a conditional run, a batch that divides among the ranks."""
    if bool(config.distill.method) != (teacher is not None):
        raise ValueError("a distilled run (config.distill.method set) continues with `audiodiff distill` and its "
                         "teacher; a run trained from scratch takes no teacher")
    if bool(config.finetune.base) != (start is not None):
        raise ValueError("a fine-tuned run (config.finetune.base set) continues with `audiodiff finetune` from its "
                         "base; a run trained from scratch takes no start network")
    if (labels is not None) != bool(config.data.labels) or config.unet.num_classes != len(config.data.labels):
        raise ValueError("conditional training needs config.data.labels, unet.num_classes = len(labels) "
                         "and a class id per file; unconditional training needs none of them")
    if config.train.batch_size % dist.world:
        raise ValueError(f"batch size {config.train.batch_size} does not divide among {dist.world} processes")


def _start_or_resume(config: Config, run_dir: Path, device: torch.device, log: Callable[[str], None],
                     teacher: UNet | None, start: UNet | None, started: float | None = None) -> TrainState:
    """The state of the run's newest checkpoint, or a new one, its clock started at `started` (default: now); says
    which, and when bf16 falls back."""
    latest = latest_checkpoint(run_dir)
    if teacher is not None:
        teacher = teacher.to(device).requires_grad_(False).eval()
    state = load_state(latest, config, device, teacher, start) if latest else new_state(config, device, teacher, start)
    state.clock = time.perf_counter() if started is None else started
    if latest:
        log(f"resuming from {latest} (step {state.step})")
    if state.precision != config.train.precision:
        how = "fp16 with loss scaling" if state.precision == "fp16" else state.precision
        log(f"{device}: no native bf16 support, training in {how} instead")
    return state


def _checkpoint(state: TrainState, config: Config, run_dir: Path, on_checkpoint: OnCheckpoint | None) -> bool:
    """Write a checkpoint and call on_checkpoint; True if it asks training to stop."""
    save_state(state, config, run_dir)
    prune(run_dir, config.train.keep_checkpoints)
    if on_checkpoint is None:
        return False
    state.model.eval()
    stop = on_checkpoint(state.ema, state.step)
    state.model.train()
    return bool(stop)

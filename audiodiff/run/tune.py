"""Runs started from a trained one: `distill` (a few-step consistency student) and `finetune` (all weights or
LoRA adapters, new labels optional)."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..audio.mel import MelSpectrogram
from ..config import Config, FinetuneConfig
from ..data.datasets import MelDataset
from ..data.labels import finetune_labels, run_label_counts, teacher_labels
from ..device import peak_memory, resolve_device
from ..files import copy_file, folder_lock, write_text
from ..model.adapt import HELD_BASE, check_base, ema_model, refuse_as_base, start_network
from ..runfolder import CONFIG_FILE, read_checkpoint, run_config
from ..training.diffusion import TrainState, check_same_model
from ..vocoders.registry import build_vocoder
from .previews import copies_line, copies_share
from .setup import Log, Session, changed, one_process_data, refuse_other_folder, train_logged
from .share import merged

# A distillation's training settings unless --config or flags say otherwise (the rest comes from the teacher's run).
# Chosen on the notes main-job model: experiments/LOG.md, "Few-step generation".
DISTILL_TRAIN = {"steps": 300, "lr": 1e-4, "warmup_steps": 0, "ema_decay": 0.99, "checkpoint_every": 100}


def distill(teacher_run: str | Path, data_dir: str | Path, out: str | Path, *, method: str | None = None,
            guidance: float | None = None, config_file: Path | None = None,
            overrides: dict[str, dict[str, Any]] | None = None, label_column: str | None = None,
            session: Session = Session()) -> TrainState:
    """Distil the run (or checkpoint file) `teacher_run` into a few-step consistency model in `out`, training on the
    audio under data_dir, or continue the distillation in `out`, as `audiodiff distill` does.

    method: "cd" (consistency distillation along the teacher's ODE) or "ct" (consistency tuning, no teacher calls);
    None: ct for an unconditional teacher (better than cd at equal time on the notes model), cd for a conditional
    one (only cd folds guidance in); experiments/LOG.md, "Few-step generation".
    guidance: for cd on a conditional run, the classifier-free guidance weight folded into the student (default
    the teacher's own, its `[sample] guidance`: 1.5 unless its config says otherwise; folded in at every step).
    overrides: {"train": {...}, "distill": {...}} on top of DISTILL_TRAIN and config_file. The teacher's weights are never written to. Returns the final TrainState.
    """
    s = session
    device, workers, log_to, progress, log, warn = s.device, s.workers, s.log_to, s.progress, s.log, s.warn
    data_dir, out = Path(data_dir), Path(out)
    t_config, tensors, meta, t_path = read_checkpoint(teacher_run)
    if t_config.distill.method:
        raise ValueError(f"{t_path}: already a distilled run; distil its teacher ({t_config.distill.teacher}) instead")
    stored = run_config(out)
    refuse_other_folder(out, stored)
    if stored is not None and stored.distill.teacher_sha256 != meta["sha256"]:
        raise ValueError(f"{out}: was distilled from {stored.distill.teacher} (sha256 {stored.distill.teacher_sha256[:12]}), "
                         f"not from {t_path} (sha256 {meta['sha256'][:12]})")
    if method is None:
        method = stored.distill.method if stored else ("cd" if t_config.data.labels else "ct")
    if guidance is None:
        labelled_cd = t_config.data.labels and method == "cd"
        guidance = stored.distill.guidance if stored else t_config.sample.guidance if labelled_cd else 0.0
    whole = dataclasses.replace(t_config, finetune=FinetuneConfig())  # a fine-tuned teacher's student is whole
    config = (stored or Config.from_dict({"train": DISTILL_TRAIN}, whole)).replace(
        "distill", method=method, guidance=guidance, teacher=stored.distill.teacher if stored else str(t_path),
        teacher_sha256=meta["sha256"])  # a method or guidance other than the stored one is refused below
    config = changed(config, config_file, overrides)
    build_vocoder(config.vocoder, MelSpectrogram(config.mel))  # a bad spec in a --config file fails now
    if stored is not None:
        check_same_model(stored, config, str(out))
    dev = resolve_device(device)
    with folder_lock(out):  # one writer at a time
        t0 = time.perf_counter()
        data = one_process_data(config, data_dir, out, workers, progress, log, warn)
        labels = teacher_labels(config, data_dir, data.files, label_column)
        write_text(out / CONFIG_FILE, config.to_toml())
        d, c = config.distill, config.train
        log(f"distilling {t_path} ({d.method}{f', guidance {d.guidance:g} folded in' if d.guidance else ''}) on {dev} "
            f"({c.precision}), {c.steps} steps of {c.batch_size} crops -> {out}")
        state = train_logged(config, data, out, dev, labels, log_to, progress, log,
                              teacher=merged(ema_model(t_config, tensors, t_path)))
        log(f"done: step {state.step} in {time.perf_counter() - t0:.0f} s, {peak_memory(dev)}. "
            f"Next: audiodiff generate {out} --out {out / 'generated'} (--steps 1, 2 or 4)")
        return state


# A fine-tune's training settings unless --config or flags say otherwise (the rest comes from the base run).
# A fine-tune's EMA starts at the base, so a short average is enough; LoRA takes a larger step (its update starts
# at zero and lives in a small subspace), as is usual for adapters.
FINETUNE_TRAIN = {"steps": 300, "lr": 1e-4, "warmup_steps": 20, "ema_decay": 0.99, "checkpoint_every": 100}


LORA_LR = 1e-3


def finetune(base_run: str | Path, data_dir: str | Path, out: str | Path, *, lora_rank: int | None = None,
             lora_layers: str | None = None, new_labels: bool = False, config_file: Path | None = None,
             overrides: dict[str, dict[str, Any]] | None = None, label_column: str | None = None,
             stop_copies: float | None = None, session: Session = Session()) -> TrainState:
    """Fine-tune the run (or checkpoint file) `base_run` on the audio under data_dir into `out`, or continue the
    fine-tune in `out`, as `audiodiff finetune` does.

    lora_rank 0: every weight trains, from the base's EMA weights; > 0: the base is frozen and rank-`lora_rank`
    adapters on `lora_layers` (config.LORA_LAYERS, default conv) train, and the run stores only them with a
    reference to the base (path and sha256); None: the run's own when continuing, else 0. new_labels: data
    labels the base lacks are added (old labels keep their ids); without it they are an error. overrides:
    {"train": {...}} on top of FINETUNE_TRAIN (lr LORA_LR for LoRA) and config_file. stop_copies: after each
    checkpoint, measure memorization (copies_share) and stop once it exceeds this share. The base run is never
    written to. Returns the final TrainState.
    """
    s = session
    device, workers, log_to, progress, log, warn = s.device, s.workers, s.log_to, s.progress, s.log, s.warn
    data_dir, out = Path(data_dir), Path(out)
    b_config, b_tensors, b_meta, b_path = read_checkpoint(base_run)
    refuse_as_base(b_config, str(b_path))
    stored = run_config(out)
    refuse_other_folder(out, stored)
    if stored is not None and stored.finetune.base_sha256 != b_meta["sha256"]:
        raise ValueError(f"{out}: was fine-tuned from {stored.finetune.base} (sha256 {stored.finetune.base_sha256[:12]}), "
                         f"not from {b_path} (sha256 {b_meta['sha256'][:12]})")
    f = stored.finetune if stored else FinetuneConfig(str(b_path.resolve()), b_meta["sha256"])
    f = dataclasses.replace(f, lora_rank=f.lora_rank if lora_rank is None else lora_rank,
                            lora_layers=lora_layers or f.lora_layers)  # other than the stored ones: refused below
    train_defaults = {**FINETUNE_TRAIN, **({"lr": LORA_LR} if f.lora_rank else {})}
    config = dataclasses.replace(stored or Config.from_dict({"train": train_defaults}, b_config), finetune=f)
    config = changed(config, config_file, overrides)
    build_vocoder(config.vocoder, MelSpectrogram(config.mel))  # a bad spec in a --config file fails now
    check_base(b_config, config, str(out))
    start_network(config, b_config, b_tensors, b_path)  # a LoRA rank or layers it cannot take fail before any write
    dev = resolve_device(device)
    with folder_lock(out):  # one writer at a time
        t0 = time.perf_counter()
        data = one_process_data(config, data_dir, out, workers, progress, log, warn)
        names, labels = finetune_labels(b_config, data_dir, data.files, label_column, new_labels, warn)
        counts = run_label_counts(stored, tuple(names), labels)
        config = config.replace("data", labels=names, label_counts=counts).replace("unet", num_classes=len(names))
        if labels is not None and bool((labels == len(names)).all()):  # unlabelled clips: generate samples "no label"
            config = config.replace("sample", each_label=False)
        if stored is not None:
            check_same_model(stored, config, str(out))
        if config.finetune.lora_rank:
            hold(b_path, out / HELD_BASE)
        write_text(out / CONFIG_FILE, config.to_toml())
        added = names[len(b_config.data.labels):]
        c, f = config.train, config.finetune
        how = f"LoRA rank {f.lora_rank} on {f.lora_layers} layers" if f.lora_rank else "all weights"
        log(f"fine-tuning {b_path} ({how}{', new labels: ' + ', '.join(added) if added else ''}) on {dev} "
            f"({c.precision}), {c.steps} steps of {c.batch_size} crops at lr {c.lr:g} -> {out}")
        start = start_network(config, b_config, b_tensors, b_path)
        stop = None if stop_copies is None else copies_stop(stop_copies, config, data, labels, log)
        state = train_logged(config, data, out, dev, labels, log_to, progress, log, stop, start=start)
        log(copies_line(copies_share(state.ema, config, data, labels)))
        log(f"done: step {state.step} in {time.perf_counter() - t0:.0f} s, {peak_memory(dev)}. "
            f"Next: audiodiff generate {out} --out {out / 'generated'}")
        return state


def copies_stop(limit: float, config: Config, data: MelDataset, labels: torch.Tensor | None,
                 log: Log) -> Callable[[nn.Module, int], bool]:
    """A checkpoint callback: measure memorization, say it, and ask to stop once it exceeds `limit`."""
    def check(ema: nn.Module, step: int) -> bool:
        share = copies_share(ema, config, data, labels)
        log(f"step {step}: {copies_line(share)}")
        return share is not None and share > limit

    return check


def hold(base: Path, held: Path) -> None:
    """Give a LoRA run its own hard link to its base checkpoint (a copy where the two folders are on different
    filesystems), so that the base run pruning or replacing that checkpoint leaves the LoRA run whole."""
    if held.exists():
        return
    tmp = held.with_name(f".{held.name}.{os.getpid()}.tmp")
    try:
        os.link(base, tmp)
    except OSError:
        copy_file(base, tmp)
    os.replace(tmp, held)

"""The run folder: its layout, its config, its data and its previews. `train` here trains exactly as
`audiodiff train` does (the CLI calls it), so a library user gets the same files for the same seed.

A run folder holds:
    config.toml                    the resolved Config (preset < --config file < flags, labels from the data)
    loss.csv                       step, loss, lr, grad_norm, samples_per_s, bad_steps (loss.replaced.csv: rows
                                   logged after the newest checkpoint by a run that then crashed)
    checkpoints/step_XXXXXXXX.safetensors   model, EMA, optimizer, RNG states + config (JSON metadata)
    samples/step_XXXXXXXX_K.{wav,png}       preview clips from the EMA model at each checkpoint
    generated/                     where `audiodiff generate RUN --out RUN/generated` puts clips (gallery)
    cache/                         the mel cache of the training data

A vocoder folder (`train_vocoder`) holds config.toml, vocoder.safetensors, loss.csv and checkpoints/.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from . import checkpoint
from .adapt import check_base, labels_with, lora_network, refuse_as_base, start_network
from .audio import save
from .board import Board
from .config import Config, FinetuneConfig, MelConfig, VocoderConfig, preset
from .conditioning import from_config as conditioning_of
from .conditioning import guided
from .data import DataReport, MelDataset, file_labels, label_counts, load_mels, load_waves
from .denoiser import for_sampling
from .device import peak_memory, resolve_device
from .distributed import barrier, from_env, shutdown
from .evaluate import clip_features, near_copies, standardize
from .files import write_text
from .mel import MelSpectrogram
from .plot import save_spectrogram
from .representation import for_run
from .sampling import sample
from .schedule import GaussianSchedule
from .lora import merge as merge_adapters
from .lora import set_scale
from .train import TrainState, check_same_model, new_state, save_state
from .unet import UNet
from .train import train as train_model
from .trainkit import latest_checkpoint
from .vocoder_train import VocoderState, check_same_vocoder
from .vocoder_train import train_vocoder as train_vocoder_model
from .vocoders import build_vocoder, load_vocoder

CONFIG_FILE = "config.toml"
CLIP_FOLDERS = ("generated", "samples")  # where a run keeps clips: `generate --out RUN/generated`, previews
PREVIEW_SEED = 1234
Log = Callable[[str], None]


def find_checkpoint(run: str | Path) -> Path:
    """A checkpoint file itself, or the newest checkpoint of a run directory."""
    run = Path(run)
    if run.is_file():
        return run
    if not run.is_dir():
        raise checkpoint.CheckpointError(f"{run}: no such run directory or checkpoint file")
    found = latest_checkpoint(run)
    if found is None:
        raise checkpoint.CheckpointError(f"{run}: no checkpoint in {run / 'checkpoints'} (train first)")
    return found


def read_checkpoint(run: str | Path) -> tuple[Config, dict[str, torch.Tensor], dict[str, Any], Path]:
    """(config, tensors, metadata, file) of a run's newest checkpoint (or of a checkpoint file)."""
    path = find_checkpoint(run)
    tensors, meta = checkpoint.read(path)
    if "config" not in meta:
        raise checkpoint.CheckpointError(f"{path}: no config in the checkpoint metadata")
    try:
        return Config.from_dict(meta["config"]), tensors, meta, path
    except (ValueError, TypeError) as e:
        raise checkpoint.CheckpointError(f"{path}: bad config in checkpoint ({e})") from None


def ema_model(config: Config, tensors: dict[str, torch.Tensor], path: Path) -> UNet:
    """The UNet of a checkpoint's config with its EMA weights (on the CPU); for a LoRA run, its base's network
    (read and checked) with the run's adapters (scale 1, unmerged)."""
    if config.finetune.lora_rank:
        return lora_network(config, tensors, path)
    model = UNet(config.unet, conditioning_of(config))
    checkpoint.load_weights(model, checkpoint.split(tensors, "ema"), path)
    return model


def run_config(run: str | Path) -> Config | None:
    """The config.toml of a run folder, or None if `run` is not one."""
    path = Path(run) / CONFIG_FILE
    return Config.from_toml(path) if path.is_file() else None


def mel_config(run: str | Path | None = None, vocoders: tuple[str, ...] = ()) -> MelConfig:
    """The mel config of a run if given, else of the first saved vocoder among `vocoders`, else the default."""
    if run:
        return read_checkpoint(run)[0].mel
    saved = [v for v in vocoders if Path(v).is_dir()]
    return load_vocoder(saved[0]).mel.config if saved else MelConfig()


def writable_dir(path: Path) -> None:
    """Create `path` if needed; OSError naming it if nothing can be written there."""
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".audiodiff-write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise OSError(f"{path}: cannot write here ({e.strerror or e})") from None


def resolve_config(out: Path, config_file: Path | None = None, preset_name: str | None = None,
                   overrides: dict[str, dict[str, Any]] | None = None, resume: bool = False) -> tuple[Config, Config | None]:
    """(config to train with, the run's stored config or None): the run's own when continuing, else
    preset (default small) < TOML file < overrides {section: {field: value}}. Labels come later, from the data."""
    stored = run_config(out)
    if stored is None and resume:
        raise ValueError(f"{out}: resume asked for but there is no run here (no {CONFIG_FILE})")
    _refuse_foreign(out, stored)
    config = _changed(preset(preset_name) if preset_name else stored or preset("small"), config_file, overrides)
    if resume and latest_checkpoint(out) is None:
        raise ValueError(f"{out}: resume asked for but no checkpoint yet in {out / 'checkpoints'}")
    return config, stored


def _refuse_foreign(out: Path, stored: Config | None) -> None:
    """ValueError if `out` holds files but no run (stored None): nothing a user made is written over. A folder
    holding only a mel cache is one an earlier attempt left when it stopped after reading the data."""
    if stored is None and out.exists() and any(p.name != "cache" for p in out.iterdir()):
        raise ValueError(f"{out}: folder exists and is not an audiodiff run (no {CONFIG_FILE}); choose another")


def _changed(config: Config, config_file: Path | None, overrides: dict[str, dict[str, Any]] | None) -> Config:
    """config < the TOML file config_file < overrides {section: {field: value}} (empty sections ignored)."""
    if config_file:
        config = Config.from_toml(config_file, config)
    return Config.from_dict({section: changes for section, changes in (overrides or {}).items() if changes}, config)


def _report_skipped(report: DataReport, warn: Log) -> None:
    for note in report.notes:
        warn(note)
    for path, reason in report.skipped[:10]:
        warn(f"warning: skipped {path}: {reason}")
    if len(report.skipped) > 10:
        warn(f"warning: ... and {len(report.skipped) - 10} more skipped files")


def train(data_dir: str | Path, out: str | Path, *, config_file: Path | None = None, preset_name: str | None = None,
          overrides: dict[str, dict[str, Any]] | None = None, label_column: str | None = None,
          unconditional: bool = False, vocoder: str | None = None, resume: bool = False, device: str = "auto",
          workers: int | None = None, log_to: str = "csv", progress: bool = True, log: Log = print,
          warn: Log = print) -> TrainState:
    """Train a run on every audio file under data_dir, or continue the run in `out`, as `audiodiff train` does.

    overrides: {"train": {"steps": 2000, ...}, "diffusion": {...}} on top of preset and config_file.
    Labels: first-level subfolders, or `label_column` of a metadata.csv (unconditional=True ignores them).
    vocoder: the run's default vocoder spec (a saved vocoder's folder is stored as an absolute path).
    workers: processes preparing the mel cache (default: the cores).
    log_to: "csv" (loss.csv, always written) or "tensorboard" (also event files in out/tensorboard, board.py).
    When started by torchrun, every rank calls this; rank 0 writes and logs. Returns the final TrainState.
    """
    data_dir, out = Path(data_dir), Path(out)
    config, stored = resolve_config(out, config_file, preset_name, overrides, resume)
    if unconditional and label_column:
        raise ValueError("unconditional training and a label column contradict each other")
    config.check_sizes()
    if vocoder:
        build_vocoder(vocoder, MelSpectrogram(config.mel))  # a bad spec fails now, not at the first preview
        config = dataclasses.replace(config, vocoder=str(Path(vocoder).resolve()) if Path(vocoder).is_dir() else vocoder)
    dist, dev = from_env(device)  # started by torchrun: one process per device, rank 0 writes
    say, warn = (log, warn) if dist.main else (lambda m: None, lambda m: None)
    barrier(dist)  # every rank has read the run's state before rank 0 writes anything
    if dist.main:
        writable_dir(out)
    t0 = time.perf_counter()
    if not dist.main:
        barrier(dist)  # rank 0 decodes the audio and fills the mel cache; the others then read the cache
    data, report = load_mels(data_dir, MelSpectrogram(config.mel), config.data.crop_frames, out / "cache",
                             progress and dist.main, workers=workers, prepare=dist.main, channels=config.data.channels)
    if dist.main:
        barrier(dist)
    _report_skipped(report, warn)
    say(f"data: {report.summary()} in {time.perf_counter() - t0:.1f} s")
    labelled = None if unconditional else file_labels(data_dir, data.files, label_column)
    names, labels = labelled if labelled else ((), None)
    counts = _counts(stored, tuple(names), labels)
    config = config.replace("data", labels=tuple(names), label_counts=counts).replace("unet", num_classes=len(names))
    if stored is not None:
        check_same_model(stored, config, str(out))  # after flags and labels: the same command line may be re-run
    if dist.main:
        write_text(out / CONFIG_FILE, config.to_toml())
    if names:
        say(f"class-conditional on {len(names)} labels: {', '.join(names[:12])}{' ...' if len(names) > 12 else ''}")
    where = f"{dist.world} processes ({dev.type})" if dist.active else str(dev)
    say(f"training preset={config.preset} on {where} ({config.train.precision}), {config.train.steps} steps of "
        f"{config.train.batch_size} x {config.data.crop_seconds(config.mel):.2f} s crops -> {out}")
    board = _board(out, log_to) if dist.main else None
    try:
        state = train_model(config, data, out, dev, progress=progress, log=say, labels=labels, dist=dist,
                            on_checkpoint=preview_writer(config, out, board), on_log=board and board.scalars)
    finally:
        shutdown(dist)
        if board:
            board.close()
    say(f"done: step {state.step} in {time.perf_counter() - t0:.0f} s, {peak_memory(dev)} (rank 0). "
        f"Previews in {out / 'samples'}; next: audiodiff generate {out} --out {out / 'generated'}")
    return state


# A distillation's training settings unless --config or flags say otherwise (the rest comes from the teacher's run).
# Measured on the notes main-job model (benchmarks/README.md, "Few-step generation"): see there for the choice.
DISTILL_TRAIN = {"steps": 300, "lr": 1e-4, "warmup_steps": 0, "ema_decay": 0.99, "checkpoint_every": 100}


def distill(teacher_run: str | Path, data_dir: str | Path, out: str | Path, *, method: str | None = None,
            guidance: float | None = None, config_file: Path | None = None,
            overrides: dict[str, dict[str, Any]] | None = None, label_column: str | None = None,
            device: str = "auto", workers: int | None = None, log_to: str = "csv", progress: bool = True,
            log: Log = print, warn: Log = print) -> TrainState:
    """Distil the run (or checkpoint file) `teacher_run` into a few-step consistency model in `out`, training on the
    audio under data_dir, or continue the distillation in `out`, as `audiodiff distill` does.

    method: "cd" (consistency distillation along the teacher's ODE) or "ct" (consistency tuning, no teacher calls);
    None: ct for an unconditional teacher (better than cd at equal time on the notes model), cd for a conditional
    one (only cd folds guidance in); benchmarks/README.md, "Few-step generation".
    guidance: for cd on a conditional run, the classifier-free guidance weight folded into the student (default
    the teacher's own, its `[sample] guidance`: 1.5 unless its config says otherwise; folded in at every step).
    overrides: {"train": {...}, "distill": {...}} on top of DISTILL_TRAIN and config_file. The teacher's weights are never written to. Returns the final TrainState.
    """
    data_dir, out = Path(data_dir), Path(out)
    t_config, tensors, meta, t_path = read_checkpoint(teacher_run)
    if t_config.distill.method:
        raise ValueError(f"{t_path}: already a distilled run; distil its teacher ({t_config.distill.teacher}) instead")
    stored = run_config(out)
    _refuse_foreign(out, stored)
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
    config = _changed(config, config_file, overrides)
    if stored is not None:
        check_same_model(stored, config, str(out))
    dev = resolve_device(None if device == "auto" else device)
    t0 = time.perf_counter()
    data = _one_process_data(config, data_dir, out, workers, progress, log, warn)
    labels = _teacher_labels(config, data_dir, data.files, label_column)
    write_text(out / CONFIG_FILE, config.to_toml())
    d, c = config.distill, config.train
    log(f"distilling {t_path} ({d.method}{f', guidance {d.guidance:g} folded in' if d.guidance else ''}) on {dev} "
        f"({c.precision}), {c.steps} steps of {c.batch_size} crops -> {out}")
    state = _train_logged(config, data, out, dev, labels, log_to, progress, log,
                          teacher=_merged(ema_model(t_config, tensors, t_path)))
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
             stop_copies: float | None = None, device: str = "auto", workers: int | None = None,
             log_to: str = "csv", progress: bool = True, log: Log = print, warn: Log = print) -> TrainState:
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
    data_dir, out = Path(data_dir), Path(out)
    b_config, b_tensors, b_meta, b_path = read_checkpoint(base_run)
    refuse_as_base(b_config, str(b_path))
    stored = run_config(out)
    _refuse_foreign(out, stored)
    if stored is not None and stored.finetune.base_sha256 != b_meta["sha256"]:
        raise ValueError(f"{out}: was fine-tuned from {stored.finetune.base} (sha256 {stored.finetune.base_sha256[:12]}), "
                         f"not from {b_path} (sha256 {b_meta['sha256'][:12]})")
    f = stored.finetune if stored else FinetuneConfig(str(b_path.resolve()), b_meta["sha256"])
    f = dataclasses.replace(f, lora_rank=f.lora_rank if lora_rank is None else lora_rank,
                            lora_layers=lora_layers or f.lora_layers)  # other than the stored ones: refused below
    train_defaults = {**FINETUNE_TRAIN, **({"lr": LORA_LR} if f.lora_rank else {})}
    config = dataclasses.replace(stored or Config.from_dict({"train": train_defaults}, b_config), finetune=f)
    config = _changed(config, config_file, overrides)
    check_base(b_config, config, str(out))
    dev = resolve_device(None if device == "auto" else device)
    t0 = time.perf_counter()
    data = _one_process_data(config, data_dir, out, workers, progress, log, warn)
    names, labels = _finetune_labels(b_config, data_dir, data.files, label_column, new_labels, warn)
    counts = _counts(stored, tuple(names), labels)
    config = config.replace("data", labels=names, label_counts=counts).replace("unet", num_classes=len(names))
    if labels is not None and bool((labels == len(names)).all()):  # unlabelled clips: generate samples "no label"
        config = config.replace("sample", each_label=False)
    if stored is not None:
        check_same_model(stored, config, str(out))
    write_text(out / CONFIG_FILE, config.to_toml())
    added = names[len(b_config.data.labels):]
    c, f = config.train, config.finetune
    how = f"LoRA rank {f.lora_rank} on {f.lora_layers} layers" if f.lora_rank else "all weights"
    log(f"fine-tuning {b_path} ({how}{f', new labels: ' + ', '.join(added) if added else ''}) on {dev} "
        f"({c.precision}), {c.steps} steps of {c.batch_size} crops at lr {c.lr:g} -> {out}")
    start = start_network(config, b_config, b_tensors, b_path)
    stop = None if stop_copies is None else _copies_stop(stop_copies, config, data, labels, log)
    state = _train_logged(config, data, out, dev, labels, log_to, progress, log, stop, start=start)
    log(_copies_line(copies_share(state.ema, config, data, labels)))
    log(f"done: step {state.step} in {time.perf_counter() - t0:.0f} s, {peak_memory(dev)}. "
        f"Next: audiodiff generate {out} --out {out / 'generated'}")
    return state


COPY_CLIPS = 16  # clips sampled for a fine-tune's memorization check


def copies_share(ema: nn.Module, config: Config, data: MelDataset, labels: torch.Tensor | None,
                 n: int = COPY_CLIPS) -> float | None:
    """The share of n clips sampled from `ema` (DDIM 25, no guidance, cycling through the data's labels) that are
    near-copies of a training clip (evaluate.near_copies on melstats features); None with < 2 training clips."""
    if len(data) < 2:
        return None
    device = next(ema.parameters()).device
    model, cond = for_sampling(ema, config.diffusion), conditioning_of(config)
    if cond is not None:
        present = torch.unique(labels)
        model = guided(model, cond, present[torch.arange(n) % len(present)].to(device), 0.0)
    with torch.no_grad():
        logmel = sample(model, GaussianSchedule.from_config(config.diffusion), "ddim",
                        config.crop_shape(), list(range(n)), 25, device)
    crop = config.data.crop_frames
    train = np.stack([clip_features(data.file_mel(i)[0, :, :crop].numpy()) for i in range(len(data))])
    gen = np.stack([clip_features(m[0].float().cpu().numpy()) for m in logmel])
    return near_copies(*standardize(train, gen))["too_close"]


def _copies_stop(limit: float, config: Config, data: MelDataset, labels: torch.Tensor | None,
                 log: Log) -> Callable[[nn.Module, int], bool]:
    """A checkpoint callback: measure memorization, say it, and ask to stop once it exceeds `limit`."""
    def check(ema: nn.Module, step: int) -> bool:
        share = copies_share(ema, config, data, labels)
        log(f"step {step}: {_copies_line(share)}")
        return share is not None and share > limit

    return check


def _copies_line(share: float | None) -> str:
    if share is None:
        return "memorization: not measured (fewer than 2 training clips)"
    return (f"memorization: {share * 100:.0f}% of {COPY_CLIPS} sampled clips are near-copies of a training clip "
            f"(nearer than 95% of training clips are to each other; about 5% for new clips, near 100% for copies)")


def merge(run: str | Path, out: str | Path, lora_scale: float = 1.0, log: Log = print) -> Path:
    """Bake a LoRA run's adapters (at lora_scale) into its base's weights: a run in `out` that needs no base, with
    a fresh optimizer (`audiodiff train DATA --out OUT` continues it like any run; `finetune` takes it as a base).
    Returns the checkpoint written. The LoRA run and its base are only read."""
    config, tensors, meta, path = read_checkpoint(run)
    if not config.finetune.lora_rank:
        raise ValueError(f"{path}: not a LoRA run (its weights are whole already)")
    merged, model = _whole(config, tensors, path, Path(out), lora_scale)
    state = new_state(merged, torch.device("cpu"), start=model.requires_grad_(True))
    state.step = int(meta.get("step", 0))
    written = save_state(state, merged, Path(out))
    log(f"merged the adapters of {path} (scale {lora_scale:g}) into {config.finetune.base} -> {written}")
    return written


def export(run: str | Path, out: str | Path, half: bool = True, log: Log = print) -> Path:
    """A generation-only copy of a run in `out`: config.toml and one checkpoint holding only the EMA weights
    (float16 when `half`), a LoRA run's merged into its base. `generate`, the editing commands and `finetune`
    (as a base) take it; `train` cannot continue it (no optimizer state). Returns the checkpoint written."""
    config, tensors, meta, path = read_checkpoint(run)
    out = Path(out)
    config, model = _whole(config, tensors, path, out)
    weights = {k: v.half() if half and v.is_floating_point() else v for k, v in model.state_dict().items()}
    step = int(meta.get("step", 0))
    written = out / "checkpoints" / f"step_{step:08d}.safetensors"
    written.parent.mkdir(exist_ok=True)
    checkpoint.write(written, checkpoint.join("ema", weights), {"config": config.to_dict(), "step": step,
                                                               "exported_from": str(path)})
    log(f"exported {path} (EMA weights{', float16' if half else ''}) -> {written} "
        f"({written.stat().st_size / 1e6:.2f} MB)")
    return written


def _counts(stored: Config | None, names: tuple[str, ...], labels: torch.Tensor | None) -> tuple[int, ...]:
    """The run's data.label_counts: a continued run keeps those it started with (none in a run made before they
    were recorded); otherwise, and where the labels changed (refused later, naming the labels), the data's."""
    if stored is not None and stored.data.labels == names:
        return stored.data.label_counts
    return label_counts(labels, len(names))


def _finetune_labels(base: Config, data_dir: Path, files: list[str], column: str | None, new_labels: bool,
                     warn: Log) -> tuple[tuple[str, ...], torch.Tensor | None]:
    """(the fine-tuned run's labels, class id of each file or None) for a base with `base.data.labels`."""
    found = file_labels(data_dir, files, column)
    if found is None:
        if base.data.labels:  # every clip is trained as the base's "no label" class, which `generate` then samples
            warn(f"note: {data_dir}: no labels here (first-level subfolders named after labels, or --label-column); "
                 f"the base is conditional on {len(base.data.labels)}, so these clips are learned as its 'no label' "
                 "class, which generate samples unless given a --label")
            return base.data.labels, torch.full((len(files),), len(base.data.labels))
        return (), None
    mine, ids = found
    if not base.data.labels and not new_labels:
        warn(f"note: {data_dir}: the base run is unconditional, so the labels here are ignored (--new-labels "
             "learns them)")
        return (), None
    names = labels_with(base.data.labels, mine, new_labels, str(data_dir))
    return names, torch.tensor([names.index(mine[i]) for i in ids.tolist()])


def _merged(model: UNet) -> UNet:
    merge_adapters(model)  # a LoRA teacher: the student is a whole network
    return model


def _whole(config: Config, tensors: dict[str, torch.Tensor], path: Path, out: Path,
           lora_scale: float = 1.0) -> tuple[Config, UNet]:
    """(config, EMA network) of a checkpoint as a whole run (a LoRA run's adapters merged at lora_scale), with
    `out` made as a new folder holding its config.toml (merge, export)."""
    if out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: exists and is not empty; choose a new folder")
    model = ema_model(config, tensors, path)
    set_scale(model, lora_scale)
    config = dataclasses.replace(config, finetune=FinetuneConfig())
    writable_dir(out)
    write_text(out / CONFIG_FILE, config.to_toml())
    return config, _merged(model)


def _one_process_data(config: Config, data_dir: Path, out: Path, workers: int | None, progress: bool, log: Log,
                      warn: Log) -> MelDataset:
    """The mels of data_dir from (and into) out's cache, for a run in one process (distill, finetune), with the
    data summary and skipped files reported; out is created and checked to be writable first."""
    writable_dir(out)
    t0 = time.perf_counter()
    data, report = load_mels(data_dir, MelSpectrogram(config.mel), config.data.crop_frames, out / "cache", progress,
                             workers=workers, channels=config.data.channels)
    _report_skipped(report, warn)
    log(f"data: {report.summary()} in {time.perf_counter() - t0:.1f} s")
    return data


def _teacher_labels(config: Config, data_dir: Path, files: list[str], column: str | None) -> torch.Tensor | None:
    """Class ids of `files` in the teacher's label order, for a conditional teacher; None for an unconditional one."""
    names = config.data.labels
    if not names:
        return None
    found = file_labels(data_dir, files, column)
    if found is None:
        raise ValueError(f"{data_dir}: the teacher is conditional on {len(names)} labels but no labels were found "
                         "here (first-level subfolders, or --label-column of a metadata.csv)")
    mine, ids = found
    unknown = sorted(set(mine) - set(names))
    if unknown:
        raise ValueError(f"{data_dir}: labels the teacher was not trained on: {', '.join(unknown[:10])}")
    return torch.tensor([names.index(mine[i]) for i in ids.tolist()])


def _train_logged(config: Config, data: MelDataset, out: Path, dev: torch.device, labels: torch.Tensor | None,
                  log_to: str, progress: bool, log: Log, stop: Callable[[nn.Module, int], bool] | None = None,
                  **start: UNet) -> TrainState:
    """train_model in one process with previews and (log_to "tensorboard") event files, as distill and finetune
    run it; stop(ema, step) after the previews of each checkpoint: True ends training; start: teacher= (a
    distillation) or start= (a fine-tune)."""
    board = _board(out, log_to)
    previews = preview_writer(config, out, board)

    def on_checkpoint(ema: nn.Module, step: int) -> bool:
        previews(ema, step)
        return stop is not None and stop(ema, step)

    try:
        return train_model(config, data, out, dev, progress=progress, log=log, labels=labels,
                           on_checkpoint=on_checkpoint, on_log=board and board.scalars, **start)
    finally:
        if board:
            board.close()


def _board(out: Path, log_to: str) -> Board | None:
    """The TensorBoard writer of a run (log_to="tensorboard"), its events past the newest checkpoint dropped."""
    if log_to not in ("csv", "tensorboard"):
        raise ValueError(f"log_to: {log_to!r} is neither 'csv' nor 'tensorboard'")
    if log_to == "csv":
        return None
    latest = latest_checkpoint(out)
    return Board(out, int(latest.stem.split("_")[-1]) if latest else 0)


def preview_writer(config: Config, run_dir: Path, board: Board | None = None) -> Callable[[nn.Module, int], None]:
    """A callback (EMA model, step) that samples config.train.preview_count clips with DDIM (a distilled run: its
    consistency steps; conditional runs: cycling through the classes, no guidance beyond a distilled one's) and
    writes them as WAV + PNG under run_dir/samples, and to `board` if given."""
    c, names = config.train, config.data.labels
    seeds = [PREVIEW_SEED + i for i in range(c.preview_count)]
    cond = conditioning_of(config)
    schedule, reps = GaussianSchedule.from_config(config.diffusion), {}  # once per run
    sampler, steps = config.default_sampling()
    steps = c.preview_steps if sampler == "ddim" else steps

    def write(ema: nn.Module, step: int) -> None:
        if not seeds:
            return
        device = next(ema.parameters()).device
        rep = reps.get(device) or reps.setdefault(device, for_run(config, device))
        model = for_sampling(ema, config.diffusion)
        if cond is not None:
            model = guided(model, cond, torch.arange(len(seeds), device=device) % len(names), 0.0)
        with torch.no_grad():
            logmel = sample(model, schedule, sampler, config.crop_shape(), seeds,
                            steps, device)
            wav = rep.decode(logmel, seeds)
        out = run_dir / "samples"
        out.mkdir(exist_ok=True)
        for i, s in enumerate(seeds):
            stem = out / f"step_{step:08d}_{i}"
            save(stem.with_suffix(".wav"), wav[i].cpu().numpy(), config.mel.sample_rate)
            if board is not None:
                board.preview(step, i, wav[i].cpu().numpy(), config.mel.sample_rate, logmel[i, 0].cpu().numpy())
            save_spectrogram(stem.with_suffix(".png"), logmel[i, 0].cpu().numpy(), config.mel,
                             f"step {step}, {sampler} {steps} steps, seed {s}"
                             + (f", label {names[i % len(names)]}" if names else ""))

    return write


def train_vocoder(data_dir: str | Path, out: str | Path, *, run: str | Path | None = None,
                  config_file: Path | None = None, overrides: dict[str, Any] | None = None, device: str = "auto",
                  progress: bool = True, log: Log = print, warn: Log = print) -> VocoderState:
    """Train a vocoder on every audio file under data_dir, or continue the one in `out`, as `audiodiff vocoder
    train` does. Config: the folder's own, else the default; the mel of `run` if given; then config_file;
    then overrides of [train] fields. Returns the final state."""
    data_dir, out = Path(data_dir), Path(out)
    stored = VocoderConfig.from_toml(out / CONFIG_FILE) if (out / CONFIG_FILE).exists() else None
    if stored is None and out.exists() and any(out.iterdir()):
        raise ValueError(f"{out}: folder exists and is not an audiodiff vocoder (no {CONFIG_FILE}); choose another")
    config = stored or VocoderConfig()
    if run:
        config = dataclasses.replace(config, mel=mel_config(run))
    if config_file:
        config = VocoderConfig.from_toml(config_file, config)
    config = config.replace("train", **(overrides or {}))
    if stored is not None:
        check_same_vocoder(stored, config, str(out))
    dev = resolve_device(None if device == "auto" else device)
    t0 = time.perf_counter()
    data, report = load_waves(data_dir, MelSpectrogram(config.mel), progress)
    _report_skipped(report, warn)
    log(f"data: {report.summary()}, {len(data.wav) / config.mel.sample_rate / 60:.1f} min of audio, "
        f"in {time.perf_counter() - t0:.1f} s")
    writable_dir(out)
    write_text(out / CONFIG_FILE, config.to_toml())
    c = config.train
    log(f"training vocoder on {dev} ({c.precision}{', adversarial' if c.adversarial else ''}), {c.steps} steps of "
        f"{c.batch_size} x {c.segment_frames * config.mel.hop_length / config.mel.sample_rate:.2f} s segments -> {out}")
    state = train_vocoder_model(config, data, out, dev, progress=progress, log=log)
    log(f"done: step {state.step} in {time.perf_counter() - t0:.0f} s, {peak_memory(dev)}. "
        f"Next: audiodiff evaluate vocoder --data HELDOUT_DIR --vocoder {out} --vocoder griffinlim")
    return state

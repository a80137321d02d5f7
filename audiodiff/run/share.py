"""Runs made for sharing: `merge` (a LoRA run's adapters baked into its base) and `export` (EMA weights only)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .. import checkpoint
from ..config import Config, FinetuneConfig
from ..files import refuse_foreign, writable_dir, write_text
from ..model.adapt import ema_model
from ..model.lora import merge as merge_adapters
from ..model.lora import set_scale
from ..model.unet import UNet
from ..runfolder import CONFIG_FILE, read_checkpoint
from ..training.diffusion import new_state, save_state
from .setup import Log


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


def export(run: str | Path, out: str | Path, half: bool = True, log: Log = print, sampler: str | None = None,
           steps: int | None = None) -> Path:
    """A generation-only copy of a run in `out`: config.toml and one checkpoint holding only the EMA weights
    (float16 when `half`), a LoRA run's merged into its base. `generate`, the editing commands and `finetune`
    (as a base) take it; `train` cannot continue it (no optimizer state). sampler, steps: the copy's [sample]
    defaults, where given. Returns the checkpoint written."""
    config, tensors, meta, path = read_checkpoint(run)
    if sampler or steps:
        config = config.replace("sample", sampler=sampler or config.sample.sampler, steps=steps or config.sample.steps)
    out = Path(out)
    config, model = _whole(config, tensors, path, out)
    weights = {k: v.half() if half and v.is_floating_point() else v for k, v in model.state_dict().items()}
    step = int(meta.get("step", 0))
    written = out / "checkpoints" / f"step_{step:08d}.safetensors"
    written.parent.mkdir(exist_ok=True)
    origin = meta.get("exported_from", str(path))  # a copy of a copy names the run both came from
    checkpoint.write(written, checkpoint.join("ema", weights), {"config": config.to_dict(), "step": step,
                                                               "exported_from": origin})
    log(f"exported {path} (EMA weights{', float16' if half else ''}) -> {written} "
        f"({written.stat().st_size / 1e6:.2f} MB)")
    return written


def _whole(config: Config, tensors: dict[str, torch.Tensor], path: Path, out: Path,
           lora_scale: float = 1.0) -> tuple[Config, UNet]:
    """(config, EMA network) of a checkpoint as a whole run (a LoRA run's adapters merged at lora_scale), with
    `out` made as a new folder holding its config.toml (merge, export)."""
    refuse_foreign(out, "empty")
    model = ema_model(config, tensors, path)
    set_scale(model, lora_scale)
    config = dataclasses.replace(config, finetune=FinetuneConfig())
    writable_dir(out)
    write_text(out / CONFIG_FILE, config.to_toml())
    return config, merged(model)


def merged(model: UNet) -> UNet:
    merge_adapters(model)  # a LoRA teacher: the student is a whole network
    return model

"""Runs that start from a trained one (`audiodiff finetune`): the base's network, grown to new class labels,
with low-rank adapters for a LoRA run; and a LoRA run's network read back from its base.

A fine-tuned run's config is its base's with `[finetune]` filled in (base checkpoint and its sha256, LoRA
rank and layers) and `[data] labels` = the base's labels followed by any new ones, so that every old label keeps
its class id. The class embedding grows by rows: the base's rows stay, its "no label" row moves to the end and
each new label starts from it (from zeros when the base was unconditional, which leaves the base's outputs
unchanged).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .. import checkpoint
from ..config import Config
from .conditioning import from_config as conditioning_of
from .lora import add_adapters, scaled_like_adapters
from .unet import UNet

# what a fine-tuned run must share with its base, and (unet) all of it but the class count
SAME_AS_BASE = ("mel", "diffusion", "unet")


def refuse_as_base(base: Config, what: str) -> None:
    """CheckpointError for a run that cannot be a base: a distilled one (fine-tune its teacher) or a LoRA one
    (merge it first)."""
    if base.distill.method:
        raise checkpoint.CheckpointError(f"{what}: a distilled run cannot be fine-tuned; fine-tune its teacher "
                                         f"({base.distill.teacher}) instead")
    if base.finetune.lora_rank:
        raise checkpoint.CheckpointError(f"{what}: a LoRA run; bake its adapter in first (audiodiff merge RUN "
                                         "--out RUN2) and fine-tune the merged run")


def check_base(base: Config, config: Config, what: str) -> None:
    """CheckpointError naming every field of mel, diffusion or unet (class count aside) where config differs from
    the base's (checkpoint.check_same)."""
    checkpoint.check_same(base.replace("unet", num_classes=0).to_dict(),
                          config.replace("unet", num_classes=0).to_dict(), SAME_AS_BASE, what, holder="the base")


def grow_labels(weights: dict[str, Tensor], old: int, new: int, emb_dim: int) -> dict[str, Tensor]:
    """A base's weights with label_emb.weight [old + 1, D] (absent when old = 0) grown to [new + 1, D]."""
    if new == old:
        return weights
    table = weights.get("label_emb.weight")
    null = table[old] if table is not None else torch.zeros(emb_dim)
    rows = [table[:old]] if table is not None else []
    grown = torch.cat(rows + [null.expand(new - old + 1, -1)]).clone()
    return {**weights, "label_emb.weight": grown}


def start_network(config: Config, base: Config, base_tensors: dict[str, Tensor], base_path: Path) -> UNet:
    """The network a fine-tune starts from: the base's EMA weights in a UNet of `config` (labels grown), with
    adapters added and everything else frozen for a LoRA run (the class embedding stays trainable)."""
    model = UNet(config.unet, conditioning_of(config))
    weights = checkpoint.split(base_tensors, "ema")
    emb_dim = model.emb[-1].out_features
    weights = grow_labels(weights, len(base.data.labels), len(config.data.labels), emb_dim)
    checkpoint.load_weights(model, weights, base_path)
    f = config.finetune
    if f.lora_rank:
        add_adapters(model, f.lora_rank, f.lora_layers)
        if model.label_emb is not None:
            model.label_emb.requires_grad_(True)
            scaled_like_adapters(model.label_emb)
    return model


def trainable(model: torch.nn.Module) -> list[str]:
    """Names of the parameters that train (all of them, or the adapters and the class embedding of a LoRA run)."""
    return [name for name, p in model.named_parameters() if p.requires_grad]


HELD_BASE = "base.safetensors"  # a LoRA run's own link to (or copy of) its base checkpoint, beside its checkpoints/


def read_base(config: Config, what: str, held: Path | None = None) -> tuple[Config, dict[str, Tensor], Path]:
    """(config, tensors, path) of a fine-tuned run's base checkpoint, refusing a missing or changed one. `held`: the
    run's own link to the base (HELD_BASE), used when it exists, so that pruning the base run loses it nothing."""
    path = held if held is not None and held.is_file() else Path(config.finetune.base)
    if not path.is_file():
        raise checkpoint.CheckpointError(f"{what}: its base checkpoint {path} is missing (a LoRA run holds only its "
                                         "adapters; put the base back, or use a run merged with audiodiff merge)")
    tensors, meta = checkpoint.read(path)
    if meta["sha256"] != config.finetune.base_sha256:
        raise checkpoint.CheckpointError(f"{what}: its base checkpoint {path} has changed (sha256 {meta['sha256'][:12]}, "
                                         f"the run was trained on {config.finetune.base_sha256[:12]})")
    return Config.from_dict(meta["config"]), tensors, path


def lora_network(config: Config, tensors: dict[str, Tensor], path: Path, prefix: str = "ema") -> UNet:
    """A LoRA run's network: its base read and checked, adapters added, and the run's `prefix` tensors
    (the trained adapters and class embedding) loaded."""
    held = path.parent.parent / HELD_BASE if path.parent.name == "checkpoints" else None
    base, base_tensors, base_path = read_base(config, str(path), held)
    model = start_network(config, base, base_tensors, base_path)
    load_trained(model, checkpoint.split(tensors, prefix), path)
    return model


def load_trained(model: torch.nn.Module, weights: dict[str, Tensor], path: Path, names: list[str] | None = None) -> None:
    """Load a LoRA run's stored tensors (exactly `names`, default the model's trainable parameters) into the network
    built from its base."""
    names = set(trainable(model) if names is None else names)
    if set(weights) != names:
        odd = sorted(names - set(weights)) or sorted(set(weights) - names)
        raise checkpoint.CheckpointError(f"{path}: adapter weights do not fit the network of its config and base "
                                         f"({'missing' if names - set(weights) else 'unexpected'} {odd[0]!r})")
    checkpoint.load_weights(model, {**model.state_dict(), **weights}, path)


def ema_model(config: Config, tensors: dict[str, torch.Tensor], path: Path) -> UNet:
    """The UNet of a checkpoint's config with its EMA weights (on the CPU); for a LoRA run, its base's network
    (read and checked) with the run's adapters (scale 1, unmerged)."""
    if config.finetune.lora_rank:
        return lora_network(config, tensors, path)
    model = UNet(config.unet, conditioning_of(config))
    checkpoint.load_weights(model, checkpoint.split(tensors, "ema"), path)
    return model

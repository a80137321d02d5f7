"""Low-rank adapters (LoRA, Hu et al. 2021) on a network's convolutions and linear layers.

For a layer y = W x + b (a Conv2d: W [out, in, kh, kw]; a Linear: W [out, in]) an adapter adds

    y = W x + b + s * U (D x),    D: in -> r (the layer's own kernel, stride and padding), U: r -> out (1x1),

with rank r, U zero-initialised (so a new adapter leaves the network's outputs unchanged) and s the scale
(1 while training; `set_scale` changes it at generation, 0 gives the base network back). `merge` bakes
W <- W + s U D into the layer and removes the adapter. The adapter is a child module `adapter` of the layer
it adapts, added through a forward hook, so the layer's own parameter names stay those of the base network
(its weights load unchanged) and the adapter's are `<layer>.adapter.down.weight` / `.up.weight`.

Layers whose smaller side (out, or in * kh * kw) is not larger than r are left alone: a rank-r update of
them is no cheaper than the layer itself.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

# LORA_LAYERS, which layers get adapters: "attention": the attention projections (1x1 convolutions qkv, proj);
# "conv": every convolution (the attention projections included); "all": also the linear layers (timestep and
# class embedding MLPs, the residual blocks' scale/shift projections)
from ..config import LORA_LAYERS


class Adapter(nn.Module):
    """The low-rank update U D of one layer: [B, in, ...] -> [B, out, ...]."""

    def __init__(self, layer: nn.Conv2d | nn.Linear, rank: int) -> None:
        super().__init__()
        device = layer.weight.device
        if isinstance(layer, nn.Conv2d):
            self.down = nn.Conv2d(layer.in_channels, rank, layer.kernel_size, layer.stride, layer.padding,
                                  layer.dilation, bias=False, device=device)
            self.up = nn.Conv2d(rank, layer.out_channels, 1, bias=False, device=device)
        else:
            self.down = nn.Linear(layer.in_features, rank, bias=False, device=device)
            self.up = nn.Linear(rank, layer.out_features, bias=False, device=device)
        nn.init.zeros_(self.up.weight)
        self.scale = 1.0

    def forward(self, x: Tensor) -> Tensor:
        return self.up(self.down(x))

    def delta(self) -> Tensor:
        """s U D as a weight of the adapted layer's shape (float32)."""
        up, down = self.up.weight.float().flatten(1), self.down.weight.float()
        return self.scale * torch.einsum("or,r...->o...", up, down)


def _add_update(layer: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> Tensor:
    return out + layer.adapter.scale * layer.adapter(args[0])


def _side(layer: nn.Conv2d | nn.Linear) -> int:
    """The smaller side of the layer's weight as a matrix: min(out, in * kh * kw)."""
    return min(layer.weight.shape[0], layer.weight[0].numel())


def targets(model: nn.Module, which: str) -> dict[str, nn.Conv2d | nn.Linear]:
    """{name: layer} of the layers `which` (one of LORA_LAYERS) selects, in module order."""
    if which not in LORA_LAYERS:
        raise ValueError(f"LoRA layers: unknown choice {which!r} ({', '.join(LORA_LAYERS)})")
    kinds = (nn.Conv2d, nn.Linear) if which == "all" else (nn.Conv2d,)
    found = {name: m for name, m in model.named_modules()  # grouped convolutions and adapters' own layers: not
             if isinstance(m, kinds) and getattr(m, "groups", 1) == 1 and "adapter" not in name.split(".")}
    if which == "attention":
        found = {name: m for name, m in found.items() if name.rsplit(".", 1)[-1] in ("qkv", "proj")}
    return found


def add_adapters(model: nn.Module, rank: int, which: str = "conv") -> list[str]:
    """Add a rank-`rank` adapter to each layer `which` selects that is larger than the rank, and freeze every
    other parameter. Returns the adapted layers' names. ValueError for a rank < 1, or one no layer exceeds."""
    layers = targets(model, which)
    if rank < 1:
        raise ValueError(f"LoRA rank {rank}: must be at least 1")
    if not layers:
        raise ValueError(f"LoRA layers {which!r}: this network has none")
    widest = max(_side(m) for m in layers.values())
    if rank >= widest:
        raise ValueError(f"LoRA rank {rank}: not below the widest adapted layer's smaller side ({widest}); "
                         "a full fine-tune costs no more")
    model.requires_grad_(False)
    adapted = [name for name, m in layers.items() if _side(m) > rank]
    for name in adapted:
        layer = layers[name]
        layer.adapter = Adapter(layer, rank)
        layer.register_forward_hook(_add_update)
    return adapted


def adapters(model: nn.Module) -> dict[str, Adapter]:
    """{layer name: its adapter} of a network with adapters (empty without)."""
    return {name[: -len(".adapter")]: m for name, m in model.named_modules() if isinstance(m, Adapter)}


def scaled_like_adapters(table: nn.Embedding) -> None:
    """Make a table that trains in full in a LoRA run (the class embedding) follow the adapters' scale: at scale s
    it gives start + s (trained - start), `start` the table the run started from (kept, not saved), so that scale 0
    is the base network and 1 the run as trained (bit for bit: the trained table itself)."""
    table.register_buffer("lora_start", table.weight.detach().clone(), persistent=False)
    table.lora_scale = 1.0
    table.register_forward_hook(_scale_table)


def _scale_table(table: nn.Embedding, inputs: tuple[Tensor, ...], output: Tensor) -> Tensor:
    if table.lora_scale == 1.0:
        return output
    start = nn.functional.embedding(inputs[0], table.lora_start)
    return start + table.lora_scale * (output - start)


def set_scale(model: nn.Module, scale: float) -> None:
    """Scale every adapter's update, and the tables that follow them, by `scale` (1: as trained; 0: the base
    network)."""
    if not math.isfinite(scale):
        raise ValueError(f"LoRA scale {scale!r}: must be a finite number (0 = the base, 1 = as trained)")
    for adapter in adapters(model).values():
        adapter.scale = float(scale)
    for module in model.modules():
        if hasattr(module, "lora_scale"):
            module.lora_scale = float(scale)


def merge(model: nn.Module) -> int:
    """Bake each adapter (at its scale) into its layer's weight and remove it: a plain network computing the
    same function. Returns how many adapters were merged."""
    found = adapters(model)
    for module in model.modules():
        if hasattr(module, "lora_scale") and module.lora_scale != 1.0:  # bake a table that follows the scale
            with torch.no_grad():
                module.weight.copy_(module.lora_start + module.lora_scale * (module.weight - module.lora_start))
            module.lora_scale = 1.0
    layers = dict(model.named_modules())
    for name, adapter in found.items():
        layer = layers[name]
        with torch.no_grad():
            layer.weight += adapter.delta().to(layer.weight.dtype)
        del layer.adapter
        for key, hook in list(layer._forward_hooks.items()):
            if hook is _add_update:
                del layer._forward_hooks[key]
    return len(found)

"""What the network is told besides the noisy input and the timestep, in one object per kind of signal.

A conditioning signal owns:
- `encode(value, batch, device)`: a user's value (a class name, ...) -> the tensor c [B, ...] the UNet takes;
- `null(batch, device)`: the "told nothing" value, learned alongside (for classifier-free guidance);
- `drop(c, p, generator)`: replace a share p of a training batch by null (label dropout);
- `embedding(dim)`: the module c [B, ...] -> [B, dim] that the UNet adds to its timestep embedding.
`guided` turns any of them into classifier-free guidance.

Today's signal is a class label (`ClassLabel`, from the run's `[data] labels`); another one (a reference
clip's embedding, a loudness curve) is one class with these four methods plus one `register` line.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

import torch
from torch import Tensor, nn


class Conditioning(Protocol):
    kind: str

    def encode(self, value: Any, batch: int, device: torch.device) -> Tensor: ...

    def null(self, batch: int, device: torch.device) -> Tensor: ...

    def drop(self, c: Tensor, p: float, generator: torch.Generator) -> Tensor: ...

    def embedding(self, dim: int) -> nn.Module: ...


class ClassLabel:
    """One class per clip: c = long [B] class ids 0..n-1, and id n for "no label"."""

    kind = "class"

    def __init__(self, names: Sequence[str]) -> None:
        if not names:
            raise ValueError("class conditioning needs at least one label")
        self.names = tuple(names)

    def encode(self, value: str, batch: int, device: torch.device) -> Tensor:
        if value not in self.names:
            raise ValueError(f"label {value!r}: not a label of this run (labels: {', '.join(self.names)})")
        return torch.full((batch,), self.names.index(value), device=device)

    def null(self, batch: int, device: torch.device) -> Tensor:
        return torch.full((batch,), len(self.names), device=device)

    def drop(self, c: Tensor, p: float, generator: torch.Generator) -> Tensor:
        dropped = torch.rand(c.shape, generator=generator) < p
        return c.masked_fill(dropped.to(c.device), len(self.names))

    def embedding(self, dim: int) -> nn.Module:
        return nn.Embedding(len(self.names) + 1, dim)


KINDS: dict[str, Callable[..., Conditioning]] = {}


def register(kind: str, factory: Callable[..., Conditioning]) -> None:
    """Make `build(kind, ...)` construct factory(...)."""
    KINDS[kind] = factory


def build(kind: str, *args: Any, **kwargs: Any) -> Conditioning:
    if kind not in KINDS:
        raise ValueError(f"unknown conditioning {kind!r} (known: {', '.join(KINDS)})")
    return KINDS[kind](*args, **kwargs)


register(ClassLabel.kind, ClassLabel)


def from_config(config: Any) -> Conditioning | None:
    """The conditioning of a run's Config: class labels if `[data] labels` is set, else None (unconditional)."""
    return build(ClassLabel.kind, config.data.labels) if config.data.labels else None


def guided(model: nn.Module, cond: Conditioning, c: Tensor, guidance: float,
           interval: tuple[float, float] | None = None) -> Callable[[Tensor, Tensor], Tensor]:
    """Classifier-free guidance (Ho & Salimans 2021) as a sampler's Model: (1 + w) f(x, t, c) - w f(x, t, null).

    c: the encoded condition [B, ...]. guidance w = 0 is plain conditional sampling; otherwise one batched
    forward of 2B. interval (t_lo, t_hi): guide only at timesteps t_lo <= t <= t_hi and sample plainly
    conditional elsewhere (guidance in a limited interval, Kynkaanniemi et al. 2024); None guides at every step.
    """
    null = cond.null(c.shape[0], c.device)

    def model_fn(x: Tensor, t: Tensor) -> Tensor:
        if guidance == 0 or (interval is not None and not interval[0] <= float(t[0]) <= interval[1]):
            return model(x, t, c)
        cond_out, uncond = model(torch.cat([x, x]), torch.cat([t, t]), torch.cat([c, null])).chunk(2)
        return cond_out + guidance * (cond_out - uncond)

    return model_fn

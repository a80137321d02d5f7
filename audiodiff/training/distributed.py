"""Data-parallel training on torch.distributed: one process per device, started by torchrun.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; without them (or with
WORLD_SIZE = 1) everything here is the single-process no-op. Backends: NCCL on CUDA, gloo on CPU.

How the batch is split: every rank holds the same data generator state and draws the whole global
batch (files, crops, timesteps, noise: cheap, from cached mels), then keeps its own contiguous
share. So N ranks see disjoint parts of each batch, a checkpoint's generator state is every rank's,
and a run on N ranks takes the same steps as one process with the same global batch.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.distributed.nn.functional  # noqa: F401  (see below: imported before any process group exists)
from torch import Tensor, nn

from ..device import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        """Rank 0 writes checkpoints, logs and previews."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    def share(self, x: Tensor) -> Tensor:
        """This rank's contiguous share of a global batch [B, ...]; B must divide by the world size."""
        if not self.active:
            return x
        n = x.shape[0] // self.world
        return x[self.rank * n : (self.rank + 1) * n]


def from_env(device_name: str | None) -> tuple[Dist, torch.device]:
    """Join the process group torchrun describes in the environment, if any. Returns (Dist, this rank's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    device = resolve_device(device_name)
    if world == 1:
        return Dist(), device
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if device.type == "cuda":
        device = torch.device("cuda", local)
        torch.cuda.set_device(device)
    elif device.type == "mps":
        raise ValueError("distributed training runs on CUDA (NCCL) or CPU (gloo), not MPS")
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(rank, world), device


def wrap(model: nn.Module, d: Dist, device: torch.device) -> nn.Module:
    """The module to call for training: DistributedDataParallel (gradients averaged over ranks) or the model itself."""
    if not d.active:
        return model
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def barrier(d: Dist) -> None:
    if d.active:
        dist.barrier()


def all_true(flag: bool, d: Dist) -> bool:
    """Whether `flag` holds on every rank (so that all ranks skip a step together, or none does)."""
    if not d.active:
        return flag
    t = torch.tensor([1.0 if flag else 0.0])
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def largest(values: list[float], d: Dist) -> list[float]:
    """Each value's largest over the ranks, the same list on every rank (so that plans made from measured times
    agree: every rank then derives the same step count from the same figures)."""
    if not d.active:
        return list(values)
    t = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.cpu().tolist()


def replicas_agree(model: nn.Module, d: Dist) -> bool:
    """Whether every rank holds bit-identical parameters (compares a float64 checksum across ranks)."""
    if not d.active:
        return True
    with torch.no_grad():
        s = torch.stack([p.double().sum() + (p.double() ** 2).sum() for p in model.parameters()]).sum().reshape(1)
    lo, hi = s.clone(), s.clone()
    dist.all_reduce(lo, op=dist.ReduceOp.MIN)
    dist.all_reduce(hi, op=dist.ReduceOp.MAX)
    return bool(lo.item() == hi.item())


def shutdown(d: Dist) -> None:
    """Destroy the process group, which stops its gloo/NCCL threads now rather than during interpreter teardown.

    torch.distributed.nn.functional (imported by DistributedDataParallel) binds the default group as a default
    argument of its functions when first imported; imported after init_process_group, that keeps the group alive
    past destroy_process_group, and the group's threads then die with the interpreter, which aborted a rank in
    about 1 run in 7 ("terminate called without an active exception"). This module imports it first.
    """
    if d.active and dist.is_initialized():
        dist.destroy_process_group()

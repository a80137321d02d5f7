"""Device choice and mixed precision, in one place for training and generation."""

from __future__ import annotations

import contextlib
import functools
import os
import platform

import torch


def resolve_device(name: str | None = None) -> torch.device:
    """`name` ("cpu", "cuda", "cuda:1", "mps") or, if None/"auto", the best available: CUDA, then MPS, then CPU."""
    if name in (None, "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(f"--device {name}: not a device (auto, cpu, cuda, cuda:N or mps)") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"--device {name}: MPS is not available on this machine")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {name}: expected cpu, cuda or mps")
    return device


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16 or fp16 autocast (weights stay fp32) for precision "bf16" / "fp16", a no-op for "fp32" and for bf16
    on a CPU without native bf16 (`cpu_has_bf16`: there it would be emulated, far slower than fp32)."""
    if emulated_bf16(device, precision):
        return contextlib.nullcontext()
    if precision in ("bf16", "fp16"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)
    return contextlib.nullcontext()


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU runs bf16 convolutions and matmuls natively (oneDNN's check: AVX-512 or AMX). Without
    it (e.g. AVX2-only x86) bf16 autocast is emulated and many times slower than fp32 (experiments/LOG.md, "A CPU
    without native bf16")."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    if check is None:  # a build without the check: trust bf16, as before
        return True
    try:
        return bool(check())
    except RuntimeError:
        return True


def emulated_bf16(device: torch.device, precision: str) -> bool:
    """Whether `precision` is bf16 on a CPU that would only emulate it (`cpu_has_bf16`): run fp32 there."""
    return precision == "bf16" and device.type == "cpu" and not cpu_has_bf16()


def resolve_precision(device: torch.device, precision: str) -> str:
    """The precision training runs in: the asked one, except bf16 on a CUDA GPU without bf16 support (before
    Ampere), which runs fp16 with loss scaling instead, and bf16 on a CPU without native bf16 (`cpu_has_bf16`),
    which runs fp32. A run-time choice, not part of the model."""
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        return "fp16"
    if emulated_bf16(device, precision):
        return "fp32"
    return precision


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler:
    """Dynamic loss scaling for fp16, whose 5-bit exponent flushes small gradients to zero; for bf16 and fp32
    a disabled scaler, whose scale/unscale_/step/update calls are plain pass-throughs."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def configure_for_training(device: torch.device) -> None:
    """Process-wide CUDA settings for training (set by `train`, not at import): TF32 for float32 matmuls on
    Ampere and newer (cuDNN convolutions allow TF32 by default already), and cuDNN autotuning, since every
    training batch has the same shape. No effect on CPU or MPS."""
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")
        torch.backends.cudnn.benchmark = True


def peak_memory(device: torch.device) -> str:
    """Peak memory so far, for the log: CUDA tensors allocated on a GPU, else this process's peak resident size."""
    if device.type == "cuda":
        return f"{torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB peak GPU memory"
    if device.type == "mps":
        return f"{torch.mps.driver_allocated_memory() / 2**30:.2f} GiB MPS memory"
    import resource  # Unix; ru_maxrss is in KiB on Linux

    return f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20:.2f} GiB peak RSS"


def describe_hardware(device: torch.device) -> str:
    """What trained or ran something, for logs and checkpoints, e.g. "cpu: 2 x86_64 CPUs, torch 2.13.0+cpu"."""
    if device.type == "cuda":
        what = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        what = f"Apple MPS ({platform.machine()})"
    else:
        what = f"{os.cpu_count()} {platform.processor() or platform.machine()} CPUs"
    return f"{device.type}: {what}, torch {torch.__version__}"

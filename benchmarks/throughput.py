#!/usr/bin/env python3
"""Our UNet against diffusers' UNet2DModel (the network of teticio/audio-diffusion) at about the same
parameter count and the same input (1 x 64 x 64, batch 16), fp32 and bf16 autocast, on this machine:

- train samples/s: forward, MSE backward and AdamW step (the bare step, same for both networks, with
  the fused AdamW that `audiodiff train` uses);
- sampler evaluations/s: one forward pass at batch 16 under inference_mode;
- this CPU's matmul peak (a large square GEMM in fp32 and bf16), and the fraction of it each train
  step achieves, from the step's FLOPs as counted by torch.utils.flop_counter.

All variants are interleaved within each round and the minimum time over rounds is kept (the machine
is shared). Prints a table and the command that made it.

    python benchmarks/throughput.py --rounds 5 --steps 2
    python benchmarks/throughput.py --size tiny --precisions fp32 --trainer samples/notes/train --rounds 5 --steps 3

--size tiny runs the tiny preset's UNet (0.30 M, on 2 x 2 patches: UNetConfig.patch) and the same network unpatched
(the tiny preset before patches) against a diffusers UNet2DModel of the same plan (16-32-32 channels, one block per
level, attention at the coarsest: 0.28 M, unpatched) on the tiny preset's input, 1 x 80 x 64.
--trainer DATA_DIR also runs `audiodiff train DATA_DIR --preset SIZE --steps 100` in this process and reports its
samples/s from loss.csv (steps 30 on), the same network inside the whole training loop (data, EMA, logging), as a
fraction of the same peak.
"""

from __future__ import annotations

import argparse
import dataclasses
import platform
import sys
import time
from typing import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from audiodiff.config import UNetConfig
from audiodiff.device import autocast, resolve_device
from audiodiff.model.unet import UNet
from audiodiff.presets import preset
from audiodiff.training.kit import adamw


def diffusers_unet(size: str = "small") -> torch.nn.Module:
    from diffusers import UNet2DModel

    if size == "tiny":  # the tiny preset's plan: 16-32-32 channels, one block a level, attention at the coarsest
        return UNet2DModel(sample_size=(80, 64), in_channels=1, out_channels=1, block_out_channels=(16, 32, 32),
                           layers_per_block=1, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D"),
                           up_block_types=("AttnUpBlock2D", "UpBlock2D", "UpBlock2D"), norm_num_groups=4,
                           attention_head_dim=32)
    return UNet2DModel(sample_size=64, in_channels=1, out_channels=1, block_out_channels=(64, 128, 128, 256),
                       layers_per_block=2, down_block_types=("DownBlock2D", "DownBlock2D", "AttnDownBlock2D", "DownBlock2D"),
                       up_block_types=("UpBlock2D", "AttnUpBlock2D", "UpBlock2D", "UpBlock2D"))


class Wrapped(torch.nn.Module):
    """diffusers' model called like ours: (x, t) -> tensor."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if y is not None:
            raise ValueError("this diffusers model is unconditional")
        return self.net(x, t).sample


# Our UNet in two shapes, each at about diffusers' parameter count (17.2 M). "wide" has diffusers' channel
# plan (64, 128, 128, 256). "lean" moves the work off the full-resolution level: 32 channels there,
# 128-256 below, attention at the two coarsest levels, and upsampling convs that output the finer
# level's width (UNetConfig.narrow_upsample), so the 64x64 level costs a fraction of what it did.
OURS = {
    "audiodiff-wide": UNetConfig(channels=64, channel_mult=(1, 2, 2, 4), num_res_blocks=2, attention_levels=(2,),
                                 head_channels=64),
    "audiodiff-lean": UNetConfig(channels=32, channel_mult=(1, 4, 4, 8), num_res_blocks=2, attention_levels=(2, 3),
                                 head_channels=64, narrow_upsample=True),
}


def train_fn(model: torch.nn.Module, x: torch.Tensor, precision: str) -> Callable[[], None]:
    opt = adamw(model.parameters(), x.device, lr=1e-4)
    t = torch.randint(0, 1000, (x.shape[0],), generator=torch.Generator().manual_seed(0)).to(x.device)

    def step() -> None:
        with autocast(x.device, precision):
            out = model(x, t)
        loss = (out.float() - x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def eval_fn(model: torch.nn.Module, x: torch.Tensor, precision: str) -> Callable[[], None]:
    t = torch.full((x.shape[0],), 500, device=x.device)

    def step() -> None:
        with torch.inference_mode(), autocast(x.device, precision):
            model(x, t)

    return step


def timed(fn: Callable[[], None], n: int, device: torch.device) -> float:
    if device.type == "cuda":  # work queued before must not count
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / n


def flops(fn: Callable[[], None]) -> float:
    with FlopCounterMode(display=False) as counter:
        fn()
    return float(counter.get_total_flops())


def matmul_peak(dtype: torch.dtype, device: torch.device, rounds: int, size: int = 2048) -> float:
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    best = min(timed(lambda: a @ b, 3, device) for _ in range(rounds))
    return 2 * size**3 / best


def trainer_rate(data_dir: str, size: str, device: str) -> float:
    """Samples/s of `audiodiff train DATA_DIR --preset SIZE --precision fp32 --steps 100` in this process, the median
    of loss.csv's samples_per_s from step 30 on."""
    import tempfile
    from pathlib import Path

    from audiodiff.cli import main as cli
    from audiodiff.runfolder import csv_rows

    with tempfile.TemporaryDirectory() as tmp:
        cli(["train", data_dir, "--out", f"{tmp}/run", "--preset", size, "--precision", "fp32", "--steps", "100",
             "--no-progress", "--device", device], standalone_mode=False)
        rates = sorted(float(r["samples_per_s"]) for r in csv_rows(Path(tmp) / "run" / "loss.csv")
                       if int(r["step"]) >= 30)
    return rates[len(rates) // 2]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="timed calls per round and variant")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--ours", nargs="+", choices=list(OURS), default=list(OURS), help="which of our shapes to run")
    ap.add_argument("--channels-last", action="store_true",
                    help="networks and input in channels_last memory format (what cuDNN prefers for bf16 on GPUs)")
    ap.add_argument("--peak-size", type=int, default=2048,
                    help="side of the square GEMM that measures the matmul peak (a GPU needs 8192 to approach its own)")
    ap.add_argument("--compile", action="store_true",
                    help="add our UNets under torch.compile (what `audiodiff train --compile` runs); "
                         "compiling takes minutes")
    ap.add_argument("--size", choices=["small", "tiny"], default="small",
                    help="small: --ours against diffusers at 17 M parameters; tiny: the tiny preset's UNet against "
                         "diffusers at 0.3 M, on its 80 x 64 input")
    ap.add_argument("--precisions", nargs="+", choices=["fp32", "bf16"], default=["fp32", "bf16"])
    ap.add_argument("--trainer", metavar="DATA_DIR", help="also time `audiodiff train DATA_DIR` (fp32; see above)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    shape = (80, 64) if args.size == "tiny" else (64, 64)
    x = torch.rand(args.batch_size, 1, *shape, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
    x = x.contiguous(memory_format=fmt)
    if args.size == "tiny":
        tiny = preset("tiny").unet
        ours = {"audiodiff-tiny": tiny, "audiodiff-tiny-unpatched": dataclasses.replace(tiny, patch=1)}
    else:
        ours = {n: OURS[n] for n in args.ours}
    nets = {name: UNet(config) for name, config in ours.items()}
    nets["diffusers"] = Wrapped(diffusers_unet(args.size))
    if args.compile:
        nets.update({f"{name}+compile": UNet(config) for name, config in ours.items()})
    nets = {name: net.to(device, memory_format=fmt) for name, net in nets.items()}
    variants = {}
    for name, net in nets.items():
        for prec in args.precisions:
            for kind, make in (("train", train_fn), ("eval", eval_fn)):
                if name.endswith("+compile"):  # same math as eager: count the FLOPs there, then compile
                    count = flops(make(net, x, prec)) if kind == "train" else 0.0
                    fn = make(torch.compile(net), x, prec)
                else:
                    fn = make(net, x, prec)
                    count = flops(fn) if kind == "train" else 0.0
                fn()  # warm-up (and compile)
                fn()
                variants[(name, prec, kind)] = (fn, count, [])
    peaks = {"fp32": [], "bf16": []}
    for _ in range(args.rounds):
        for fn, _, times in variants.values():
            times.append(timed(fn, args.steps, device))
        for prec, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
            if prec in args.precisions:
                peaks[prec].append(matmul_peak(dtype, device, 1, args.peak_size))
    peak = {p: max(v) for p, v in peaks.items() if v}
    trainer = trainer_rate(args.trainer, args.size, args.device) if args.trainer else None
    params = {n: sum(p.numel() for p in net.parameters()) / 1e6 for n, net in nets.items()}
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {device}, batch {args.batch_size}, input 1x{shape[0]}x{shape[1]}, min of {args.rounds} rounds x "
          f"{args.steps} calls")
    where = torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"
    print(f"# {where}, memory format {'channels_last' if args.channels_last else 'contiguous'}")
    print(f"# matmul peak ({args.peak_size}^3 GEMM): " + ", ".join(f"{p} {v / 1e9:.1f} GFLOP/s" for p, v in peak.items()))
    print(f"{'network':26} {'params':>7} {'GFLOP/sample':>12} {'prec':5} {'train samples/s':>15} {'of peak':>8} {'evals/s':>8} "
          f"{'train vs diffusers':>18} {'evals vs diffusers':>18}")
    for name in nets:
        for prec in args.precisions:
            tr_fn, tr_flops, tr = variants[(name, prec, "train")]
            ev = variants[(name, prec, "eval")][2]
            d_tr, d_ev = min(variants[("diffusers", prec, "train")][2]), min(variants[("diffusers", prec, "eval")][2])
            frac = tr_flops / min(tr) / peak[prec]
            print(f"{name:26} {params[name]:6.2f}M {tr_flops / args.batch_size / 1e9:12.2f} {prec:5} "
                  f"{args.batch_size / min(tr):15.2f} {frac:8.1%} "
                  f"{args.batch_size / min(ev):8.1f} {d_tr / min(tr):17.2f}x {d_ev / min(ev):17.2f}x")
    if trainer is not None and "fp32" in args.precisions:
        name = next(iter(ours))
        _, tr_flops, tr = variants[(name, "fp32", "train")]
        per_sample = tr_flops / args.batch_size
        print(f"# audiodiff train --preset {args.size} (fp32, {args.trainer}): {trainer:.2f} samples/s, "
              f"{trainer * per_sample / peak['fp32']:.1%} of the fp32 peak, {trainer * min(tr) / args.batch_size:.2f}x "
              f"the bare step of {name}")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Which cheaper shape of the tiny preset's UNet trains fastest per sample on a CPU: the bare fp32 train step
(forward, MSE, backward, fused AdamW; batch 16 of 1 x 80 x 64, class-conditional on 11 labels as the main job) of
each shape, its FLOPs per sample (torch.utils.flop_counter) and its parameters, all shapes interleaved in each round,
the minimum over rounds kept. The quality of the one chosen was then measured on the main job (experiments/LOG.md,
"A patched tiny").

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python experiments/tiny_shapes.py --rounds 4 --steps 3
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from audiodiff.config import UNetConfig
from audiodiff.model.unet import UNet
from audiodiff.presets import preset
from audiodiff.training.kit import adamw


def shapes() -> dict[str, UNetConfig]:
    """The tiny preset's UNet unpatched (the preset before patches) and the variants tried against it."""
    tiny = dataclasses.replace(preset("tiny").unet, patch=1, num_classes=11)
    return {
        "tiny (16-32-32)": tiny,
        "narrow upsampling": dataclasses.replace(tiny, narrow_upsample=True),
        "no attention in the levels": dataclasses.replace(tiny, attention_levels=()),
        "12-24-24": dataclasses.replace(tiny, channels=12, head_channels=24),
        "8-32-32, narrow": dataclasses.replace(tiny, channels=8, channel_mult=(1, 4, 4), narrow_upsample=True),
        "8-32-32, narrow, no attention": dataclasses.replace(tiny, channels=8, channel_mult=(1, 4, 4),
                                                             narrow_upsample=True, attention_levels=()),
        "2x2 patches, 16-32-32": dataclasses.replace(tiny, patch=2),
        "2x2 patches, 24-24-48, narrow, no attention": dataclasses.replace(
            tiny, patch=2, channels=24, channel_mult=(1, 1, 2), narrow_upsample=True, attention_levels=(),
            head_channels=24),
        "2x2 patches, 32-32-64, narrow": dataclasses.replace(tiny, patch=2, channels=32, channel_mult=(1, 1, 2),
                                                             narrow_upsample=True),
    }


def step_fn(config: UNetConfig, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor):
    model = UNet(config)
    opt = adamw(model.parameters(), x.device, lr=1e-4)

    def step() -> None:
        loss = (model(x, t, y) - x).square().mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step, sum(p.numel() for p in model.parameters())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round and shape")
    args = ap.parse_args()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 1, 80, 64, generator=g)
    t, y = torch.randint(0, 1000, (16,), generator=g), torch.randint(0, 11, (16,), generator=g)
    runs = {}
    for name, config in shapes().items():
        step, params = step_fn(config, x, t, y)
        with FlopCounterMode(display=False) as counter:
            step()
        step()
        runs[name] = (step, params, counter.get_total_flops() / len(x), [])
    for _ in range(args.rounds):
        for step, _, _, times in runs.values():
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            times.append((time.perf_counter() - t0) / args.steps)
    base = len(x) / min(next(iter(runs.values()))[3])
    print(f"# {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads, "
          f"batch 16 x 1 x 80 x 64, fp32, min of {args.rounds} rounds x {args.steps} steps")
    print("| shape | params | GFLOP per sample | train samples/s | vs tiny |")
    print("|---|---|---|---|---|")
    for name, (_, params, flops, times) in runs.items():
        rate = len(x) / min(times)
        print(f"| {name} | {params / 1e6:.3f} M | {flops / 1e9:.2f} | {rate:.1f} | {rate / base:.2f}x |")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

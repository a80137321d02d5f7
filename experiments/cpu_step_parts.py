#!/usr/bin/env python3
"""Two CPU-side changes to the training step, measured on their own and together:

1. attention: torch's scaled_dot_product_attention against the two matmuls and a softmax that
   audiodiff.model.unet.attention runs on CPU, forward + backward at the shapes of the lean UNet's
   attention layers (batch 16; 16 x 16 positions at 128 channels, 8 x 8 at 256; heads of 64);
2. the bare bf16 train step of the lean UNet (throughput.py's) with each attention path and with
   the per-tensor AdamW or the fused one, interleaved, min over rounds; "of peak" as in throughput.py;
3. the ceiling the convolutions set: each of the lean UNet's convolutions timed alone, forward and
   backward in bf16 at the input it gets in that step, their total time and FLOP rate, and the
   slowest layers by FLOP rate.

    python experiments/cpu_step_parts.py --rounds 5
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Callable

import torch
import torch.nn.functional as F
from throughput import OURS, flops, matmul_peak

import audiodiff.model.unet
from audiodiff.model.unet import UNet, attention


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """What the UNet ran before: torch's SDPA on the channels-first q, k, v [B, heads, d, T]."""
    return F.scaled_dot_product_attention(q.mT, k.mT, v.mT).mT


def best_time(fn: Callable[[], object], rounds: int, calls: int = 3) -> float:
    fn()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - start) / calls)
    return min(times)


def attention_table(rounds: int) -> None:
    print(f"{'shape [B, heads, d, T]':24} {'dtype':9} {'SDPA ms':>8} {'matmuls ms':>10} {'speed-up':>9}")
    for heads, d, tokens in ((2, 64, 256), (4, 64, 64)):
        for dtype in (torch.bfloat16, torch.float32):
            qkv = torch.randn(16, 3 * heads, d, tokens, dtype=dtype, requires_grad=True)
            times = {}
            for name, fn in (("sdpa", sdpa), ("matmuls", attention)):
                times[name] = best_time(lambda: fn(*qkv.chunk(3, dim=1)).sum().backward(), rounds)
            print(f"{str([16, heads, d, tokens]):24} {str(dtype)[6:]:9} {times['sdpa'] * 1e3:8.2f} "
                  f"{times['matmuls'] * 1e3:10.2f} {times['sdpa'] / times['matmuls']:8.2f}x")


def step_table(rounds: int, steps: int) -> None:
    x = torch.rand(16, 1, 64, 64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    t = torch.randint(0, 1000, (16,), generator=torch.Generator().manual_seed(0))
    variants = {}
    for attn_name, attn in (("SDPA", sdpa), ("matmuls", attention)):
        for fused in (False, True):
            torch.manual_seed(0)
            net = UNet(OURS["audiodiff-lean"])
            opt = torch.optim.AdamW(net.parameters(), lr=1e-4, fused=fused)

            def step(net=net, opt=opt, attn=attn) -> None:
                audiodiff.model.unet.attention = attn  # the Attention modules look it up at call time
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = net(x, t)
                loss = (out.float() - x).square().mean()
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()

            variants[(attn_name, "fused" if fused else "per-tensor")] = (step, flops(step), [])
    peaks = []
    for _ in range(rounds):
        for step, _, times in variants.values():
            times.append(best_time(step, 1, steps))
        peaks.append(matmul_peak(torch.bfloat16, torch.device("cpu"), 1))
    audiodiff.model.unet.attention = attention
    peak, base = max(peaks), min(variants[("SDPA", "per-tensor")][2])
    print(f"# bf16 matmul peak (2048^3 GEMM) {peak / 1e9:.1f} GFLOP/s")
    print(f"{'attention':10} {'AdamW':11} {'samples/s':>9} {'of peak':>8} {'vs first':>9}")
    for (attn_name, opt_name), (_, count, times) in variants.items():
        print(f"{attn_name:10} {opt_name:11} {16 / min(times):9.2f} {count / min(times) / peak:8.1%} "
              f"{base / min(times):8.2f}x")


def conv_table(rounds: int, worst: int = 6) -> None:
    net = UNet(OURS["audiodiff-lean"])
    inputs: dict[str, tuple[torch.nn.Conv2d, torch.Size]] = {}
    for name, m in net.named_modules():
        if isinstance(m, torch.nn.Conv2d):
            m.register_forward_hook(lambda mod, args, out, name=name: inputs.__setitem__(name, (mod, args[0].shape)))
    net(torch.zeros(16, 1, 64, 64), torch.zeros(16, dtype=torch.long))
    rows = []
    for name, (conv, shape) in inputs.items():
        x = torch.randn(shape, dtype=torch.bfloat16, requires_grad=name != "conv_in")  # conv_in's input needs no grad
        w, b = (p.detach().to(torch.bfloat16).requires_grad_() for p in (conv.weight, conv.bias))
        out_shape = F.conv2d(x, w, b, conv.stride, conv.padding).shape
        grad = torch.randn(out_shape, dtype=torch.bfloat16)
        seconds = best_time(lambda: F.conv2d(x, w, b, conv.stride, conv.padding).backward(grad), rounds)
        macs = out_shape.numel() * w[0].numel()
        passes = 3 if x.requires_grad else 2  # forward, weight grad, input grad
        rows.append((name, tuple(shape), conv.out_channels, conv.kernel_size[0], seconds, 2 * macs * passes))
    peak = matmul_peak(torch.bfloat16, torch.device("cpu"), rounds)
    total_s, total_f = sum(r[4] for r in rows), sum(r[5] for r in rows)
    print(f"# {len(rows)} convolutions alone, bf16 forward + backward: {total_s * 1e3:.0f} ms a step, "
          f"{total_f / 1e9:.0f} GFLOP, {total_f / total_s / peak:.1%} of the bf16 matmul peak "
          f"({peak / 1e9:.0f} GFLOP/s)")
    print(f"{'slowest by FLOP rate':22} {'input':22} {'out':>4} {'k':>2} {'ms':>6} {'of peak':>8}")
    for name, shape, out, k, seconds, fl in sorted(rows, key=lambda r: r[5] / r[4])[:worst]:
        print(f"{name:22} {str(shape):22} {out:4} {k:2} {seconds * 1e3:6.2f} {fl / seconds / peak:8.1%}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=2, help="timed train steps per round and variant")
    args = ap.parse_args()
    print(f"# torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    attention_table(args.rounds)
    step_table(args.rounds, args.steps)
    conv_table(args.rounds)
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Training throughput (samples/s) of the presets' UNets, fp32 vs bf16 autocast, on this machine.

Variants are interleaved within each round and the best (min) time per step over rounds is kept,
because timings on a shared machine are noisy. Prints a table and the command that made it.
Where the CPU has no native bf16, training runs bf16 as fp32 (`device.cpu_has_bf16`); --force-bf16 times the
emulated bf16 anyway, to show what that choice saves.
--data DIR also times what the training loop does for data each step (draw files, cut crops from the
in-memory mel cache) and prints it as a share of each step: the case for or against DataLoader workers.

    python benchmarks/train_throughput.py --presets tiny small --batch-size 16 --rounds 5 --steps 3 [--data DIR]
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import torch

from audiodiff import device as devices
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.data.prepare import load_mels
from audiodiff.device import resolve_device
from audiodiff.diffusion.schedule import GaussianSchedule
from audiodiff.presets import preset
from audiodiff.training.diffusion import new_state, train_step


def time_steps(state, config, schedule, x0, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        train_step(state, config, schedule, x0)
    if x0.device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - start) / steps


def time_batches(data_dir: str, batch_size: int, rounds: int, steps: int = 20) -> float:
    """Seconds per batch the training loop spends on data: file draw + crops, as in `train`."""
    config = preset("tiny")
    data, _ = load_mels(data_dir, MelSpectrogram(config.mel), config.data.crop_frames, progress=False)
    g = torch.Generator().manual_seed(0)
    best = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            data.crops(data.sample_files(batch_size, g), g)
        best = min(best, (time.perf_counter() - start) / steps)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--presets", nargs="+", default=["tiny", "small"])
    ap.add_argument("--precisions", nargs="+", default=["fp32", "bf16"])
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per round and variant")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--data", help="a folder of audio: also time the data side of each step")
    ap.add_argument("--force-bf16", action="store_true", help="bf16 autocast even where the CPU would emulate it")
    args = ap.parse_args()
    native = devices.cpu_has_bf16()
    if args.force_bf16:
        devices.cpu_has_bf16 = lambda: True
    device = resolve_device(args.device)
    variants = {}
    for name in args.presets:
        for prec in args.precisions:
            config = preset(name).replace("train", precision=prec, batch_size=args.batch_size)
            state = new_state(config, device)
            shape = (args.batch_size, 1, config.mel.n_mels, config.data.crop_frames)
            x0 = torch.rand(shape, generator=torch.Generator().manual_seed(0)).to(device) * 2 - 1
            schedule = GaussianSchedule.from_config(config.diffusion)
            train_step(state, config, schedule, x0)  # warm-up
            params = sum(p.numel() for p in state.model.parameters())
            variants[(name, prec)] = (state, config, schedule, x0, params, [])
    for _ in range(args.rounds):
        for state, config, schedule, x0, _, times in variants.values():
            times.append(time_steps(state, config, schedule, x0, args.steps))
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"device {device}, batch {args.batch_size}, input 80 mels x 64 frames, min of {args.rounds} rounds x {args.steps} steps; "
          f"native CPU bf16: {'yes' if native else 'no'}{' (bf16 forced)' if args.force_bf16 else ''}")
    data_s = time_batches(args.data, args.batch_size, args.rounds) if args.data else None
    if data_s is not None:
        print(f"# data per batch (file draw + crops from the mel cache of {args.data}): {data_s * 1e3:.2f} ms")
    print(f"{'preset':8} {'params':>8} {'precision':9} {'s/step':>8} {'samples/s':>10} {'vs fp32':>8}"
          + (f" {'data share':>10}" if data_s is not None else ""))
    for (name, prec), (_, _, _, _, params, times) in variants.items():
        best = min(times)
        base = min(variants[(name, "fp32")][5]) if (name, "fp32") in variants else best
        print(f"{name:8} {params / 1e6:7.2f}M {prec:9} {best:8.3f} {args.batch_size / best:10.1f} {base / best:7.2f}x"
              + (f" {data_s / (best + data_s):10.2%}" if data_s is not None else ""))
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

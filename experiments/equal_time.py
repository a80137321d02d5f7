#!/usr/bin/env python3
"""Quality at equal training time: our UNet shapes against diffusers' UNet2DModel (the network of
teticio/audio-diffusion), the size-matched networks of throughput.py (--nets picks them), each trained
for the same wall-clock seconds on the same data, then scored the same way.

All networks run in one process through audiodiff's own training step (same loss, optimizer, learning
rate, EMA, bf16 autocast, and the same seed, so they draw the same batches, timesteps and noise in the
same order). They take turns of --turn seconds until each has used --minutes of training time, so a
change in the machine's load hits all of them. Then each EMA model samples --clips clips (DDIM, same seeds),
the same vocoder turns them into audio, and melstats FD/KID against the held-out folder are printed
with 95% bootstrap intervals, beside the real-vs-real floor (training clips vs held-out).

    python experiments/equal_time.py /tmp/data/drums/train /tmp/data/drums/heldout --minutes 15
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import platform
import sys
import time
from pathlib import Path

import torch
from throughput import OURS, Wrapped, diffusers_unet

from audiodiff.audio.io import save
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.config import Config, TrainConfig
from audiodiff.data.prepare import load_mels
from audiodiff.device import grad_scaler, resolve_device, resolve_precision
from audiodiff.diffusion.schedule import GaussianSchedule
from audiodiff.evaluation.distances import evaluate_generated
from audiodiff.evaluation.features import folder_features
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.model.unet import UNet
from audiodiff.training.diffusion import TrainState, train_step
from audiodiff.training.kit import adamw


def new_state(net: torch.nn.Module, config: Config, device: torch.device) -> TrainState:
    net = net.to(device)
    ema = copy.deepcopy(net).requires_grad_(False).eval()
    opt = adamw(net.parameters(), device, lr=config.train.lr, weight_decay=config.train.weight_decay)
    precision = resolve_precision(device, config.train.precision)
    return TrainState(net, ema, opt, torch.Generator().manual_seed(config.train.seed), precision,
                      grad_scaler(device, precision))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train_dir")
    ap.add_argument("heldout_dir")
    ap.add_argument("--nets", nargs="+", choices=[*OURS, "diffusers"], default=["audiodiff-lean", "diffusers"],
                    help="networks to train, in turn (shapes: see throughput.py)")
    ap.add_argument("--minutes", type=float, default=15.0, help="training time per network")
    ap.add_argument("--turn", type=float, default=60.0, help="seconds each network trains before the other's turn")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--sample-steps", type=int, default=50, help="DDIM steps")
    ap.add_argument("--vocoder", default="griffinlim", help="vocoder spec or trained vocoder folder (same for both)")
    ap.add_argument("--lr", type=float, default=5e-4)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="runs/equal-time", help="where the generated clips go")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    train_cfg = TrainConfig(lr=args.lr, warmup_steps=args.warmup, ema_decay=args.ema, batch_size=args.batch_size,
                            precision=args.precision, seed=args.seed)
    config = Config(unet=OURS["audiodiff-wide"], train=train_cfg)  # diffusers' runs keep this (same 8x downsampling)
    mel = MelSpectrogram(config.mel)
    schedule = GaussianSchedule.from_config(config.diffusion)
    data, _ = load_mels(args.train_dir, mel, config.data.crop_frames, progress=False)
    states = {}
    configs = {name: dataclasses.replace(config, unet=OURS.get(name, config.unet)) for name in args.nets}
    for name in args.nets:
        torch.manual_seed(args.seed)
        net = UNet(OURS[name]) if name in OURS else Wrapped(diffusers_unet())
        states[name] = new_state(net, configs[name], device)
    used = dict.fromkeys(states, 0.0)
    losses: dict[str, list[float]] = {n: [] for n in states}
    budget = args.minutes * 60
    while any(u < budget for u in used.values()):
        for name, state in states.items():
            start = time.perf_counter()
            while used[name] + time.perf_counter() - start < min(budget, used[name] + args.turn):
                files = data.sample_files(config.train.batch_size, state.generator)
                x0 = data.crops(files, state.generator).to(device)
                losses[name].append(train_step(state, config, schedule, x0)[0])
            used[name] += time.perf_counter() - start
        print("# trained: " + ", ".join(f"{n} {s.step} steps in {used[n]:.0f} s" for n, s in states.items()),
              file=sys.stderr, flush=True)
    ref, _ = folder_features(args.heldout_dir, mel)
    rows = []
    for name, state in states.items():
        pipe = SpectrogramDiffusion(state.ema, configs[name], device=device)
        pipe.use_vocoder(args.vocoder)
        out = Path(args.out) / name
        out.mkdir(parents=True, exist_ok=True)
        gen = pipe.generate(n=args.clips, steps=args.sample_steps, sampler="ddim", seed=10_000, batch_size=16)
        for i, wav in enumerate(gen.audio):
            save(out / f"sample_{i:03d}.wav", wav.numpy(), gen.sample_rate)
        feats, _ = folder_features(out, mel)
        scores = evaluate_generated(feats, ref)
        tail = losses[name][-100:]
        rows.append((name, state, scores, sum(tail) / len(tail)))
    cpu = platform.processor() or platform.machine()
    print(f"# {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {device}, "
          f"{args.precision}, batch {args.batch_size}, {config.mel.n_mels}x{config.data.crop_frames} "
          f"crops, {args.minutes:g} min each, DDIM-{args.sample_steps}, vocoder {args.vocoder}, {args.clips} clips")
    print("| network | params | steps | samples/s | loss (last 100) | melstats FD [95%] | KID [95%] |")
    print("|---|---|---|---|---|---|---|")
    for name, state, s, loss in rows:
        g = s["generated"]
        params = sum(p.numel() for p in state.model.parameters()) / 1e6
        speed = state.step * args.batch_size / used[name]
        print(f"| {name} | {params:.2f} M | {state.step} | {speed:.2f} | {loss:.4f} | "
              f"{g['fd']:.1f} [{g['fd_ci'][0]:.1f}, {g['fd_ci'][1]:.1f}] | "
              f"{g['kid']:.3f} [{g['kid_ci'][0]:.3f}, {g['kid_ci'][1]:.3f}] |")
    f = rows[0][2]["floor"]
    print(f"| held-out clips not in the reference (floor, {f['clips']}) | | | | | {f['fd']:.1f} [{f['fd_ci'][0]:.1f}, {f['fd_ci'][1]:.1f}] | "
          f"{f['kid']:.3f} [{f['kid_ci'][0]:.3f}, {f['kid_ci'][1]:.3f}] |")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

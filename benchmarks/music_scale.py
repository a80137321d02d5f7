#!/usr/bin/env python3
"""Cost of music-scale audio: training and sampling throughput (seconds of audio per second) and peak memory
at 16 kHz 1 s mono, 22.05 kHz 5 s mono and 44.1 kHz 6 s stereo (the `music` preset with --channels 2), all with
the music preset's UNet, so the rows differ only in what one crop holds; then peak memory against crop length.

Each row runs in a fresh process (peak RSS is per process): sampling first (one clip, batch 1: its peak is what
`generate` needs), then training steps (the peak after them). Times are the min over --rounds of --steps steps.
Sampling = 50 DDIM network calls + Griffin-Lim (32 iterations) on each channel.

    python benchmarks/music_scale.py --batch-size 8 --rounds 2 --steps 2 --lengths 128 256 512 1024
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

import torch

from audiodiff.config import Config, MelConfig
from audiodiff.device import describe_hardware, resolve_device
from audiodiff.diffusion.schedule import GaussianSchedule
from audiodiff.generation.representation import for_run
from audiodiff.presets import preset
from audiodiff.training.diffusion import new_state, train_step

MUSIC = preset("music")
SETTINGS = {  # name: (mel, crop frames, channels)
    "16k-1s-mono": (MelConfig(sample_rate=16000, n_fft=1024, hop_length=256, n_mels=80), 64, 1),
    "22k-5s-mono": (MelConfig(sample_rate=22050, n_fft=2048, hop_length=256, n_mels=128, f_max=11025.0), 432, 1),
    "44k-6s-stereo": (MUSIC.mel, MUSIC.data.crop_frames, 2),
}


def config_for(name: str, frames: int | None, batch_size: int) -> Config:
    mel, crop, channels = SETTINGS[name]
    config = MUSIC.replace("mel", **mel.__dict__).replace("data", crop_frames=frames or crop)
    return config.with_channels(channels).replace("train", batch_size=batch_size, warmup_steps=0)


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def measure(name: str, frames: int | None, batch_size: int, rounds: int, steps: int, device: str) -> dict:
    """One row, in this process: sampling then training."""
    dev = resolve_device(device)
    config = config_for(name, frames, batch_size)
    seconds = config.data.crop_seconds(config.mel)
    state = new_state(config, dev)
    schedule = GaussianSchedule.from_config(config.diffusion)
    rep = for_run(config, dev)
    x = torch.randn(1, *config.crop_shape(), device=dev)
    t = torch.full((1,), 500, device=dev)
    model = state.ema.eval()
    call = vocode = float("inf")
    for _ in range(rounds):
        with torch.inference_mode():
            start = time.perf_counter()
            model(x, t)
            call = min(call, time.perf_counter() - start)
            start = time.perf_counter()
            rep.decode(x.clamp(-1, 1), [0])
            vocode = min(vocode, time.perf_counter() - start)
    sample_peak = peak_rss_gib()
    x0 = torch.randn(batch_size, *config.crop_shape(), device=dev).clamp(-1, 1)
    train_step(state, config, schedule, x0)  # warm-up
    step = float("inf")
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(steps):
            train_step(state, config, schedule, x0)
        step = min(step, (time.perf_counter() - start) / steps)
    gpu = torch.cuda.max_memory_allocated() / 2**30 if dev.type == "cuda" else None
    return {"name": name, "shape": list(config.crop_shape()), "seconds": seconds, "train_audio_s": batch_size * seconds / step,
            "step_s": step, "sample_rtf": (50 * call + vocode) / seconds, "call_s": call, "vocode_s": vocode,
            "sample_peak_gib": sample_peak, "train_peak_gib": peak_rss_gib(), "gpu_peak_gib": gpu}


def in_child(args: argparse.Namespace, name: str, frames: int | None) -> dict:
    cmd = [sys.executable, __file__, "--one", name, "--batch-size", str(args.batch_size), "--rounds", str(args.rounds),
           "--steps", str(args.steps), "--device", args.device] + (["--frames", str(frames)] if frames else [])
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--steps", type=int, default=2, help="timed training steps per round")
    ap.add_argument("--lengths", type=int, nargs="*", default=[128, 256, 512, 1024],
                    help="crop lengths (frames) of the 44.1 kHz stereo setting for the memory table")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--one", choices=list(SETTINGS), help=argparse.SUPPRESS)
    ap.add_argument("--frames", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args()
    torch.manual_seed(0)
    if args.one:
        print(json.dumps(measure(args.one, args.frames, args.batch_size, args.rounds, args.steps, args.device)))
        return
    print(f"# {describe_hardware(resolve_device(args.device))}, {platform.machine()}, torch {torch.__version__}; "
          f"music preset UNet ({sum(p.numel() for p in new_state(MUSIC, torch.device('cpu')).model.parameters()) / 1e6:.1f} M "
          f"parameters), bf16 training, batch {args.batch_size}")
    print("| setting | crop [C, F, N] | seconds | train step s | train audio s/s | sampling (DDIM 50 + GL) x real time "
          "| peak RSS sampling GiB | peak RSS training GiB |")
    print("|---|---|---|---|---|---|---|---|")
    for name in SETTINGS:
        r = in_child(args, name, None)
        print(f"| {name} | {r['shape']} | {r['seconds']:.2f} | {r['step_s']:.2f} | {r['train_audio_s']:.2f} | "
              f"{r['sample_rtf']:.1f} | {r['sample_peak_gib']:.2f} | {r['train_peak_gib']:.2f} |", flush=True)
    if args.lengths:
        print("\n44.1 kHz stereo, peak memory against crop length")
        print("| frames | seconds | train step s | peak RSS sampling GiB | peak RSS training GiB |")
        print("|---|---|---|---|---|")
        for frames in args.lengths:
            r = in_child(args, "44k-6s-stereo", frames)
            print(f"| {frames} | {r['seconds']:.2f} | {r['step_s']:.2f} | {r['sample_peak_gib']:.2f} | "
                  f"{r['train_peak_gib']:.2f} |", flush=True)
    print(f"\ncommand: python benchmarks/music_scale.py --batch-size {args.batch_size} --rounds {args.rounds} "
          f"--steps {args.steps} --lengths {' '.join(map(str, args.lengths))}")


if __name__ == "__main__":
    main()

"""What a LoRA run costs to store and to sample from, against its base: adapter file sizes at several ranks and
layer choices, and generation time with the adapters unmerged (every adapted layer runs twice) vs merged.

    python benchmarks/lora_cost.py BASE_RUN DATA_DIR --work /tmp/lora_cost [--ranks 4 16] [--repeats 3]

BASE_RUN: a trained run (e.g. the README's main job, runs/notes-tiny); DATA_DIR: a few clips to fine-tune on
(2 steps each: only sizes and speed are measured here, not quality).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import torch

from audiodiff.diffusion.sampling import sample
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.run import Session
from audiodiff.run.share import merge
from audiodiff.run.tune import finetune
from audiodiff.runfolder import checkpoints


def generation_seconds(run: Path, n: int = 8, steps: int = 50) -> float:
    """Time to sample n clips with DDIM-`steps` (network only, no vocoder)."""
    pipe = SpectrogramDiffusion.load(run, device="cpu")
    shape = pipe.config.crop_shape()
    t0 = time.perf_counter()
    with torch.no_grad():
        sample(pipe.model, pipe.schedule, "ddim", shape, list(range(n)), steps, pipe.device)
    return time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("base_run", type=Path)
    p.add_argument("data_dir", type=Path)
    p.add_argument("--work", type=Path, default=Path("/tmp/lora_cost"))
    p.add_argument("--ranks", type=int, nargs="+", default=[4, 16])
    p.add_argument("--layers", nargs="+", default=["attention", "conv", "all"])
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    print(f"# python benchmarks/lora_cost.py {' '.join(sys.argv[1:])}  (torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads)")
    shutil.rmtree(args.work, ignore_errors=True)
    base_file = checkpoints(args.base_run)[-1]
    quiet = dict(session=Session(progress=False, log=lambda m: None, warn=lambda m: None),
                 overrides={"train": {"steps": 2, "checkpoint_every": 2, "preview_count": 0}})
    rows = []
    for layers in args.layers:
        for rank in args.ranks:
            run = args.work / f"{layers}-r{rank}"
            state = finetune(args.base_run, args.data_dir, run, lora_rank=rank, lora_layers=layers, **quiet)
            trained = sum(p.numel() for p in state.model.parameters() if p.requires_grad)
            rows.append((layers, rank, trained, checkpoints(run)[-1].stat().st_size, run))
    total = sum(p.numel() for p in SpectrogramDiffusion.load(args.base_run).model.parameters())
    print(f"\nbase: {base_file} ({total / 1e6:.2f} M parameters, checkpoint {base_file.stat().st_size / 1e6:.2f} MB "
          "with model, EMA and optimizer)")
    print("\n| layers | rank | trained parameters | run checkpoint MB (adapters, their EMA and optimizer) |")
    print("|---|---|---|---|")
    for layers, rank, trained, size, _ in rows:
        print(f"| {layers} | {rank} | {trained:,} ({trained / total * 100:.1f}%) | {size / 1e6:.3f} |")

    layers, rank, _, _, run = next((r for r in rows if r[0] == "conv"), rows[0])
    merged = args.work / "merged"
    merge(run, merged, log=lambda m: None)
    timings = {"base": [], "unmerged": [], "merged": []}
    for _ in range(args.repeats):  # interleaved, min of repeats
        for name, r in (("base", args.base_run), ("unmerged", run), ("merged", merged)):
            timings[name].append(generation_seconds(r))
    best = {k: min(v) for k, v in timings.items()}
    print(f"\nDDIM-50, 8 clips, network only ({layers}, rank {rank}), min of {args.repeats}:")
    for name, s in best.items():
        print(f"- {name}: {s:.2f} s ({s / best['base']:.2f}x the base)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Levers on the README's main job at equal steps (equal cost per step, so equal training time).

Each variant trains the `tiny` preset on the main job's data with `audiodiff train` (a finished run is reused:
the command continues a run and stops at once when it is done), samples --clips clips with DDIM-50 and
Griffin-Lim (seeds 10000 + 1000 k + i; a class-conditional run cycles through its labels, with the default
classifier-free guidance unless --guidance is given), and is scored with `audiodiff evaluate generated`'s code
against --reference: melstats FD and, with --embedder, FD in its space and the inception score, each with its
fair floor (reference clips held back, as many as the generated set, the same split for every row).

Tune with a validation folder as --reference (e.g. the notes set's training notes that are not in
samples/notes/train); held-out folders are for final tables.

    python benchmarks/main_job_levers.py samples/notes/train --reference VAL --embedder runs/recipe-notes/embedder \\
        --variants baseline cosine family --steps 600 --out runs/levers
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

from audiodiff.audio import save
from audiodiff.evaluate import evaluate_folders
from audiodiff.pipeline import SpectrogramDiffusion

# name -> extra `audiodiff train` arguments and TOML lines under [train]
VARIANTS: dict[str, tuple[list[str], str]] = {
    "baseline": ([], ""),
    "cosine": ([], 'lr_schedule = "cosine"\n'),
    "family": (["--label-column", "family"], ""),
    "family_cosine": (["--label-column", "family"], 'lr_schedule = "cosine"\n'),
}


def train(data: Path, out: Path, variant: str, steps: int, seed: int) -> float:
    """Train (or finish) one variant's run; returns the wall seconds this call took."""
    args, toml = VARIANTS[variant]
    out.mkdir(parents=True, exist_ok=True)
    config = out / "variant.toml"
    config.write_text(f"[train]\nsteps = {steps}\nseed = {seed}\n{toml}")
    start = time.perf_counter()
    subprocess.run(["audiodiff", "train", str(data), "--out", str(out / "run"), "--preset", "tiny", "--config",
                    str(config), "--no-progress", *args], check=True)
    return time.perf_counter() - start


def sample(run: Path, out: Path, clips: int, guidance: float | None, interval: tuple[float, float] | None) -> None:
    pipe = SpectrogramDiffusion.load(run)
    labels = list(pipe.config.data.labels) or [None]
    per = -(-clips // len(labels))
    out.mkdir(parents=True, exist_ok=True)
    for k, label in enumerate(labels):
        gen = pipe.generate(per, steps=50, sampler="ddim", seed=10_000 + 1000 * k, batch_size=16, label=label,
                            guidance=guidance if label is not None else None, guidance_interval=interval)
        for i, wav in enumerate(gen.audio):
            save(out / f"{k:02d}_{i:03d}.wav", wav.numpy(), gen.sample_rate)


def _fd(d: dict) -> str:
    return f"{d['fd']:.1f} [{d['fd_ci'][0]:.1f}, {d['fd_ci'][1]:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="training folder (the main job's: samples/notes/train)")
    ap.add_argument("--reference", type=Path, required=True, help="real clips to score against")
    ap.add_argument("--embedder", type=Path, help="also score in this trained embedder's space")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["baseline", "cosine"])
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0, help="training seed (runs go to OUT/VARIANT or OUT/VARIANT-seedN)")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--guidance", type=float, nargs="*", default=[None],
                    help="classifier-free guidance weights for conditional variants (default: the run's default)")
    ap.add_argument("--interval", type=float, nargs=2, metavar=("T_LO", "T_HI"),
                    help="guide only at timesteps T_LO..T_HI (Kynkaanniemi et al. 2024) in the guided rows")
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("runs/main-job-levers"))
    args = ap.parse_args()
    rows = []
    for variant in args.variants:
        folder = args.out / (variant if args.seed == 0 else f"{variant}-seed{args.seed}")
        seconds = train(args.data, folder, variant, args.steps, args.seed)
        conditional = bool(VARIANTS[variant][0])
        for w in args.guidance if conditional else [None]:
            # a weight given without --interval guides at every step (t in [0, T]), not in the run's own interval
            interval = (tuple(args.interval) if args.interval else (0.0, 1000.0)) if w else None
            where = f" t in [{interval[0]:g}, {interval[1]:g}]" if interval else ""
            name = (variant if w is None else f"{variant} w={w:g}{where}") + f", seed {args.seed}"
            gen = folder / ("generated" if w is None else f"generated-w{w:g}" + (
                f"-t{interval[0]:g}-{interval[1]:g}" if interval else ""))
            if not gen.is_dir():
                sample(folder / "run", gen, args.clips, w, interval)
            scores, _ = evaluate_folders(gen, args.reference, embedder_dir=args.embedder, seed=args.eval_seed)
            rows.append({"variant": name, "train_seconds": round(seconds, 1), **scores})
            print(f"# {name}: {json.dumps(scores['melstats']['generated']['fd'])}", file=sys.stderr, flush=True)
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; {args.steps} steps each, {args.clips} clips DDIM-50 + Griffin-Lim vs {args.reference}")
    print("| variant | melstats FD [95%] | its floor | embedder FD [95%] | its floor | IS (real) |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        m, e = r["melstats"], r.get("embedder")
        emb = (f"{_fd(e['generated'])} | {_fd(e['floor'])} | {e['generated_classes']['is']:.2f} "
               f"({e['reference_classes']['is']:.2f})") if e else "- | - | -"
        print(f"| {r['variant']} | {_fd(m['generated'])} | {_fd(m['floor'])} | {emb} |")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

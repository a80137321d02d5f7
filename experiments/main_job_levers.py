#!/usr/bin/env python3
"""Levers on the README's main job (or a recipe) at equal steps (equal cost per step, so equal training time).

Each variant trains the `tiny` preset (or --config, e.g. a recipe's config.toml) on the given data with
`audiodiff train` (a finished run is reused: the command continues a run and stops at once when it is done),
samples --clips clips with DDIM-50 and Griffin-Lim (a class-conditional run's split over its labels, evenly or
with --label-mix data in the proportions of its training clips by largest remainders, label k's clips from seed
10000 + 1000 k on, with the run's classifier-free guidance unless --guidance is given), and is scored with
`audiodiff evaluate generated`'s code against --reference: melstats FD and, with --embedder, FD in its space and
the inception score, each with its fair floor (reference clips held back, as many as the generated set, the same
split for every row).

Tune with a validation folder as --reference (e.g. the notes set's training notes that are not in
samples/notes/train); held-out folders are for final tables.

    python experiments/main_job_levers.py samples/notes/train --reference VAL --embedder runs/recipe-notes/embedder \\
        --variants baseline cosine family --steps 600 --out runs/levers
    python experiments/main_job_levers.py DRUMS_TRAIN --config recipes/drums/config.toml --label-column category \\
        --reference DRUMS_VAL --embedder runs/recipe-drums/embedder --variants baseline labels --steps 600 \\
        --label-mix data --out OUT

The conditional variants ("labels", "labels_cosine", ...; "family" and "family_cosine" are older names) train
with --label-column (default: family). --memorizer N adds N rows of training clips scored like generated ones
(drawn at random, split over the labels the same way): what a model that copies its training data would get,
i.e. how close to the floor the training folder lets any model come.

    python experiments/main_job_levers.py samples/notes/train --reference VAL --embedder runs/recipe-notes/embedder \\
        --variants --memorizer 3 --clips 66 --out OUT
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import tomllib
import torch

from audiodiff.audio.io import save
from audiodiff.config import LABEL_MIXES, Config
from audiodiff.data.folders import find_audio_files
from audiodiff.data.labels import file_labels, label_counts, write_clip_labels
from audiodiff.device import resolve_device
from audiodiff.diffusion.schedule import GaussianSchedule
from audiodiff.evaluation.evaluate import evaluate_folders
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.presets import preset
from audiodiff.training.diffusion import new_state, train_step

# name -> (class-conditional?, TOML applied on top of the base config)
VARIANTS: dict[str, tuple[bool, str]] = {
    "baseline": (False, ""),
    "cosine": (False, '[train]\nlr_schedule = "cosine"\n'),
    "labels": (True, ""),
    "labels_cosine": (True, '[train]\nlr_schedule = "cosine"\n'),
    "labels_min_snr5": (True, "[train]\nmin_snr_gamma = 5.0\n"),
    # a fourth, coarser level (64 channels at 10 x 8) with attention there too: 2.8x the parameters for 1.16x the
    # step time of the tiny preset on a 2-core AVX2 CPU (fp32), so it gets 517 steps where tiny gets 600
    "labels_4levels": (True, "[unet]\nchannel_mult = [1, 2, 2, 4]\nattention_levels = [2, 3]\n"),
    # dropout in every residual block (as DDPM on CIFAR-10): 220 training notes are seen ~110 times in 1500 steps
    "labels_dropout": (True, "[unet]\ndropout = 0.1\n"),
    # attention along frequency (each frame's mel rows, unet.FreqAttention) at the middle level (40 rows): 1.15x the step
    # time of tiny on a 2-core AVX2 CPU (fp32; at the full-resolution level as well 1.57x, there alone 1.44x)
    "labels_freq_attn": (True, "[unet]\nfreq_attention_levels = [1]\n"),
    "labels_lr2x": (True, "[train]\nlr = 0.002\n"),  # twice the tiny preset's learning rate
    # half the batch: about twice the optimizer steps in the same minutes, each from a noisier gradient
    "labels_batch8": (True, "[train]\nbatch_size = 8\n"),
    # the upsampling conv into the full-resolution level outputs that level's 16 channels instead of 32 (as the
    # small preset's lean shape does): its costliest conv and the next block's input both halve
    "labels_narrow_up": (True, "[unet]\nnarrow_upsample = true\n"),
    # one more input channel holding each mel row's height (-1 bottom, 1 top): the convolutions know the frequency
    "labels_row_position": (True, "[unet]\nrow_position = true\n"),
}
VARIANTS["family"], VARIANTS["family_cosine"] = VARIANTS["labels"], VARIANTS["labels_cosine"]


def variant_config(variant: str, steps: int, seed: int, base: Path | None) -> Config:
    """The tiny preset (or the TOML `base`, read as `audiodiff train --config` reads it) with the variant's changes."""
    config = Config.from_toml(base, preset("small")) if base else preset("tiny")
    return Config.from_dict(tomllib.loads(VARIANTS[variant][1]), config).replace("train", steps=steps, seed=seed)


def train(data: Path, out: Path, variant: str, steps: int, seed: int, base: Path | None, label_column: str) -> float:
    """Train (or finish) one variant's run; returns the wall seconds this call took."""
    conditional = VARIANTS[variant][0]
    out.mkdir(parents=True, exist_ok=True)
    (out / "variant.toml").write_text(variant_config(variant, steps, seed, base).to_toml())
    labels = ["--label-column", label_column] if conditional else []
    start = time.perf_counter()
    subprocess.run(["audiodiff", "train", str(data), "--out", str(out / "run"), "--config", str(out / "variant.toml"),
                    "--no-progress", *labels], check=True)
    return time.perf_counter() - start


def sample(run: Path, out: Path, clips: int, guidance: float | None, interval: tuple[float, float] | None,
           by_data: bool = False) -> None:
    """clips clips; a conditional run's are split evenly over its labels, or (by_data) in the proportions of its
    training clips, the `[data] label_counts` the run recorded."""
    pipe = SpectrogramDiffusion.load(run)
    labels = list(pipe.config.data.labels) or [None]
    weights = [1] * len(labels)
    if by_data and labels != [None]:
        if not any(pipe.config.data.label_counts):
            raise SystemExit(f"{run}: --label-mix data needs a run that recorded its label counts")
        weights = list(pipe.config.data.label_counts)
    out.mkdir(parents=True, exist_ok=True)
    written = {}
    for k, (label, per) in enumerate(zip(labels, _split(clips, weights))):
        if not per:
            continue
        gen = pipe.generate(per, steps=50, sampler="ddim", seed=10_000 + 1000 * k, batch_size=16, label=label,
                            guidance=guidance if label is not None else None, guidance_interval=interval)
        for i, wav in enumerate(gen.audio):
            name = f"{k:02d}_{i:03d}.wav"
            save(out / name, wav.numpy(), gen.sample_rate)
            written[name] = label
    if labels != [None]:  # as `audiodiff generate` records them: `evaluate generated` reports the class accuracy
        write_clip_labels(out, written)


def memorizer(data: Path, out: Path, clips: int, label_column: str, draw: int, by_data: bool) -> None:
    """What a model that reproduces its training clips exactly would be scored: `clips` training files drawn at
    random (seed `draw`) and split over the labels as a conditional variant's generated clips are, linked into
    `out`. Its FD against the reference is the best the training folder allows, beside the real-vs-real floor."""
    files = [p.relative_to(data).as_posix() for p in find_audio_files(data)]
    names, ids = file_labels(data, files, label_column)
    counts, ids = list(label_counts(ids, len(names))), ids.tolist()
    rng = random.Random(draw)
    out.mkdir(parents=True, exist_ok=True)
    linked = {}
    for k, per in enumerate(_split(clips, counts if by_data else [1] * len(names))):
        pool = [f for f, i in zip(files, ids) if i == k]
        for i, f in enumerate(rng.sample(pool, min(per, len(pool)))):
            name = f"{k:02d}_{i:03d}{Path(f).suffix}"
            (out / name).symlink_to((data / f).resolve())
            linked[name] = names[k]
    write_clip_labels(out, linked)  # the class accuracy of real training clips, beside the generated ones'


def step_times(variants: list[str], base: Path | None, rounds: int, steps: int = 3) -> None:
    """Print each variant's seconds per training step on this machine (batch of the config, random log-mels and
    labels, the precision training would pick), variants interleaved in each round, the min over rounds kept."""
    device, timed = resolve_device("auto"), {}
    for variant in variants:
        config = variant_config(variant, steps, 0, base)
        if VARIANTS[variant][0]:
            config = config.replace("unet", num_classes=11)  # the main job's 11 families
        state = new_state(config, device)
        g = torch.Generator().manual_seed(0)
        x0 = (torch.rand((config.train.batch_size, *config.crop_shape()), generator=g) * 2 - 1).to(device)
        classes = config.unet.num_classes
        y = torch.randint(0, classes, (x0.shape[0],), generator=g).to(device) if classes else None
        schedule = GaussianSchedule.from_config(config.diffusion)
        train_step(state, config, schedule, x0, y)  # warm-up
        timed[variant] = (state, config, schedule, x0, y, [])
    for _ in range(rounds):
        for state, config, schedule, x0, y, times in timed.values():
            start = time.perf_counter()
            for _ in range(steps):
                train_step(state, config, schedule, x0, y)
            times.append((time.perf_counter() - start) / steps)
    first = min(next(iter(timed.values()))[5])
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
          f"{device}, min of {rounds} rounds x {steps} steps")
    print("| variant | parameters | precision | s/step | vs the first |")
    print("|---|---|---|---|---|")
    for variant, (state, *_, times) in timed.items():
        params = sum(p.numel() for p in state.model.parameters())
        print(f"| {variant} | {params / 1e6:.2f} M | {state.precision} | {min(times):.3f} | {min(times) / first:.2f}x |")


def _split(total: int, weights: list[int]) -> list[int]:
    """total in proportion to weights (largest remainders); equal weights give ceil(total / n) each, as before."""
    if len(set(weights)) == 1:
        return [-(-total // len(weights))] * len(weights)
    exact = [total * w / sum(weights) for w in weights]
    counts = [int(x) for x in exact]
    for i in sorted(range(len(weights)), key=lambda i: counts[i] - exact[i])[:total - sum(counts)]:
        counts[i] += 1
    return counts


def _fd(d: dict) -> str:
    return f"{d['fd']:.1f} [{d['fd_ci'][0]:.1f}, {d['fd_ci'][1]:.1f}]"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data", type=Path, help="training folder (the main job's: samples/notes/train)")
    ap.add_argument("--reference", type=Path, required=True, help="real clips to score against")
    ap.add_argument("--embedder", type=Path, help="also score in this trained embedder's space")
    ap.add_argument("--config", type=Path, help="train this TOML (read as `audiodiff train --config` reads it, e.g. "
                    "a recipe's config.toml) instead of the tiny preset")
    ap.add_argument("--label-column", default="family", help="metadata.csv column of the conditional variants")
    ap.add_argument("--variants", nargs="*", choices=list(VARIANTS), default=["baseline", "cosine"],
                    help="none (an empty --variants) with --memorizer scores only the training clips")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--seed", type=int, default=0, help="training seed (runs go to OUT/VARIANT or OUT/VARIANT-seedN)")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--guidance", type=float, nargs="*", default=[None],
                    help="classifier-free guidance weights for conditional variants (default: the run's default)")
    ap.add_argument("--interval", type=float, nargs=2, metavar=("T_LO", "T_HI"),
                    help="guide only at timesteps T_LO..T_HI (Kynkaanniemi et al. 2024) in the guided rows")
    ap.add_argument("--label-mix", choices=LABEL_MIXES, default="even",
                    help="conditional variants' clips: evenly over the labels, or in the training data's proportions")
    ap.add_argument("--eval-seed", type=int, default=0)
    ap.add_argument("--memorizer", type=int, default=0, metavar="N",
                    help="also score N random draws of --clips training clips (split over the labels like the "
                    "conditional variants' clips): the best a model that copies its training data could do")
    ap.add_argument("--step-times", type=int, default=0, metavar="ROUNDS",
                    help="only time each variant's training step (min of ROUNDS interleaved rounds) and exit")
    ap.add_argument("--out", type=Path, default=Path("runs/main-job-levers"))
    args = ap.parse_args()
    if args.step_times:
        step_times(args.variants, args.config, args.step_times)
        print("command: python " + " ".join(sys.argv))
        return
    by_data = args.label_mix == "data"
    rows = []
    for variant in args.variants:
        folder = args.out / (variant if args.seed == 0 else f"{variant}-seed{args.seed}")
        seconds = train(args.data, folder, variant, args.steps, args.seed, args.config, args.label_column)
        conditional = VARIANTS[variant][0]
        for w in args.guidance if conditional else [None]:
            # a weight given without --interval guides at every step (t in [0, T]), not in the run's own interval
            interval = (tuple(args.interval) if args.interval else (0.0, 1000.0)) if w else None
            where = f" t in [{interval[0]:g}, {interval[1]:g}]" if interval else ""
            name = (variant if w is None else f"{variant} w={w:g}{where}") + f", seed {args.seed}"
            gen = folder / ("generated" if w is None else f"generated-w{w:g}" + (
                f"-t{interval[0]:g}-{interval[1]:g}" if interval else ""))
            if by_data and conditional:
                gen, name = gen.with_name(gen.name + "-datamix"), name + ", labels in the data's proportions"
            if not gen.is_dir():
                sample(folder / "run", gen, args.clips, w, interval, by_data)
            scores, _ = evaluate_folders(gen, args.reference, embedder_dir=args.embedder, seed=args.eval_seed)
            rows.append({"variant": name, "train_seconds": round(seconds, 1), **scores})
            print(f"# {name}: {json.dumps(scores['melstats']['generated']['fd'])}", file=sys.stderr, flush=True)
    for draw in range(args.memorizer):
        gen = args.out / f"memorizer-draw{draw}" / ("datamix" if by_data else "even")
        if not gen.is_dir():
            memorizer(args.data, gen, args.clips, args.label_column, draw, by_data)
        scores, _ = evaluate_folders(gen, args.reference, embedder_dir=args.embedder, seed=args.eval_seed)
        rows.append({"variant": f"training clips (memorizer), draw {draw}", "train_seconds": 0, **scores})
    (args.out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"# {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch "
          f"{torch.__version__}; " + (f"{args.steps} steps each, {args.clips} clips DDIM-50 + Griffin-Lim" if args.variants
                                       else f"{args.clips} training clips per draw") + f" vs {args.reference}")
    print("| variant | melstats FD [95%] | its floor | embedder FD [95%] | its floor | IS (real) | class accuracy |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        m, e = r["melstats"], r.get("embedder")
        accuracy = e and e["generated_classes"].get("accuracy")
        emb = (f"{_fd(e['generated'])} | {_fd(e['floor'])} | {e['generated_classes']['is']:.2f} "
               f"({e['reference_classes']['is']:.2f}) | {'-' if accuracy is None else f'{accuracy:.0%}'}") \
            if e else "- | - | - | -"
        print(f"| {r['variant']} | {_fd(m['generated'])} | {_fd(m['floor'])} | {emb} |")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Quality per compute: config variants trained for the same wall-clock minutes, scored at several budgets.

Tuning happens on a validation split of the training folder (a seeded share of its files, never trained on);
held-out folders stay for final tables. Every (variant, seed) pair trains in one process through
audiodiff's own training step, in turns of --turn seconds, so a change in the machine's load hits all of
them alike. When every pair has used the next budget of training time (--minutes 5 15 45: cumulative), each
EMA model samples --clips clips (DDIM-50; conditional runs with the run's guidance, their clips split evenly
over the labels, or with --label-mix data (or a config whose [sample] label_mix is "data") in the training
split's proportions, each clip's label drawn from its seed as `audiodiff generate --label-mix data` does; with
--autoguide also with autoguidance by the pair's own EMA of --weak-at of the first budget),
the run's vocoder makes audio, and melstats FD/KID against the validation clips (and with --embedder in that
embedder's space) are computed with 95% bootstrap intervals beside the fair floor (validation clips held back
from the reference, as many as the generated set). Sampling time is not training time. A table, a JSON file and a plot (FD vs minutes,
mean over seeds) are written to --out.

    python experiments/quality_per_compute.py data/notes/train --config recipes/notes/config.toml \\
        --variants baseline row_position --minutes 5 15 --seeds 0 1 --out runs/qpc-notes
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import platform
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from audiodiff.audio.io import load, save
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.config import LABEL_MIXES, Config, MelConfig
from audiodiff.data.prepare import load_mels
from audiodiff.data.labels import file_labels, label_counts
from audiodiff.device import resolve_device
from audiodiff.diffusion.schedule import GaussianSchedule
from audiodiff.model.embedder import Embedder
from audiodiff.evaluation.evaluate import evaluate_with_embedder
from audiodiff.evaluation.features import clip_features, scored_features
from audiodiff.evaluation.distances import evaluate_generated
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.generation.options import EACH_LABEL
from audiodiff.presets import preset
from audiodiff.training.diffusion import TrainState, new_state, save_state, train_step

# name -> how it changes the base config; add a lever here (one line) and name it with --variants
VARIANTS: dict[str, Callable[[Config], Config]] = {
    "baseline": lambda c: c,
    "row_position": lambda c: c.replace("unet", row_position=True),
    "half_width": lambda c: c.replace("unet", channels=max(8, c.unet.channels // 2)),
    "double_width": lambda c: c.replace("unet", channels=2 * c.unet.channels),
    "lr_x2": lambda c: c.replace("train", lr=2 * c.train.lr),
    "min_snr5": lambda c: c.replace("train", min_snr_gamma=5.0),
    "batch_x2": lambda c: c.replace("train", batch_size=2 * c.train.batch_size),
    "ema_0.99": lambda c: c.replace("train", ema_decay=0.99),
    "edm": lambda c: c.replace("diffusion", prediction="edm").replace("train", min_snr_gamma=0.0),
    # EDM's preconditioning and weighting with noise levels spread like the cosine chain's (ln sigma of a
    # uniform t has mean 0 and standard deviation pi/2 there) instead of EDM's image-tuned N(-1.2, 1.2^2)
    "edm_wide": lambda c: c.replace("diffusion", prediction="edm", p_mean=0.0, p_std=1.6).replace("train", min_snr_gamma=0.0),
}
EVAL_MEL = MelConfig(sample_rate=16000, f_max=8000.0)  # `audiodiff evaluate generated`'s default front end


def split(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, validation) file indices: a seeded random `fraction` of the files for validation."""
    order = np.random.default_rng(seed).permutation(n).tolist()
    k = max(2, round(fraction * n))
    return sorted(order[k:]), sorted(order[:k])


def reference_features(train_dir: Path, files: list[str]) -> np.ndarray:
    mel = MelSpectrogram(EVAL_MEL)
    feats = []
    for f in files:
        wav = torch.from_numpy(load(train_dir / f, EVAL_MEL.sample_rate))[None]
        with torch.no_grad():
            feats.append(clip_features(mel(wav)[0, 0].numpy()))
    return np.stack(feats)


def validation_folder(train_dir: Path, files: list[str], out: Path) -> Path:
    """out/validation: links to the validation files, a folder the embedder can read."""
    for f in files:
        link = out / "validation" / f
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to((train_dir / f).resolve())
    return out / "validation"


def sample_and_score(state: TrainState, config: Config, ref: np.ndarray, out: Path, clips: int,
                     device: torch.device, eval_seed: int, embedder: tuple[Embedder, Path] | None = None,
                     guide: dict | None = None) -> dict:
    """Sample and score one model; eval_seed picks the floor's held-back clips and the bootstrap rounds (the
    same for every model, so that all are scored against the same reference). embedder: (a trained
    embedder, the validation folder) to score in its space too, under "embedder". guide: autoguidance options
    (pipeline.Options autoguide_from, autoguidance), used in place of classifier-free guidance."""
    pipe = SpectrogramDiffusion(copy.deepcopy(state.ema), config, device=device, step=state.step)
    out.mkdir(parents=True, exist_ok=True)
    # (file prefix, clips, first seed, label) per generate call; guidance: the run's own ([sample] in its config)
    if config.data.labels and config.sample.label_mix == "data":  # each clip's label drawn from its seed
        calls = [("", clips, 10_000, EACH_LABEL)]
    else:  # the published protocol: clips/labels per label (rounded up), label k from seed 10000 + 1000 k
        labels = config.data.labels or (None,)
        calls = [(f"{k:02d}_", -(-clips // len(labels)), 10_000 + 1000 * k, label) for k, label in enumerate(labels)]
    for prefix, n, seed, label in calls:
        gen = pipe.generate(n, steps=50, sampler="ddim", seed=seed, batch_size=16, label=label, **(guide or {}))
        for i, wav in enumerate(gen.audio):
            save(out / f"{prefix}{i:03d}.wav", wav.numpy(), gen.sample_rate)
    feats, _, failed = scored_features(out, MelSpectrogram(EVAL_MEL))
    scores = evaluate_generated(feats, ref, seed=eval_seed)
    scores["failed_clips"] = len(failed)
    if embedder is not None:
        scores["embedder"] = evaluate_with_embedder(embedder[0], out, embedder[1], None, seed=eval_seed)
    return scores


def _fd(score: dict) -> str:
    return f"{score['fd']:.1f} [{score['fd_ci'][0]:.1f}, {score['fd_ci'][1]:.1f}]"


def plot(results: list[dict], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(6, 4), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for variant in dict.fromkeys(r["variant"] for r in results):
        rows = [r for r in results if r["variant"] == variant]
        minutes = sorted({r["minutes"] for r in rows})
        fd = [np.mean([r["generated"]["fd"] for r in rows if r["minutes"] == m]) for m in minutes]
        ax.plot(minutes, fd, marker="o", label=variant)
    floor = np.mean([r["floor"]["fd"] for r in results])
    ax.axhline(floor, color="gray", linestyle="--", label="real-vs-real floor")
    ax.set_xlabel("training minutes (wall clock, 2-core CPU)")
    ax.set_ylabel("melstats FD vs validation clips (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, format="png")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("train_dir", type=Path)
    ap.add_argument("--config", type=Path, help="TOML over the tiny preset (e.g. a recipe's config.toml)")
    ap.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["baseline", "row_position"])
    ap.add_argument("--minutes", nargs="+", type=float, default=[5.0], help="cumulative training budgets")
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--label-column", help="class-conditional on this metadata.csv column")
    ap.add_argument("--label-mix", choices=LABEL_MIXES,
                    help="labels of the sampled clips: even (per label) or data (the training split's proportions); "
                         "default: the config's [sample] label_mix")
    ap.add_argument("--val-fraction", type=float, default=0.15)
    ap.add_argument("--eval-seed", type=int, default=0, help="floor split and bootstrap (the same for every model)")
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--turn", type=float, default=30.0, help="seconds each pair trains before the next one's turn")
    ap.add_argument("--out", type=Path, default=Path("runs/quality-per-compute"))
    ap.add_argument("--autoguide", nargs="*", type=float, default=[],
                    help="also sample each model with autoguidance at these weights, guided by its own EMA "
                         "saved at --weak-at of the first budget")
    ap.add_argument("--weak-at", type=float, default=0.25, help="share of the first budget (see --autoguide)")
    ap.add_argument("--embedder", type=Path, help="also score in this trained embedder's space "
                    "(`audiodiff evaluate train-embedder`; a recipe's runs/recipe-NAME/embedder)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args()
    device = resolve_device(args.device)
    base = Config.from_toml(args.config, preset("tiny")) if args.config else preset("tiny")
    if args.config:  # sampled as the recipe's own run is: `audiodiff train --config` starts from the small preset
        base = dataclasses.replace(base, sample=Config.from_toml(args.config, preset("small")).sample)
    data, _ = load_mels(args.train_dir, MelSpectrogram(base.mel), base.data.crop_frames, args.out / "cache", False)
    train_idx, val_idx = split(len(data), args.val_fraction, 0)
    labelled = file_labels(args.train_dir, data.files, args.label_column)
    names, labels = labelled if labelled else ((), None)
    train_labels = labels[train_idx] if labels is not None else None
    base = base.replace("data", labels=tuple(names), label_counts=label_counts(train_labels, len(names)))
    base = base.replace("unet", num_classes=len(names))
    if args.label_mix:
        base = base.replace("sample", label_mix=args.label_mix)
    train_data = data.subset(train_idx)
    ref = reference_features(args.train_dir, [data.files[i] for i in val_idx])
    embedder = None
    if args.embedder:
        embedder = (Embedder.load(args.embedder),
                    validation_folder(args.train_dir, [data.files[i] for i in val_idx], args.out))
    print(f"# {len(train_idx)} training files, {len(val_idx)} validation files (seed 0)", file=sys.stderr)

    pairs = {}
    for variant in args.variants:
        for seed in args.seeds:
            config = VARIANTS[variant](base).replace("train", seed=seed)
            pairs[(variant, seed)] = (config, new_state(config, device), GaussianSchedule.from_config(config.diffusion))
    used = dict.fromkeys(pairs, 0.0)
    weak, weak_at = {}, args.weak_at * min(args.minutes) * 60  # (variant, seed) -> checkpoint of its weak model
    results = []
    for minutes in sorted(args.minutes):
        budget = minutes * 60
        while any(u < budget for u in used.values()):
            for key, (config, state, schedule) in pairs.items():
                start = time.perf_counter()
                while used[key] + time.perf_counter() - start < min(budget, used[key] + args.turn):
                    files = train_data.sample_files(config.train.batch_size, state.generator)
                    x0 = train_data.crops(files, state.generator).to(device)
                    y = None
                    if train_labels is not None:
                        y = state.model.conditioning.drop(train_labels[files], config.train.label_dropout,
                                                          state.generator).to(device)
                    train_step(state, config, schedule, x0, y)
                    if args.autoguide and key not in weak and used[key] + time.perf_counter() - start >= weak_at:
                        weak[key] = save_state(state, config, args.out / "weak" / f"{key[0]}-seed{key[1]}")
                        print(f"# {key[0]} seed {key[1]}: weak model for autoguidance at step {state.step} -> "
                              f"{weak[key]}", file=sys.stderr, flush=True)
                used[key] += time.perf_counter() - start
        for (variant, seed), (config, state, _) in pairs.items():
            for w in [None] + args.autoguide:
                name = variant if w is None else f"{variant}+autoguide{w:g}"
                out = args.out / f"{name}-seed{seed}-{minutes:g}min"
                guide = {} if w is None else {"autoguide_from": weak[(variant, seed)], "autoguidance": w}
                scores = sample_and_score(state, config, ref, out, args.clips, device, args.eval_seed, embedder,
                                          guide)
                results.append({"variant": name, "seed": seed, "minutes": minutes, "steps": state.step,
                                "train_seconds": round(used[(variant, seed)], 1), **scores})
                g = scores["generated"]
                e = f", embedder FD {scores['embedder']['generated']['fd']:.1f}" if embedder else ""
                print(f"# {name} seed {seed} at {minutes:g} min: step {state.step}, FD {g['fd']:.1f}{e}",
                      file=sys.stderr, flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    plot(results, args.out / "fd_vs_minutes.png")
    cpu = platform.processor() or platform.machine()
    print(f"# {cpu}, {torch.get_num_threads()} threads, torch {torch.__version__}, device {device}; "
          f"{args.clips} clips DDIM-50 per model, vs {len(val_idx)} validation clips")
    emb_head = " embedder FD [95%] | its floor | IS (real) |" if embedder else ""
    print(f"| variant | seed | minutes | steps | melstats FD [95%] | KID [95%] | floor FD [95%] |{emb_head}")
    print("|---|---|---|---|---|---|---|" + "---|---|---|" * bool(embedder))
    for r in results:
        g, f = r["generated"], r["floor"]
        row = (f"| {r['variant']} | {r['seed']} | {r['minutes']:g} | {r['steps']} | {_fd(g)} | "
               f"{g['kid']:.3f} [{g['kid_ci'][0]:.3f}, {g['kid_ci'][1]:.3f}] | {_fd(f)} |")
        if embedder:
            e = r["embedder"]
            classes = e.get("generated_classes")
            is_ = f"{classes['is']:.2f} ({e['reference_classes']['is']:.2f})" if classes else "-"
            row += f" {_fd(e['generated'])} | {_fd(e['floor'])} | {is_} |"
        print(row)
    print(f"plot: {args.out / 'fd_vs_minutes.png'}")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

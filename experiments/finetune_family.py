#!/usr/bin/env python3
"""Fine-tuning on a family the base never saw: scratch vs full fine-tune vs LoRA, at equal CPU minutes.

The notes set (recipes/make_sets.py) is split by instrument family. The base is trained on every family but
one (--family); N clips of that family (--clips 10 30 100, nested subsets of its training files, seeded) are
what a user brings. For each N, these train for a wall-clock budget each, one at a time on the otherwise idle
machine, through the user's commands (`audiodiff train` / `audiodiff finetune`):

- scratch: `audiodiff train` with the base's config on the N clips (--scratch-minutes, longer for one N),
- full: `audiodiff finetune BASE` (every weight),
- lora4, lora16: `audiodiff finetune BASE --lora R`,

each with the command's defaults except steps and checkpoints. A method's steps come from its speed measured
first (--rounds short runs of --calibrate steps each, interleaved with the other methods; the fastest run's median
samples/s over loss.csv's windows after the first), so the budget is training time, not counting start-up.
Checkpoints every --every minutes; the chosen ones (--at) sample --gen clips (DDIM 50, Griffin-Lim, fixed seeds)
that `audiodiff evaluate generated` scores against the family's clips no model or embedder saw (its held-out
notes plus its training notes outside the largest subset): melstats and embedder FD with 95% intervals and the
fair floor, memorization against the N clips (share of generated clips nearer to one of them than the 5th
percentile of the reference's distances: about 0.05 for new clips, 1 for copies), and the share of clips the
embedder, a family classifier trained here on the notes' training folder minus those reference clips, hears
as the family.

    python experiments/finetune_family.py /tmp/data/notes --family brass --out /tmp/ftfam
"""

from __future__ import annotations

import argparse
import csv
import json
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from audiodiff.model.embedder import Embedder
from audiodiff.evaluation.features import embedder_features
from audiodiff.runfolder import checkpoint_path, run_config

METHODS = {"scratch": [], "full": [], "lora4": ["--lora", "4"], "lora16": ["--lora", "16"],
           "full_lr1e-3": ["--lr", "1e-3"]}  # a variant: the fine-tune at the learning rate of training from scratch
MAIN = ["scratch", "full", "lora4", "lora16"]  # run at every clip count; variants only at --long-clips


def sh(args: list[str], log: Path) -> float:
    """Run an audiodiff command, its output appended to log; the seconds it took."""
    t0 = time.perf_counter()
    with open(log, "a") as f:
        f.write(f"$ {' '.join(args)}\n")
        f.flush()
        subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, check=True)
    return time.perf_counter() - t0


def place(files: list[Path], folder: Path) -> Path:
    """folder holding hard links to (or copies of) the files, under their own names."""
    folder.mkdir(parents=True, exist_ok=True)
    names = [f.name for f in files]
    if len(set(names)) < len(names):
        raise SystemExit(f"{folder}: two of its files share a name; the set's file names must be unique")
    for f in files:
        dest = folder / f.name
        if not dest.exists():
            try:
                dest.hardlink_to(f)
            except OSError:
                shutil.copy2(f, dest)
    return folder


def folders(notes: Path, family: str, sizes: list[int], seed: int, out: Path) -> dict[str, Path]:
    """The benchmark's data folders, from the notes set's metadata.csv."""
    with open(notes / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    if family not in {r["family"] for r in rows}:
        raise SystemExit(f"{notes}: no family {family!r} in metadata.csv")
    train = [r for r in rows if r["split"] == "train"]
    own = sorted(notes / r["path"] for r in train if r["family"] == family)
    if len(own) < max(sizes) + 10:
        raise SystemExit(f"{family}: {len(own)} training notes, too few for subsets up to {max(sizes)}")
    order = [own[i] for i in np.random.default_rng(seed).permutation(len(own))]
    picked, spare = order[:max(sizes)], order[max(sizes):]
    heldout = [notes / r["path"] for r in rows if r["split"] == "heldout" and r["family"] == family]
    d = out / "data"
    result = {"base": place([notes / r["path"] for r in train if r["family"] != family], d / "base"),
              "reference": place(spare + heldout, d / "reference")}
    for r in train:  # the embedder: every training note but the reference, filed by family
        if notes / r["path"] not in spare:
            place([notes / r["path"]], d / "embedder" / r["family"])
    result["embedder"] = d / "embedder"
    for n in sizes:
        result[f"clips{n}"] = place(picked[:n], d / f"{family}-{n}")
    return result


def write_toml(path: Path, table: dict) -> Path:
    path.write_text("[train]\n" + "".join(f"{k} = {v}\n" for k, v in table.items()))
    return path


def train_args(method: str, base: Path, data: Path, run: Path, config: Path) -> list[str]:
    if method == "scratch":
        return ["audiodiff", "train", str(data), "--out", str(run), "--preset", "tiny", "--config", str(config),
                "--no-progress"]
    return ["audiodiff", "finetune", str(base), str(data), "--out", str(run), "--config", str(config),
            *METHODS[method], "--no-progress"]


def seconds_per_step(method: str, base: Path, data: Path, out: Path, steps: int, log: Path) -> float:
    """Seconds per optimizer step of `method`: the median over loss.csv's windows of a short run (its first
    window, with the warm-up of the process, left out)."""
    run = out / f"calibrate-{method}"
    shutil.rmtree(run, ignore_errors=True)
    every = max(1, steps // 4)
    config = write_toml(out / f"calibrate-{method}.toml", {"steps": steps, "log_every": every, "preview_count": 0,
                                                             "checkpoint_every": steps})
    sh(train_args(method, base, data, run, config), log)
    with open(run / "loss.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return run_config(run).train.batch_size / statistics.median(float(r["samples_per_s"]) for r in rows[1:])


def score(model: Path, clips: Path, folders_: dict[str, Path], embedder: Path, gen: int, out: Path, log: Path) -> dict:
    """Generate `gen` clips from model and score them against the reference, memorization against `clips`."""
    result = out.with_suffix(".json")
    if result.exists():
        scores = json.loads(result.read_text())
        if "family_share" not in scores:
            scores["family_share"] = family_share(out, embedder, clips.name.rsplit("-", 1)[0])
            result.write_text(json.dumps(scores, indent=1))
        return scores
    shutil.rmtree(out, ignore_errors=True)
    sh(["audiodiff", "generate", str(model), "--out", str(out), "-n", str(gen), "--sampler", "ddim", "--steps", "50",
        "--seed", "1000", "--batch-size", "20", "--no-progress"], log)
    text = subprocess.run(["audiodiff", "evaluate", "generated", str(out), "--reference", str(folders_["reference"]),
                           "--train", str(clips), "--embedder", str(embedder), "--json"],
                          capture_output=True, text=True, check=True).stdout
    scores = {**json.loads(text), "family_share": family_share(out, embedder, clips.name.rsplit("-", 1)[0])}
    result.write_text(json.dumps(scores, indent=1))
    return scores


def family_share(gen: Path, embedder: Path, family: str) -> float:
    """The share of the clips in gen that the family classifier files under `family`."""
    emb = Embedder.load(embedder)
    _, probs, _ = embedder_features(gen, emb)
    return float((probs.argmax(1) == emb.labels.index(family)).float().mean())


def _fd(s: dict) -> str:
    return f"{s['fd']:.1f} [{s['fd_ci'][0]:.1f}, {s['fd_ci'][1]:.1f}]"


def row(label: str, minutes: float | str, scores: dict) -> str:
    m, e = scores["melstats"], scores["embedder"]  # every row is scored with --train: memorization is there
    return (f"| {label} | {minutes} | {_fd(m['generated'])} | {_fd(e['generated'])} | "
            f"{scores['family_share']:.0%} | "
            f"{m['memorization']['too_close']:.2f} / {e['memorization']['too_close']:.2f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notes", type=Path, help="the notes set (train/, heldout/, metadata.csv)")
    ap.add_argument("--family", default="brass")
    ap.add_argument("--clips", type=int, nargs="+", default=[10, 30, 100])
    ap.add_argument("--methods", nargs="+", default=MAIN, choices=list(METHODS))
    ap.add_argument("--minutes", type=float, default=3.0, help="training budget of each method")
    ap.add_argument("--scratch-minutes", type=float, default=15.0, help="budget of scratch for --long-clips")
    ap.add_argument("--long-clips", type=int, default=30,
                    help="the clip count whose scratch run gets --scratch-minutes (and the only one variants run on)")
    ap.add_argument("--every", type=float, default=1.0, help="minutes between checkpoints")
    ap.add_argument("--at", type=float, nargs="+", default=[1, 3, 5, 15], help="minutes whose checkpoints are scored")
    ap.add_argument("--base-steps", type=int, default=3000, help="steps of the base (tiny preset)")
    ap.add_argument("--calibrate", type=int, default=80, help="steps of each method's speed run")
    ap.add_argument("--rounds", type=int, default=2, help="speed runs per method (interleaved; the fastest counts)")
    ap.add_argument("--gen", type=int, default=40, help="clips generated per scored checkpoint")
    ap.add_argument("--seed", type=int, default=0, help="seed of the subsets")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    log = out / "commands.log"
    data = folders(args.notes, args.family, sorted(args.clips), args.seed, out)
    print(f"reference: {len(list(data['reference'].iterdir()))} {args.family} notes no model saw", flush=True)

    embedder = out / "embedder"
    if not (embedder / "embedder.safetensors").exists():
        sh(["audiodiff", "evaluate", "train-embedder", str(data["embedder"]), "--out", str(embedder), "--no-progress"],
           log)
    base = out / "base"
    if not (base / "checkpoints").is_dir():
        took = sh(["audiodiff", "train", str(data["base"]), "--out", str(base), "--preset", "tiny",
                   "--steps", str(args.base_steps), "--no-progress"], log)
        print(f"base: tiny preset, {args.base_steps} steps on {len(list(data['base'].iterdir()))} notes "
              f"without {args.family}, {took:.0f} s", flush=True)

    speed_file = out / "seconds_per_step.json"  # per network cost: full_lr1e-3 runs at full's speed
    speed = json.loads(speed_file.read_text())["seconds_per_step"] if speed_file.exists() else {}
    costs = list(dict.fromkeys(m.split("_")[0] for m in args.methods))
    if not all(m in speed for m in costs):  # min over --rounds, the methods interleaved
        times: dict[str, list[float]] = {m: [] for m in costs}
        for _ in range(args.rounds):
            for method in costs:
                times[method].append(seconds_per_step(method, base, data[f"clips{min(args.clips)}"], out,
                                                      args.calibrate, log))
        speed = {**speed, **{m: min(t) for m, t in times.items()}}
        speed_file.write_text(json.dumps({"seconds_per_step": speed, "rounds": times}, indent=1))
    for method in costs:
        print(f"{method}: {speed[method]:.3f} s/step", flush=True)

    lines = [f"| method | training minutes | melstats FD | embedder FD | heard as {args.family} | "
             "copies (melstats / embedder) |",
             "|---|---|---|---|---|---|"]
    results = {}
    lines.append(row("base (never saw the family)", 0, score(base, data[f"clips{max(args.clips)}"], data,
                                                              embedder, args.gen, out / "gen" / "base", log)))
    for n in sorted(args.clips):
        for method in args.methods:
            if method not in MAIN and n != args.long_clips:
                continue  # variants: on --long-clips only
            minutes = args.scratch_minutes if method == "scratch" and n == args.long_clips else args.minutes
            every = max(1, round(args.every * 60 / speed[method.split("_")[0]]))
            steps = every * round(minutes / args.every)
            run = out / f"{method}-{n}"
            if not checkpoint_path(run, steps).exists():
                config = write_toml(out / f"{method}-{n}.toml", {
                    "steps": steps, "checkpoint_every": every, "keep_checkpoints": steps // every + 1,
                    "preview_count": 0})
                took = sh(train_args(method, base, data[f"clips{n}"], run, config), log)
                print(f"{method} on {n} clips: {steps} steps, {took:.0f} s with start-up", flush=True)
            for at in [a for a in args.at if a <= minutes] + ([minutes] if minutes not in args.at else []):
                step = every * round(at / args.every)
                s = score(checkpoint_path(run, step), data[f"clips{n}"], data, embedder, args.gen,
                          out / "gen" / f"{method}-{n}-{step}", log)
                results[f"{method}-{n}-{at}"] = s
                lines.append(row(f"{method}, {n} clips", f"{at:g}", s))
                print(lines[-1], flush=True)
    any_scores = next(iter(results.values()))
    lines.append(f"| floor (real {args.family} notes held back) | - | {_fd(any_scores['melstats']['floor'])} | "
                 f"{_fd(any_scores['embedder']['floor'])} | "
                 f"{family_share(data['reference'], embedder, args.family):.0%} (all "
                 f"{len(list(data['reference'].iterdir()))}) | "
                 "0.05 by construction |")
    head = (f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, "
            f"{time.strftime('%Y-%m-%d')}; s/step: " + ", ".join(f"{k} {v:.3f}" for k, v in speed.items()))
    text = "\n".join([head, "", "    python " + " ".join(sys.argv), "", *lines])
    (out / "table.md").write_text(text + "\n")
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(text)


if __name__ == "__main__":
    main()

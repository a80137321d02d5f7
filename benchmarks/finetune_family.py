#!/usr/bin/env python3
"""Fine-tuning on a family the base never saw (issue 22): FD and memorization against CPU minutes for training
from scratch, a full fine-tune and LoRA at two ranks, on n clips of the held-back family.

1. The base: the notes recipe's config (recipes/notes/config.toml) trained on every training note except the
   held-back family's (the recipe's steps).
2. For each n in --clips: n seeded training clips of the family. Each method trains for about --minutes of
   wall-clock time: its steps come from its own measured seconds per step (a 20-step calibration run), and
   the table gives the time it really took. Scratch also runs for the last of --scratch-minutes, with a
   checkpoint at each of them.
3. Each model samples --gen clips (DDIM 25, seeded) through Griffin-Lim; melstats FD against the family's
   held-out notes, with the real-vs-real floor (held-out notes held back from the reference), and the
   memorization check against the n training clips (share of clips nearer to a training clip than 95% of real
   held-out clips are; ~5% expected without copying).

    python benchmarks/finetune_family.py data/notes --family brass --clips 30 --minutes 3 --scratch-minutes 3 15 \\
        --out /tmp/ft-family
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import time
from pathlib import Path

import numpy as np

from audiodiff.audio import save
from audiodiff.config import Config
from audiodiff.evaluate import evaluate_folders
from audiodiff.pipeline import SpectrogramDiffusion
from audiodiff.run import finetune, train
from audiodiff.trainkit import checkpoints

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "notes" / "config.toml"
METHODS = {"full": 0, "lora4": 4, "lora16": 16}  # name: LoRA rank (0: every weight)


def link_folder(root: Path, files: list[Path], out: Path) -> Path:
    for f in files:
        link = out / f.relative_to(root)
        link.parent.mkdir(parents=True, exist_ok=True)
        if not link.exists():
            link.symlink_to(f.resolve())
    return out


def family_files(notes: Path, family: str) -> dict[str, list[Path]]:
    with open(notes / "metadata.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    out = {"base": [], "train": [], "heldout": []}
    for r in rows:
        if r["family"] == family:
            out[r["split"]].append(notes / r["path"])
        elif r["split"] == "train":
            out["base"].append(notes / r["path"])
    return out


def quiet(_: str) -> None:
    pass


def seconds_per_step(make, work: Path) -> float:
    """Seconds per optimizer step of a method, from steps 6..20 of a 20-step run (the first ones warm up)."""
    if not (work / "loss.csv").exists():
        make(work, 20)
    with open(work / "loss.csv", newline="") as f:
        rates = [float(r["samples_per_s"]) for r in csv.DictReader(f) if int(r["step"]) > 5]
    return Config.from_toml(work / "config.toml").train.batch_size / float(np.median(rates))


def score(run: Path, heldout: Path, train_dir: Path, out: Path, n: int) -> dict:
    pipe = SpectrogramDiffusion.load(run, device="cpu")
    gen = pipe.generate(n, steps=25, sampler="ddim", seed=50_000, batch_size=16)
    out.mkdir(parents=True, exist_ok=True)
    for i, wav in enumerate(gen.audio):
        save(out / f"gen_{i:03d}.wav", wav.numpy(), gen.sample_rate)
    results, _ = evaluate_folders(out, heldout, train_dir)
    m = results["melstats"]
    return {"fd": m["generated"]["fd"], "fd_ci": m["generated"]["fd_ci"], "floor": m["floor"]["fd"],
            "floor_ci": m["floor"]["fd_ci"], "copies": m["memorization"]["too_close"]}


def elapsed(log_lines: list[str]) -> float:
    found = [float(s) for s in re.findall(r"done: step \d+ in (\d+) s", "\n".join(log_lines))]
    return found[-1] if found else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notes", type=Path, help="the notes set (train/, heldout/, metadata.csv)")
    ap.add_argument("--family", default="brass")
    ap.add_argument("--clips", type=int, nargs="+", default=[30])
    ap.add_argument("--minutes", type=float, default=3.0)
    ap.add_argument("--scratch-minutes", type=float, nargs="+", default=[3.0, 15.0])
    ap.add_argument("--methods", nargs="+", default=["scratch", *METHODS])
    ap.add_argument("--gen", type=int, default=16)
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    out = args.out
    files = family_files(args.notes, args.family)
    heldout = link_folder(args.notes, files["heldout"], out / "family_heldout")
    base = out / "base"
    if not checkpoints(base):
        t0 = time.perf_counter()
        train(link_folder(args.notes, files["base"], out / "base_data"), base, config_file=RECIPE, log=quiet,
              warn=quiet, progress=False)
        print(f"base: {len(files['base'])} notes without {args.family}, {time.perf_counter() - t0:.0f} s", flush=True)
    rows = []
    for n in args.clips:
        order = np.random.default_rng(0).permutation(len(files["train"]))[:n]
        data = link_folder(args.notes, [files["train"][i] for i in sorted(order)], out / f"family_{n}")
        for method in args.methods:
            work = out / f"{method}_{n}"
            if method == "scratch":
                def make(run: Path, steps: int, every: int | None = None) -> list[str]:
                    lines: list[str] = []
                    train(data, run, config_file=RECIPE, overrides={"train": {
                        "steps": steps, "checkpoint_every": every or steps, "keep_checkpoints": 10,
                        "preview_count": 0}}, log=lines.append, warn=quiet, progress=False)
                    return lines
                budgets = args.scratch_minutes
            else:
                def make(run: Path, steps: int, every: int | None = None, rank: int = METHODS[method]) -> list[str]:
                    lines: list[str] = []
                    finetune(base, data, run, lora_rank=rank, overrides={"train": {
                        "steps": steps, "checkpoint_every": every or steps, "preview_count": 0}},
                        log=lines.append, warn=quiet, progress=False)
                    return lines
                budgets = [args.minutes]
            per_step = seconds_per_step(make, out / f"calibrate_{method}_{n}")
            marks = [max(1, round(60 * m / per_step)) for m in budgets]
            every = marks[0] if len(marks) > 1 and all(k % marks[0] == 0 for k in marks) else None
            if not checkpoints(work):
                lines = make(work, marks[-1], every or (marks[0] if len(marks) > 1 else None))
                took = elapsed(lines)
            else:
                took = float("nan")
            for minutes, steps in zip(budgets, marks):
                ckpt = next((c for c in checkpoints(work) if c.stem.endswith(f"{steps:08d}")), None)
                if ckpt is None:
                    continue
                s = score(ckpt, heldout, data, out / "gen" / f"{method}_{n}_{steps}", args.gen)
                row = {"clips": n, "method": method, "minutes": minutes, "steps": steps, "s_per_step": per_step,
                       "run_seconds": took, **s}
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| clips | method | budget min | steps | FD [95%] | floor FD [95%] | near-copies |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['clips']} | {r['method']} | {r['minutes']:g} | {r['steps']} | {r['fd']:.1f} "
              f"[{r['fd_ci'][0]:.1f}, {r['fd_ci'][1]:.1f}] | {r['floor']:.1f} [{r['floor_ci'][0]:.1f}, "
              f"{r['floor_ci'][1]:.1f}] | {100 * r['copies']:.0f}% |")
    (out / "results.json").write_text(json.dumps(rows, indent=1))
    print(f"\ncommand: python benchmarks/finetune_family.py {args.notes} --family {args.family} --clips "
          f"{' '.join(map(str, args.clips))} --minutes {args.minutes:g} --scratch-minutes "
          f"{' '.join(f'{m:g}' for m in args.scratch_minutes)} --methods {' '.join(args.methods)} --gen {args.gen} "
          f"--out {out}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Few-step generation: distil a trained run (`audiodiff distill`) with each method for the same number of
steps, then score clips at 1, 2 and 4 network calls against the teacher's DDIM-50 and DPM-Solver++ 10.

Every row samples --clips clips (a conditional run: as many per label, filed in label subfolders, so the
embedder's class accuracy is reported), vocodes them with the run's vocoder (or --vocoder), and scores them
against --reference with `audiodiff evaluate generated`'s code: melstats FD and, with --embedder, FD in its
space, IS and class accuracy; one fair floor for every row (--eval-seed). Distillation wall time is printed
beside the teacher's training time when --teacher-seconds is given; generation time is network + vocoder per
second of audio (real-time factor, lower is faster), batch --batch-size, one thread pool, after a warm-up.

    python experiments/distill.py runs/notes-tiny samples/notes/train --reference VALIDATION_DIR \\
        --embedder runs/recipe-notes/embedder --methods cd:220 ct:400 --out runs/distill-notes
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import time
from pathlib import Path

import torch

from audiodiff.audio.io import save
from audiodiff.evaluation.evaluate import evaluate_folders
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.run import Session
from audiodiff.run.tune import distill


def write_set(pipe: SpectrogramDiffusion, out: Path, clips: int, batch: int, **options) -> float:
    """Sample `clips` clips into out (label subfolders for a conditional run); returns the real-time factor of
    network + vocoder (seconds of compute per second of audio)."""
    shutil.rmtree(out, ignore_errors=True)
    labels = pipe.config.data.labels or (None,)
    per = -(-clips // len(labels))
    pipe.generate(1, batch_size=1, label=labels[0], **options)  # warm-up
    elapsed, audio_s = 0.0, 0.0
    for k, label in enumerate(labels):
        folder = out / label if label is not None else out
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        gen = pipe.generate(per, seed=10_000 + 1000 * k, batch_size=batch, label=label, **options)
        elapsed += time.perf_counter() - t0
        audio_s += gen.audio.shape[0] * gen.audio.shape[1] / gen.sample_rate
        for i, wav in enumerate(gen.audio):
            save(folder / f"{i:03d}.wav", wav.numpy(), gen.sample_rate)
    return elapsed / audio_s


def score(gen: Path, args: argparse.Namespace) -> dict:
    results, _ = evaluate_folders(gen, args.reference, embedder_dir=args.embedder, seed=args.eval_seed)
    return results


def fd(s: dict) -> str:
    return f"{s['fd']:.1f} [{s['fd_ci'][0]:.1f}, {s['fd_ci'][1]:.1f}]"


def row(name: str, calls: int, rtf: float, results: dict) -> dict:
    m, e = results["melstats"], results.get("embedder")
    out = {"row": name, "calls": calls, "rtf": rtf, "melstats": m["generated"], "embedder": e and e["generated"]}
    cells = [name, str(calls), fd(m["generated"])]
    if e:
        classes = e.get("generated_classes", {})
        out["is"], out["accuracy"] = classes.get("is"), classes.get("accuracy")
        cells += [fd(e["generated"]), f"{classes.get('is', float('nan')):.2f}",
                  "-" if classes.get("accuracy") is None else f"{classes['accuracy']:.3f}"]
    cells.append(f"{rtf:.4f}")
    print("| " + " | ".join(cells) + " |", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("teacher", type=Path, help="the trained run to distil")
    ap.add_argument("data", type=Path, help="the audio to distil on (the teacher's training folder)")
    ap.add_argument("--reference", type=Path, required=True, help="real clips to score against (validation for tuning)")
    ap.add_argument("--embedder", type=Path)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--methods", nargs="+", default=["cd:250", "ct:250"],
                    help="METHOD:STEPS ...; give each the steps that take the same time for an equal-time comparison")
    ap.add_argument("--set", nargs="*", default=[], metavar="SECTION.KEY=VALUE",
                    help="config overrides for every distillation, e.g. train.lr=3e-4 distill.halve_every=50")
    ap.add_argument("--calls", nargs="+", type=int, default=[1, 2, 4])
    ap.add_argument("--teacher-plan", nargs="*", default=["ddim:50", "dpmpp-2m:10", "ddim:2", "ddim:4"])
    ap.add_argument("--clips", type=int, default=64)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--label-column")
    ap.add_argument("--vocoder", help="vocoder spec or folder for every row (default: the run's)")
    ap.add_argument("--teacher-seconds", type=float, help="the teacher's training time, for the cost ratio")
    ap.add_argument("--eval-seed", type=int, default=0)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    overrides: dict[str, dict] = {}
    for item in args.set:
        key, value = item.split("=", 1)
        section, name = key.split(".")
        overrides.setdefault(section, {})[name] = json.loads(value)
    print(f"# {time.strftime('%Y-%m-%d')}, {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"# teacher {args.teacher}, {args.clips} clips per row, reference {args.reference}, embedder {args.embedder}")
    header = ["model", "calls", "melstats FD"] + (["embedder FD", "IS", "class acc."] if args.embedder else []) + ["RTF"]
    results = []
    teacher = SpectrogramDiffusion.load(args.teacher)
    if args.vocoder:
        teacher.use_vocoder(args.vocoder)
    print("| " + " | ".join(header) + " |\n|" + "---|" * len(header))
    for item in args.teacher_plan:
        sampler, steps = item.split(":")
        gen = args.out / "teacher" / item.replace(":", "-")
        rtf = write_set(teacher, gen, args.clips, args.batch_size, sampler=sampler, steps=int(steps))
        results.append(row(f"teacher {sampler}", int(steps), rtf, score(gen, args)))
    for item in args.methods:
        method, steps = item.split(":")
        run = args.out / method
        shutil.rmtree(run, ignore_errors=True)
        t0 = time.perf_counter()
        distill(args.teacher, args.data, run, method=method, label_column=args.label_column,
                overrides={"train": {"steps": int(steps), **overrides.get("train", {})},
                           "distill": overrides.get("distill", {})},
                session=Session(progress=False, log=lambda m: None))
        seconds = time.perf_counter() - t0
        cost = f" = {seconds / args.teacher_seconds:.0%} of the teacher's {args.teacher_seconds:.0f} s" if args.teacher_seconds else ""
        print(f"# {method}: {steps} steps in {seconds:.0f} s{cost}", flush=True)
        pipe = SpectrogramDiffusion.load(run)
        if args.vocoder:
            pipe.use_vocoder(args.vocoder)
        for calls in args.calls:
            gen = args.out / "generated" / f"{method}-{calls}"
            rtf = write_set(pipe, gen, args.clips, args.batch_size, steps=calls)
            results.append(row(f"{method} ({steps} steps, {seconds:.0f} s)", calls, rtf, score(gen, args)))
    res = score(args.out / "teacher" / args.teacher_plan[0].replace(":", "-"), args)
    floor = [fd(res["melstats"]["floor"])] + ([fd(res["embedder"]["floor"])] if args.embedder else [])
    real_is = f", IS of the reference clips {res['embedder']['reference_classes']['is']:.2f}" if args.embedder else ""
    print(f"# floor (real clips held back from the reference): melstats FD {floor[0]}"
          + (f", embedder FD {floor[1]}" if args.embedder else "") + real_is)
    (args.out / "results.json").write_text(json.dumps(results, indent=1))
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Plot the main job's quality against training time from `main_job_curve.sh` outputs (OUT/at<STEP>/scores.json),
one line per run (a training seed, a lever): embedder FD with its floor and issue 19's 1.2x target, and the class
accuracy with that of real notes. The x axis is training minutes at --seconds-per-step (the README's main job on the
2-core AVX2 CPU: 1553 s for 1500 steps), or at a run's own rate given as LABEL=FOLDER@SECONDS_PER_STEP (a wider
model, whose steps cost more).

    python experiments/plot_main_job_curve.py "seed 0=runs/curve0" "seed 1=runs/curve1" "32 ch=runs/curve32@2.45" \
        --out curve.png --real-accuracy 0.94
"""

import argparse
import json
import shlex
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def points(folder: Path) -> list[tuple[int, dict]]:
    """(step, scores) of each at<STEP>/scores.json under folder, by step."""
    found = [(int(p.parent.name[2:]), json.loads(p.read_text())) for p in folder.glob("at*/scores.json")
             if p.parent.name[2:].isdigit()]
    if not found:
        raise SystemExit(f"{folder}: no at<STEP>/scores.json (main_job_curve.sh's OUT)")
    return sorted(found, key=lambda t: t[0])


def run_spec(spec: str, seconds_per_step: float) -> tuple[str, Path, float]:
    """LABEL=FOLDER[@SECONDS_PER_STEP] -> (label, folder, seconds per step; the default where none is given)."""
    label, _, folder = spec.partition("=")
    if not label or not folder:
        raise SystemExit(f"{spec!r}: expected LABEL=FOLDER or LABEL=FOLDER@SECONDS_PER_STEP")
    folder, at, rate = folder.rpartition("@") if "@" in folder else (folder, "", "")
    if at:
        try:
            seconds_per_step = float(rate)
        except ValueError:
            raise SystemExit(f"{spec!r}: {rate!r} after @ is not a number of seconds per step") from None
        if not seconds_per_step > 0:
            raise SystemExit(f"{spec!r}: seconds per step must be > 0")
    return label, Path(folder), seconds_per_step


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", help="LABEL=FOLDER[@SECONDS_PER_STEP]: a main_job_curve.sh OUT folder, its "
                    "legend label and, for a run whose steps cost other than --seconds-per-step, its own rate")
    ap.add_argument("--out", type=Path, required=True, help="the PNG to write")
    ap.add_argument("--seconds-per-step", type=float, default=1553 / 1500, help="runs without their own @rate")
    ap.add_argument("--real-accuracy", type=float, default=None, help="the classifier's accuracy on real notes")
    args = ap.parse_args()
    fig, (ax_fd, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    floor = None
    for spec in args.runs:
        label, folder, seconds_per_step = run_spec(spec, args.seconds_per_step)
        pts = points(folder)
        minutes = [step * seconds_per_step / 60 for step, _ in pts]
        emb = [s["embedder"]["generated"] for _, s in pts]
        line, = ax_fd.plot(minutes, [e["fd"] for e in emb], "o-", label=label)
        ax_fd.fill_between(minutes, [e["fd_ci"][0] for e in emb], [e["fd_ci"][1] for e in emb],
                           color=line.get_color(), alpha=0.12)
        acc = [(m, s["embedder"]["generated_classes"].get("accuracy")) for m, (_, s) in zip(minutes, pts)]
        acc = [(m, a) for m, a in acc if a is not None]
        ax_acc.plot([m for m, _ in acc], [100 * a for _, a in acc], "o-", color=line.get_color(), label=label)
        floor = pts[0][1]["embedder"]["floor"]["fd"]
        for (step, s), m in zip(pts, minutes):
            e, c = s["embedder"], s["embedder"]["generated_classes"]
            print(f"{label}\t{step}\t{m:.1f} min\tembedder FD {e['generated']['fd']:.1f}\t"
                  f"accuracy {c.get('accuracy', float('nan')):.0%}")
    ax_fd.axhline(floor, color="k", lw=1, label=f"floor (real vs real) {floor:.1f}")
    ax_fd.axhline(1.2 * floor, color="k", lw=1, ls="--", label="target: 1.2x the floor")
    ax_fd.set(xlabel="training minutes", ylabel="embedder FD (95% interval shaded)", ylim=(0, None),
              title="distance to validation notes")
    if args.real_accuracy is not None:
        ax_acc.axhline(100 * args.real_accuracy, color="k", lw=1, label="real notes")
    ax_acc.set(xlabel="training minutes", ylabel="class accuracy, %", ylim=(0, 100), title="family recognised")
    ax_fd.legend(fontsize=8)
    ax_acc.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}\ncommand: python " + shlex.join(sys.argv))


if __name__ == "__main__":
    main()

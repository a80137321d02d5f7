#!/usr/bin/env python3
"""The training loop's rate at another commit and at this working tree: the README main job's command for --steps
steps (`audiodiff train DATA --preset tiny --label-column family --steps N`, no budget), run in turn at --base (a git
worktree of that commit, removed at the end) and here, --rounds times interleaved. Each run's figure is the median of
its loss.csv samples/s from step 30 on (the whole loop: data, step, EMA, logging; checkpoints left out). Prints each
run, the best of each side, their ratio, and the command. The environment passes through, so
`ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2` measures the AVX2 kernels.

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 python benchmarks/loop_rate.py --base 89780c4 --rounds 3 --steps 200
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from audiodiff.runfolder import csv_rows

HERE = Path(__file__).resolve().parents[1]
FROM_STEP = 30  # the first rows are the process warming up


def rate(tree: Path, data: Path, steps: int, out: Path) -> float:
    """The median samples/s of one run of the main job's command for `steps` steps, with the code of `tree`."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, "-m", "audiodiff", "train", str(data), "--out", str(out), "--preset", "tiny",
                    "--label-column", "family", "--steps", str(steps), "--no-progress"],
                   cwd=tree, env=env, check=True, capture_output=True)
    rates = sorted(float(r["samples_per_s"]) for r in csv_rows(out / "loss.csv")
                   if int(r["step"]) >= min(FROM_STEP, steps // 2))
    return rates[len(rates) // 2]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit to compare with (any git revision)")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--data", type=Path, default=HERE / "samples" / "notes" / "train")
    args = ap.parse_args(argv)
    base = subprocess.run(["git", "-C", str(HERE), "rev-parse", "--short", args.base], check=True,
                          capture_output=True, text=True).stdout.strip()
    runs: dict[str, list[float]] = {base: [], "this tree": []}
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "base"
        subprocess.run(["git", "-C", str(HERE), "worktree", "add", "--detach", str(tree), base], check=True,
                       capture_output=True)
        try:
            for i in range(args.rounds):
                for side, code in ((base, tree), ("this tree", HERE)):
                    runs[side].append(rate(code, args.data.resolve(), args.steps, Path(tmp) / f"run-{side}-{i}"))
        finally:
            subprocess.run(["git", "-C", str(HERE), "worktree", "remove", "--force", str(tree)], check=True,
                           capture_output=True)
    print(f"# the main job's command for {args.steps} steps, {args.rounds} rounds interleaved; median samples/s of "
          f"loss.csv from step {min(FROM_STEP, args.steps // 2)} on")
    print("| code | samples/s, each run | best |")
    print("|---|---|---|")
    for side, rates in runs.items():
        print(f"| {side} | {', '.join(f'{r:.1f}' for r in rates)} | {max(rates):.1f} |")
    print(f"this tree / {base}: {max(runs['this tree']) / max(runs[base]):.2f}x (best against best)")
    print("command: python " + " ".join([sys.argv[0], *(argv if argv is not None else sys.argv[1:])]))


if __name__ == "__main__":
    main()

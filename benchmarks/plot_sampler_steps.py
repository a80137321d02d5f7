#!/usr/bin/env python3
"""Plot the table printed by sampler_steps.py: FD (with 95% interval) vs steps per sampler, and the
real-vs-real floor as a band.

    python benchmarks/sampler_steps.py ... | tee steps.txt
    python benchmarks/plot_sampler_steps.py steps.txt --out benchmarks/sampler_steps.png
"""

from __future__ import annotations

import argparse
import re
from collections import defaultdict

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROW = re.compile(r"^(\S+)\s+(\d+|-)\s+([\d.]+)\s+\[\s*([-\d.]+),\s*([-\d.]+)\]")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("table")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    curves, floor = defaultdict(list), None
    for line in open(args.table):
        m = ROW.match(line)
        if not m:
            continue
        name, steps, fd, lo, hi = m.group(1), m.group(2), *map(float, m.groups()[2:])
        if steps == "-":
            floor = (fd, lo, hi)
        else:
            curves[name].append((int(steps), fd, lo, hi))
    fig, ax = plt.subplots(figsize=(6, 4), dpi=100)
    if floor:
        ax.axhspan(floor[1], floor[2], color="0.85", label="real vs real (95%)")
        ax.axhline(floor[0], color="0.5", lw=1)
    for name, rows in curves.items():
        rows.sort()
        s, fd, lo, hi = zip(*rows)
        ax.errorbar(s, fd, yerr=[[f - a for f, a in zip(fd, lo)], [b - f for f, b in zip(fd, hi)]], marker="o",
                    capsize=3, label=name)
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps")
    ax.set_ylabel("melstats FD to held-out notes (lower is better)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

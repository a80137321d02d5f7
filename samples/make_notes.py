#!/usr/bin/env python3
"""Rebuild samples/notes/ (the shipped default data) from the notes set of the project's builder.

Keeps only the FluidR3_GM renders (MIT licence), `--per-family` train clips per instrument family
(evenly spread over pitch and velocity) plus `--heldout` held-out clips, stored as 16-bit FLAC.

    bash recipes/prepare.sh notes /tmp/data && python samples/make_notes.py /tmp/data/notes samples/notes
"""

import argparse
import csv
from pathlib import Path

import soundfile as sf


def pick(rows: list[dict], n: int) -> list[dict]:
    """n rows spread evenly over the list (sorted by pitch), deterministic."""
    rows = sorted(rows, key=lambda r: (int(r["pitch"]), int(r["velocity"]), r["path"]))
    if len(rows) <= n:
        return rows
    return [rows[round(i * (len(rows) - 1) / (n - 1))] for i in range(n)] if n > 1 else rows[:1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notes_dir", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--per-family", type=int, default=20)
    ap.add_argument("--heldout", type=int, default=3, help="held-out clips per family")
    args = ap.parse_args()
    rows = [r for r in csv.DictReader(open(args.notes_dir / "metadata.csv")) if r["font"] == "fluidr3"]
    families = sorted({r["family"] for r in rows})
    chosen = []
    for part in ("train", "heldout"):
        for old in (args.out / part).glob("*.flac"):
            old.unlink()
    for split, n in (("train", args.per_family), ("heldout", args.heldout)):
        for fam in families:
            chosen += pick([r for r in rows if r["split"] == split and r["family"] == fam], n)
    for r in chosen:
        src = args.notes_dir / r["path"]
        dst = args.out / r["split"] / Path(r["path"]).with_suffix(".flac").name
        dst.parent.mkdir(parents=True, exist_ok=True)
        x, sr = sf.read(src, dtype="int16")
        sf.write(dst, x, sr, subtype="PCM_16", format="FLAC")
        r["path"] = f"{r['split']}/{Path(r['path']).with_suffix('.flac').name}"
    with open(args.out / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, list(chosen[0]))
        w.writeheader()
        w.writerows(chosen)
    print(f"{len(chosen)} clips ({len(families)} families) -> {args.out}")


if __name__ == "__main__":
    main()

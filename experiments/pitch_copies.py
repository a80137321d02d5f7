#!/usr/bin/env python3
"""Issue 19's data lever on the main job: a training folder widened by pitch-shifted copies of its notes.

Each note is also written played faster or slower by 2^(s/12) for each shift s in semitones (a speed change:
pitch and timbre move together and the note lasts 1/r as long, as a tape would play it), then cut or padded with
silence back to the original length; the labels of metadata.csv are copied to the new files. Train on OUT/train
with the same command as the original folder to compare at equal steps (the step time does not depend on the
folder's size; the mel cache holds the copies).

    python experiments/pitch_copies.py samples/notes OUT --shifts -1 1
    audiodiff train OUT/train --out RUN --preset tiny --label-column family
"""

import argparse
import csv
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr


def shifted(wav: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """wav played 2^(semitones/12) times as fast, at the same length (cut, or padded with zeros)."""
    ratio = 2.0 ** (semitones / 12.0)
    out = soxr.resample(wav, sr, sr / ratio)
    if len(out) >= len(wav):
        return out[: len(wav)]
    return np.concatenate([out, np.zeros(len(wav) - len(out), dtype=out.dtype)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("notes", type=Path, help="a folder with train/ and metadata.csv (path column relative to it)")
    ap.add_argument("out", type=Path)
    ap.add_argument("--shifts", type=float, nargs="+", default=[-1.0, 1.0], help="semitones, besides the original")
    args = ap.parse_args()
    if 0 in args.shifts or len(set(args.shifts)) < len(args.shifts):
        ap.error(f"--shifts {args.shifts}: each shift once, none 0 (the original is always kept)")
    with open(args.notes / "metadata.csv", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["path"].startswith("train/")]
    (args.out / "train").mkdir(parents=True, exist_ok=True)
    out_rows = []
    for r in rows:
        wav, sr = sf.read(args.notes / r["path"], dtype="float32")
        stem = Path(r["path"]).stem
        for s in [0.0] + args.shifts:
            name = f"train/{stem}.flac" if s == 0 else f"train/{stem}_{s:+g}st.flac"
            sf.write(args.out / name, wav if s == 0 else np.clip(shifted(wav, sr, s), -1, 1), sr)
            out_rows.append({**r, "path": name})
    with open(args.out / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(out_rows)
    print(f"{len(rows)} notes -> {len(out_rows)} files in {args.out / 'train'} (shifts {args.shifts} semitones)")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

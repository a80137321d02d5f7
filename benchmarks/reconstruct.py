#!/usr/bin/env python3
"""Round-trip scores of the mel front end + vocoder (`audiodiff reconstruct`) on held-out clips.

For each set, the first --clips files of SET/heldout (sorted) are loaded at the mel's sample
rate, turned into the normalized log-mel and back to audio with Griffin-Lim, and scored against
the input: mel L1 (ln magnitude mel), multi-resolution STFT distance, SNR, and the CPU real-time
factor. The sets come from ../shared/data/make_datasets.sh.

    bash ../shared/data/make_datasets.sh /tmp/data
    python benchmarks/reconstruct.py /tmp/data --sets notes digits drums --clips 50
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from audiodiff.audio import load
from audiodiff.config import MelConfig
from audiodiff.data import find_audio_files
from audiodiff.mel import MelSpectrogram
from audiodiff.metrics import mel_l1, mr_stft, snr_db
from audiodiff.pipeline import reconstruct
from audiodiff.vocoder import GriffinLim


def score_set(files: list[Path], mel: MelSpectrogram, vocoder: GriffinLim) -> dict[str, float]:
    rows, seconds, elapsed = [], 0.0, 0.0
    for i, path in enumerate(files):
        wav = load(path, mel.config.sample_rate)
        t0 = time.perf_counter()
        est, _ = reconstruct(wav, mel, vocoder, seed=i)
        elapsed += time.perf_counter() - t0
        seconds += len(wav) / mel.config.sample_rate
        rows.append((mel_l1(wav, est, mel), mr_stft(wav, est), snr_db(wav, est)))
    cols = list(zip(*rows))
    return {"mel_l1": statistics.mean(cols[0]), "mr_stft": statistics.mean(cols[1]),
            "snr_db": statistics.mean(cols[2]), "rtf": elapsed / seconds, "clips": len(files)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_root", type=Path)
    ap.add_argument("--sets", nargs="+", default=["notes", "digits", "drums"])
    ap.add_argument("--clips", type=int, default=50)
    ap.add_argument("--iters", type=int, nargs="+", default=[32])
    args = ap.parse_args()
    torch.set_num_threads(torch.get_num_threads())
    mel = MelSpectrogram(MelConfig())
    print(f"# mel {MelConfig()}")
    print(f"{'set':7} {'vocoder':14} {'clips':>5} {'mel L1':>7} {'MR-STFT':>8} {'SNR dB':>7} {'RTF':>7}")
    for name in args.sets:
        files = find_audio_files(args.data_root / name / "heldout")[: args.clips]
        for n_iter in args.iters:
            r = score_set(files, mel, GriffinLim(mel, n_iter=n_iter))
            print(f"{name:7} {'GL-' + str(n_iter):14} {r['clips']:5d} {r['mel_l1']:7.3f} {r['mr_stft']:8.3f} "
                  f"{r['snr_db']:7.1f} {r['rtf']:7.4f}")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

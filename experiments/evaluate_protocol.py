#!/usr/bin/env python3
"""The evaluation protocol on the shared benchmark sets: real-vs-real floors and vocoder rows.

For each set (from ../shared/data/make_datasets.sh): the melstats FD/KID of `--floor-clips` random
training clips against all held-out clips (the floor any generator is compared with), and the
paired round-trip scores of the `--vocoders` (specs as in `audiodiff evaluate vocoder`) on the first
`--vocoder-clips` held-out clips.

    bash ../shared/data/make_datasets.sh /tmp/data
    python experiments/evaluate_protocol.py /tmp/data --sets notes digits drums
    # with trained embedders (floors in their embedding, IS of the real held-out clips):
    for s in notes:family digits:digit drums:category; do audiodiff evaluate train-embedder \
        /tmp/data/${s%%:*}/train --out /tmp/emb/${s%%:*} --label-column ${s##*:} --heldout /tmp/data/${s%%:*}/heldout; done
    python experiments/evaluate_protocol.py /tmp/data --embedders /tmp/emb --vocoders griffinlim
"""

from __future__ import annotations

import argparse
import platform
import sys

import numpy as np
import torch

from audiodiff.audio.mel import MelSpectrogram
from audiodiff.config import MelConfig
from audiodiff.model.embedder import Embedder
from audiodiff.evaluation.distances import SetScore, score_sets, split_reference, standardize
from audiodiff.evaluation.classes import class_scores
from audiodiff.evaluation.features import embedder_features, folder_features
from audiodiff.evaluation.vocoders import evaluate_vocoder, vocoder_files
from audiodiff.vocoders.registry import build_vocoder, describe


def fair_floor(heldout: np.ndarray, args: argparse.Namespace) -> SetScore:
    """Real-vs-real floor from held-out clips alone: a seeded share held back, scored against the rest."""
    keep, held = split_reference(len(heldout), args.floor_clips)
    ref_s, floor_s = standardize(heldout[keep], heldout[held])
    return score_sets("floor", floor_s, ref_s, args.bootstrap, 0)


def embedder_floor(name: str, root: str, emb: Embedder, args: argparse.Namespace) -> None:
    everything, ref_probs, _ = embedder_features(f"{root}/heldout", emb)
    s = fair_floor(everything, args)
    line = (f"{name:7} embedder floor: FD {s.fd:.2f} [{s.fd_ci[0]:.2f}, {s.fd_ci[1]:.2f}], "
            f"KID {s.kid:.4f} [{s.kid_ci[0]:.4f}, {s.kid_ci[1]:.4f}]")
    if ref_probs is not None:
        c = class_scores(ref_probs)
        line += f"; held-out real clips: IS {c['is']:.2f}, modified IS {c['modified_is']:.2f} ({len(emb.labels)} classes)"
    print(line)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("data_root")
    ap.add_argument("--sets", nargs="+", default=["notes", "digits", "drums"])
    ap.add_argument("--floor-clips", type=int, default=64, help="held-out clips held back for the floor (at most half)")
    ap.add_argument("--vocoder-clips", type=int, default=50)
    ap.add_argument("--vocoders", nargs="+", default=["griffinlim-32/pinv", "griffinlim", "pghi", "pghi-32"])
    ap.add_argument("--bootstrap", type=int, default=200)
    ap.add_argument("--embedders", help="folder with SET/embedder.safetensors from `audiodiff evaluate train-embedder`")
    args = ap.parse_args()
    mel = MelSpectrogram(MelConfig())
    print(f"# {platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}; mel {MelConfig()}")
    for name in args.sets:
        root = f"{args.data_root}/{name}"
        everything, _ = folder_features(f"{root}/heldout", mel)
        s = fair_floor(everything, args)
        print(f"{name:7} floor: {s.clips} vs {len(everything) - s.clips} held-out clips: FD {s.fd:.2f} "
              f"[{s.fd_ci[0]:.2f}, {s.fd_ci[1]:.2f}], KID {s.kid:.4f} [{s.kid_ci[0]:.4f}, {s.kid_ci[1]:.4f}]")
        if args.embedders:
            embedder_floor(name, root, Embedder.load(f"{args.embedders}/{name}"), args)
        files, _ = vocoder_files(f"{root}/heldout", args.vocoder_clips)
        for spec in args.vocoders:
            vocoder = build_vocoder(spec, mel)
            r = evaluate_vocoder(files, mel, vocoder)
            print(f"{name:7} vocoder {describe(vocoder)}: {r['clips']} clips: LSD {r['lsd_db']:.2f} dB, logmel L1 {r['mel_l1']:.3f}, "
                  f"MR-STFT {r['mr_stft']:.3f}, SNR {r['snr_db']:.1f} dB, RTF {r['rtf']:.4f}")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

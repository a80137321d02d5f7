#!/usr/bin/env python3
"""Classifier-free guidance on a class-conditional run: for each sampler setting and guidance weight
(optionally only inside a timestep interval), generate N clips of every label with fixed seeds, vocode
them, and report how often a classifier (`audiodiff evaluate train-embedder`) hears the intended label,
per label and overall, and the melstats FD of all clips against real clips, with the fair floor.

    python experiments/guidance.py RUN --embedder EMB_DIR --reference REF_DIR -n 20 \\
        --plan ddim:50 dpmpp-2m:10 --weights 0 1 2 3 [--interval 100 800]

Tune on clips the evaluation was not fitted on: REF_DIR should be a validation folder, not the held-out one.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from audiodiff.audio.mel import MelSpectrogram
from audiodiff.config import MelConfig
from audiodiff.model.embedder import Embedder
from audiodiff.evaluation.features import clip_features, folder_features
from audiodiff.evaluation.distances import frechet_distance, split_reference, standardize
from audiodiff.generation.pipeline import SpectrogramDiffusion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--embedder", required=True)
    ap.add_argument("--reference", required=True)
    ap.add_argument("-n", type=int, default=20, help="clips per label")
    ap.add_argument("--plan", nargs="+", default=["dpmpp-2m:10"], help="SAMPLER:STEPS ...")
    ap.add_argument("--weights", nargs="+", type=float, default=[0.0, 1.0, 2.0, 3.0])
    ap.add_argument("--interval", nargs=2, type=float, help="guide only at timesteps LO <= t <= HI")
    args = ap.parse_args()
    pipe = SpectrogramDiffusion.load(args.run)
    emb = Embedder.load(args.embedder)
    labels = pipe.config.data.labels
    mel_eval = MelSpectrogram(MelConfig(sample_rate=pipe.sample_rate, f_max=min(8000.0, pipe.sample_rate / 2)))
    mel_emb = MelSpectrogram(emb.mel_config)
    everything, _ = folder_features(args.reference, mel_eval)
    keep, held = split_reference(len(everything), args.n * len(labels))
    ref_s, floor_s = standardize(everything[keep], everything[held])
    print(f"# run {args.run} (step {pipe.step}), {args.n} clips per label x {len(labels)} labels, classifier "
          f"{args.embedder}; melstats FD against {len(keep)} clips of {args.reference}, floor: "
          f"{frechet_distance(floor_s, ref_s):.1f} ({len(held)} other real clips)")
    interval = tuple(args.interval) if args.interval else None
    print(f"{'sampler':12} {'w':>4} {'accuracy':>8} {'worst label':>14} {'FD':>7} {'s/clip':>7}  per label")
    for item in args.plan:
        sampler, steps = item.split(":")
        for w in args.weights:
            t0, hits, feats, per = time.perf_counter(), 0, [], {}
            for k, label in enumerate(labels):
                with torch.inference_mode():
                    out = pipe.generate(args.n, steps=int(steps), sampler=sampler, seed=1000 * k, label=label,
                                        guidance=w, guidance_interval=interval)
                    wav = out.audio.float()
                    logmel = mel_emb(wav)[:, 0]
                    pred = torch.stack([emb.embed_clip(m)[1] for m in logmel]).argmax(-1)
                    feats += [clip_features(m.numpy()) for m in mel_eval(wav)[:, 0]]
                right = int((pred == emb.labels.index(label)).sum())
                per[label], hits = right / args.n, hits + right
            elapsed = (time.perf_counter() - t0) / (args.n * len(labels))
            _, gen_s = standardize(everything[keep], np.stack(feats))
            worst = min(per, key=per.get)
            print(f"{sampler + '-' + steps:12} {w:4g} {hits / (args.n * len(labels)):8.3f} {worst:>8} {per[worst]:5.2f} "
                  f"{frechet_distance(gen_s, ref_s):7.1f} {elapsed:7.3f}  "
                  + " ".join(f"{k}:{v:.2f}" for k, v in per.items()), flush=True)
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

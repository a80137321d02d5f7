#!/usr/bin/env python3
"""Quality vs number of steps for each sampler, on a trained run.

For each (sampler, steps), N clips are sampled (seeds 0..N-1) and their log-mels scored against
real reference audio with the melstats FD/KID of `audiodiff.evaluation.evaluate` (bootstrap 95% intervals),
next to the real-vs-real floor (N training clips vs the reference). The sampled mels are scored
directly, before the vocoder, so only the sampler differs between rows. Also prints sampling wall
time per second of audio on this machine.

    python benchmarks/sampler_steps.py runs/notes-tiny --reference REF_DIR --train samples/notes/train \\
        -n 48 --plan ddpm:50,200,1000 ddim:5,10,20,50 dpmpp-2m:5,10,20,50
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from audiodiff.diffusion.sampling import sample
from audiodiff.evaluation.features import clip_features, folder_features
from audiodiff.evaluation.distances import score_sets, split_reference, standardize
from audiodiff.generation.pipeline import SpectrogramDiffusion


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("--reference", required=True)
    ap.add_argument("-n", type=int, default=48)
    ap.add_argument("--plan", nargs="+", default=["ddpm:50,200,1000", "ddim:5,10,20,50", "dpmpp-2m:5,10,20,50"])
    ap.add_argument("--bootstrap", type=int, default=200)
    args = ap.parse_args()
    pipe = SpectrogramDiffusion.load(args.run, device="cpu")
    everything, _ = folder_features(args.reference, pipe.mel.cpu())
    keep, held = split_reference(len(everything), args.n)  # the fair floor: held-out clips not in the reference
    ref = everything[keep]
    ref_s, floor_s = standardize(ref, everything[held])
    floor = score_sets("floor", floor_s, ref_s, args.bootstrap, 0)
    print(f"# run {args.run} (step {pipe.step}), {args.n} clips per row, reference {len(ref)} of the "
          f"{len(everything)} clips in {args.reference}; floor: the other {len(held)}")
    print(f"{'sampler':9} {'steps':>5} {'FD':>7} {'FD 95%':>17} {'KID':>7} {'KID 95%':>17} {'s/audio s':>9}")
    print(f"{'real':9} {'-':>5} {floor.fd:7.2f} [{floor.fd_ci[0]:7.2f}, {floor.fd_ci[1]:7.2f}] {floor.kid:7.3f} "
          f"[{floor.kid_ci[0]:7.3f}, {floor.kid_ci[1]:7.3f}] {'-':>9}")
    shape = (1, pipe.config.mel.n_mels, pipe.config.data.crop_frames)
    audio_s = args.n * pipe.mel.num_samples(shape[-1]) / pipe.sample_rate
    for item in args.plan:
        name, steps_list = item.split(":")
        for steps in map(int, steps_list.split(",")):
            t0 = time.perf_counter()
            with torch.inference_mode():
                logmel = sample(pipe.model, pipe.schedule, name, shape, list(range(args.n)), steps, pipe.device)
            elapsed = time.perf_counter() - t0
            gen = np.stack([clip_features(m[0].numpy()) for m in logmel.cpu()])
            _, gen_s = standardize(ref, gen)
            s = score_sets(name, gen_s, ref_s, args.bootstrap, 0)
            print(f"{name:9} {steps:5d} {s.fd:7.2f} [{s.fd_ci[0]:7.2f}, {s.fd_ci[1]:7.2f}] {s.kid:7.3f} "
                  f"[{s.kid_ci[0]:7.3f}, {s.kid_ci[1]:7.3f}] {elapsed / audio_s:9.3f}", flush=True)
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

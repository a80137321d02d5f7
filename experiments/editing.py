#!/usr/bin/env python3
"""Figures for the editing operations on a trained run, over N input clips (seeds 0..N-1):

- vary: mean mel L1 (normalized log-mel, [-1, 1] scale) between the input and its variation, per strength;
- interpolate: how well the ends come back (mel L1 of frame 0 to A), DDIM inversion with refine 0 and 2;
- inpaint: mel L1 inside the regenerated span vs outside it (outside must be 0 beyond the crossfade),
  and whether the audio outside the span is the input's, sample for sample;
- continue and loop: the largest sample step within 2 hops of each seam, divided by the clip's 99.9th
  percentile step (1 means a seam is no worse than the clip's own rare large steps).

    python experiments/editing.py runs/notes-tiny samples/notes/heldout -n 8
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

from audiodiff.audio.io import load
from audiodiff.data.folders import find_audio_files
from audiodiff.diffusion.editing import ddim_invert
from audiodiff.diffusion.sampling import ddim
from audiodiff.generation.pipeline import SpectrogramDiffusion


def seam_ratio(wav: np.ndarray, seams: list[int], width: int) -> float:
    d = np.abs(np.diff(wav))
    near = max(d[max(0, s - width) : s + width].max() for s in seams if s < len(d))
    return float(near / np.quantile(d, 0.999))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("run")
    ap.add_argument("inputs", help="Folder of input clips (the first N files, sorted).")
    ap.add_argument("-n", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args()
    pipe = SpectrogramDiffusion.load(args.run, device="cpu")
    files = sorted(find_audio_files(Path(args.inputs)))[: args.n]
    wavs = [load(f, pipe.sample_rate) for f in files]
    mels = [pipe.rep.encode(w) for w in wavs]
    hop = pipe.config.mel.hop_length
    print(f"# run {args.run} (step {pipe.step}), {len(wavs)} inputs from {args.inputs}, {args.steps} steps")

    for strength in (0.0, 0.2, 0.4, 0.6, 0.8, 1.0):
        d = [(pipe.vary(w, strength, steps=args.steps, seed=i).logmel - m.cpu()).abs().mean().item()
             for i, (w, m) in enumerate(zip(wavs, mels))]
        print(f"vary strength {strength:.1f}: mel L1 to the input {np.mean(d):.3f} (+- {np.std(d):.3f})")

    for refine in (0, 2):
        errs = []
        for m in mels:
            with torch.inference_mode():
                z = ddim_invert(pipe.model, pipe.schedule, pipe._pad(m), args.steps, refine=refine)
                back = ddim(pipe.model, pipe.schedule, z, args.steps, lambda: None, clip_x0=False)
            errs.append((back[..., : m.shape[-1]] - m).abs().mean().item())
        print(f"invert + decode, refine {refine}: mel L1 {np.mean(errs):.4f} (max {np.max(errs):.4f})")

    inside, outside, same = [], [], []
    for i, (w, m) in enumerate(zip(wavs, mels)):
        out = pipe.inpaint(w, 0.3, 0.6, steps=args.steps, seed=i, fade=3)
        a, b = int(0.3 * pipe.sample_rate) // hop, int(np.ceil(0.6 * pipe.sample_rate / hop)) + 1
        diff = (out.logmel[0] - m[0].cpu()).abs()
        inside.append(diff[..., a:b].mean().item())
        outside.append(max(diff[..., : a - 3].max().item(), diff[..., b + 3 :].max().item()))
        lo, hi = (a - 3) * hop, (b - 1 + 3) * hop
        same.append(bool(np.array_equal(out.audio[0, :lo].numpy(), w[:lo])
                         and np.array_equal(out.audio[0, hi + 1 :].numpy(), w[hi + 1 :])))
    print(f"inpaint 0.3-0.6 s: mel L1 inside {np.mean(inside):.3f}, largest change outside the crossfade "
          f"{max(outside):.1e}; audio outside identical in {sum(same)}/{len(same)}")

    w_frames = pipe.window
    valid = (len(wavs[0]) - pipe.config.mel.n_fft // 2) // hop + 1
    per_window = w_frames - w_frames // 8 - round(0.5 * w_frames)
    ratios = []
    for i, w in enumerate(wavs):
        out = pipe.extend(w, 3.0, steps=args.steps, seed=i).audio[0].numpy()
        valid = (len(w) - pipe.config.mel.n_fft // 2) // hop + 1
        seams = [(valid - 1) * hop] + [(valid + k * per_window) * hop for k in range(1, 20)]
        ratios.append(seam_ratio(out, seams, 2 * hop))
    print(f"continue +3 s: seam step / 99.9th pct step: median {np.median(ratios):.2f}, max {np.max(ratios):.2f}")
    loops = pipe.generate(len(wavs), steps=args.steps, seconds=2.0, loop=True).audio.numpy()
    ratios = [seam_ratio(np.concatenate([x, x]), [len(x)], 2 * hop) for x in loops]
    print(f"loop 2 s, played twice: seam step / 99.9th pct step: median {np.median(ratios):.2f}, max {np.max(ratios):.2f}")
    print("command: python " + " ".join(sys.argv))


if __name__ == "__main__":
    main()

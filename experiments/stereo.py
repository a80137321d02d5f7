#!/usr/bin/env python3
"""Stereo and long-clip checks for a music run (issue 21), each a part:

- layouts: how the two channels are modelled, measured on held-out clips through the mel and each vocoder:
  mid/side (M = (L + R) / 2, S = (L - R) / 2, each vocoded with the item's seed), left/right vocoded apart, and
  left/right with one phase (what representation.py does); per clip, the error of the left/right level
  difference, the inter-channel correlation in and out, and the log-mel L1 of each side;
- vocoders: round trip of held-out stereo clips through each vocoder as a stereo run renders them, scored per
  channel (left, right) by log-mel L1 and MR-STFT, and the stereo image kept (inter-channel correlation and
  level difference of the output vs the input);
- image: inter-channel correlation and level difference of generated clips vs real held-out clips (mean and
  5-95% range);
- seams: long clips generated window by window (`generate --seconds`); spectral flux at the window joins vs
  elsewhere in the same clips, against the same statistic at random frames of real clips
  (flux.flux_ratios: the largest flux within 2 frames over the clip's median flux).

    python experiments/stereo.py --parts layouts vocoders image seams --heldout data/loops/heldout --run runs/recipe-loops/run \\
        --generated runs/recipe-loops/generated/dpmpp-2m-10-griffinlim --seconds 30 --clips 4
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

from audiodiff.audio.io import load
from audiodiff.audio.metrics import mel_l1, mr_stft
from audiodiff.config import Config
from audiodiff.data.folders import find_audio_files
from audiodiff.device import describe_hardware
from audiodiff.diffusion.editing import outpaint_windows
from audiodiff.evaluation.features import stereo_image, stereo_images
from flux import flux_ratios, spectral_flux  # experiments/flux.py, beside this script
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.generation.representation import for_run


def spread(values: list[float] | np.ndarray) -> str:
    v = np.asarray(values, dtype=np.float64)
    return f"{v.mean():.3f} [{np.percentile(v, 5):.3f}, {np.percentile(v, 95):.3f}]"


def round_trip(rep, lr: torch.Tensor, layout: str, seed: int) -> torch.Tensor:
    """Left/right audio [2, T] through the mel and rep's vocoder with the channels modelled as `layout`."""
    x = torch.stack([(lr[0] + lr[1]) / 2, (lr[0] - lr[1]) / 2]) if layout == "mid/side" else lr
    m = rep.mel.per_channel(x[None])[0]
    out = torch.cat([rep.vocoder(m[c][None, None], torch.Generator().manual_seed(seed)) for c in range(2)])
    if layout == "mid/side":
        return torch.stack([out[0] + out[1], out[0] - out[1]])
    return rep.shared_phase(out[None])[0] if layout == "left/right, one phase" else out


def part_layouts(config: Config, heldout: Path, vocoders: list[str], clips: int) -> None:
    rep = for_run(config, torch.device("cpu"))
    files = find_audio_files(heldout)[:clips]
    print(f"\n## Stereo layouts ({len(files)} held-out clips of {heldout}): mean [95th percentile] over clips")
    print("| vocoder | layout | abs error of L/R level difference dB | correlation in -> out | log-mel L1 per side |")
    print("|---|---|---|---|---|")
    for spec in vocoders:
        rep.use_vocoder(spec)
        for layout in ("mid/side", "left/right, apart", "left/right, one phase"):
            err, corr_in, corr_out, l1 = [], [], [], []
            for i, path in enumerate(files):
                lr = torch.from_numpy(load(path, rep.sample_rate, channels=2))
                out = round_trip(rep, lr, layout, i)
                ref = lr[:, : out.shape[-1]]
                (c_in, d_in), (c_out, d_out) = stereo_image(ref.numpy()), stereo_image(out.numpy())
                err.append(abs(d_in - d_out))
                corr_in.append(c_in)
                corr_out.append(c_out)
                l1.append(np.mean([mel_l1(ref[c], out[c], rep.mel) for c in range(2)]))
            print(f"| {spec} | {layout} | {np.mean(err):.2f} [{np.percentile(err, 95):.2f}] | {np.mean(corr_in):.3f} -> "
                  f"{np.mean(corr_out):.3f} | {np.mean(l1):.3f} |", flush=True)


def part_vocoders(config: Config, heldout: Path, vocoders: list[str], clips: int) -> None:
    rep = for_run(config, torch.device("cpu"))
    files = find_audio_files(heldout)[:clips]
    print(f"\n## Vocoder round trips, per channel ({len(files)} held-out clips of {heldout})")
    print("| vocoder | mel L1 left | mel L1 right | MR-STFT left | MR-STFT right | correlation in -> out | "
          "level difference dB in -> out |")
    print("|---|---|---|---|---|---|---|")
    for spec in vocoders:
        rep.use_vocoder(spec)
        scores, image_in, image_out = [], [], []
        for i, path in enumerate(files):
            wav = load(path, rep.sample_rate, channels=2)
            out = rep.decode(rep.encode(wav), [i])[0].numpy()
            ref = torch.from_numpy(wav[:, : out.shape[-1]])
            est = torch.from_numpy(out[:, : ref.shape[-1]])
            scores.append([mel_l1(ref[c], est[c], rep.mel) for c in range(2)] + [mr_stft(ref[c], est[c]) for c in range(2)])
            image_in.append(stereo_image(ref.numpy()))
            image_out.append(stereo_image(est.numpy()))
        s, a, b = np.array(scores).mean(0), np.array(image_in).mean(0), np.array(image_out).mean(0)
        print(f"| {spec} | {s[0]:.3f} | {s[1]:.3f} | {s[2]:.3f} | {s[3]:.3f} | {a[0]:.3f} -> {b[0]:.3f} | "
              f"{a[1]:+.2f} -> {b[1]:+.2f} |", flush=True)


def part_image(config: Config, heldout: Path, generated: list[Path]) -> None:
    print("\n## Stereo image: mean [5%, 95%] over clips")
    print("| set | clips | inter-channel correlation | level difference L/R dB | abs level difference dB |")
    print("|---|---|---|---|---|")
    for name, folder in [("real held-out", heldout)] + [(str(g), g) for g in generated]:
        im = stereo_images(folder, config.mel.sample_rate)
        print(f"| {name} | {len(im)} | {spread(im[:, 0])} | {spread(im[:, 1])} | {spread(np.abs(im[:, 1]))} |", flush=True)


def part_seams(run: Path, heldout: Path, seconds: float, clips: int, steps: int, sampler: str | None) -> None:
    pipe = SpectrogramDiffusion.load(run, device="cpu")
    frames, w = pipe.frames_for(seconds), pipe.window
    joins = [start + k for start, k, _ in outpaint_windows(w - w // 8, frames, w)]
    out = pipe.generate(clips, seconds=seconds, steps=steps, sampler=sampler, seed=0)
    at_joins, elsewhere = [], []
    rng = np.random.default_rng(0)
    for wav in out.audio.numpy():  # the mel of the audio a user hears, not the model's own
        flux = spectral_flux(pipe.rep.encode(wav)[0].cpu().numpy())
        at_joins += list(flux_ratios(flux, joins))
        others = [j for j in range(3, len(flux) - 3) if min(abs(j - k) for k in joins) > 8]
        elsewhere += list(flux_ratios(flux, list(rng.choice(others, size=min(50, len(others)), replace=False))))
    real = []
    for path in find_audio_files(heldout):
        flux = spectral_flux(pipe.rep.encode(load(path, pipe.sample_rate, channels=pipe.channels))[0].cpu().numpy())
        real += list(flux_ratios(flux, list(rng.integers(3, len(flux) - 3, size=10))))
    print(f"\n## Seams: {clips} clips of {seconds:g} s from {run} ({len(joins)} joins each, at frames {joins[:3]}...; "
          f"{sampler or pipe.config.default_sampling()[0]} {steps} steps)")
    print("| frames | count | flux ratio mean [5%, 95%] |")
    print("|---|---|---|")
    print(f"| generated, at window joins | {len(at_joins)} | {spread(at_joins)} |")
    print(f"| generated, elsewhere | {len(elsewhere)} | {spread(elsewhere)} |")
    print(f"| real held-out, random frames | {len(real)} | {spread(real)} |")
    inside = np.mean((np.array(at_joins) >= np.percentile(real, 5)) & (np.array(at_joins) <= np.percentile(real, 95)))
    print(f"joins inside the real 5-95% range: {100 * inside:.0f}%; mean at joins / mean real: "
          f"{np.mean(at_joins) / np.mean(real):.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", nargs="+", choices=["layouts", "vocoders", "image", "seams"],
                    default=["layouts", "vocoders", "image", "seams"])
    ap.add_argument("--run", type=Path, required=True, help="a stereo run (its mel and channels are used throughout)")
    ap.add_argument("--heldout", type=Path, required=True)
    ap.add_argument("--generated", type=Path, nargs="*", default=[])
    ap.add_argument("--vocoders", nargs="+", default=["griffinlim", "pghi"])
    ap.add_argument("--clips", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--sampler", default="dpmpp-2m")
    args = ap.parse_args()
    torch.set_grad_enabled(False)
    config = Config.from_toml(args.run / "config.toml")
    print(f"# {describe_hardware(torch.device('cpu'))}, {platform.machine()}, torch {torch.__version__}")
    if "layouts" in args.parts:
        part_layouts(config, args.heldout, args.vocoders, 6 * args.clips)
    if "vocoders" in args.parts:
        part_vocoders(config, args.heldout, args.vocoders, 4 * args.clips)
    if "image" in args.parts:
        part_image(config, args.heldout, args.generated)
    if "seams" in args.parts:
        part_seams(args.run, args.heldout, args.seconds, args.clips, args.steps, args.sampler)
    print(f"\ncommand: python experiments/stereo.py --parts {' '.join(args.parts)} --run {args.run} --heldout "
          f"{args.heldout} --generated {' '.join(map(str, args.generated))} --vocoders {' '.join(args.vocoders)} "
          f"--clips {args.clips} --seconds {args.seconds:g} --steps {args.steps} --sampler {args.sampler}")


if __name__ == "__main__":
    main()

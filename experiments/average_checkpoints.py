#!/usr/bin/env python3
"""Average the EMA weights of a run's checkpoints into one checkpoint: a crude post-hoc EMA (a longer averaging
window than the run's own decay), in the spirit of Karras et al. 2024's post-hoc EMA, to ask whether the main job's
late checkpoints sample better averaged than alone. Everything but the EMA weights (the raw weights, optimizer, RNG,
config, step) is the last checkpoint's, so `audiodiff generate OUT` samples it like any checkpoint of the run.

    python experiments/average_checkpoints.py OUT.safetensors RUN/checkpoints/step_00002250.safetensors \\
        RUN/checkpoints/step_00002500.safetensors RUN/checkpoints/step_00003000.safetensors
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import torch

from audiodiff import checkpoint


def _run_config(meta: dict) -> dict:
    """The checkpoint's config without train.steps, which a run continued to more steps changes."""
    config = dict(meta.get("config") or {})
    config["train"] = {k: v for k, v in (config.get("train") or {}).items() if k != "steps"}
    return config


def average(paths: list[Path]) -> tuple[dict[str, torch.Tensor], dict]:
    """(tensors, metadata) of the last checkpoint with each `ema.` tensor replaced by the mean over all of them.
    The metadata's checksum is stale; `checkpoint.write` computes it anew."""
    last, meta = checkpoint.read(paths[-1])
    ema = checkpoint.split(last, "ema")
    if not ema:
        raise SystemExit(f"{paths[-1]}: no EMA weights (not a training checkpoint)")
    sums = {k: v.double() for k, v in ema.items()}
    for path in paths[:-1]:
        tensors, other = checkpoint.read(path)
        other_ema = checkpoint.split(tensors, "ema")
        if _run_config(other) != _run_config(meta) or other_ema.keys() != sums.keys():
            raise SystemExit(f"{path}: not a checkpoint of the same run as {paths[-1]} (config or weights differ)")
        for k, v in other_ema.items():
            sums[k] += v.double()
    averaged = {k: (total / len(paths)).to(ema[k].dtype) for k, total in sums.items()}
    return {**last, **checkpoint.join("ema", averaged)}, meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path, help="the averaged checkpoint to write (put it in a folder of its own, under "
                    "checkpoints/ beside a copy of the run's config.toml, to sample it as a run)")
    ap.add_argument("checkpoints", type=Path, nargs="+", help="checkpoints of one run, the last one's step kept")
    ap.add_argument("--force", action="store_true", help="replace OUT if it exists")
    args = ap.parse_args()
    if len(args.checkpoints) < 2:
        raise SystemExit("give at least two checkpoints to average")
    if args.out.resolve() in {p.resolve() for p in args.checkpoints}:
        raise SystemExit(f"{args.out}: would overwrite one of the checkpoints it averages")
    if args.out.exists() and not args.force:
        raise SystemExit(f"{args.out}: exists; pass --force to replace it")
    tensors, meta = average(args.checkpoints)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    checkpoint.write(args.out, tensors, meta)
    print(f"wrote {args.out}: the EMA weights of {len(args.checkpoints)} checkpoints averaged, step {meta.get('step')}")
    print("command: python " + shlex.join(sys.argv))


if __name__ == "__main__":
    main()

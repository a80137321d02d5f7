"""`audiodiff inspect DATA_DIR`: one screen before anyone trains. What the folder holds (data/survey.py), and how
long the default run and each preset would take on this machine, from a few real training steps of each."""

from __future__ import annotations

import datetime
import statistics
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from ..config import Config
from ..data.survey import Survey, survey
from ..device import resolve_device, resolve_precision
from ..diffusion.schedule import GaussianSchedule
from ..model.unet import UNet
from ..presets import PRESETS
from ..training.diffusion import TrainState, new_state, train_step

DEFAULT_PRESET = "small"  # what `audiodiff train DATA --out RUN` trains without --preset
GPU_SIZED = ("base",)  # not timed on a CPU: one step takes minutes there


@dataclass(frozen=True)
class Estimate:
    """A preset's training on this device: seconds per optimizer step (None: not timed) and its steps."""

    preset: str
    parameters: int
    steps: int
    step_seconds: float | None

    @property
    def seconds(self) -> float | None:
        return None if self.step_seconds is None else self.steps * self.step_seconds


def estimate(name: str, config: Config, device: torch.device, timed: bool = True) -> Estimate:
    """`config`'s parameters and steps and, when timed, its seconds per step on `device` (one training state built
    for both; untimed, only the network is built to count it)."""
    if not timed:
        return Estimate(name, _parameters(UNet(config.unet)), config.train.steps, None)
    state = new_state(config, device)
    return Estimate(name, _parameters(state.model), config.train.steps, step_seconds(state, config, device))


def _parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def step_seconds(state: TrainState, config: Config, device: torch.device, steps: int = 2) -> float:
    """Seconds per optimizer step of the state's network on `device` (the best of `steps` timed steps after one
    untimed), on random crops of `config`'s shape and batch: what training costs, without the data."""
    schedule = GaussianSchedule.from_config(config.diffusion)
    x0 = torch.rand((config.train.batch_size, *config.crop_shape())) * 2 - 1
    times = []
    for i in range(steps + 1):
        t0 = time.perf_counter()
        train_step(state, config, schedule, x0.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize()
        if i:
            times.append(time.perf_counter() - t0)
    return min(times)


def estimates(device: torch.device, presets: tuple[str, ...] = tuple(PRESETS)) -> list[Estimate]:
    """Each preset's parameters, steps and measured seconds per step on `device` (GPU-sized ones: untimed on a CPU)."""
    return [estimate(name, PRESETS[name], device, timed=device.type != "cpu" or name not in GPU_SIZED)
            for name in presets]


def duration(seconds: float) -> str:
    """3 s, 4.2 min, 5.1 h, 2.3 days."""
    for unit, size in (("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s"


def default_size_line(e: Estimate, now: datetime.datetime) -> str:
    """What a bare `audiodiff train DATA --out RUN` says before its first step on a CPU: the preset it trains and
    why, how long that takes at the step time measured here, when it would end, and where to look instead."""
    seconds = e.seconds
    ends = (now + datetime.timedelta(seconds=seconds)).strftime("%a %H:%M")
    tiny = PRESETS["tiny"].train.steps
    return (f"size: preset {e.preset} ({e.parameters / 1e6:.1f} M parameters), the default without --preset: "
            f"{e.steps} steps x {e.step_seconds:.2f} s measured on this machine = {duration(seconds)}, ending "
            f"about {ends}; --preset tiny ({tiny} steps) or --steps N is shorter, `audiodiff inspect DATA_DIR` "
            "times every preset")


def report(data_dir: Path, found: Survey, timings: list[Estimate] | None, device: torch.device,
           prepare_seconds: float) -> str:
    """The one screen `audiodiff inspect` prints."""
    files, lines = found.files, []
    lines.append(f"{data_dir}: {found.found} audio files, {found.found - len(found.skipped)} usable, "
                 f"{len(found.skipped)} skipped")
    if files:
        rates = ", ".join(f"{r} Hz x {c}" for r, c in sorted(Counter(f.sample_rate for f in files).items()))
        chans = ", ".join(f"{r} x {c}" for r, c in sorted(Counter(f.channels for f in files).items()))
        secs = [f.seconds for f in files]
        rms = [f.rms_db for f in files]
        lines.append(f"  sample rates: {rates}; channels: {chans}")
        lines.append(f"  durations: {min(secs):.2f} to {max(secs):.2f} s (median {statistics.median(secs):.2f}), "
                     f"{sum(secs) / 60:.1f} min in all")
        lines.append(f"  loudness: RMS {min(rms):.0f} to {max(rms):.0f} dBFS (median {statistics.median(rms):.0f})")
    lines.append(_listed("clipping (more than 0.1% of samples at full scale)", found.clipping))
    lines.append(_listed("shorter than a crop (padded with silence)", found.short))
    lines.append(_listed("identical files", [" = ".join(group) for group in found.duplicates]))
    for name, why in found.skipped[:20]:
        lines.append(f"  skipped {name}: {why}")
    if len(found.skipped) > 20:
        lines.append(f"  ... and {len(found.skipped) - 20} more skipped")
    labels = found.labels
    lines.append(f"  labels: {', '.join(f'{k} {v}' for k, v in labels.items())}" if isinstance(labels, dict)
                 else f"  labels: {labels}")
    if timings is not None:
        lines.append(f"training time on this machine ({device}, {resolve_precision(device, 'bf16')} where bf16 is "
                     f"asked), preparing the data about {duration(prepare_seconds)}:")
        for e in timings:
            what = (f"{e.steps} steps x {e.step_seconds:.2f} s = {duration(e.seconds)}" if e.step_seconds is not None
                    else "not timed on a CPU (GPU-sized)")
            default = "   <- `audiodiff train` without --preset" if e.preset == DEFAULT_PRESET else ""
            lines.append(f"  {e.preset:<6} {e.parameters / 1e6:6.2f} M  {what}{default}")
    return "\n".join(lines)


def _listed(what: str, names: list[str]) -> str:
    if not names:
        return f"  {what}: none"
    shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
    return f"  {what}: {len(names)}: {shown}"


def inspect(data_dir: str | Path, label_column: str | None = None, timing: bool = True, device: str = "auto",
            progress: bool = True) -> str:
    """`audiodiff inspect`: the survey of data_dir (with the default preset's mel and crop) and, with timing, the
    measured training time of every preset on this device. Returns the text; writes nothing."""
    data_dir, config = Path(data_dir), PRESETS[DEFAULT_PRESET]
    t0 = time.perf_counter()
    found = survey(data_dir, config.mel, config.data.crop_frames, label_column, progress)
    prepare_seconds = time.perf_counter() - t0  # reading and judging every file once: what preparing costs
    dev = resolve_device(device)
    return report(data_dir, found, estimates(dev) if timing else None, dev, prepare_seconds)

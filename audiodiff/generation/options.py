"""What a generation asks for (Options: sampler, steps, seeds, label, guidance), what it returns (Generated), and how
clips are written (write_clips: WAV + spectrogram PNG, labels in metadata.csv)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from torch import Tensor

from ..audio.io import save
from ..audio.plot import save_spectrogram
from ..config import LABEL_MIXES, MelConfig
from ..data.labels import write_clip_labels
from ..diffusion.sampling import Model, NoiseFn, get_sampler
from ..diffusion.schedule import GaussianSchedule

EACH_LABEL = "*"  # Options.label: each output takes one of the run's labels in turn (SpectrogramDiffusion.clip_label)


@dataclass(frozen=True)
class Options:
    """How the chain runs, shared by `generate` and every edit (each also takes these as keywords, e.g.
    `pipe.vary(wav, 0.4, steps=20)`, which replace the fields of `options`).

    steps: network evaluations of a full chain; sampler: a name in sampling.SAMPLERS (inpaint and extend
    always take RePaint's DDIM steps, interpolate DDIM); None for either: the run's own (`Config.default_sampling`:
    DDIM 50, a distilled run's consistency sampler with its few calls); seed: output i uses seed + i; batch_size:
    outputs computed at once; label: a class of a conditional run (EACH_LABEL: output i takes one of the run's
    labels in turn, what `generate` does on a conditional run when given none); label_mix: how EACH_LABEL draws
    them, "even" or "data" (in the training clips' proportions; None: the run's `[sample] label_mix`,
    SpectrogramDiffusion.clip_label); unconditional: a conditional run
    sampled with its "no label" token instead (learned through label dropout); guidance: classifier-free guidance
    weight w, (1 + w) conditional - w unconditional (None: the run's own, `[sample] guidance`, with a label, 0 for
    a distilled run, which has its guidance folded in; 0: plain conditional);
    guidance_interval (t_lo, t_hi): guide only at those timesteps (None: the run's `[sample] guidance_interval`,
    which may be every step; (0, T) for every step); autoguide_from: a checkpoint file or run
    folder of a weaker model of the same data and chain (an earlier checkpoint of this run, a smaller run) to
    guide with instead (autoguidance, Karras et al. 2024; works without labels), with weight `autoguidance`:
    (1 + w) model - w weak; eta: DDIM's noise (ddim only); progress: progress bars.
    """

    steps: int | None = None
    sampler: str | None = None
    seed: int = 0
    batch_size: int = 8
    label: str | None = None
    label_mix: str | None = None
    unconditional: bool = False
    guidance: float | None = None
    guidance_interval: tuple[float, float] | None = None
    autoguide_from: str | Path | None = None
    autoguidance: float = 1.0
    eta: float | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        if self.sampler is not None:
            get_sampler(self.sampler)
        if (self.steps is not None and self.steps < 1) or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be at least 1, got {self.steps} and {self.batch_size}")
        if self.label_mix is not None and self.label_mix not in LABEL_MIXES:
            raise ValueError(f"label_mix must be one of {', '.join(LABEL_MIXES)}, got {self.label_mix!r}")
        if self.unconditional and self.label is not None:
            raise ValueError(f"label {self.label!r} and unconditional contradict each other")
        if self.guidance_interval is not None and not 0 <= self.guidance_interval[0] <= self.guidance_interval[1]:
            raise ValueError(f"guidance_interval must be (t_lo, t_hi) with 0 <= t_lo <= t_hi, got {self.guidance_interval}")
        if self.guidance_interval is not None and not all(map(math.isfinite, self.guidance_interval)):
            raise ValueError(f"guidance_interval must be finite, got {self.guidance_interval}")
        if self.guidance is not None and not 0 <= self.guidance < math.inf:
            raise ValueError(f"guidance must be >= 0 and finite, got {self.guidance}")
        if not 0 <= self.autoguidance < math.inf:
            raise ValueError(f"autoguidance must be >= 0 and finite, got {self.autoguidance}")
        if self.autoguide_from is not None and self.guidance:
            raise ValueError("autoguidance replaces classifier-free guidance: give guidance 0 or no autoguide_from")
        if self.eta is not None and self.sampler not in (None, "ddim"):
            raise ValueError(f"eta is DDIM's noise; the {self.sampler} sampler takes none")

    def run(self, model: Model, schedule: GaussianSchedule, x: Tensor, steps: int, noise: NoiseFn,
            start: int | None = None) -> Tensor:
        """The chosen sampler over `steps` steps from x (from timestep `start` if given)."""
        extra = {} if self.eta is None else {"eta": self.eta}
        sampler = get_sampler(self.sampler)
        return sampler(model, schedule, x, steps, noise, start=start, progress=self.progress, **extra)


class Generated(NamedTuple):
    audio: Tensor  # float32 [N, T] (mono) or [N, 2, T] (stereo: left, right) in [-1, 1], on CPU
    sample_rate: int
    logmel: Tensor  # float32 [N, C, F, frames], normalized log-mel (stereo: left, right), on CPU


def write_clips(out_dir: Path, generated: Generated, mel: MelConfig, prefix: str = "sample",
                titles: list[str] | None = None, labels: list[str] | None = None) -> list[Path]:
    """Write each clip as out_dir/{prefix}_{i:03d}.wav with a spectrogram PNG beside it; with `labels` (the class of
    each clip), record them in out_dir/metadata.csv (`data.write_clip_labels`), where `evaluate generated` finds
    them and reports the class accuracy."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (wav, logmel) in enumerate(zip(generated.audio, generated.logmel)):
        path = out_dir / f"{prefix}_{i:03d}.wav"
        save(path, wav.numpy(), generated.sample_rate)
        save_spectrogram(path.with_suffix(".png"), logmel[0].numpy(), mel, titles[i] if titles else path.name)
        paths.append(path)
    if labels is not None:
        write_clip_labels(out_dir, {p.name: label for p, label in zip(paths, labels)})
    return paths

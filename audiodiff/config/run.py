"""A diffusion run's configuration: one frozen dataclass per concern, gathered in `Config`. No torch here.

A run is fully described by one `Config`; checkpoints carry it, and loading a run rebuilds
everything from it, so nobody retypes flags to sample from a run.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w

from .base import check_ranges, merge, read_toml


@dataclass(frozen=True)
class MelConfig:
    """Log-mel front end (torchaudio-style names). Values in dB are of the power mel spectrogram.

    The normalized log-mel is `2 * (dB - min_db) / (max_db - min_db) - 1` with dB = 10 log10(P + 10^(min_db / 10)):
    a fixed affine map, so loudness is kept (no per-clip peak normalization).
    """

    sample_rate: int = 16000
    n_fft: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    f_min: float = 0.0
    f_max: float = 8000.0
    min_db: float = -90.0
    max_db: float = 30.0

    def __post_init__(self) -> None:
        check_ranges("mel", self, {"sample_rate": ">=1", "n_fft": ">=1", "hop_length": ">=1", "n_mels": ">=1"})
        if not 0 <= self.f_min < self.f_max <= self.sample_rate / 2:
            raise ValueError(
                f"mel: need 0 <= f_min < f_max <= sample_rate/2, got f_min={self.f_min}, "
                f"f_max={self.f_max}, sample_rate={self.sample_rate}"
            )
        if self.hop_length > self.n_fft:
            raise ValueError(f"mel: hop_length {self.hop_length} > n_fft {self.n_fft}")
        for name in ("f_min", "f_max", "min_db", "max_db"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"mel.{name} = {getattr(self, name)!r}: must be a finite number")
        if self.min_db >= self.max_db:
            raise ValueError(f"mel: min_db {self.min_db} must be below max_db {self.max_db}")


@dataclass(frozen=True)
class UNetConfig:
    """2D UNet on [B, in_channels, H, W]. Level i has `channels * channel_mult[i]` channels."""

    in_channels: int = 1
    channels: int = 64
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    attention_levels: tuple[int, ...] = (2, 3)
    head_channels: int = 64
    dropout: float = 0.0
    # True: each upsampling conv outputs the finer level's channel count instead of keeping its own, so
    # the most expensive conv (the one at full resolution) shrinks by channel_mult[1] / channel_mult[0].
    narrow_upsample: bool = False
    num_classes: int = 0  # > 0: class-conditional, with one extra learned "no label" class for guidance
    # True: the input gets one more channel holding each row's height, -1 (bottom row) to 1 (top row), so that
    # the convolutions know which frequency they look at (a mel bin is not like its neighbour as a pixel is)
    row_position: bool = False
    # levels whose residual blocks are each followed by attention along frequency only: within each time frame,
    # every mel row attends to every other (with sinusoidal row positions), so harmonics far apart in frequency
    # see each other at full resolution for a fraction of full attention's cost. () = none (runs made before it)
    freq_attention_levels: tuple[int, ...] = ()
    # > 1: the input is folded into patch x patch blocks (rows and frames into channels, pixel_unshuffle) before the
    # first conv and unfolded after the last, so every level runs at 1/patch the resolution: a fraction of the work
    # per step for more steps in the same time (experiments/LOG.md, "A patched tiny"). 1 = none (runs made before it)
    patch: int = 1

    def __post_init__(self) -> None:
        check_ranges("unet", self, {"in_channels": ">=1", "channels": ">=1", "channel_mult": ">=1",
                                    "num_res_blocks": ">=1", "head_channels": ">=1", "dropout": "[0,1)",
                                    "num_classes": ">=0", "patch": ">=1"})
        for name in ("attention_levels", "freq_attention_levels"):
            bad = [i for i in getattr(self, name) if not 0 <= i < len(self.channel_mult)]
            if bad:
                raise ValueError(f"unet: {name} {bad} outside 0..{len(self.channel_mult) - 1}")

    @property
    def downsample_factor(self) -> int:
        """What the input's height and width must be multiples of: the patch, halved at each level below the first."""
        return self.patch * 2 ** (len(self.channel_mult) - 1)


PREDICTIONS = ("v", "eps", "x0", "edm")


@dataclass(frozen=True)
class DiffusionConfig:
    """Gaussian Markov chain q(x_t | x_{t-1}) with `num_steps` steps (T)."""

    num_steps: int = 1000
    schedule: str = "cosine"  # "cosine" (Nichol & Dhariwal 2021) or "linear" (Ho et al. 2020)
    beta_start: float = 1e-4  # linear schedule only
    beta_end: float = 0.02  # linear schedule only
    # What the network outputs: "v" (Salimans & Ho 2022, default), "eps" or "x0". With eps, x0 = (x_t -
    # sqrt(1 - alpha_bar) eps) / sqrt(alpha_bar) is ill-conditioned near t = T, and few-step DDIM from a
    # short run diverged in our tests; v is well-scaled at every t.
    # "edm": the network F is preconditioned as in Karras et al. 2022 (schedule.EDM): D = c_skip x + c_out F,
    # trained at log-normal noise levels ln sigma ~ N(p_mean, p_std^2) with EDM's loss weighting, and
    # sampled on this chain like any other run (the chain's t is read as its sigma).
    prediction: str = "v"
    sigma_data: float = 0.5  # edm: the data's standard deviation (normalized log-mels: 0.42-0.53 on our sets)
    p_mean: float = -1.2  # edm: mean of ln sigma in training
    p_std: float = 1.2  # edm: standard deviation of ln sigma in training

    def __post_init__(self) -> None:
        check_ranges("diffusion", self, {"num_steps": ">=1", "beta_start": "(0,1)", "beta_end": "(0,1)",
                                         "sigma_data": ">0", "p_std": ">0"})
        if not math.isfinite(self.p_mean):
            raise ValueError(f"diffusion.p_mean = {self.p_mean!r} is out of range: must be a finite number")
        if self.schedule not in ("cosine", "linear"):
            raise ValueError(f"diffusion: unknown schedule {self.schedule!r} (cosine, linear)")
        if self.prediction not in PREDICTIONS:
            raise ValueError(f"diffusion: unknown prediction {self.prediction!r} ({', '.join(PREDICTIONS)})")


@dataclass(frozen=True)
class DataConfig:
    """How audio files become training examples: random crops of `crop_frames` mel frames."""

    crop_frames: int = 64
    labels: tuple[str, ...] = ()  # class names of a conditional run (index = class id), set from the data
    # training clips per label (index = class id), set from the data; () in runs made before it was recorded
    label_counts: tuple[int, ...] = ()
    # 1: mono, every file mixed down. 2: stereo, a log-mel of the left and of the right channel (representation.py);
    # mono files are copied to both sides, 5.1 is downmixed. The UNet's in_channels must be the same number.
    channels: int = 1

    def __post_init__(self) -> None:
        check_ranges("data", self, {"crop_frames": ">=1"})
        if self.label_counts and (len(self.label_counts) != len(self.labels) or min(self.label_counts) < 0):
            raise ValueError(f"data.label_counts = {list(self.label_counts)!r}: must be one count >= 0 per label "
                             f"({len(self.labels)}), or []")
        if self.channels not in (1, 2):
            raise ValueError(f"data.channels = {self.channels!r} is out of range: must be 1 (mono) or 2 (stereo)")

    def crop_seconds(self, mel: MelConfig) -> float:
        return self.crop_frames * mel.hop_length / mel.sample_rate


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 20000
    # > 0: a time budget in minutes for the whole command (data, training, checkpoints, previews); steps, warm-up, EMA
    # and checkpoints are fitted to it from step times measured on this machine (training/budget.py), then recorded
    minutes: float = 0.0
    # share of the data folder's files held out (seeded) to score the previews at every checkpoint (validation.csv);
    # 0 in runs made before it, which keep training on every file
    holdout: float = 0.0
    batch_size: int = 16  # the global batch: split among torchrun processes, then into grad_accum micro-batches
    grad_accum: int = 1  # micro-batches per optimizer step (same result, less memory)
    lr: float = 2e-4
    warmup_steps: int = 500
    # after warm-up: "constant" (as in ADM) or "cosine" (down to lr_floor x lr at `steps`, then held there)
    lr_schedule: str = "constant"
    lr_floor: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    label_dropout: float = 0.1  # conditional runs: share of examples trained as "no label" (for CFG)
    min_snr_gamma: float = 0.0  # > 0: min-SNR-gamma loss weighting (Hang et al. 2023; 5 is typical); 0: plain MSE
    ema_decay: float = 0.999
    precision: str = "bf16"  # "bf16" or "fp16" autocast (fp32 master weights; fp16 with loss scaling) or "fp32"
    compile: bool = False  # torch.compile the training forward/backward (slow first steps; not part of the model)
    seed: int = 0
    log_every: int = 10
    checkpoint_every: int = 1000
    keep_checkpoints: int = 3
    preview_count: int = 2  # clips sampled and written at each checkpoint
    preview_steps: int = 25  # DDIM steps for those clips

    def __post_init__(self) -> None:
        if self.precision not in ("bf16", "fp16", "fp32"):
            raise ValueError(f"train: unknown precision {self.precision!r} (bf16, fp16, fp32)")
        if self.lr_schedule not in ("constant", "cosine"):
            raise ValueError(f"train: unknown lr_schedule {self.lr_schedule!r} (constant, cosine)")
        check_ranges("train", self, {
            "steps": ">=1", "minutes": ">=0", "holdout": "[0,0.5]", "batch_size": ">=1", "grad_accum": ">=1", "lr": ">0", "warmup_steps": ">=0",
            "lr_floor": "[0,1]", "weight_decay": ">=0", "grad_clip": ">0", "label_dropout": "[0,1)", "min_snr_gamma": ">=0",
            "ema_decay": "[0,1)", "log_every": ">=1", "checkpoint_every": ">=1", "keep_checkpoints": ">=1",
            "preview_count": ">=0", "preview_steps": ">=1"})


DISTILL_METHODS = ("cd", "ct")


@dataclass(frozen=True)
class DistillConfig:
    """How a run was distilled from a teacher run for few-step sampling (`audiodiff distill`); method "" for a
    run trained from scratch.

    The student is the teacher's network, started from its EMA weights, read as a consistency function
    f(x, sigma) (Song et al. 2023): the run's own denoiser, which meets f(x, 0) = x by its parameterization.
    cd: consistency distillation, the target is the student at the teacher's ODE (Euler) step from sigma to r;
    ct: consistency tuning (ECT, Geng et al. 2024), the same noise at the smaller level r, no teacher calls.
    The gap sigma - r starts at sigma (r = 0: the target is x_0) and halves every `halve_every` steps.
    """

    method: str = ""
    teacher: str = ""  # the teacher's checkpoint file, as given
    teacher_sha256: str = ""  # of that file, checked when a distillation continues
    guidance: float = 0.0  # cd on a conditional run: the classifier-free guidance folded into the student
    p_mean: float = -1.1  # ln sigma ~ N(p_mean, p_std^2) for the training levels (ECT's values)
    p_std: float = 2.0
    halve_every: int = 100  # optimizer steps between halvings of the gap sigma - r
    huber_c: float = 0.00054  # the pseudo-Huber loss's c, per element of a normalized log-mel (iCT: 0.00054 sqrt(d))
    sampling_steps: int = 2  # network calls per clip by default (generate --steps overrides)

    def __post_init__(self) -> None:
        check_ranges("distill", self, {"guidance": ">=0", "p_std": ">0", "halve_every": ">=1", "huber_c": ">0",
                                       "sampling_steps": ">=1"})
        if self.method not in ("",) + DISTILL_METHODS:
            raise ValueError(f"distill: unknown method {self.method!r} ({', '.join(DISTILL_METHODS)})")
        if self.method == "ct" and self.guidance > 0:
            raise ValueError("distill: guidance is folded in through the teacher's ODE steps; method ct calls no "
                             "teacher, use cd")


LORA_LAYERS = ("attention", "conv", "all")  # lora.targets: attention projections / every convolution / + linears


@dataclass(frozen=True)
class FinetuneConfig:
    """Where a fine-tuned run started (`audiodiff finetune`); base "" for a run trained from scratch.

    lora_rank 0: every weight was trained and the checkpoints are whole. lora_rank > 0: the base network is frozen
    and only low-rank adapters (lora.py) on `lora_layers`, plus the class embedding of a conditional run, are
    trained and stored; loading such a run reads its base checkpoint and checks base_sha256.
    """

    base: str = ""  # the base run's checkpoint file (absolute path)
    base_sha256: str = ""  # of that checkpoint (its content checksum), checked whenever the base is read
    lora_rank: int = 0
    lora_layers: str = "conv"

    def __post_init__(self) -> None:
        check_ranges("finetune", self, {"lora_rank": ">=0"})
        if self.lora_layers not in LORA_LAYERS:
            raise ValueError(f"finetune: unknown lora_layers {self.lora_layers!r} ({', '.join(LORA_LAYERS)})")
        if self.lora_rank and not (self.base and self.base_sha256):
            raise ValueError("finetune: a LoRA run needs its base checkpoint and its sha256")


LABEL_MIXES = ("even", "data")
SAMPLER_NAMES = ("ddpm", "ddim", "dpmpp-2m", "heun", "consistency")  # diffusion.sampling.SAMPLERS (a test checks)


@dataclass(frozen=True)
class SampleConfig:
    """How clips of a class-conditional run are sampled unless a command says otherwise.

    guidance: classifier-free guidance weight w, (1 + w) conditional - w unconditional (0: plainly conditional);
    guidance_interval (t_lo, t_hi): guide only at those timesteps of the chain (Kynkaanniemi et al. 2024), () at
    every step. The defaults are what runs made before this section existed were sampled with.
    each_label: what `generate` does on a conditional run given no label: each clip one of the labels in turn
    (true), or the learned "no label" class (false: a fine-tune of a conditional base on unlabelled clips).
    label_mix: how those clips' labels are drawn: "even" (clip with seed s takes labels[s % count]) or "data" (in
    the proportions of the training clips, `data.label_counts`: sampling p(label) p(audio | label) is sampling the
    training distribution, so a set of clips can be compared with real ones where the labels are unbalanced).
    sampler, steps: the sampler and network calls a clip takes unless the command says ("" and 0: DDIM with 50); a
    distilled run keeps its consistency sampler and distill.sampling_steps.
    """

    # 1.5 buys most of the class accuracy that guidance can give for a moderate loss of variety, measured on a
    # digits run with experiments/guidance.py (experiments/LOG.md, "Classifier-free guidance").
    guidance: float = 1.5
    guidance_interval: tuple[float, ...] = ()
    each_label: bool = True
    label_mix: str = "even"
    sampler: str = ""
    steps: int = 0

    def __post_init__(self) -> None:
        check_ranges("sample", self, {"guidance": ">=0", "steps": ">=0"})
        if self.sampler and self.sampler not in SAMPLER_NAMES:
            raise ValueError(f"sample.sampler = {self.sampler!r}: must be one of {', '.join(SAMPLER_NAMES)}, or \"\"")
        if self.label_mix not in LABEL_MIXES:
            raise ValueError(f"sample.label_mix = {self.label_mix!r}: must be one of {', '.join(LABEL_MIXES)}")
        if self.guidance_interval:
            check_ranges("sample", self, {"guidance_interval": ">=0"})
            if len(self.guidance_interval) != 2 or self.guidance_interval[0] > self.guidance_interval[1]:
                raise ValueError(f"sample.guidance_interval = {self.guidance_interval!r}: must be [t_lo, t_hi] with "
                                 "t_lo <= t_hi, or [] to guide at every step")

    def interval(self) -> tuple[float, float] | None:
        return (self.guidance_interval[0], self.guidance_interval[1]) if self.guidance_interval else None


@dataclass(frozen=True)
class EmbedderConfig:
    """The small CNN that audiodiff trains for evaluation: a classifier, or contrastive without labels."""

    channels: tuple[int, ...] = (32, 64, 128, 128)
    crop_frames: int = 64
    steps: int = 1500
    batch_size: int = 32
    lr: float = 1e-3
    seed: int = 0
    temperature: float = 0.1  # NT-Xent temperature of the self-supervised objective

    def __post_init__(self) -> None:
        check_ranges("embedder", self, {"channels": ">=1", "crop_frames": ">=1", "steps": ">=1",
                                        "batch_size": ">=1", "lr": ">0", "temperature": ">0"})


@dataclass(frozen=True)
class Config:
    mel: MelConfig = field(default_factory=MelConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    finetune: FinetuneConfig = field(default_factory=FinetuneConfig)
    sample: SampleConfig = field(default_factory=SampleConfig)
    preset: str = "custom"
    vocoder: str = "griffinlim"  # the run's default vocoder spec (see vocoders.build_vocoder); commands may override it

    def __post_init__(self) -> None:
        if self.unet.in_channels != self.data.channels:
            raise ValueError(f"unet.in_channels = {self.unet.in_channels} but data.channels = {self.data.channels}: "
                             "the network takes one input channel per audio channel")
        if self.diffusion.prediction == "edm" and self.train.min_snr_gamma > 0:
            raise ValueError("train.min_snr_gamma: an edm run weights its loss by EDM's own rule; set it to 0")
        if self.distill.method and self.diffusion.prediction == "x0":
            raise ValueError("distill: an x0-prediction network does not meet a consistency function's boundary "
                             "condition f(x, 0) = x; distil a v, eps or edm run")
        if self.distill.guidance > 0 and not self.data.labels:
            raise ValueError("distill.guidance needs a class-conditional run")
        if self.train.preview_steps > self.diffusion.num_steps:
            raise ValueError(f"train.preview_steps = {self.train.preview_steps}: at most diffusion.num_steps "
                             f"({self.diffusion.num_steps}), the steps of the chain")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def check_sizes(self) -> None:
        """ValueError unless the UNet's levels divide the mel bins and the crop: a training run's sizes (the network
        pads what it is given, but padded rows and frames are not audio and waste work)."""
        f, levels = self.unet.downsample_factor, len(self.unet.channel_mult)
        for name, n in (("mel.n_mels", self.mel.n_mels), ("data.crop_frames", self.data.crop_frames)):
            if n % f:
                lo, hi = n // f * f, n // f * f + f
                halve = f"{levels} levels halve it {levels - 1} times"
                why = (f"the UNet folds it into patches of {self.unet.patch}, then its {halve}" if self.unet.patch > 1
                       else f"the UNet's {halve}")
                raise ValueError(f"{name} = {n} is not a multiple of {f} ({why}): use {lo or hi}"
                                 + (f" or {hi}" if lo else ""))

    def crop_shape(self) -> tuple[int, int, int]:
        """(channels, mel bins, frames) of one training crop: what the network sees."""
        return (self.data.channels, self.mel.n_mels, self.data.crop_frames)

    def default_sampling(self) -> tuple[str, int]:
        """(sampler, network calls) a clip of this run takes unless told otherwise: for a distilled run its consistency
        sampler with distill.sampling_steps calls (whatever [sample] it took from its teacher), else [sample] sampler
        and steps where set, else DDIM 50."""
        if self.distill.method:
            return "consistency", self.distill.sampling_steps
        return self.sample.sampler or "ddim", self.sample.steps or 50

    @classmethod
    def from_dict(cls, d: dict[str, Any], base: Config | None = None) -> Config:
        """Build a Config from a (possibly partial) nested dict, on top of `base`. A data.channels given without
        unet.in_channels sets both."""
        channels = d.get("data", {}).get("channels") if isinstance(d.get("data"), dict) else None
        if channels is not None and "in_channels" not in d.get("unet", {}):
            d = {**d, "unet": {**d.get("unet", {}), "in_channels": channels}}
        return merge(base or cls(), d, "")

    def with_channels(self, channels: int) -> Config:
        """This config modelling `channels` audio channels (data.channels and the UNet's in_channels)."""
        return dataclasses.replace(self, data=dataclasses.replace(self.data, channels=channels),
                                   unet=dataclasses.replace(self.unet, in_channels=channels))

    def to_toml(self) -> str:
        return tomli_w.dumps(self.to_dict())

    @classmethod
    def from_toml(cls, path: str | Path, base: Config | None = None) -> Config:
        return read_toml(cls, path, base)

    def replace(self, section: str, **changes: Any) -> Config:
        return dataclasses.replace(self, **{section: dataclasses.replace(getattr(self, section), **changes)})

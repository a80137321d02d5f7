"""What the studio's buttons do, without Gradio: each job makes its clips the way its `audiodiff` command does (the
same library calls with the same settings, so the WAVs are the command's, bit for bit), writes them into a folder
of the studio's own, and returns them with the exact command line that reproduces them."""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

import torch

from ..audio.io import load
from ..audio.mel import MelSpectrogram
from ..audio.plot import save_spectrogram
from ..generation.options import write_clips
from ..generation.pipeline import SpectrogramDiffusion
from ..runfolder import CONFIG_FILE, run_config

MAX_CLIPS = 8  # clips per request (the page has this many players)


@dataclass(frozen=True)
class Result:
    """A job's clips (WAV and spectrogram PNG of each), the command that makes them, and a title for the history."""

    wavs: list[Path]
    pngs: list[Path]
    command: str
    title: str


def _flag(args: list[str], name: str, value: object) -> None:
    """Append `--name value` when the value is set (None: the run's own default, as the command has it)."""
    if value is not None and value != "":
        args += [name, f"{value:g}" if isinstance(value, float) else str(value)]


def _pipe(model: Path, vocoder: str | None, device: str) -> SpectrogramDiffusion:
    pipe = SpectrogramDiffusion.load(model, device=device)
    if vocoder:
        pipe.use_vocoder(vocoder)
    return pipe


def _clips(n: int) -> int:
    if not 1 <= n <= MAX_CLIPS:
        raise ValueError(f"number of clips {n}: must be 1 to {MAX_CLIPS}")
    return n


def generate(model: Path, out: Path, n: int = 1, seed: int = 0, label: str | None = None, sampler: str | None = None,
             steps: int | None = None, guidance: float | None = None, seconds: float | None = None, loop: bool = False,
             vocoder: str | None = None, device: str = "auto", label_mix: str | None = None) -> Result:
    """`audiodiff generate MODEL --out OUT -n N --seed S [...]`: the same calls as the command, into `out`."""
    pipe = _pipe(model, vocoder, device)
    o = pipe.generate_options(steps=steps, sampler=sampler, eta=None, seed=seed, batch_size=8, progress=True,
                              label=label, label_mix=label_mix, unconditional=False, guidance=guidance,
                              guidance_interval=None)
    result = pipe.generate(_clips(n), seconds=seconds, loop=loop, options=o)
    wavs, _ = pipe.write_generated(out, result, o, None)
    args = ["audiodiff", "generate", str(model), "--out", str(out), "-n", str(n), "--seed", str(seed)]
    for name, value in (("--label", label), ("--label-mix", label_mix), ("--sampler", sampler), ("--steps", steps),
                        ("--guidance", guidance), ("--seconds", seconds), ("--vocoder", vocoder)):
        _flag(args, name, value)
    args += ["--loop"] if loop else []
    what = f"{label or 'each label' if pipe.config.data.labels else 'unconditional'}, seed {seed}"
    return Result(wavs, [w.with_suffix(".png") for w in wavs], shlex.join(args), f"{model.name}: {what}")


def _edited(pipe: SpectrogramDiffusion, out: Path, prefix: str, result, args: list[str], title: str) -> Result:
    wavs = write_clips(out, result, pipe.config.mel, prefix=prefix, titles=[title] * len(result.audio))
    return Result(wavs, [w.with_suffix(".png") for w in wavs], shlex.join(args), title)


def edit(model: Path, out: Path, how: str, clip: Path, n: int = 1, seed: int = 0, steps: int | None = None,
         label: str | None = None, guidance: float | None = None, strength: float = 0.5, start: float = 0.0,
         end: float = 0.0, band: tuple[float, float] | None = None, seconds: float = 1.0, other: Path | None = None,
         frames: int = 3, seam: float = 0.25, vocoder: str | None = None, device: str = "auto") -> Result:
    """One of `audiodiff vary | inpaint | continue | interpolate MODEL CLIP [...]` (how; "loop" is `inpaint
    --loop`), the same calls as the command, into `out`."""
    pipe = _pipe(model, vocoder, device)
    wav = load(clip, pipe.sample_rate, channels=pipe.channels)
    args = ["audiodiff", "inpaint" if how == "loop" else how, str(model), str(clip)]
    if how == "vary":
        o = pipe.options(steps=steps, sampler=None, seed=seed, progress=True, label=label, guidance=guidance)
        result = pipe.vary(wav, strength, n=_clips(n), options=o)
        args += ["--strength", f"{strength:g}"]
    elif how == "inpaint":
        result = pipe.inpaint(wav, start, end, band=band, n=_clips(n), steps=steps, seed=seed, resample=1, fade=3,
                              progress=True, label=label, guidance=guidance)
        args += ["--start", f"{start:g}", "--end", f"{end:g}"] + (["--band", f"{band[0]:g}", f"{band[1]:g}"]
                                                                  if band else [])
    elif how == "loop":
        result = pipe.make_loop(wav, seam, n=_clips(n), steps=steps, seed=seed, resample=1, fade=3, progress=True,
                                label=label, guidance=guidance)
        args += ["--loop", "--seam", f"{seam:g}"]
    elif how == "continue":
        result = pipe.extend(wav, seconds, n=_clips(n), steps=steps, seed=seed, overlap=0.5, fade=3, progress=True,
                             label=label, guidance=guidance)
        args += ["--seconds", f"{seconds:g}"]
    elif how == "interpolate":
        if other is None:
            raise ValueError("interpolate needs a second clip")
        o = pipe.options(steps=steps, progress=True, seed=seed)
        result = pipe.interpolate(wav, load(other, pipe.sample_rate, channels=pipe.channels), frames=frames, options=o)
        args += [str(other), "--frames", str(frames)]
    else:
        raise ValueError(f"unknown edit {how!r} (vary, inpaint, loop, continue, interpolate)")
    args += ["--out", str(out), "--seed", str(seed)] + (["-n", str(n)] if how != "interpolate" else [])
    for name, value in (("--steps", steps), ("--label", None if how == "interpolate" else label),
                        ("--guidance", None if how == "interpolate" else guidance), ("--vocoder", vocoder)):
        _flag(args, name, value)
    prefix = {"vary": "vary", "inpaint": "inpaint", "loop": "inpaint", "continue": "continue",
              "interpolate": "interp"}[how]
    return _edited(pipe, out, prefix, result, args, f"{model.name}: {how} {clip.name}")


@dataclass(frozen=True)
class Picture:
    """A clip's spectrogram PNG, `width` pixels wide, and where its time axis lies in it: seconds 0..duration run
    from `left` to `right`, as fractions of the width."""

    png: Path
    width: int
    left: float
    right: float
    duration: float

    def seconds_at(self, x: float) -> float:
        """The time under pixel column x of the picture, clamped to the clip."""
        where = (x / self.width - self.left) / (self.right - self.left)
        return round(min(max(where, 0.0), 1.0) * self.duration, 3)


def spectrogram(model: Path, clip: Path, png: Path) -> Picture:
    """The spectrogram of an input clip as the model sees it (its mel settings, from its config.toml), for the
    before/after view."""
    from PIL import Image

    config = run_config(model)
    if config is None:
        raise ValueError(f"{model}: no {CONFIG_FILE}")
    wav = load(clip, config.mel.sample_rate)  # mono: the picture of the mix
    logmel = MelSpectrogram(config.mel)(torch.from_numpy(wav)[None])[0, 0].numpy()
    left, right = save_spectrogram(png, logmel, config.mel, f"input: {clip.name}")
    with Image.open(png) as im:
        width = im.width
    return Picture(png, width, left, right, logmel.shape[-1] * config.mel.hop_length / config.mel.sample_rate)

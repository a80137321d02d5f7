"""The commands that make audio from a run: generate, and the edits vary, inpaint, continue, interpolate."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import click

from ..config import LABEL_MIXES
from ..diffusion.sampling import SAMPLERS
from .options import DEVICE, FINITE, LORA_SCALE, VOCODER, Finite, friendly


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for sample_NNN.wav and sample_NNN.png.")
@click.option("-n", "n", type=click.IntRange(min=1), default=4, show_default=True, help="Number of clips.")
@click.option("--steps", type=click.IntRange(min=1),
              help="Network evaluations (1..T). Default the run's own ([sample] steps in its config.toml), "
                   "else 50, or a distilled run's (2; 1, 2 and 4 are measured).")
@click.option("--sampler", type=click.Choice(list(SAMPLERS)),
              help="Default the run's own ([sample] sampler), else ddim, or consistency for a distilled run. ddim: "
                   "deterministic (eta 0); ddpm: ancestral Markov chain (use many steps); dpmpp-2m: DPM-Solver++(2M), "
                   "deterministic, good in 10-25 steps; "
                   "heun: Heun on Karras sigmas, 2 network calls per step; consistency: multistep consistency "
                   "sampling, for runs made by `audiodiff distill`.")
@click.option("--eta", type=Finite(0.0, 1.0), help="DDIM noise (0 deterministic, the default; 1 DDPM-like).")
@click.option("--seed", default=0, show_default=True, help="Clip i uses seed + i.")
@click.option("--seconds", type=Finite(min=0.0, min_open=True),
              help="Clip length; default the training crop. Longer clips are sampled window by window: the first "
                   "with --sampler, each later one outpainted with RePaint's DDIM steps.")
@click.option("--loop", is_flag=True, help="Make each clip loop: its end continues into its start, without a seam.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Clips sampled at once.")
@click.option("--label", help="Class to generate, for a class-conditional run (see its config.toml [data] labels). "
                             "Default on such a run: clip i takes the run's labels in turn, "
                             "labels[(seed + i) % count], or as --label-mix says.")
@click.option("--label-mix", type=click.Choice(LABEL_MIXES),
              help="Without --label, how the clips' labels are drawn: even (in turn) or data (in the proportions of "
                   "the training clips, each clip's label fixed by its seed). Default: the run's own ([sample] "
                   "label_mix: even; the notes and drums recipes' data).")
@click.option("--unconditional", is_flag=True,
              help="On a class-conditional run: sample with its learned 'no label' instead of a label per clip.")
@click.option("--guidance", type=Finite(min=0.0),
              help="Classifier-free guidance weight w on a class-conditional run: (1 + w) cond - w uncond; 0 = plain "
                   "conditional. Default: the run's own ([sample] guidance in its config.toml: 1.5, the tiny preset's "
                   "0.5); 0 for a distilled run (its own is folded in).")
@click.option("--guidance-interval", type=(Finite(min=0.0), Finite(min=0.0)),
              metavar="T_LO T_HI",
              help="Guide only at timesteps T_LO..T_HI of the chain (Kynkaanniemi et al. 2024; 0 1000: every step). "
                   "Default: the run's own ([sample] guidance_interval: every step, the tiny preset's 174 884).")
@click.option("--autoguide-from", type=click.Path(path_type=Path),
              help="Autoguidance (Karras et al. 2024; also for unconditional runs): guide away from a weaker model of "
                   "the same data, a checkpoint file or run folder, e.g. an earlier checkpoint of RUN_DIR. "
                   "Replaces classifier-free guidance.")
@click.option("--autoguidance", type=Finite(min=0.0), default=1.0, show_default=True,
              help="Autoguidance weight w: (1 + w) model - w weak model.")
@click.option("--force", is_flag=True, help="Overwrite existing sample_NNN files in --out.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@LORA_SCALE
@VOCODER
@DEVICE
@friendly
def generate(run_dir: Path, out: Path, n: int, steps: int | None, sampler: str | None, eta: float | None, seed: int,
             seconds: float | None, loop: bool, batch_size: int, label: str | None, label_mix: str | None,
             unconditional: bool, guidance: float | None, guidance_interval: tuple[float, float] | None,
             autoguide_from: Path | None, autoguidance: float, force: bool, progress: bool, lora_scale: float | None,
             vocoder: str | None, device: str) -> None:
    """Generate N clips from the newest checkpoint of RUN_DIR (or a checkpoint file). On a class-conditional run
    each clip's label is recorded in OUT/metadata.csv (columns path, label), where `evaluate generated` finds it."""
    pipe = _prepare_output(run_dir, out, "sample", n, force, vocoder, device, lora_scale)
    extra = {"autoguide_from": autoguide_from, "autoguidance": autoguidance} if autoguide_from is not None else {}
    o = pipe.generate_options(steps=steps, sampler=sampler, eta=eta, seed=seed, batch_size=batch_size,
                              progress=progress, label=label, label_mix=label_mix, unconditional=unconditional,
                              guidance=guidance, guidance_interval=guidance_interval, **extra)
    t0 = time.perf_counter()
    result = pipe.generate(n, seconds=seconds, loop=loop, options=o)
    elapsed = time.perf_counter() - t0
    paths, recorded = pipe.write_generated(out, result, o, autoguidance if autoguide_from is not None else None)
    if not recorded:
        click.echo(f"note: {out / 'metadata.csv'} has no 'path' column, so the clips' labels were not recorded "
                   "there (`evaluate generated` reports no class accuracy for them)", err=True)
    audio_s = result.audio.shape[-1] / result.sample_rate * n
    click.echo(f"wrote {len(paths)} clips ({audio_s:.1f} s of audio) to {out} in {elapsed:.1f} s "
               f"on {pipe.device} ({elapsed / audio_s:.2f} s per second of audio)")


def _edit_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by the editing commands (vary, inpaint, continue, interpolate)."""
    options = [
        click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
                     help="Folder for the output WAVs and their spectrogram PNGs."),
        click.option("--steps", type=click.IntRange(min=1),
                     help="Network evaluations of a full chain (1..T). Default the run's own ([sample] steps), "
                          "else 50, or a distilled run's."),
        click.option("--seed", default=0, show_default=True, help="Output i uses seed + i."),
        click.option("--force", is_flag=True, help="Overwrite existing output files in --out."),
        click.option("--progress/--no-progress", default=True, help="Show progress bars."),
        LORA_SCALE,
        VOCODER,
        DEVICE,
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def _run_and_input(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.argument("in_audio", type=click.Path(path_type=Path, dir_okay=False))(fn)
    return click.argument("run_dir", type=click.Path(path_type=Path))(fn)


def _conditioning(fn: Callable[..., Any]) -> Callable[..., Any]:
    fn = click.option("--guidance", type=Finite(min=0.0),
                      help="Classifier-free guidance weight w with --label. Default: the run's own ([sample] guidance "
                           "in its config.toml: 1.5, the tiny preset's 0.5).")(fn)
    fn = click.option("--label", help="Class to steer towards, for a class-conditional run.")(fn)
    return click.option("-n", "n", type=click.IntRange(min=1), default=1, show_default=True, help="Number of outputs (different seeds).")(fn)


def _prepare_output(run_dir: Path, out: Path, prefix: str, n: int, force: bool, vocoder: str | None, device: str,
                    lora_scale: float | None = None):
    """Refuse to overwrite PREFIX_NNN.wav, check --out could be written, load the run with the chosen vocoder."""
    from ..files import check_writable, refuse_overwrite
    from ..generation.pipeline import SpectrogramDiffusion

    refuse_overwrite(*(out / f"{prefix}_{i:03d}.wav" for i in range(n)), force=force)
    check_writable(out)
    pipe = SpectrogramDiffusion.load(run_dir, device=device, lora_scale=lora_scale)
    if vocoder:
        pipe.use_vocoder(vocoder)
    return pipe


def _finish_edit(out: Path, prefix: str, result: Any, pipe: Any, title: str, t0: float, seed: int) -> None:
    from ..generation.options import write_clips

    # interpolate: frame i (its seed only sets the vocoder's phase); the edits: seed + i
    what, first = ("frame", 0) if prefix == "interp" else ("seed", seed)
    titles = [f"{title}, {what} {first + i}" for i in range(len(result.audio))]
    paths = write_clips(out, result, pipe.config.mel, prefix=prefix, titles=titles)
    seconds = result.audio.shape[-1] / result.sample_rate
    click.echo(f"wrote {len(paths)} clips of {seconds:.2f} s to {out} ({prefix}_NNN.wav + .png) in "
               f"{time.perf_counter() - t0:.1f} s on {pipe.device}")


@click.command()
@_run_and_input
@click.option("--strength", type=Finite(0.0, 1.0), default=0.5, show_default=True,
              help="How far into the noise chain to go: 0 returns the input, 1 an unrelated sample.")
@click.option("--sampler", type=click.Choice(list(SAMPLERS)),
              help="Sampler. Default the run's own ([sample] sampler), else ddim, or a distilled run's consistency.")
@_conditioning
@_edit_options
@friendly
def vary(run_dir: Path, in_audio: Path, strength: float, sampler: str | None, n: int, label: str | None,
         guidance: float | None, out: Path, steps: int | None, seed: int, force: bool, progress: bool,
         lora_scale: float | None, vocoder: str | None, device: str) -> None:
    """Variations of IN_AUDIO (SDEdit): noise its mel to STRENGTH x T, then denoise with RUN_DIR's model.

    Uses about STRENGTH x STEPS network evaluations. Writes vary_NNN.wav/png to --out.
    """
    from ..audio.io import load

    pipe = _prepare_output(run_dir, out, "vary", n, force, vocoder, device, lora_scale)
    t0 = time.perf_counter()
    o = pipe.options(steps=steps, sampler=sampler, seed=seed, progress=progress, label=label, guidance=guidance)
    result = pipe.vary(load(in_audio, pipe.sample_rate, channels=pipe.channels), strength, n=n, options=o)
    _finish_edit(out, "vary", result, pipe, f"{in_audio.name}, strength {strength:g}, {o.sampler} {o.steps}", t0, seed)


@click.command()
@_run_and_input
@click.option("--start", type=FINITE, help="Start of the span to regenerate, seconds.")
@click.option("--end", type=FINITE, help="End of the span to regenerate, seconds.")
@click.option("--band", type=(FINITE, FINITE), help="Only regenerate mel bins between these frequencies (Hz, Hz).")
@click.option("--loop", is_flag=True,
              help="Instead of --start/--end: make IN_AUDIO loop, regenerating --seam seconds around the join of its "
                   "end to its start, so that on repeat it has no seam.")
@click.option("--seam", type=Finite(min=0.0, min_open=True), default=0.25, show_default=True,
              help="With --loop: seconds regenerated around the join.")
@click.option("--resample", type=click.IntRange(min=1), default=1, show_default=True,
              help="RePaint resampling: redo each step this many times, going back up the chain in between.")
@click.option("--fade", type=click.IntRange(min=0), default=3, show_default=True, help="Frames (hops) of crossfade at each edge of the span.")
@_conditioning
@_edit_options
@friendly
def inpaint(run_dir: Path, in_audio: Path, start: float | None, end: float | None, band: tuple[float, float] | None,
            loop: bool, seam: float, resample: int, fade: int, n: int, label: str | None, guidance: float | None,
            out: Path, steps: int | None, seed: int, force: bool, progress: bool, lora_scale: float | None,
            vocoder: str | None, device: str) -> None:
    """Regenerate IN_AUDIO between --start and --end seconds and keep the rest; or, with --loop, its seam.

    The kept mel is re-imposed at every step. For a time span, the output's samples outside it are the
    input's own, crossfaded over --fade hops at each edge. Writes inpaint_NNN.wav/png to --out.
    """
    from ..audio.io import load

    if (start is not None, end is not None) != ((False, False) if loop else (True, True)):
        raise click.UsageError("give --start and --end, or --loop (without them)")
    if loop and band:
        raise click.UsageError("--band is for a --start/--end span, not --loop")
    pipe = _prepare_output(run_dir, out, "inpaint", n, force, vocoder, device, lora_scale)
    t0 = time.perf_counter()
    clip = load(in_audio, pipe.sample_rate, channels=pipe.channels)
    same = dict(n=n, steps=steps, seed=seed, resample=resample, fade=fade, progress=progress, label=label,
                guidance=guidance)
    if loop:
        result = pipe.make_loop(clip, seam, **same)
        what = f"{in_audio.name}, made a loop ({seam:g} s seam regenerated)"
    else:
        result = pipe.inpaint(clip, start, end, band=band, **same)
        what = f"{in_audio.name}, {start:g}-{end:g} s{f' {band[0]:g}-{band[1]:g} Hz' if band else ''} regenerated"
    _finish_edit(out, "inpaint", result, pipe, what, t0, seed)


@click.command("continue")
@_run_and_input
@click.option("--seconds", type=FINITE, required=True, help="How many seconds to add after the input.")
@click.option("--overlap", default=0.5, show_default=True,
              help="Fraction of each window taken from what came before (the context the model sees).")
@click.option("--fade", type=click.IntRange(min=0), default=3, show_default=True, help="Frames (hops) of crossfade into the continuation.")
@_conditioning
@_edit_options
@friendly
def continue_(run_dir: Path, in_audio: Path, seconds: float, overlap: float, fade: int, n: int, label: str | None,
              guidance: float | None, out: Path, steps: int | None, seed: int, force: bool, progress: bool,
              lora_scale: float | None, vocoder: str | None, device: str) -> None:
    """Continue IN_AUDIO by --seconds: outpaint window by window, each overlapping the last.

    The output starts with the input's own samples. Writes continue_NNN.wav/png to --out.
    """
    from ..audio.io import load

    pipe = _prepare_output(run_dir, out, "continue", n, force, vocoder, device, lora_scale)
    t0 = time.perf_counter()
    clip = load(in_audio, pipe.sample_rate, channels=pipe.channels)
    result = pipe.extend(clip, seconds, n=n, steps=steps, seed=seed, overlap=overlap,
                         fade=fade, progress=progress, label=label, guidance=guidance)
    _finish_edit(out, "continue", result, pipe, f"{in_audio.name} + {seconds:g} s", t0, seed)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("audio_a", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("audio_b", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--frames", type=click.IntRange(min=2), default=5, show_default=True, help="Clips from A to B, both ends included.")
@_edit_options
@friendly
def interpolate(run_dir: Path, audio_a: Path, audio_b: Path, frames: int, out: Path, steps: int | None, seed: int,
                force: bool, progress: bool, lora_scale: float | None, vocoder: str | None, device: str) -> None:
    """Morph AUDIO_A into AUDIO_B: invert both to noise with DDIM, interpolate (slerp), decode.

    Deterministic (--seed only sets the vocoder's phase). B is cut or padded to A's length.
    Writes interp_NNN.wav/png to --out.
    """
    from ..audio.io import load

    pipe = _prepare_output(run_dir, out, "interp", frames, force, vocoder, device, lora_scale)
    t0 = time.perf_counter()
    o = pipe.options(steps=steps, progress=progress, seed=seed)
    result = pipe.interpolate(load(audio_a, pipe.sample_rate, channels=pipe.channels),
                              load(audio_b, pipe.sample_rate, channels=pipe.channels), frames=frames, options=o)
    _finish_edit(out, "interp", result, pipe, f"{audio_a.name} -> {audio_b.name}, DDIM {o.steps}", t0, seed)

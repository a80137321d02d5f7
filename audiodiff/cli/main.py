"""Command line: parse, build the config, call the library. No math here."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import click

from ..config import DISTILL_METHODS, LABEL_MIXES, LORA_LAYERS, PREDICTIONS
from ..diffusion.sampling import SAMPLERS
from ..presets import PRESETS
from .options import DEVICE, LOG, LORA_SCALE, VOCODER, WORKERS, friendly
from .tools import evaluate, vocoder


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(package_name="audiodiff")
def main() -> None:
    """audiodiff: diffusion models on log-mel spectrograms.

    \b
    Typical use:
      audiodiff train samples/notes/train --out runs/notes --preset tiny
      audiodiff generate runs/notes --out clips -n 4
      audiodiff reconstruct some.wav --out roundtrip.wav
    """


@main.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Run directory: config, checkpoints, loss log, previews. An existing run is continued.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="TOML file with [mel] [unet] [diffusion] [data] [train] tables overriding the preset.")
@click.option("--preset", "preset_name", type=click.Choice(list(PRESETS)),
              help="Model/training size. Default: small (new runs) or the run's own (continuing).")
@click.option("--steps", type=int, help="Total optimizer steps (continuing a run may raise it).")
@click.option("--batch-size", type=int, help="Clips per optimizer step (all processes together).")
@click.option("--grad-accum", type=int, help="Split each batch into this many micro-batches (less memory, same result).")
@click.option("--lr", type=float, help="Peak learning rate (AdamW).")
@click.option("--seed", type=int, help="Seed for init, data order, timesteps and noise.")
@click.option("--precision", type=click.Choice(["bf16", "fp16", "fp32"]),
              help="bf16 autocast (default; fp16 on GPUs without bf16), fp16 autocast with loss scaling, or fp32.")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="torch.compile the training step: the first steps take a minute or more to compile; "
                   "see benchmarks/README.md for what it gains.")
@click.option("--prediction", type=click.Choice(list(PREDICTIONS)),
              help="What the network predicts (default v); edm: Karras et al. 2022 preconditioning and noise "
                   "levels. Recorded in the checkpoint.")
@click.option("--min-snr", "min_snr_gamma", type=float, help="min-SNR-gamma loss weighting (e.g. 5); 0 = plain MSE.")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints (with preview clips).")
@click.option("--vocoder", help="The run's default vocoder for previews and later commands, e.g. pghi.")
@click.option("--channels", type=click.Choice(["1", "2"]),
              help="1: mono (default; files are mixed down); 2: stereo, a log-mel per side (mono files are "
                   "copied to both sides, more channels mixed down). Recorded in the run.")
@click.option("--label-column", help="Class-conditional on this column of DATA_DIR's (or its parent's) metadata.csv.")
@click.option("--unconditional", is_flag=True, help="Ignore class labels (first-level subfolders) even if present.")
@click.option("--resume", is_flag=True, help="Require an existing run in --out and continue it exactly.")
@WORKERS
@LOG
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@DEVICE
@friendly
def train(data_dir: Path, out: Path, config_file: Path | None, preset_name: str | None, steps: int | None,
          batch_size: int | None, grad_accum: int | None, lr: float | None, seed: int | None, precision: str | None,
          compile_: bool | None, prediction: str | None, min_snr_gamma: float | None, checkpoint_every: int | None, vocoder: str | None,
          channels: str | None, label_column: str | None, unconditional: bool, resume: bool, workers: int | None,
          log_to: str, progress: bool, device: str) -> None:
    """Train a spectrogram diffusion model on every audio file under DATA_DIR (recursive).

    Files of any format soundfile reads (wav, flac, ogg, ...), any sample rate and channel count
    are resampled and mixed to mono (or to stereo with --channels 2), cut into random crops, and turned
    into log-mels once (cached in OUT/cache as memory-mapped shards; files added to DATA_DIR later are
    the only ones prepared again). Re-running on an existing OUT continues it exactly where its last checkpoint left it.
    """
    from ..run.train import train as train_run

    train_changes = dict(steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, seed=seed,
                         precision=precision, compile=compile_, min_snr_gamma=min_snr_gamma,
                         checkpoint_every=checkpoint_every)
    overrides = {"train": {k: v for k, v in train_changes.items() if v is not None},
                 "diffusion": {"prediction": prediction} if prediction else {},
                 "data": {"channels": int(channels)} if channels else {}}
    if unconditional and label_column:
        raise ValueError("--unconditional and --label-column contradict each other")
    if resume and not (out / "config.toml").exists():
        raise ValueError(f"{out}: --resume given but there is no run here (no config.toml)")
    train_run(data_dir, out, config_file=config_file, preset_name=preset_name, overrides=overrides,
              label_column=label_column, unconditional=unconditional, vocoder=vocoder, resume=resume, device=device,
              workers=workers, log_to=log_to, progress=progress, log=click.echo, warn=lambda m: click.echo(m, err=True))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="The distilled run's directory. An existing one (from the same teacher) is continued.")
@click.option("--method", type=click.Choice(list(DISTILL_METHODS)),
              help="ct: consistency tuning (ECT), no teacher calls; cd: consistency distillation along the teacher's "
                   "ODE, folding in guidance. Default: ct for an unconditional run, cd for a conditional one.")
@click.option("--guidance", type=click.FloatRange(min=0.0),
              help="cd on a conditional run: classifier-free guidance weight folded into the student (default 1.5).")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="TOML file with [train] and [distill] tables overriding the defaults.")
@click.option("--steps", type=int, help="Optimizer steps of the distillation (default 300).")
@click.option("--batch-size", type=int, help="Clips per optimizer step (default: the teacher's).")
@click.option("--lr", type=float, help="Learning rate (AdamW; default 1e-4, no warm-up).")
@click.option("--seed", type=int, help="Seed for data order, noise levels and noise.")
@click.option("--halve-every", type=int, help="Steps between halvings of the gap between paired noise levels (default 100).")
@click.option("--label-column", help="For a conditional teacher: the column of DATA_DIR's metadata.csv it was trained on.")
@WORKERS
@LOG
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@DEVICE
@friendly
def distill(run_dir: Path, data_dir: Path, out: Path, method: str | None, guidance: float | None, config_file: Path | None,
            steps: int | None, batch_size: int | None, lr: float | None, seed: int | None, halve_every: int | None,
            label_column: str | None, workers: int | None, log_to: str, progress: bool, device: str) -> None:
    """Distil RUN_DIR (a trained run or a checkpoint file) into a run that samples in 1-4 network calls.

    The student starts as RUN_DIR's EMA network and trains as a consistency model on crops of DATA_DIR's audio
    (usually the teacher's training folder). The result is a run like any other: `generate` samples it with the
    consistency sampler in 2 calls by default (--steps 1|2|4), and vary, inpaint and continue take it.
    """
    from ..run.tune import distill as distill_run

    train_changes = dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed)
    overrides = {"train": {k: v for k, v in train_changes.items() if v is not None},
                 "distill": {"halve_every": halve_every} if halve_every is not None else {}}
    distill_run(run_dir, data_dir, out, method=method, guidance=guidance, config_file=config_file,
                overrides=overrides, label_column=label_column, device=device, workers=workers, log_to=log_to,
                progress=progress, log=click.echo, warn=lambda m: click.echo(m, err=True))


@main.command()
@click.argument("base_run", type=click.Path(path_type=Path))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="The fine-tuned run's directory. An existing one (from the same base) is continued.")
@click.option("--lora", "lora_rank", type=click.IntRange(min=1),
              help="Train rank-R low-rank adapters (LoRA) instead of every weight; the run stores only them and "
                   "a reference (path, sha256) to BASE_RUN, which must stay in place (or merge the run).")
@click.option("--lora-layers", type=click.Choice(list(LORA_LAYERS)),
              help="Layers that get adapters: attention projections, every convolution (default), or all layers.")
@click.option("--new-labels", is_flag=True,
              help="Add the data's labels that BASE_RUN was not trained on (its own labels keep their meaning).")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="TOML file with a [train] table overriding the fine-tune defaults.")
@click.option("--steps", type=int, help="Optimizer steps of the fine-tune (default 300).")
@click.option("--batch-size", type=int, help="Clips per optimizer step (default: the base's).")
@click.option("--lr", type=float, help="Learning rate (AdamW; default 1e-4, or 1e-3 with --lora).")
@click.option("--seed", type=int, help="Seed for adapters' init, data order, timesteps and noise.")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints (with preview clips; default 100).")
@click.option("--label-column", help="Labels from this column of DATA_DIR's metadata.csv instead of subfolders.")
@click.option("--stop-copies", type=click.FloatRange(0.0, 1.0),
              help="Measure memorization at each checkpoint and stop once more than this share of sampled clips "
                   "are near-copies of training clips (e.g. 0.25; new clips give about 0.05).")
@WORKERS
@LOG
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@DEVICE
@friendly
def finetune(base_run: Path, data_dir: Path, out: Path, lora_rank: int | None, lora_layers: str | None,
             new_labels: bool, config_file: Path | None, steps: int | None, batch_size: int | None, lr: float | None,
             seed: int | None, checkpoint_every: int | None, label_column: str | None, stop_copies: float | None,
             workers: int | None, log_to: str, progress: bool, device: str) -> None:
    """Fine-tune BASE_RUN (a trained run or checkpoint file) on the audio under DATA_DIR.

    Starts from BASE_RUN's EMA weights with its mel, model and noise chain; trains, checkpoints, previews and
    resumes like `train`. Labels (subfolders) must be BASE_RUN's, or new ones with --new-labels. Ends with a
    memorization check: the share of sampled clips that are near-copies of a training clip. The result is a
    run like any other for generate and the editing commands (--lora-scale for a LoRA run). BASE_RUN is only
    read.
    """
    from ..run.tune import finetune as finetune_run

    train_changes = dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every)
    overrides = {"train": {k: v for k, v in train_changes.items() if v is not None}}
    finetune_run(base_run, data_dir, out, lora_rank=lora_rank, lora_layers=lora_layers, new_labels=new_labels,
                 config_file=config_file, overrides=overrides, label_column=label_column, stop_copies=stop_copies,
                 device=device,
                 workers=workers, log_to=log_to, progress=progress, log=click.echo,
                 warn=lambda m: click.echo(m, err=True))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="New run directory for the merged weights.")
@click.option("--lora-scale", type=float, default=1.0, show_default=True, help="Scale of the adapters' update to bake in.")
@friendly
def merge(run_dir: Path, out: Path, lora_scale: float) -> None:
    """Bake a LoRA run's adapters into its base's weights: a whole run in --out that needs no base."""
    from ..run.share import merge as merge_run

    merge_run(run_dir, out, lora_scale, log=click.echo)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="New folder for the exported run.")
@click.option("--half/--full", default=True, show_default=True, help="Store the weights as float16 (half the size).")
@friendly
def export(run_dir: Path, out: Path, half: bool) -> None:
    """A small generation-only copy of RUN_DIR for sharing: its config and EMA weights (a LoRA run's merged).

    generate, the editing commands and finetune (as a base) take it; train cannot continue it.
    """
    from ..run.share import export as export_run

    export_run(run_dir, out, half, log=click.echo)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for sample_NNN.wav and sample_NNN.png.")
@click.option("-n", "n", type=click.IntRange(min=1), default=4, show_default=True, help="Number of clips.")
@click.option("--steps", type=click.IntRange(min=1),
              help="Network evaluations (1..T). Default 50, or a distilled run's own (2; 1, 2 and 4 are measured).")
@click.option("--sampler", type=click.Choice(list(SAMPLERS)),
              help="Default ddim, or consistency for a distilled run. ddim: deterministic (eta 0); ddpm: ancestral "
                   "Markov chain (use many steps); dpmpp-2m: DPM-Solver++(2M), deterministic, good in 10-25 steps; "
                   "heun: Heun on Karras sigmas, 2 network calls per step; consistency: multistep consistency "
                   "sampling, for runs made by `audiodiff distill`.")
@click.option("--eta", type=click.FloatRange(0.0, 1.0), help="DDIM noise (0 deterministic, the default; 1 DDPM-like).")
@click.option("--seed", default=0, show_default=True, help="Clip i uses seed + i.")
@click.option("--seconds", type=click.FloatRange(min=0.0, min_open=True),
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
@click.option("--guidance", type=click.FloatRange(min=0.0),
              help="Classifier-free guidance weight w on a class-conditional run: (1 + w) cond - w uncond; 0 = plain "
                   "conditional. Default: the run's own ([sample] guidance in its config.toml: 1.5, the tiny preset's "
                   "0.5); 0 for a distilled run (its own is folded in).")
@click.option("--guidance-interval", type=(click.FloatRange(min=0.0), click.FloatRange(min=0.0)),
              metavar="T_LO T_HI",
              help="Guide only at timesteps T_LO..T_HI of the chain (Kynkaanniemi et al. 2024; 0 1000: every step). "
                   "Default: the run's own ([sample] guidance_interval: every step, the tiny preset's 174 884).")
@click.option("--autoguide-from", type=click.Path(path_type=Path),
              help="Autoguidance (Karras et al. 2024; also for unconditional runs): guide away from a weaker model of "
                   "the same data, a checkpoint file or run folder, e.g. an earlier checkpoint of RUN_DIR. "
                   "Replaces classifier-free guidance.")
@click.option("--autoguidance", type=click.FloatRange(min=0.0), default=1.0, show_default=True,
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
    from ..data.labels import clip_labels_recorded
    from ..generation.pipeline import write_clips

    pipe = _prepare_output(run_dir, out, "sample", n, force, vocoder, device, lora_scale)
    extra = {"autoguide_from": autoguide_from, "autoguidance": autoguidance} if autoguide_from is not None else {}
    o = pipe.generate_options(steps=steps, sampler=sampler, eta=eta, seed=seed, batch_size=batch_size,
                              progress=progress, label=label, label_mix=label_mix, unconditional=unconditional,
                              guidance=guidance, guidance_interval=guidance_interval, **extra)
    t0 = time.perf_counter()
    result = pipe.generate(n, seconds=seconds, loop=loop, options=o)
    elapsed = time.perf_counter() - t0
    what = f", guidance {o.guidance:g}" if o.guidance else ""
    what += f" at t {o.guidance_interval[0]:g}..{o.guidance_interval[1]:g}" if o.guidance and o.guidance_interval else ""
    what += f", autoguidance {autoguidance:g}" if autoguide_from is not None else ""
    labels = [pipe.clip_label(o, seed + i) for i in range(n)] if o.label is not None else None
    titles = [f"{o.sampler} {o.steps} steps, seed {seed + i}, step {pipe.step}"
              + (f", {labels[i]}" if labels else "") + what for i in range(n)]
    paths = write_clips(out, result, pipe.config.mel, titles=titles, labels=labels)
    if labels and not clip_labels_recorded(out, [p.name for p in paths]):
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
                     help="Network evaluations of a full chain (1..T). Default 50, or a distilled run's own."),
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
    fn = click.option("--guidance", type=click.FloatRange(min=0.0),
                      help="Classifier-free guidance weight w with --label. Default: the run's own ([sample] guidance "
                           "in its config.toml: 1.5, the tiny preset's 0.5).")(fn)
    fn = click.option("--label", help="Class to steer towards, for a class-conditional run.")(fn)
    return click.option("-n", "n", type=click.IntRange(min=1), default=1, show_default=True, help="Number of outputs (different seeds).")(fn)


def _prepare_output(run_dir: Path, out: Path, prefix: str, n: int, force: bool, vocoder: str | None, device: str,
                    lora_scale: float | None = None):
    """Refuse to overwrite PREFIX_NNN.wav, check --out is writable, load the run with the chosen vocoder."""
    from ..generation.pipeline import SpectrogramDiffusion
    from ..run.setup import writable_dir

    existing = [out / f"{prefix}_{i:03d}.wav" for i in range(n) if (out / f"{prefix}_{i:03d}.wav").exists()]
    if existing and not force:
        raise ValueError(f"{existing[0]}: exists; pass --force to overwrite or choose another --out")
    writable_dir(out)
    pipe = SpectrogramDiffusion.load(run_dir, device=None if device == "auto" else device, lora_scale=lora_scale)
    if vocoder:
        pipe.use_vocoder(vocoder)
    return pipe


def _finish_edit(out: Path, prefix: str, result: Any, pipe: Any, title: str, t0: float, seed: int) -> None:
    from ..generation.pipeline import write_clips

    # interpolate: frame i (its seed only sets the vocoder's phase); the edits: seed + i
    what, first = ("frame", 0) if prefix == "interp" else ("seed", seed)
    titles = [f"{title}, {what} {first + i}" for i in range(len(result.audio))]
    paths = write_clips(out, result, pipe.config.mel, prefix=prefix, titles=titles)
    seconds = result.audio.shape[-1] / result.sample_rate
    click.echo(f"wrote {len(paths)} clips of {seconds:.2f} s to {out} ({prefix}_NNN.wav + .png) in "
               f"{time.perf_counter() - t0:.1f} s on {pipe.device}")


@main.command()
@_run_and_input
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="How far into the noise chain to go: 0 returns the input, 1 an unrelated sample.")
@click.option("--sampler", type=click.Choice(list(SAMPLERS)), help="Sampler. Default ddim, or a distilled run's consistency.")
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


@main.command()
@_run_and_input
@click.option("--start", type=float, required=True, help="Start of the span to regenerate, seconds.")
@click.option("--end", type=float, required=True, help="End of the span to regenerate, seconds.")
@click.option("--band", type=(float, float), help="Only regenerate mel bins between these frequencies (Hz, Hz).")
@click.option("--resample", type=click.IntRange(min=1), default=1, show_default=True,
              help="RePaint resampling: redo each step this many times, going back up the chain in between.")
@click.option("--fade", type=click.IntRange(min=0), default=3, show_default=True, help="Frames (hops) of crossfade at each edge of the span.")
@_conditioning
@_edit_options
@friendly
def inpaint(run_dir: Path, in_audio: Path, start: float, end: float, band: tuple[float, float] | None,
            resample: int, fade: int, n: int, label: str | None, guidance: float | None, out: Path, steps: int | None, seed: int,
            force: bool, progress: bool, lora_scale: float | None, vocoder: str | None, device: str) -> None:
    """Regenerate IN_AUDIO between --start and --end seconds and keep the rest.

    The kept mel is re-imposed at every step. For a time span, the output's samples outside it are the
    input's own, crossfaded over --fade hops at each edge. Writes inpaint_NNN.wav/png to --out.
    """
    from ..audio.io import load

    pipe = _prepare_output(run_dir, out, "inpaint", n, force, vocoder, device, lora_scale)
    t0 = time.perf_counter()
    clip = load(in_audio, pipe.sample_rate, channels=pipe.channels)
    result = pipe.inpaint(clip, start, end, band=band, n=n, steps=steps, seed=seed,
                          resample=resample, fade=fade, progress=progress, label=label, guidance=guidance)
    what = f" {band[0]:g}-{band[1]:g} Hz" if band else ""
    _finish_edit(out, "inpaint", result, pipe, f"{in_audio.name}, {start:g}-{end:g} s{what} regenerated", t0, seed)


@main.command("continue")
@_run_and_input
@click.option("--seconds", type=float, required=True, help="How many seconds to add after the input.")
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


@main.command()
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


@main.command()
@click.argument("in_audio", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Output WAV.")
@click.option("--run", "run_dir", type=click.Path(path_type=Path),
              help="Use this run's mel config (default: a trained --vocoder's, else the built-in default).")
@click.option("--seed", default=0, show_default=True, help="Seed of the initial phase.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@VOCODER
@DEVICE
@friendly
def reconstruct(in_audio: Path, out: Path, run_dir: Path | None, seed: int, force: bool, vocoder: str | None,
                device: str) -> None:
    """Round-trip IN_AUDIO through the mel front end and the vocoder, to hear what the mel keeps.

    Prints mel L1, multi-resolution STFT distance and SNR of the result against the input
    (resampled to the mel's sample rate, mono), and writes a spectrogram PNG beside --out.
    """
    from ..audio.io import load, save
    from ..audio.mel import MelSpectrogram
    from ..audio.metrics import mel_l1, mr_stft, snr_db
    from ..audio.plot import save_spectrogram
    from ..device import resolve_device
    from ..run.setup import writable_dir
    from ..vocoders.registry import build_vocoder, describe
    from ..vocoders.registry import mel_config as mel_config_of
    from ..vocoders.registry import reconstruct as roundtrip

    if out.exists() and not force:
        raise ValueError(f"{out}: exists; pass --force to overwrite")
    mel_config = mel_config_of(run_dir, (vocoder,) if vocoder else ())
    mel = MelSpectrogram(mel_config).to(resolve_device(device))
    wav = load(in_audio, mel_config.sample_rate)
    t0 = time.perf_counter()
    voc = build_vocoder(vocoder or "griffinlim", mel)
    est, logmel = roundtrip(wav, mel, voc, seed)
    elapsed = time.perf_counter() - t0
    writable_dir(out.parent)
    save(out, est.numpy(), mel_config.sample_rate)
    save_spectrogram(out.with_suffix(".png"), logmel[0, 0].numpy(), mel_config, f"{in_audio.name} (input mel)")
    mel_cpu = MelSpectrogram(mel_config)
    click.echo(f"{out}: mel L1 {mel_l1(wav, est, mel_cpu):.3f}, MR-STFT {mr_stft(wav, est):.3f}, "
               f"SNR {snr_db(wav, est):.1f} dB; vocoder {describe(voc)}, "
               f"real-time factor {elapsed / (len(wav) / mel_config.sample_rate):.3f}")


@main.command()
@click.argument("source", type=click.Path(path_type=Path, file_okay=False))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for index.html and the copied clips and spectrograms.")
@click.option("--title", help="Page title (default: the name of SOURCE).")
@click.option("--force", is_flag=True, help="Write into --out even if it already holds a gallery; that gallery's "
              "copies of clips SOURCE no longer has are removed.")
@friendly
def gallery(source: Path, out: Path, title: str | None, force: bool) -> None:
    """A static HTML page with an audio player and a spectrogram for every clip of SOURCE.

    SOURCE is a run (its generated/ and samples/ folders are shown, with the run's settings) or any
    folder of .wav files (searched recursively; spectrograms beside the clips are reused, missing ones
    drawn). The page needs no server and no network: open OUT/index.html in a browser, or publish OUT.
    """
    from ..generation.gallery import build_gallery
    from ..run.setup import writable_dir

    if (out / "index.html").exists() and not force:
        raise ValueError(f"{out / 'index.html'}: exists; pass --force to overwrite")
    writable_dir(out)
    page = build_gallery(source, out, title)
    click.echo(f"{page}: open it in a browser")


main.add_command(vocoder)
main.add_command(evaluate)

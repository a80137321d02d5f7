"""Command line: parse, build the config, call the library. No math here."""

from __future__ import annotations

import functools
import time
from pathlib import Path
from typing import Any, Callable

import click

from .config import PRESETS, MelConfig
from .sampling import SAMPLERS

# AudioError and CheckpointError are ValueErrors.
EXPECTED_ERRORS = (ValueError, OSError, FloatingPointError, ImportError)


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the library's expected errors into a one-line `Error: ...` and exit status 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except EXPECTED_ERRORS as e:
            raise click.ClickException(str(e)) from None

    return wrapper


VOCODER = click.option("--vocoder", help="Mel -> audio: the folder of a trained vocoder (audiodiff vocoder train), "
                                           "or griffinlim or pghi (phase-gradient start) as NAME[-ITERS][/nnls|pinv], "
                                           "e.g. pghi-16 or griffinlim-64/pinv. "
                                           "Default: the run's (train --vocoder), else griffinlim.")
DEVICE = click.option("--device", default="auto", show_default=True,
                      help="cpu, cuda, cuda:N or mps; auto picks CUDA, then MPS, then CPU.")


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
@click.option("--prediction", type=click.Choice(["v", "eps", "x0"]),
              help="What the network predicts (default v); recorded in the checkpoint.")
@click.option("--min-snr", "min_snr_gamma", type=float, help="min-SNR-gamma loss weighting (e.g. 5); 0 = plain MSE.")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints (with preview clips).")
@click.option("--vocoder", help="The run's default vocoder for previews and later commands, e.g. pghi.")
@click.option("--label-column", help="Class-conditional on this column of DATA_DIR's (or its parent's) metadata.csv.")
@click.option("--unconditional", is_flag=True, help="Ignore class labels (first-level subfolders) even if present.")
@click.option("--resume", is_flag=True, help="Require an existing run in --out and continue it exactly.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@DEVICE
@_friendly
def train(data_dir: Path, out: Path, config_file: Path | None, preset_name: str | None, steps: int | None,
          batch_size: int | None, grad_accum: int | None, lr: float | None, seed: int | None, precision: str | None,
          compile_: bool | None, prediction: str | None, min_snr_gamma: float | None, checkpoint_every: int | None, vocoder: str | None,
          label_column: str | None, unconditional: bool,
          resume: bool, progress: bool, device: str) -> None:
    """Train a spectrogram diffusion model on every audio file under DATA_DIR (recursive).

    Files of any format soundfile reads (wav, flac, ogg, ...), any sample rate and channel count
    are resampled and mixed to mono, cut into random crops, and turned into log-mels once (cached
    in OUT/cache). Re-running on an existing OUT continues it exactly where its last checkpoint left it.
    """
    from .run import train as train_run

    train_changes = dict(steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr, seed=seed,
                         precision=precision, compile=compile_, min_snr_gamma=min_snr_gamma,
                         checkpoint_every=checkpoint_every)
    overrides = {"train": {k: v for k, v in train_changes.items() if v is not None},
                 "diffusion": {"prediction": prediction} if prediction else {}}
    if unconditional and label_column:
        raise ValueError("--unconditional and --label-column contradict each other")
    if resume and not (out / "config.toml").exists():
        raise ValueError(f"{out}: --resume given but there is no run here (no config.toml)")
    train_run(data_dir, out, config_file=config_file, preset_name=preset_name, overrides=overrides,
              label_column=label_column, unconditional=unconditional, vocoder=vocoder, resume=resume, device=device,
              progress=progress, log=click.echo, warn=lambda m: click.echo(m, err=True))


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Folder for sample_NNN.wav and sample_NNN.png.")
@click.option("-n", "n", type=click.IntRange(min=1), default=4, show_default=True, help="Number of clips.")
@click.option("--steps", type=click.IntRange(min=1), default=50, show_default=True, help="Network evaluations (1..T).")
@click.option("--sampler", type=click.Choice(list(SAMPLERS)), default="ddim", show_default=True,
              help="ddim: deterministic (eta 0); ddpm: ancestral Markov chain (use many steps); "
                   "dpmpp-2m: DPM-Solver++(2M), deterministic, good in 10-25 steps; "
                   "heun: Heun on Karras sigmas, 2 network calls per step.")
@click.option("--eta", type=click.FloatRange(0.0, 1.0), default=0.0, show_default=True, help="DDIM noise (0 deterministic, 1 DDPM-like).")
@click.option("--seed", default=0, show_default=True, help="Clip i uses seed + i.")
@click.option("--seconds", type=click.FloatRange(min=0.0, min_open=True),
              help="Clip length; default the training crop. Longer clips are sampled window by window.")
@click.option("--loop", is_flag=True, help="Make each clip loop: its end continues into its start, without a seam.")
@click.option("--batch-size", type=click.IntRange(min=1), default=8, show_default=True, help="Clips sampled at once.")
@click.option("--label", help="Class to generate, for a class-conditional run (see its config.toml [data] labels).")
@click.option("--guidance", type=click.FloatRange(min=0.0),
              help="Classifier-free guidance weight w with --label: (1 + w) cond - w uncond; 0 = plain conditional. "
                   "Default with --label: 1.5 (pipeline.DEFAULT_GUIDANCE).")
@click.option("--force", is_flag=True, help="Overwrite existing sample_NNN files in --out.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@VOCODER
@DEVICE
@_friendly
def generate(run_dir: Path, out: Path, n: int, steps: int, sampler: str, eta: float, seed: int,
             seconds: float | None, loop: bool, batch_size: int, label: str | None, guidance: float | None, force: bool,
             progress: bool, vocoder: str | None, device: str) -> None:
    """Generate N clips from the newest checkpoint of RUN_DIR (or a checkpoint file)."""
    from .pipeline import DEFAULT_GUIDANCE, write_clips

    if label is not None and guidance is None:
        guidance = DEFAULT_GUIDANCE
    pipe = _prepare_output(run_dir, out, "sample", n, force, vocoder, device)
    options = {"eta": eta} if sampler == "ddim" else {}
    t0 = time.perf_counter()
    result = pipe.generate(n, steps=steps, sampler=sampler, seed=seed, seconds=seconds,
                           batch_size=batch_size, progress=progress, label=label, guidance=guidance, loop=loop,
                           **options)
    elapsed = time.perf_counter() - t0
    what = f", {label}" + (f", guidance {guidance:g}" if guidance else "") if label else ""
    titles = [f"{sampler} {steps} steps, seed {seed + i}, step {pipe.step}{what}" for i in range(n)]
    paths = write_clips(out, result, pipe.config.mel, titles=titles)
    audio_s = result.audio.shape[1] / result.sample_rate * n
    click.echo(f"wrote {len(paths)} clips ({audio_s:.1f} s of audio) to {out} in {elapsed:.1f} s "
               f"on {pipe.device} ({elapsed / audio_s:.2f} s per second of audio)")


def _edit_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Options shared by the editing commands (vary, inpaint, continue, interpolate)."""
    options = [
        click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
                     help="Folder for the output WAVs and their spectrogram PNGs."),
        click.option("--steps", type=click.IntRange(min=1), default=50, show_default=True, help="Network evaluations of a full chain (1..T)."),
        click.option("--seed", default=0, show_default=True, help="Output i uses seed + i."),
        click.option("--force", is_flag=True, help="Overwrite existing output files in --out."),
        click.option("--progress/--no-progress", default=True, help="Show progress bars."),
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
                      help="Classifier-free guidance weight w with --label. Default: 1.5 (pipeline.DEFAULT_GUIDANCE).")(fn)
    fn = click.option("--label", help="Class to steer towards, for a class-conditional run.")(fn)
    return click.option("-n", "n", type=click.IntRange(min=1), default=1, show_default=True, help="Number of outputs (different seeds).")(fn)


def _prepare_output(run_dir: Path, out: Path, prefix: str, n: int, force: bool, vocoder: str | None, device: str):
    """Refuse to overwrite PREFIX_NNN.wav, check --out is writable, load the run with the chosen vocoder."""
    from .pipeline import SpectrogramDiffusion
    from .run import writable_dir

    existing = [out / f"{prefix}_{i:03d}.wav" for i in range(n) if (out / f"{prefix}_{i:03d}.wav").exists()]
    if existing and not force:
        raise ValueError(f"{existing[0]}: exists; pass --force to overwrite or choose another --out")
    writable_dir(out)
    pipe = SpectrogramDiffusion.load(run_dir, device=None if device == "auto" else device)
    if vocoder:
        pipe.use_vocoder(vocoder)
    return pipe


def _finish_edit(out: Path, prefix: str, result: Any, pipe: Any, title: str, t0: float) -> None:
    from .pipeline import write_clips

    titles = [f"{title}, seed {i}" if prefix != "interp" else f"{title}, frame {i}" for i in range(len(result.audio))]
    paths = write_clips(out, result, pipe.config.mel, prefix=prefix, titles=titles)
    seconds = result.audio.shape[1] / result.sample_rate
    click.echo(f"wrote {len(paths)} clips of {seconds:.2f} s to {out} ({prefix}_NNN.wav + .png) in "
               f"{time.perf_counter() - t0:.1f} s on {pipe.device}")


@main.command()
@_run_and_input
@click.option("--strength", type=click.FloatRange(0.0, 1.0), default=0.5, show_default=True,
              help="How far into the noise chain to go: 0 returns the input, 1 an unrelated sample.")
@click.option("--sampler", type=click.Choice(list(SAMPLERS)), default="ddim", show_default=True, help="Sampler.")
@_conditioning
@_edit_options
@_friendly
def vary(run_dir: Path, in_audio: Path, strength: float, sampler: str, n: int, label: str | None, guidance: float | None,
         out: Path, steps: int, seed: int, force: bool, progress: bool, vocoder: str | None, device: str) -> None:
    """Variations of IN_AUDIO (SDEdit): noise its mel to STRENGTH x T, then denoise with RUN_DIR's model.

    Uses about STRENGTH x STEPS network evaluations. Writes vary_NNN.wav/png to --out.
    """
    from .audio import load

    pipe = _prepare_output(run_dir, out, "vary", n, force, vocoder, device)
    t0 = time.perf_counter()
    result = pipe.vary(load(in_audio, pipe.sample_rate), strength, n=n, steps=steps, sampler=sampler, seed=seed,
                       progress=progress, label=label, guidance=guidance)
    _finish_edit(out, "vary", result, pipe, f"{in_audio.name}, strength {strength:g}, {sampler} {steps}", t0)


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
@_friendly
def inpaint(run_dir: Path, in_audio: Path, start: float, end: float, band: tuple[float, float] | None,
            resample: int, fade: int, n: int, label: str | None, guidance: float | None, out: Path, steps: int, seed: int,
            force: bool, progress: bool, vocoder: str | None, device: str) -> None:
    """Regenerate IN_AUDIO between --start and --end seconds and keep the rest.

    The kept mel is re-imposed at every step. For a time span, the output's samples outside it are the
    input's own, crossfaded over --fade hops at each edge. Writes inpaint_NNN.wav/png to --out.
    """
    from .audio import load

    pipe = _prepare_output(run_dir, out, "inpaint", n, force, vocoder, device)
    t0 = time.perf_counter()
    result = pipe.inpaint(load(in_audio, pipe.sample_rate), start, end, band=band, n=n, steps=steps, seed=seed,
                          resample=resample, fade=fade, progress=progress, label=label, guidance=guidance)
    what = f" {band[0]:g}-{band[1]:g} Hz" if band else ""
    _finish_edit(out, "inpaint", result, pipe, f"{in_audio.name}, {start:g}-{end:g} s{what} regenerated", t0)


@main.command("continue")
@_run_and_input
@click.option("--seconds", type=float, required=True, help="How many seconds to add after the input.")
@click.option("--overlap", default=0.5, show_default=True,
              help="Fraction of each window taken from what came before (the context the model sees).")
@click.option("--fade", type=click.IntRange(min=0), default=3, show_default=True, help="Frames (hops) of crossfade into the continuation.")
@_conditioning
@_edit_options
@_friendly
def continue_(run_dir: Path, in_audio: Path, seconds: float, overlap: float, fade: int, n: int, label: str | None,
              guidance: float | None, out: Path, steps: int, seed: int, force: bool, progress: bool, vocoder: str | None,
              device: str) -> None:
    """Continue IN_AUDIO by --seconds: outpaint window by window, each overlapping the last.

    The output starts with the input's own samples. Writes continue_NNN.wav/png to --out.
    """
    from .audio import load

    pipe = _prepare_output(run_dir, out, "continue", n, force, vocoder, device)
    t0 = time.perf_counter()
    result = pipe.extend(load(in_audio, pipe.sample_rate), seconds, n=n, steps=steps, seed=seed, overlap=overlap,
                         fade=fade, progress=progress, label=label, guidance=guidance)
    _finish_edit(out, "continue", result, pipe, f"{in_audio.name} + {seconds:g} s", t0)


@main.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("audio_a", type=click.Path(path_type=Path, dir_okay=False))
@click.argument("audio_b", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--frames", type=click.IntRange(min=2), default=5, show_default=True, help="Clips from A to B, both ends included.")
@_edit_options
@_friendly
def interpolate(run_dir: Path, audio_a: Path, audio_b: Path, frames: int, out: Path, steps: int, seed: int,
                force: bool, progress: bool, vocoder: str | None, device: str) -> None:
    """Morph AUDIO_A into AUDIO_B: invert both to noise with DDIM, interpolate (slerp), decode.

    Deterministic (--seed only sets the vocoder's phase). B is cut or padded to A's length.
    Writes interp_NNN.wav/png to --out.
    """
    from .audio import load

    pipe = _prepare_output(run_dir, out, "interp", frames, force, vocoder, device)
    t0 = time.perf_counter()
    result = pipe.interpolate(load(audio_a, pipe.sample_rate), load(audio_b, pipe.sample_rate), frames=frames,
                              steps=steps, progress=progress, seed=seed)
    _finish_edit(out, "interp", result, pipe, f"{audio_a.name} -> {audio_b.name}, DDIM {steps}", t0)


@main.command()
@click.argument("in_audio", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, dir_okay=False), help="Output WAV.")
@click.option("--run", "run_dir", type=click.Path(path_type=Path),
              help="Use this run's mel config (default: a trained --vocoder's, else the built-in default).")
@click.option("--seed", default=0, show_default=True, help="Seed of the initial phase.")
@click.option("--force", is_flag=True, help="Overwrite --out if it exists.")
@VOCODER
@DEVICE
@_friendly
def reconstruct(in_audio: Path, out: Path, run_dir: Path | None, seed: int, force: bool, vocoder: str | None,
                device: str) -> None:
    """Round-trip IN_AUDIO through the mel front end and the vocoder, to hear what the mel keeps.

    Prints mel L1, multi-resolution STFT distance and SNR of the result against the input
    (resampled to the mel's sample rate, mono), and writes a spectrogram PNG beside --out.
    """
    from .audio import load, save
    from .device import resolve_device
    from .mel import MelSpectrogram
    from .metrics import mel_l1, mr_stft, snr_db
    from .plot import save_spectrogram
    from .run import mel_config as mel_config_of
    from .run import writable_dir
    from .vocoders import build_vocoder, describe
    from .vocoders import reconstruct as roundtrip

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
@click.option("--force", is_flag=True, help="Write into --out even if it already holds a gallery.")
@_friendly
def gallery(source: Path, out: Path, title: str | None, force: bool) -> None:
    """A static HTML page with an audio player and a spectrogram for every clip of SOURCE.

    SOURCE is a run (its generated/ and samples/ folders are shown, with the run's settings) or any
    folder of .wav files (searched recursively; spectrograms beside the clips are reused, missing ones
    drawn). The page needs no server and no network: open OUT/index.html in a browser, or publish OUT.
    """
    from .gallery import build_gallery
    from .run import writable_dir

    if (out / "index.html").exists() and not force:
        raise ValueError(f"{out / 'index.html'}: exists; pass --force to overwrite")
    writable_dir(out)
    page = build_gallery(source, out, title)
    click.echo(f"{page}: open it in a browser")


@main.group()
def vocoder() -> None:
    """Trained vocoders: a Vocos-style network that turns this project's mels into audio."""


@vocoder.command("train")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Vocoder folder: config, vocoder.safetensors, checkpoints, loss log. An existing one is continued.")
@click.option("--run", "run_dir", type=click.Path(path_type=Path),
              help="Take the mel config from this diffusion run (default: the built-in default mel).")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="TOML file with [mel] [model] [train] tables (see VOC_DIR/config.toml of any vocoder).")
@click.option("--steps", type=int, help="Total optimizer steps [default 20000; continuing may raise it].")
@click.option("--batch-size", type=int, help="Segments per step [default 16].")
@click.option("--lr", type=float, help="Peak learning rate (AdamW, warm-up then cosine) [default 5e-4].")
@click.option("--adversarial/--no-adversarial", default=None,
              help="Add multi-period + multi-resolution discriminators (~14x slower per step on CPU; for GPUs "
                   "or long runs). Can be switched on when continuing a spectral-loss run.")
@click.option("--phase-weight", type=float,
              help="Weight of the group-delay + instantaneous-frequency phase losses [default 1; 0 turns them off].")
@click.option("--seed", type=int, help="Seed for init and segment sampling.")
@click.option("--precision", type=click.Choice(["bf16", "fp32"]), help="bf16 autocast (default) or fp32.")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints [default 1000].")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@DEVICE
@_friendly
def vocoder_train_cmd(data_dir: Path, out: Path, run_dir: Path | None, config_file: Path | None, steps: int | None,
                      batch_size: int | None, lr: float | None, adversarial: bool | None, phase_weight: float | None,
                      seed: int | None,
                      precision: str | None, checkpoint_every: int | None, progress: bool, device: str) -> None:
    """Train a vocoder on every audio file under DATA_DIR, for `--vocoder VOC_DIR` in generate and the editing
    commands (and `train --vocoder VOC_DIR`).

    Random 0.5 s segments at random gains -> the project's mel -> ConvNeXt network -> STFT magnitude and
    phase -> inverse STFT; losses: multi-resolution STFT + log-mel L1 (plus the adversarial ones with
    --adversarial). Re-running on an existing VOC_DIR continues it exactly. Train it on the audio the
    diffusion model was trained on, or on more of the same kind.
    """
    from .run import train_vocoder

    changes = dict(steps=steps, batch_size=batch_size, lr=lr, adversarial=adversarial, phase_weight=phase_weight,
                   seed=seed, precision=precision, checkpoint_every=checkpoint_every)
    train_vocoder(data_dir, out, run=run_dir, config_file=config_file,
                  overrides={k: v for k, v in changes.items() if v is not None}, device=device, progress=progress,
                  log=click.echo, warn=lambda m: click.echo(m, err=True))


@main.group()
def evaluate() -> None:
    """Offline quality figures: generated sets vs real audio, and vocoder round trips."""


def _fmt_score(s: dict) -> str:
    return (f"{s['name']:14} {s['clips']:5d}  FD {s['fd']:8.2f} [{s['fd_ci'][0]:.2f}, {s['fd_ci'][1]:.2f}]  "
            f"KID {s['kid']:8.4f} [{s['kid_ci'][0]:.4f}, {s['kid_ci'][1]:.4f}]")


@evaluate.command("generated")
@click.argument("gen_dir", type=click.Path(path_type=Path))
@click.option("--reference", "ref_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of real audio to compare with (e.g. held-out clips).")
@click.option("--train", "train_dir", type=click.Path(path_type=Path),
              help="The training folder: adds a memorization check (generated clips near training clips).")
@click.option("--bootstrap", default=200, show_default=True, help="Bootstrap rounds for the 95% intervals.")
@click.option("--seed", default=0, show_default=True, help="Seed for bootstrap and floor subsampling.")
@click.option("--sample-rate", default=16000, show_default=True, help="Audio is resampled to this rate first.")
@click.option("--embedder", "embedder_dir", type=click.Path(path_type=Path),
              help="Also score in the embedding of a trained embedder (audiodiff evaluate train-embedder), with IS.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@_friendly
def evaluate_generated_cmd(gen_dir: Path, ref_dir: Path, train_dir: Path | None, bootstrap: int, seed: int,
                           sample_rate: int, embedder_dir: Path | None, as_json: bool) -> None:
    """Frechet and kernel distances of GEN_DIR's clips to real audio, in a weight-free embedding.

    The embedding is per-clip mean and std of each log-mel band and of 20 MFCCs (default mel
    front end at --sample-rate). Lower is better. The real-vs-real floor holds back a seeded share of
    the reference clips (as many as GEN_DIR has, at most half) and scores them like the generated
    ones against the rest: give --reference at least twice as many clips as GEN_DIR. Generated files
    that cannot be scored (unreadable, shorter than one FFT window) are counted as failures.
    """
    import json

    from .evaluate import evaluate_generated, folder_features, scored_features
    from .mel import MelSpectrogram

    mel = MelSpectrogram(MelConfig(sample_rate=sample_rate, f_max=min(8000.0, sample_rate / 2)))
    gen, _, failed = scored_features(gen_dir, mel)
    ref, _ = folder_features(ref_dir, mel)
    train_feats = folder_features(train_dir, mel)[0] if train_dir else None
    results = {"melstats": evaluate_generated(gen, ref, train_feats, rounds=bootstrap, seed=seed)}
    results["melstats"]["failed_clips"] = [f"{path}: {reason}" for path, reason in failed]
    if embedder_dir:
        from .embedder import Embedder
        from .evaluate import evaluate_with_embedder

        results["embedder"] = evaluate_with_embedder(Embedder.load(embedder_dir), gen_dir, ref_dir, train_dir,
                                                     bootstrap, seed)
    if as_json:
        click.echo(json.dumps(results, indent=2))
        return
    if failed:
        click.echo(f"FAILED: {len(failed)} of {len(failed) + len(gen)} generated files could not be scored "
                   f"(first: {failed[0][0]}: {failed[0][1]})")
    for space, result in results.items():
        click.echo(f"{space} embedding, reference: {result['reference_clips']} of the {len(ref)} clips in {ref_dir}, "
                   "95% bootstrap intervals")
        click.echo(_fmt_score(result["generated"]))
        click.echo(_fmt_score(result["floor"]) + "   <- real-vs-real floor (held-out clips not in the reference)")
        for warning in result["warnings"]:
            click.echo(f"warning: {warning}")
        if "memorization" in result:
            m = result["memorization"]
            click.echo(f"memorization: median distance to nearest training clip {m['median_gen_to_train']:.2f} "
                       f"(reference clips: {m['median_ref_to_train']:.2f}); {100 * m['too_close']:.0f}% of generated "
                       f"clips closer than 95% of reference clips (about 5% expected without copying)")
        for name in ("generated_classes", "reference_classes"):
            if name in result:
                c = result[name]
                acc = f", class accuracy {c['accuracy']:.3f}" if "accuracy" in c else ""
                click.echo(f"{name.split('_')[0]:14} IS {c['is']:.2f}, modified IS {c['modified_is']:.2f}{acc}")
                if "per_label" in c:
                    click.echo("accuracy per label: " + ", ".join(f"{k} {a:.2f} ({n})" for k, (a, n) in c["per_label"].items()))


@evaluate.command("train-embedder")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path), help="Folder for embedder.safetensors.")
@click.option("--label-column", help="Column of DATA_DIR's (or its parent's) metadata.csv holding class labels. "
              "Default: first-level subfolder names if there are several, else no labels (contrastive).")
@click.option("--heldout", type=click.Path(path_type=Path), help="Held-out folder to report classification accuracy on.")
@click.option("--steps", type=int, help="Training steps (default 1500).")
@click.option("--seed", type=int, help="Seed (default 0).")
@click.option("--force", is_flag=True, help="Overwrite an existing embedder in --out.")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@_friendly
def train_embedder_cmd(data_dir: Path, out: Path, label_column: str | None, heldout: Path | None, steps: int | None,
                       seed: int | None, force: bool, progress: bool) -> None:
    """Train the small audio embedder used by `evaluate generated --embedder` on DATA_DIR (CPU, minutes).

    With labels it is a classifier (IS, modified IS, class accuracy as in DiffWave's SC09 protocol);
    without, it learns by contrast between crops of the same file.
    """
    import dataclasses

    from .config import EmbedderConfig
    from .data import file_labels, load_mels
    from .embedder import Embedder, train_embedder
    from .evaluate import heldout_accuracy
    from .mel import MelSpectrogram
    from .run import writable_dir

    target = out / "embedder.safetensors"
    if target.exists() and not force:
        raise ValueError(f"{target}: exists; pass --force to overwrite")
    config = EmbedderConfig()
    config = dataclasses.replace(config, **{k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None})
    mel_config = MelConfig()
    data, report = load_mels(data_dir, MelSpectrogram(mel_config), config.crop_frames, progress=progress)
    click.echo(f"data: {report.summary()}")
    labelled = file_labels(data_dir, data.files, label_column)
    names, labels = labelled if labelled else ([], None)
    click.echo(f"objective: {'classify ' + str(len(names)) + ' labels' if names else 'contrastive (no labels)'}")
    model = Embedder(config, mel_config, names)
    stats = train_embedder(model, data, labels, progress)
    line = f"trained {config.steps} steps: loss {stats['loss']:.3f}"
    if names:
        line += f", train accuracy {stats['train_accuracy']:.3f}"
    meta = {"data": str(data_dir), "label_column": label_column, **stats}
    if heldout and names:
        meta["heldout_accuracy"], count = heldout_accuracy(model, heldout, label_column)
        line += f", held-out accuracy {meta['heldout_accuracy']:.3f} on {count} clips"
    writable_dir(out)
    model.save(target, meta)
    click.echo(f"{line} -> {target}")


@evaluate.command("vocoder")
@click.option("--data", "data_dir", required=True, type=click.Path(path_type=Path),
              help="Folder of real audio (e.g. held-out clips).")
@click.option("--clips", type=click.IntRange(min=1), default=50, show_default=True,
              help="Score N files drawn at random (seeded), stratified by label when the folder has labels.")
@click.option("--seed", default=0, show_default=True, help="Seed of the file sample and of the vocoders' randomness.")
@click.option("--label-column", help="Stratify the sample by this column of DATA's (or its parent's) metadata.csv "
                                     "(default: first-level subfolders, if any).")
@click.option("--vocoder", "vocoders", multiple=True, default=("griffinlim-32/pinv", "griffinlim", "pghi"),
              show_default=True, help="A trained vocoder's folder, or a spec NAME[-ITERS][/nnls|pinv]; repeat for "
                                      "several rows.")
@click.option("--run", "run_dir", type=click.Path(path_type=Path),
              help="Use this run's mel config (default: the first trained vocoder's, else the built-in default).")
@click.option("--speech", is_flag=True, help="Add PESQ-wb (16 kHz) and STOI; needs `pip install pesq pystoi`.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@DEVICE
@_friendly
def evaluate_vocoder_cmd(data_dir: Path, clips: int, seed: int, label_column: str | None, vocoders: tuple[str, ...],
                         run_dir: Path | None, speech: bool, as_json: bool, device: str) -> None:
    """Paired round-trip scores (mel -> vocoder -> audio) on real audio: LSD, mel L1, MR-STFT, SNR, RTF;
    for a trained vocoder also how long it trained, on what hardware."""
    import json

    import torch

    from .device import resolve_device
    from .evaluate import evaluate_vocoder, vocoder_files
    from .mel import MelSpectrogram
    from .run import mel_config as mel_config_of
    from .vocoders import build_vocoder, describe

    mel_config = mel_config_of(run_dir, vocoders)
    mel = MelSpectrogram(mel_config).to(resolve_device(device))
    files, how = vocoder_files(data_dir, clips, seed, label_column)
    built = [build_vocoder(v, mel) for v in vocoders]  # all specs checked before the long work
    rows = {describe(v): {**evaluate_vocoder(files, mel, v, seed=seed, speech=speech), "sample": how} for v in built}
    for v in built:
        if getattr(v, "record", None):
            rows[describe(v)]["training"] = v.record  # how long it trained, on what
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"clips: {how}")
    click.echo(f"{'vocoder':20} {'clips':>5} {'LSD dB':>7} {'logmel L1':>9} {'MR-STFT':>8} {'STFT-u':>7} {'SNR dB':>7} "
               f"{'RTF':>7}" + (f" {'PESQ-wb':>7} {'STOI':>6}" if speech else ""))
    for name, r in rows.items():
        click.echo(f"{name:20} {r['clips']:5d} {r['lsd_db']:7.2f} {r['mel_l1']:9.3f} {r['mr_stft']:8.3f} "
                   f"{r['stft_unseen']:7.3f} {r['snr_db']:7.1f} {r['rtf']:7.4f}"
                   + (f" {r['pesq_wb']:7.2f} {r['stoi']:6.3f}" if speech else ""))
    if speech:
        r = next(iter(rows.values()))
        click.echo(f"PESQ-wb defined on {r['pesq_wb_clips']}, STOI on {r['stoi_clips']} of {r['clips']} clips "
                   "(STOI needs about 30 frames, ~0.4 s, of speech)")
    for name, r in rows.items():
        if "training" in r:
            t = r["training"]
            click.echo(f"{name}: trained {t.get('step', '?')} steps in {t.get('seconds', 0) / 60:.1f} min "
                       f"on {t.get('hardware', 'unknown hardware')}")
    click.echo("logmel L1: L1 of ln sqrt(power mel) (not HiFi-GAN's magnitude-mel L1); MR-STFT at 512/128, 2048/512 "
               "and 256/64 (the first two are also the trained vocoder's loss resolutions); STFT-u: the same distance "
               "at 1536/384, a resolution no vocoder trained on")
    click.echo(f"RTF: seconds of computing per second of audio on {mel.filterbank.device} (this machine, "
               f"{torch.get_num_threads()} threads; other load on the machine inflates it)")

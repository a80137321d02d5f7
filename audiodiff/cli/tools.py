"""The `vocoder` and `evaluate` command groups: parse, call the library, print."""

from __future__ import annotations

from pathlib import Path

import click

from .options import DEVICE, FINITE, VOCODER, friendly, given, session


@click.group()
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
@click.option("--lr", type=FINITE, help="Peak learning rate (AdamW, warm-up then cosine) [default 5e-4].")
@click.option("--adversarial/--no-adversarial", default=None,
              help="Add multi-period + multi-resolution discriminators (~14x slower per step on CPU; for GPUs "
                   "or long runs). Can be switched on when continuing a spectral-loss run.")
@click.option("--phase-weight", type=FINITE,
              help="Weight of the group-delay + instantaneous-frequency phase losses [default 1; 0 turns them off].")
@click.option("--seed", type=int, help="Seed for init and segment sampling.")
@click.option("--precision", type=click.Choice(["bf16", "fp32"]), help="bf16 autocast (default) or fp32.")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints [default 1000].")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@DEVICE
@friendly
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
    from ..run.vocoder import train_vocoder

    changes = given(train=dict(steps=steps, batch_size=batch_size, lr=lr, adversarial=adversarial,
                               phase_weight=phase_weight, seed=seed, precision=precision,
                               checkpoint_every=checkpoint_every))
    train_vocoder(data_dir, out, run=run_dir, config_file=config_file, overrides=changes["train"],
                  session=session(device, progress=progress))


@click.group()
def evaluate() -> None:
    """Offline quality figures: generated sets vs real audio, and vocoder round trips."""


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
@friendly
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

    from ..evaluation.evaluate import evaluate_folders
    from ..evaluation.reports import generated_report

    results, ref_count = evaluate_folders(gen_dir, ref_dir, train_dir, embedder_dir, bootstrap, seed, sample_rate)
    click.echo(json.dumps(results, indent=2) if as_json else "\n".join(generated_report(results, ref_dir, ref_count)))


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
@friendly
def train_embedder_cmd(data_dir: Path, out: Path, label_column: str | None, heldout: Path | None, steps: int | None,
                       seed: int | None, force: bool, progress: bool) -> None:
    """Train the small audio embedder used by `evaluate generated --embedder` on DATA_DIR (CPU, minutes).

    With labels it is a classifier (IS, modified IS, class accuracy as in DiffWave's SC09 protocol);
    without, it learns by contrast between crops of the same file.
    """
    import dataclasses

    from ..config import EmbedderConfig
    from ..evaluation.evaluate import train_embedder_on
    from ..files import refuse_overwrite, writable_dir

    target = out / "embedder.safetensors"
    refuse_overwrite(target, force=force)
    writable_dir(out)
    config = dataclasses.replace(EmbedderConfig(), **{k: v for k, v in (("steps", steps), ("seed", seed)) if v is not None})
    train_embedder_on(data_dir, out, label_column, heldout, config, progress, click.echo)


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
@friendly
def evaluate_vocoder_cmd(data_dir: Path, clips: int, seed: int, label_column: str | None, vocoders: tuple[str, ...],
                         run_dir: Path | None, speech: bool, as_json: bool, device: str) -> None:
    """Paired round-trip scores (mel -> vocoder -> audio) on real audio: LSD, mel L1, MR-STFT, SNR, RTF;
    for a trained vocoder also how long it trained, on what hardware."""
    import json

    import torch

    from ..device import resolve_device
    from ..evaluation.reports import vocoder_report
    from ..evaluation.vocoders import compare_vocoders
    from ..vocoders.registry import mel_config

    dev = resolve_device(device)
    rows, how = compare_vocoders(data_dir, vocoders, mel_config(run_dir, vocoders), clips, seed, label_column, speech, dev)
    where = f"{dev} (this machine, {torch.get_num_threads()} threads)"
    click.echo(json.dumps(rows, indent=2) if as_json else "\n".join(vocoder_report(rows, how, speech, where)))


@click.command()
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
    from ..evaluation.vocoders import reconstruct_file
    from ..files import refuse_overwrite

    refuse_overwrite(out, out.with_suffix(".png"), force=force)
    s = reconstruct_file(in_audio, out, run_dir, vocoder, seed, device)
    click.echo(f"{out}: mel L1 {s['mel_l1']:.3f}, MR-STFT {s['mr_stft']:.3f}, SNR {s['snr_db']:.1f} dB; "
               f"vocoder {s['vocoder']}, real-time factor {s['rtf']:.3f}")


@click.command()
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
    from ..files import refuse_overwrite, writable_dir
    from ..generation.gallery import build_gallery

    refuse_overwrite(out / "index.html", force=force)
    writable_dir(out)
    page = build_gallery(source, out, title)
    click.echo(f"{page}: open it in a browser")


@click.command("inspect")
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--label-column", help="Count labels from this column of DATA_DIR's (or its parent's) metadata.csv.")
@click.option("--timing/--no-timing", default=True, show_default=True,
              help="Time a few training steps of each preset on this machine (seconds to a minute or two).")
@click.option("--progress/--no-progress", default=True, help="Show progress bars.")
@DEVICE
@friendly
def inspect_cmd(data_dir: Path, label_column: str | None, timing: bool, progress: bool, device: str) -> None:
    """One screen before you train on DATA_DIR: files usable and skipped (with the reasons training would give),
    sample rates, channels, durations, loudness, clipping, identical files, files shorter than a crop, label
    counts, and how long the default run and each preset would take on this machine, from real training steps.
    Writes nothing."""
    from ..run.inspect import inspect

    click.echo(inspect(data_dir, label_column, timing, device, progress))


@click.command("studio")
@click.argument("models", nargs=-1, type=click.Path(path_type=Path))
@click.option("--root", type=click.Path(path_type=Path, file_okay=False),
              help="Also serve every run or exported model folder found under this folder (3 levels deep).")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to bind: 127.0.0.1 is this machine only; 0.0.0.0 serves your network.")
@click.option("--port", type=click.IntRange(1, 65535), default=7860, show_default=True, help="Port to serve on.")
@DEVICE
@friendly
def studio(models: tuple[Path, ...], root: Path | None, host: str, port: int, device: str) -> None:
    """A local web page to generate, edit, compare and watch training, for MODELS (run or exported model folders,
    e.g. samples/models/digits) and those under --root. Needs the studio extra: pip install -e ".[studio]".

    Each result shows the exact audiodiff command that reproduces it. The page only reads the model folders; uploads
    (20 MB at most) and results go to a temporary folder that is deleted when the server stops (Ctrl-C).
    """
    from ..studio.app import serve
    from ..studio.models import find_models

    serve(find_models(list(models), root), host=host, port=port, device=device, log=click.echo)

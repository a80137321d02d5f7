"""The commands that make runs: train, distill, finetune, merge, export."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import DISTILL_METHODS, LORA_LAYERS, PREDICTIONS
from ..config.run import SAMPLER_NAMES
from ..presets import PRESETS
from .options import DEVICE, FINITE, LOG, WORKERS, Finite, friendly, given, session


@click.command()
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="Run directory: config, checkpoints, loss log, previews. An existing run is continued.")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="TOML file with [mel] [unet] [diffusion] [data] [train] tables overriding the preset.")
@click.option("--preset", "preset_name", type=click.Choice(list(PRESETS)),
              help="Model/training size. Default: small (new runs) or the run's own (continuing).")
@click.option("--minutes", type=Finite(min=0.0, min_open=True),
              help="A time budget for the whole command (reading the data, training, checkpoints with their "
                   "previews): the steps, warm-up, EMA and checkpoints are fitted to it from step times measured "
                   "here, and the run stops on time. Default on a CPU without --preset: 30. Continuing a run spends "
                   "what is left; a larger value trains on.")
@click.option("--steps", type=int, help="Total optimizer steps, no budget (continuing a run may raise it).")
@click.option("--batch-size", type=int, help="Clips per optimizer step (all processes together).")
@click.option("--grad-accum", type=int, help="Split each batch into this many micro-batches (less memory, same result).")
@click.option("--lr", type=FINITE, help="Peak learning rate (AdamW).")
@click.option("--seed", type=int, help="Seed for init, data order, timesteps and noise.")
@click.option("--precision", type=click.Choice(["bf16", "fp16", "fp32"]),
              help="bf16 autocast (default; fp16 on GPUs without bf16), fp16 autocast with loss scaling, or fp32.")
@click.option("--compile/--no-compile", "compile_", default=None,
              help="torch.compile the training step: the first steps take a minute or more to compile; "
                   "see benchmarks/README.md ('Against diffusers UNet2DModel') for what it gains.")
@click.option("--prediction", type=click.Choice(list(PREDICTIONS)),
              help="What the network predicts (default v); edm: Karras et al. 2022 preconditioning and noise "
                   "levels. Recorded in the checkpoint.")
@click.option("--min-snr", "min_snr_gamma", type=FINITE, help="min-SNR-gamma loss weighting (e.g. 5); 0 = plain MSE.")
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
def train(data_dir: Path, out: Path, config_file: Path | None, preset_name: str | None, minutes: float | None,
          steps: int | None,
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

    overrides = given(train=dict(minutes=minutes, steps=steps, batch_size=batch_size, grad_accum=grad_accum, lr=lr,
                                 seed=seed,
                                 precision=precision, compile=compile_, min_snr_gamma=min_snr_gamma,
                                 checkpoint_every=checkpoint_every),
                      diffusion=dict(prediction=prediction), data=dict(channels=int(channels) if channels else None))
    train_run(data_dir, out, config_file=config_file, preset_name=preset_name, overrides=overrides,
              label_column=label_column, unconditional=unconditional, vocoder=vocoder, resume=resume,
              session=session(device, workers, log_to, progress))


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.argument("data_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="The distilled run's directory. An existing one (from the same teacher) is continued.")
@click.option("--method", type=click.Choice(list(DISTILL_METHODS)),
              help="ct: consistency tuning (ECT), no teacher calls; cd: consistency distillation along the teacher's "
                   "ODE, folding in guidance. Default: ct for an unconditional run, cd for a conditional one.")
@click.option("--guidance", type=Finite(min=0.0),
              help="cd on a conditional run: classifier-free guidance weight folded into the student (default: the "
                   "teacher's own, its config's [sample] guidance).")
@click.option("--config", "config_file", type=click.Path(path_type=Path, dir_okay=False),
              help="TOML file with [train] and [distill] tables overriding the defaults.")
@click.option("--steps", type=int, help="Optimizer steps of the distillation (default 300).")
@click.option("--batch-size", type=int, help="Clips per optimizer step (default: the teacher's).")
@click.option("--lr", type=FINITE, help="Learning rate (AdamW; default 1e-4, no warm-up).")
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

    overrides = given(train=dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed),
                      distill=dict(halve_every=halve_every))
    distill_run(run_dir, data_dir, out, method=method, guidance=guidance, config_file=config_file,
                overrides=overrides, label_column=label_column, session=session(device, workers, log_to, progress))


@click.command()
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
@click.option("--lr", type=FINITE, help="Learning rate (AdamW; default 1e-4, or 1e-3 with --lora).")
@click.option("--seed", type=int, help="Seed for adapters' init, data order, timesteps and noise.")
@click.option("--checkpoint-every", type=int, help="Steps between checkpoints (with preview clips; default 100).")
@click.option("--label-column", help="Labels from this column of DATA_DIR's metadata.csv instead of subfolders.")
@click.option("--stop-copies", type=Finite(0.0, 1.0),
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

    overrides = given(train=dict(steps=steps, batch_size=batch_size, lr=lr, seed=seed, checkpoint_every=checkpoint_every))
    finetune_run(base_run, data_dir, out, lora_rank=lora_rank, lora_layers=lora_layers, new_labels=new_labels,
                 config_file=config_file, overrides=overrides, label_column=label_column, stop_copies=stop_copies,
                 session=session(device, workers, log_to, progress))


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="New run directory for the merged weights.")
@click.option("--lora-scale", type=FINITE, default=1.0, show_default=True, help="Scale of the adapters' update to bake in.")
@friendly
def merge(run_dir: Path, out: Path, lora_scale: float) -> None:
    """Bake a LoRA run's adapters into its base's weights: a whole run in --out that needs no base."""
    from ..run.share import merge as merge_run

    merge_run(run_dir, out, lora_scale, log=click.echo)


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(path_type=Path),
              help="New folder for the exported run.")
@click.option("--half/--full", default=True, show_default=True, help="Store the weights as float16 (half the size).")
@click.option("--sampler", type=click.Choice(SAMPLER_NAMES),
              help="The copy's default sampler ([sample] sampler; default: the run's own).")
@click.option("--steps", type=click.IntRange(min=1), help="The copy's default network calls ([sample] steps).")
@friendly
def export(run_dir: Path, out: Path, half: bool, sampler: str | None, steps: int | None) -> None:
    """A small generation-only copy of RUN_DIR for sharing: its config and EMA weights (a LoRA run's merged).

    generate, the editing commands and finetune (as a base) take it; train cannot continue it. --sampler and --steps
    set how it samples unless a command says otherwise.
    """
    from ..run.share import export as export_run

    export_run(run_dir, out, half, log=click.echo, sampler=sampler, steps=steps)

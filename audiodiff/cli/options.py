"""What every command shares: the error wrapper and the common options."""

from __future__ import annotations

import functools
import math
from typing import Any, Callable

import click

# AudioError and CheckpointError are ValueErrors.
EXPECTED_ERRORS = (ValueError, OSError, FloatingPointError, ImportError)


def given(**sections: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{section: {field: value}} of the flags a user gave (None: not given), as the library's `overrides` take."""
    return {section: {k: v for k, v in changes.items() if v is not None} for section, changes in sections.items()}


def session(device: str = "auto", workers: int | None = None, log_to: str = "csv", progress: bool = True) -> Any:
    """The library's run.setup.Session for a command: its flags, lines to stdout, warnings to stderr."""
    from ..run.setup import Session

    return Session(device, workers, log_to, progress, click.echo, lambda m: click.echo(m, err=True))


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
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
WORKERS = click.option("--workers", type=click.IntRange(min=1),
                       help="Processes that decode audio and compute mels for the cache (default: the CPU cores).")
LOG = click.option("--log", "log_to", type=click.Choice(["csv", "tensorboard"]), default="csv", show_default=True,
                   help="loss.csv is always written; tensorboard also writes event files (loss, lr, grad norm, "
                        "samples/s, preview audio and spectrograms) to OUT/tensorboard. Needs pip install "
                        "'audiodiff[tensorboard]'.")
class Finite(click.FloatRange):
    """A float option that must be a finite number (nan and inf are refused here, with the option's name), within
    the range given like click.FloatRange's."""

    name = "finite float"

    def convert(self, value, param, ctx):  # noqa: ANN001, ANN201 - click's signature
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number", param, ctx)
        return number


FINITE = Finite()
LORA_SCALE = click.option("--lora-scale", type=FINITE,
                          help="For a LoRA run (audiodiff finetune --lora): scale of its adapters' update; 1 = as "
                               "trained (default), 0 = the base model, values between blend them.")

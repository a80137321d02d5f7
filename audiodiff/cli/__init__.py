"""The command line: click commands that parse, call one library function and print.

train.py makes runs (train, distill, finetune, merge, export), generate.py makes audio from them (generate and the
edits), tools.py holds the rest (vocoder, evaluate, reconstruct, gallery, inspect); options.py the options they share.
"""

from __future__ import annotations

import click

from .generate import continue_, generate, inpaint, interpolate, vary
from .tools import evaluate, gallery, inspect_cmd, reconstruct, studio, vocoder
from .train import distill, export, finetune, merge, train


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


for command in (train, distill, finetune, merge, export, generate, vary, inpaint, continue_, interpolate, reconstruct,
                gallery, vocoder, evaluate, inspect_cmd, studio):
    main.add_command(command)

__all__ = ["main"]

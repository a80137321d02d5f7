"""Every vocoder by name: one registry above the implementations, so that none imports another.

A vocoder is named by a spec string (`build_vocoder`):
- NAME[OPTIONS] for a vocoder built from nothing but the mel, e.g. "griffinlim", "pghi-16/pinv":
  `SPECS[NAME](mel, OPTIONS)`;
- the folder of a saved vocoder: FOLDER/vocoder.safetensors records its kind in the metadata, and
  `KINDS[kind](file, tensors, metadata, folder)` rebuilds it (files written before kinds were recorded
  are "vocos").

Adding a vocoder = its module (a `vocoder.Vocoder` subclass) + one `register_spec` or `register_kind` line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch import Tensor

from .. import checkpoint
from ..audio.mel import MelSpectrogram
from ..config import MelConfig
from ..runfolder import read_checkpoint
from . import vocos
from .base import PGHI, GriffinLim, Vocoder
from .vocos import WEIGHTS_FILE

SpecFactory = Callable[[MelSpectrogram, str], Vocoder]
KindLoader = Callable[[Path, dict[str, Tensor], dict, str], Vocoder]

SPECS: dict[str, SpecFactory] = {}
KINDS: dict[str, KindLoader] = {}


def register_spec(name: str, factory: SpecFactory) -> None:
    """Make `name` + options (the rest of the spec string, e.g. "-64/pinv") build factory(mel, options)."""
    if not name.isidentifier():
        raise ValueError(f"vocoder name {name!r}: letters, digits and _ only (a '-' or '/' starts the options)")
    SPECS[name] = factory


def register_kind(kind: str, loader: KindLoader) -> None:
    """Make a saved vocoder whose metadata says kind `kind` load with loader(file, tensors, meta, folder)."""
    KINDS[kind] = loader


def _phase_retrieval(cls: type[GriffinLim], default_iters: int) -> SpecFactory:
    """Options "[-ITERS][/nnls|pinv]" for Griffin-Lim and PGHI."""

    def build(mel: MelSpectrogram, options: str) -> Vocoder:
        spec = cls.name + options
        head, _, magnitude = options.partition("/")
        iters = head.removeprefix("-")
        if iters and not iters.isdigit():
            raise ValueError(f"vocoder {spec!r}: iterations must be a whole number, got {head!r}")
        if magnitude not in ("", "nnls", "pinv"):
            raise ValueError(f"vocoder {spec!r}: magnitude must be nnls or pinv, got {magnitude!r}")
        return cls(mel, n_iter=int(iters) if iters else default_iters, magnitude=magnitude or "nnls")

    return build


register_spec(GriffinLim.name, _phase_retrieval(GriffinLim, 32))
register_spec(PGHI.name, _phase_retrieval(PGHI, 16))
register_kind(vocos.NeuralVocoder.name, vocos.from_checkpoint)


def load_vocoder(path: str | Path) -> Vocoder:
    """A saved vocoder from its folder (or its vocoder.safetensors), of the kind its metadata records; CPU, eval mode."""
    path = Path(path)
    file = path / WEIGHTS_FILE if path.is_dir() else path
    if path.is_dir() and not file.is_file():
        raise checkpoint.CheckpointError(f"{path}: not a trained vocoder (no {WEIGHTS_FILE}; "
                                         f"train one with `audiodiff vocoder train DATA_DIR --out {path}`)")
    tensors, meta = checkpoint.read(file)
    kind = meta.get("kind", vocos.NeuralVocoder.name)
    if kind not in KINDS:
        raise checkpoint.CheckpointError(f"{file}: vocoder of kind {kind!r}, which nothing registered "
                                         f"(known: {', '.join(KINDS)})")
    return KINDS[kind](file, tensors, meta, str(path)).eval()


def build_vocoder(spec: str, mel: MelSpectrogram) -> Vocoder:
    """A vocoder from a spec: the folder of a saved vocoder (`audiodiff vocoder train`), or NAME[OPTIONS]
    with NAME in SPECS, e.g. "griffinlim", "griffinlim-64/pinv", "pghi-0" (Griffin-Lim and PGHI take
    -ITERS fast Griffin-Lim iterations, default 32 and 16, and /nnls or /pinv, the estimate of the STFT
    magnitude from the mel). On mel's device. Raises ValueError if it was made for another mel config."""
    if Path(spec).is_dir():
        vocoder = load_vocoder(spec)
        vocoder.check(mel.config)
        return vocoder.to(mel.filterbank.device)
    name = spec.split("-", 1)[0].split("/", 1)[0]
    if name not in SPECS:
        raise ValueError(f"unknown vocoder {spec!r}: neither {', '.join(SPECS)} nor an existing folder "
                         "of a trained vocoder")
    vocoder = SPECS[name](mel, spec[len(name):])
    vocoder.check(mel.config)
    return vocoder.to(mel.filterbank.device)


def describe(vocoder: Vocoder) -> str:
    """The spec that rebuilds this vocoder, e.g. "pghi-16/nnls"."""
    return vocoder.spec()


def reconstruct(wav: np.ndarray, mel: MelSpectrogram, vocoder: Vocoder, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Round-trip float audio [T] through the mel front end and the vocoder.

    Returns (reconstructed wav float32 [T], normalized log-mel [1, 1, F, N]) on CPU.
    """
    vocoder.check(mel.config)
    device = mel.filterbank.device
    x = torch.from_numpy(wav).to(device)[None]
    with torch.inference_mode():
        logmel = mel(x)
        out = vocoder(logmel, torch.Generator().manual_seed(seed))[0]
    n = min(len(wav), out.shape[-1])
    out = torch.nn.functional.pad(out[:n], (0, len(wav) - n))
    return out.cpu(), logmel.cpu()


def mel_config(run: str | Path | None = None, vocoders: tuple[str, ...] = ()) -> MelConfig:
    """The mel config of a run if given, else of the first saved vocoder among `vocoders`, else the default."""
    if run:
        return read_checkpoint(run)[0].mel
    saved = [v for v in vocoders if Path(v).is_dir()]
    return load_vocoder(saved[0]).mel.config if saved else MelConfig()

"""Spectrogram pictures (PNG) for previews, generated clips and the README."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config import MelConfig
from ..files import atomic_path
from .mel import to_db


def save_spectrogram(path: str | Path, logmel: np.ndarray, mel: MelConfig, title: str = "") -> tuple[float, float]:
    """Write normalized log-mel [F, N] (values in about [-1, 1]) as a PNG with time and dB axes. Returns where the
    time axis runs in the picture, (left, right) as fractions of its width, so a click on it can name a time."""
    # a Figure with its own Agg canvas, not pyplot: no global backend switch, no figure registry
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    db = to_db(np.asarray(logmel, dtype=np.float32), mel)
    seconds = db.shape[1] * mel.hop_length / mel.sample_rate
    fig = Figure(figsize=(max(4.0, 2.0 + 3.0 * seconds), 3.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    im = ax.imshow(db, origin="lower", aspect="auto", cmap="magma", vmin=mel.min_db, vmax=mel.max_db,
                   extent=(0.0, seconds, 0, mel.n_mels))
    ax.set_xlabel("time (s)")
    ax.set_ylabel("mel bin")
    if title:
        ax.set_title(title, fontsize=9, parse_math=False)  # labels and file names are text, never TeX
    fig.colorbar(im, ax=ax, label="dB")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    box = ax.get_position()  # in figure fractions, after tight_layout; the PNG is the whole figure
    return float(box.x0), float(box.x1)

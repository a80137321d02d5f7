"""TensorBoard event files for a run (`audiodiff train --log tensorboard`), beside loss.csv.

Optional: torch.utils.tensorboard needs the tensorboard package (pip install 'audiodiff[tensorboard]').
Scalars go under train/ (loss, lr, grad_norm, samples_per_s, bad_steps) and validation/ (fd, floor), previews under preview/K
(audio) and preview/K_mel (the log-mel as a grey image, low frequencies at the bottom).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

FOLDER = "tensorboard"
SCALARS = ("loss", "lr", "grad_norm", "samples_per_s", "bad_steps")


class Board:
    """Writes RUN_DIR/tensorboard; a resumed run drops the events past its checkpoint (purge_step)."""

    def __init__(self, run_dir: Path, resume_step: int = 0) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            raise ValueError("--log tensorboard needs the tensorboard package: pip install 'audiodiff[tensorboard]'") \
                from None
        self.writer = SummaryWriter(str(Path(run_dir) / FOLDER), purge_step=resume_step + 1 if resume_step else None)

    def scalars(self, row: dict[str, Any]) -> None:
        """One loss.csv row (its values may be strings) as train/* scalars at row["step"]."""
        step = int(row["step"])
        for key in SCALARS:
            if key in row:
                self.writer.add_scalar(f"train/{key}", float(row[key]), step)
        self.writer.flush()

    def validation(self, step: int, fd: float, floor: float) -> None:
        """A checkpoint's validation score (run/validation.py) as validation/fd and validation/floor."""
        self.writer.add_scalar("validation/fd", fd, step)
        self.writer.add_scalar("validation/floor", floor, step)
        self.writer.flush()

    def preview(self, step: int, index: int, wav: np.ndarray, sample_rate: int, logmel: np.ndarray) -> None:
        """Preview clip `index` at `step`: wav float [T] or [C, T] (heard mixed to mono: TensorBoard plays one channel)
        in [-1, 1], normalized log-mel [F, N] in [-1, ~1]."""
        wav = wav if wav.ndim == 1 else wav.mean(axis=0)
        self.writer.add_audio(f"preview/{index}", torch.from_numpy(np.clip(wav, -1, 1))[None], step, sample_rate)
        image = np.clip((logmel[::-1] + 1) / 2, 0, 1).astype(np.float32)
        self.writer.add_image(f"preview/{index}_mel", image, step, dataformats="HW")
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()

"""Spectral flux of a log-mel and its ratio at given frames: how audible a seam is (experiments/stereo.py)."""

from __future__ import annotations

import numpy as np


def spectral_flux(logmel: np.ndarray) -> np.ndarray:
    """Normalized log-mel [C, F, N] -> flux float64 [N - 1]: the mean absolute change from frame n to n + 1."""
    return np.abs(np.diff(np.asarray(logmel, dtype=np.float64), axis=-1)).mean(axis=(0, 1))


def flux_ratios(flux: np.ndarray, frames: list[int], width: int = 2) -> np.ndarray:
    """For each frame j, the largest flux from frame j - width to j + width, over the clip's median flux: how
    much a change near j stands out (a seam at a window join shows as a ratio well above the real audio's)."""
    median = max(float(np.median(flux)), 1e-12)
    return np.array([flux[max(0, j - 1 - width) : j + width].max() / median for j in frames])



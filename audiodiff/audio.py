"""The only audio I/O: load any file soundfile reads, mix to mono, resample (soxr), save.

Waveforms here are float32 numpy arrays in [-1, 1] of shape [T] (mono).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from .files import atomic_path


class AudioError(ValueError):
    """A file that cannot be used as audio; the message names the path and the reason."""


def audio_extensions() -> frozenset[str]:
    """Lower-case file extensions (no dot) that soundfile/libsndfile can read on this system."""
    exts = {k.lower() for k in sf.available_formats()}
    aliases = {"aiff": {"aif", "aifc"}, "ogg": {"oga", "opus"}, "wav": {"wave"}}
    for k, extra in aliases.items():
        if k in exts:
            exts |= extra
    return frozenset(exts)


def load(path: str | Path | BinaryIO, sample_rate: int, name: str | None = None) -> np.ndarray:
    """Read `path` (or an open binary file, e.g. a member of a tar, called `name` in errors), mix channels to mono
    by averaging, resample to `sample_rate`.

    Returns float32 [T]. Raises AudioError for unreadable, empty or non-finite audio.
    """
    path = path if hasattr(path, "read") else Path(path)
    path_name = name or str(path)
    try:
        x, sr = sf.read(path, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        raise AudioError(f"{path_name}: cannot read audio ({_short(e)})") from None
    if x.shape[0] == 0:
        raise AudioError(f"{path_name}: no samples")
    if not np.isfinite(x).all():
        raise AudioError(f"{path_name}: contains NaN or infinite samples")
    mono = x.mean(axis=1)
    if sr != sample_rate:
        mono = soxr.resample(mono, sr, sample_rate, quality="HQ").astype(np.float32)
    return np.ascontiguousarray(mono, dtype=np.float32)


def save(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write mono float audio [T] as 16-bit PCM WAV, atomically (temp file + rename).

    Samples outside [-1, 1] are clipped.
    """
    wav = np.clip(np.asarray(wav, dtype=np.float32).reshape(-1), -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, wav, sample_rate, subtype="PCM_16", format="WAV")


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__

"""The only audio I/O: load any file soundfile reads, mix to mono or stereo, resample (soxr), save.

Waveforms here are float32 numpy arrays in [-1, 1]: [T] (mono) or [C, T] (C channels; stereo is left, right).
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from ..files import atomic_path

# ITU-R BS.775 downmix of 5.1 (file order FL, FR, FC, LFE, BL, BR) to stereo: centre and surrounds at -3 dB,
# LFE left out, scaled so that a full-scale signal on every channel stays within [-1, 1].
_DOWNMIX_51 = np.array([[1, 0], [0, 1], [0.7071, 0.7071], [0, 0], [0.7071, 0], [0, 0.7071]]) / 2.4142


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


def load(path: str | Path | BinaryIO, sample_rate: int, name: str | None = None, channels: int = 1) -> np.ndarray:
    """Read `path` (or an open binary file, e.g. a member of a tar, called `name` in errors) as `channels`
    channels (`to_channels`), resampled to `sample_rate`.

    Returns float32 [T] (channels 1) or [channels, T]. Raises AudioError for unreadable, empty or non-finite audio.
    """
    return read(path, sample_rate, name, channels)[0]


def read(path: str | Path | BinaryIO, sample_rate: int, name: str | None = None,
         channels: int = 1) -> tuple[np.ndarray, int]:
    """(`load`'s waveform, the number of channels in the file)."""
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
    y = to_channels(x, channels)  # [T, channels]
    if sr != sample_rate:
        y = soxr.resample(y, sr, sample_rate, quality="HQ")
    y = np.ascontiguousarray(y.T, dtype=np.float32)
    return (y[0] if channels == 1 else y), x.shape[1]


def read_raw(source: str | Path | BinaryIO, name: str | None = None) -> tuple[np.ndarray, int]:
    """(float32 [C, T] as stored, the file's sample rate): no resampling, no mix; AudioError naming the file."""
    try:
        x, sr = sf.read(source if hasattr(source, "read") else Path(source), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError, OSError) as e:
        reason = _short(e).replace(repr(source), repr(name)) if name else _short(e)  # a buffer's repr means nothing
        raise AudioError(f"{name or source}: cannot read audio ({reason})") from None
    return x.T, sr


def to_channels(x: np.ndarray, channels: int) -> np.ndarray:
    """Frames [T, n] of an n-channel file -> [T, channels]. To mono: the mean of the channels. To stereo: mono
    is copied to both sides, stereo kept, 5.1 downmixed (ITU-R BS.775), any other count averaged to both sides."""
    n = x.shape[1]
    if channels == n:
        return x
    if channels == 1:
        return x.mean(axis=1, keepdims=True)
    if channels != 2:
        raise ValueError(f"channels must be 1 or 2, got {channels}")
    if n == 6:
        return (x @ _DOWNMIX_51).astype(np.float32)
    return np.repeat(x.mean(axis=1, keepdims=True), 2, axis=1)


WRITE_FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".aiff": ("AIFF", "PCM_16"),
                 ".aif": ("AIFF", "PCM_16"), ".ogg": ("OGG", "VORBIS")}  # by the file name's suffix


def format_for(path: str | Path) -> tuple[str, str]:
    """(soundfile format, subtype) that `save` writes for this file name; ValueError for a suffix it cannot."""
    path = Path(path)
    if path.suffix.lower() not in WRITE_FORMATS:
        raise ValueError(f"{path}: cannot write {path.suffix or 'suffix-less'} audio (choose .wav, .flac, .aiff "
                         "or .ogg)")
    return WRITE_FORMATS[path.suffix.lower()]


def save(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Write float audio [T] (mono) or [C, T] in the format its suffix names (16-bit PCM WAV, FLAC or AIFF; Ogg
    Vorbis), atomically (temp file + rename). Samples outside [-1, 1] are clipped."""
    audio_format, subtype = format_for(path)
    wav = np.asarray(wav, dtype=np.float32)
    wav = np.clip(wav.reshape(-1) if wav.ndim == 1 else wav.T, -1.0, 1.0)
    with atomic_path(path) as tmp:
        sf.write(tmp, wav, sample_rate, subtype=subtype, format=audio_format)


def _short(e: Exception) -> str:
    return str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__

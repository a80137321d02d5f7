"""What a folder of audio holds, before anyone trains on it (`audiodiff inspect`): per file its rate, channels,
length, loudness and clipping, the files training would skip and why, identical files, files shorter than a
crop, and the label counts. Reads every file once; writes nothing."""

from __future__ import annotations

import hashlib
import io
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
from tqdm.auto import tqdm

from ..audio.io import AudioError, read_raw
from ..audio.mel import MelSpectrogram
from ..config import MelConfig
from .folders import find_audio_files, usable_wave
from .labels import file_labels

FULL_SCALE = 0.999  # a sample at or above this |value| counts as clipped
CLIPPED_SHARE = 1e-3  # a file with more of its samples clipped than this is reported


@dataclass(frozen=True)
class FileFacts:
    """One readable file, as stored: rate (Hz), channels, seconds, RMS and peak (dBFS), share of clipped samples."""

    path: str
    sample_rate: int
    channels: int
    seconds: float
    rms_db: float
    peak_db: float
    clipped: float


@dataclass
class Survey:
    """What `survey` found. found: audio files (by extension); files: those readable; skipped: (file, why training
    would skip it); duplicates: groups of identical files; short: usable files shorter than one crop (training pads
    them); labels: {label: files}, or a line saying why there are none."""

    found: int = 0
    files: list[FileFacts] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    duplicates: list[list[str]] = field(default_factory=list)
    short: list[str] = field(default_factory=list)
    labels: dict[str, int] | str = ""

    @property
    def clipping(self) -> list[str]:
        return [f.path for f in self.files if f.clipped > CLIPPED_SHARE]


def _db(x: float) -> float:
    return float(20 * np.log10(max(x, 1e-6)))  # silence shows as -120 dBFS, not minus infinity


def file_facts(source: Path | BinaryIO, name: str) -> FileFacts:
    """The facts of one file (AudioError if it cannot be read)."""
    x, sr = read_raw(source, name)
    if x.shape[-1] == 0:
        raise AudioError(f"{name}: no samples")
    finite = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return FileFacts(name, sr, x.shape[0], x.shape[-1] / sr, _db(float(np.sqrt(np.mean(finite ** 2)))),
                     _db(float(np.abs(finite).max())), float(np.mean(np.abs(finite) >= FULL_SCALE)))


def survey(data_dir: str | Path, mel: MelConfig, crop_frames: int, label_column: str | None = None,
           progress: bool = True, skip: tuple[Path, ...] = ()) -> Survey:
    """Every audio file under data_dir (as training finds them), judged as training with this mel would judge it."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: not a folder")
    spectrogram, found = MelSpectrogram(mel), Survey()
    crop_seconds = crop_frames * mel.hop_length / mel.sample_rate
    digests: dict[str, list[str]] = {}
    usable = []
    paths = find_audio_files(data_dir, skip=skip)
    found.found = len(paths)
    for path in tqdm(paths, desc="inspect", unit="file", disable=not progress):
        name, content = path.relative_to(data_dir).as_posix(), path.read_bytes()  # each file read from disk once
        try:
            found.files.append(file_facts(io.BytesIO(content), name))
        except AudioError as e:
            found.skipped.append((name, str(e).removeprefix(f"{name}: ")))
            continue
        digests.setdefault(hashlib.sha256(content).hexdigest(), []).append(name)
        wav, reason = usable_wave(io.BytesIO(content), name, spectrogram, skip_silent=True)
        if reason:
            found.skipped.append((name, reason))
            continue
        usable.append(name)
        if found.files[-1].seconds < crop_seconds:
            found.short.append(name)
    found.duplicates = [names for names in digests.values() if len(names) > 1]
    found.labels = _labels(data_dir, usable, label_column)
    return found


def _labels(data_dir: Path, usable: list[str], column: str | None) -> dict[str, int] | str:
    if not usable:
        return "no usable file"
    try:
        labelled = file_labels(data_dir, usable, column)
    except ValueError as e:
        return str(e)
    if labelled is None:
        return "none (no first-level subfolders with files in each, and no --label-column)"
    names, ids = labelled
    counts = Counter(ids.tolist())
    return {name: counts[i] for i, name in enumerate(names)}

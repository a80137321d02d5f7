"""Folder of audio files -> log-mels computed once and cached -> random crops for training.

Every file soundfile can read under the folder (recursively) is decoded once, mixed to mono,
resampled, and turned into a normalized log-mel. The mels are cached in one safetensors file keyed
by the mel config and the files' paths, sizes and modification times, so later epochs and later
runs never decode audio again. Unusable files are skipped and reported, never fatal on their own.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from . import checkpoint
from .audio import AudioError, audio_extensions, load
from .config import MelConfig
from .mel import SILENCE, MelSpectrogram

# Bump when the audio -> mel preprocessing changes (1: DC removal added), so older caches are rebuilt.
PREPROCESS_VERSION = 1
SILENCE_PEAK = 1e-4  # a file whose |peak| stays below this (-80 dBFS) is treated as silent


@dataclass
class DataReport:
    """What happened to each file found: used, padded (shorter than a crop) or skipped with a reason."""

    found: int = 0
    used: int = 0
    padded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    from_cache: bool = False

    def summary(self) -> str:
        reasons = Counter(reason.split(" (")[0] for _, reason in self.skipped)
        text = f"{self.used} of {self.found} audio files used"
        if self.skipped:
            text += f", {len(self.skipped)} skipped (" + ", ".join(f"{n} {r}" for r, n in reasons.items()) + ")"
        if self.padded:
            text += f", {self.padded} shorter than a crop (padded with silence)"
        return text + (" [mel cache]" if self.from_cache else "")


class MelDataset:
    """Per-file normalized log-mels [F, N_i] (float16, concatenated), sampled as random crops."""

    def __init__(self, mels: Tensor, lengths: Tensor, files: list[str], crop_frames: int) -> None:
        self.mels = mels  # [F, sum N_i]
        self.lengths = lengths  # long [num_files]
        self.offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        self.files = files
        self.crop_frames = crop_frames
        # Choose files in proportion to their number of crop positions, so every frame is seen equally often.
        self.weights = (lengths - crop_frames + 1).clamp_min(1).double()

    def __len__(self) -> int:
        return len(self.files)

    def sample(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """A batch of random crops, float32 [B, 1, F, crop_frames]; short files padded with -1 (silence)."""
        return self.crops(self.sample_files(batch_size, generator), generator)

    def sample_files(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """File indices long [B], drawn in proportion to each file's number of crop positions."""
        return torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)

    def crops(self, files: Tensor, generator: torch.Generator) -> Tensor:
        """One random crop of each file index in `files` [B] -> float32 [B, 1, F, crop_frames]."""
        u = torch.rand(len(files), generator=generator, dtype=torch.float64)
        out = torch.full((len(files), 1, self.mels.shape[0], self.crop_frames), SILENCE)  # short files: padded
        for b, i in enumerate(files.tolist()):
            n = int(self.lengths[i])
            start = int(u[b] * max(1, n - self.crop_frames + 1))
            crop = self.mels[:, self.offsets[i] + start : self.offsets[i] + min(n, start + self.crop_frames)]
            out[b, 0, :, : crop.shape[1]] = crop.float()
        return out

    def file_mel(self, i: int) -> Tensor:
        """The whole normalized log-mel of file i, float32 [F, N_i]."""
        return self.mels[:, int(self.offsets[i]) : int(self.offsets[i + 1])].float()


def find_audio_files(data_dir: Path) -> list[Path]:
    """Files under data_dir with an extension soundfile reads, sorted; symlinked folders are not followed."""
    exts = audio_extensions()
    found = []
    for root, dirs, files in os.walk(data_dir):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        found += [Path(root) / f for f in files if not f.startswith(".") and f.rsplit(".", 1)[-1].lower() in exts]
    return sorted(found)


def load_mels(data_dir: str | Path, mel: MelSpectrogram, crop_frames: int, cache_dir: Path | None = None,
              progress: bool = True, skip_silent: bool = True) -> tuple[MelDataset, DataReport]:
    """Build (or load from cache) the mel dataset of every usable audio file under data_dir.

    skip_silent=False keeps silent files (evaluation must score a generator that outputs silence).
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: not a folder")
    files = find_audio_files(data_dir)
    if not files:
        raise ValueError(f"{data_dir}: no audio files found (looked for {', '.join(sorted(audio_extensions()))})")
    cache = cache_dir / f"mels-{_cache_key(data_dir, files, mel.config)}.safetensors" if cache_dir else None
    if cache is not None and cache.exists():
        loaded = _read_cache(cache, crop_frames)
        if loaded is not None:
            return loaded
    mels, lengths, used, report = _compute(data_dir, files, mel, progress, skip_silent)
    if not used:
        first = "; ".join(f"{p}: {r}" for p, r in report.skipped[:3])
        raise ValueError(f"{data_dir}: none of the {len(files)} audio files is usable ({first})")
    report.padded = sum(n < crop_frames for n in lengths)
    data = MelDataset(torch.cat(mels, dim=1), torch.tensor(lengths), used, crop_frames)
    if cache is not None:
        _write_cache(cache, data, report)
    return data, report


def _compute(data_dir: Path, files: list[Path], mel: MelSpectrogram, progress: bool, skip_silent: bool):
    report = DataReport(found=len(files))
    mels, lengths, used = [], [], []
    for name, wav in _usable_waves(data_dir, files, mel, report, progress, skip_silent, "mel cache"):
        with torch.no_grad():
            m = mel(torch.from_numpy(wav)[None])[0, 0].half()
        mels.append(m)
        lengths.append(m.shape[1])
        used.append(name)
    report.used = len(used)
    return mels, lengths, used, report


def _usable_waves(data_dir: Path, files: list[Path], mel: MelSpectrogram, report: DataReport, progress: bool,
                  skip_silent: bool, desc: str) -> Iterator[tuple[str, np.ndarray]]:
    """(path relative to data_dir, float32 mono wav at the mel's rate, DC removed) of each usable file;
    the others are added to report.skipped with their reason."""
    for path in tqdm(files, desc=desc, unit="file", disable=not progress, leave=False):
        try:
            wav = load(path, mel.config.sample_rate)
        except AudioError as e:
            report.skipped.append((str(path), str(e).removeprefix(f"{path}: ")))
            continue
        wav = wav - wav.mean()  # a DC offset is a recording defect, not something to learn as bass
        reason = _unusable(wav, mel, skip_silent)
        if reason:
            report.skipped.append((str(path), reason))
            continue
        yield str(path.relative_to(data_dir)), np.ascontiguousarray(wav, dtype=np.float32)


def _unusable(wav: np.ndarray, mel: MelSpectrogram, skip_silent: bool) -> str | None:
    if len(wav) < mel.config.n_fft:
        return f"too short ({len(wav)} samples, need at least n_fft = {mel.config.n_fft})"
    peak = float(np.abs(wav).max())
    if skip_silent and peak < SILENCE_PEAK:
        return f"silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)"
    return None


def _cache_key(data_dir: Path, files: list[Path], config: MelConfig) -> str:
    h = hashlib.sha256(json.dumps({**config.__dict__, "preprocess": PREPROCESS_VERSION}, sort_keys=True).encode())
    for p in files:
        st = p.stat()
        h.update(f"{p.relative_to(data_dir)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def _write_cache(path: Path, data: MelDataset, report: DataReport) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"files": data.files, "report": report.__dict__}
    checkpoint.write(path, {"mels": data.mels, "lengths": data.lengths}, meta)


def _read_cache(path: Path, crop_frames: int) -> tuple[MelDataset, DataReport] | None:
    """The cached dataset, or None (recompute) if the cache file is damaged."""
    try:
        tensors, meta = checkpoint.read(path)
        report = DataReport(**meta["report"])
        data = MelDataset(tensors["mels"], tensors["lengths"], meta["files"], crop_frames)
    except (checkpoint.CheckpointError, KeyError, TypeError):
        return None
    report.skipped = [tuple(s) for s in report.skipped]
    report.padded = int((data.lengths < crop_frames).sum())
    report.from_cache = True
    return data, report


class WaveDataset:
    """Waveforms of every usable file (float32, concatenated), sampled as random segments (vocoder training)."""

    def __init__(self, wav: Tensor, lengths: Tensor, files: list[str]) -> None:
        self.wav = wav  # [sum T_i]
        self.lengths = lengths  # long [num_files]
        self.offsets = torch.cat([lengths.new_zeros(1), lengths.cumsum(0)])
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def segments(self, batch_size: int, length: int, generator: torch.Generator) -> Tensor:
        """Random segments float32 [B, length]: files drawn in proportion to their segment positions, short
        files zero-padded at the end."""
        weights = (self.lengths - length + 1).clamp_min(1).double()
        files = torch.multinomial(weights, batch_size, replacement=True, generator=generator)
        u = torch.rand(batch_size, generator=generator, dtype=torch.float64)
        out = torch.zeros(batch_size, length)
        for b, i in enumerate(files.tolist()):
            n = int(self.lengths[i])
            start = int(self.offsets[i]) + int(u[b] * max(1, n - length + 1))
            piece = self.wav[start : start + min(n, length)]
            out[b, : len(piece)] = piece
        return out


def load_waves(data_dir: str | Path, mel: MelSpectrogram, progress: bool = True) -> tuple[WaveDataset, DataReport]:
    """Every usable audio file under data_dir, decoded, mixed to mono, resampled to the mel's rate, DC removed."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: not a folder")
    files = find_audio_files(data_dir)
    report = DataReport(found=len(files))
    waves, used = [], []
    for name, wav in _usable_waves(data_dir, files, mel, report, progress, True, "loading audio"):
        waves.append(torch.from_numpy(wav))
        used.append(name)
    report.used = len(used)
    if not used:
        first = "; ".join(f"{p}: {r}" for p, r in report.skipped[:3]) or "no audio files found"
        raise ValueError(f"{data_dir}: no usable audio file among {len(files)} ({first})")
    return WaveDataset(torch.cat(waves), torch.tensor([len(w) for w in waves]), used), report


def file_labels(data_dir: str | Path, files: list[str], column: str | None = None) -> tuple[list[str], Tensor] | None:
    """Class labels of `files` (paths relative to data_dir): (sorted label names, long [len(files)]), or None.

    column=None: the first-level subfolder of each file, if every file sits in one and there are at
    least two. Otherwise `column` of a metadata.csv in data_dir or its parent, whose `path` column
    holds paths relative to the CSV's folder.
    """
    data_dir = Path(data_dir)
    if column is None:
        parts = [Path(f).parts for f in files]
        if all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) > 1:
            return _encode([p[0] for p in parts])
        return None
    csv_path = next((d / "metadata.csv" for d in (data_dir, data_dir.parent) if (d / "metadata.csv").is_file()), None)
    if csv_path is None:
        raise ValueError(f"{data_dir}: --label-column {column!r} given but no metadata.csv here or in the parent folder")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or column not in rows[0] or "path" not in rows[0]:
        raise ValueError(f"{csv_path}: needs columns 'path' and {column!r}")
    by_path = {Path(r["path"]).as_posix(): r[column] for r in rows}
    root = csv_path.parent.resolve()
    names = []
    for f in files:
        key = (data_dir / f).resolve().relative_to(root).as_posix()
        if key not in by_path:
            raise ValueError(f"{csv_path}: no row for {key}")
        names.append(by_path[key])
    return _encode(names)


def _encode(names: list[str]) -> tuple[list[str], Tensor]:
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return classes, torch.tensor([index[n] for n in names])

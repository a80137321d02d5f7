"""Training data in memory: mel crops from the cache (MelDataset) and raw waveforms for vocoders (WaveDataset), with
the report of what a folder gave (DataReport)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..audio.mel import SILENCE, MelSpectrogram
from .folders import find_audio_files, usable_wave


@dataclass
class DataReport:
    """What happened to each file found: used, padded (shorter than a crop) or skipped with a reason; how many
    mels came from the cache and how many were prepared now; notes about the cache itself."""

    found: int = 0
    used: int = 0
    padded: int = 0
    duplicated: int = 0  # mono files in a stereo dataset, copied to both sides
    mixed_down: int = 0  # files with more channels than the dataset's, mixed down
    skipped: list[tuple[str, str]] = field(default_factory=list)
    cached: int = 0
    prepared: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def from_cache(self) -> bool:
        return self.cached > 0 and self.prepared == 0

    def summary(self) -> str:
        reasons = Counter(reason.split(" (")[0] for _, reason in self.skipped)
        text = f"{self.used} of {self.found} audio files used"
        if self.skipped:
            text += f", {len(self.skipped)} skipped (" + ", ".join(f"{n} {r}" for r, n in reasons.items()) + ")"
        if self.padded:
            text += f", {self.padded} shorter than a crop (padded with silence)"
        if self.duplicated:
            text += f", {self.duplicated} mono (copied to both channels)"
        if self.mixed_down:
            text += f", {self.mixed_down} with more than 2 channels (mixed down to stereo)"
        if self.from_cache:
            text += " [mel cache]"
        elif self.cached:
            text += f" [mel cache: {self.cached} files cached, {self.prepared} prepared now]"
        return text


class MelDataset:
    """Per-file normalized log-mels of C channels, float16, time-major [N_i, C * F] inside flat chunks
    (memory-mapped shards or arrays in memory), sampled as random crops [C, F, crop_frames]."""

    def __init__(self, chunks: list[np.ndarray], where: np.ndarray, files: list[str], n_mels: int,
                 crop_frames: int, channels: int = 1) -> None:
        self.chunks = chunks  # flat float16 arrays
        self.where = where  # int64 [num_files, 3]: chunk, offset (in values), frames
        self.lengths = torch.from_numpy(where[:, 2].copy())  # long [num_files]: frames N_i
        self.files = files
        self.n_mels = n_mels
        self.channels = channels
        self.crop_frames = crop_frames
        # Choose files in proportion to their number of crop positions, so every frame is seen equally often.
        self.weights = (self.lengths - crop_frames + 1).clamp_min(1).double()

    @classmethod
    def from_mels(cls, mels: list[Tensor], files: list[str], crop_frames: int) -> MelDataset:
        """A dataset in memory from per-file mels [C, F, N_i]."""
        chunks = [m.permute(2, 0, 1).contiguous().half().numpy().reshape(-1) for m in mels]
        where = np.array([(i, 0, m.shape[-1]) for i, m in enumerate(mels)], dtype=np.int64).reshape(-1, 3)
        return cls(chunks, where, files, mels[0].shape[1], crop_frames, mels[0].shape[0])

    def subset(self, idx: list[int]) -> MelDataset:
        """The files at indices `idx`, sharing this dataset's chunks."""
        return MelDataset(self.chunks, self.where[idx], [self.files[i] for i in idx], self.n_mels, self.crop_frames,
                          self.channels)

    def __len__(self) -> int:
        return len(self.files)

    def sample(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """A batch of random crops, float32 [B, C, F, crop_frames]; short files padded with -1 (silence)."""
        return self.crops(self.sample_files(batch_size, generator), generator)

    def sample_files(self, batch_size: int, generator: torch.Generator) -> Tensor:
        """File indices long [B], drawn in proportion to each file's number of crop positions."""
        return torch.multinomial(self.weights, batch_size, replacement=True, generator=generator)

    def crops(self, files: Tensor, generator: torch.Generator) -> Tensor:
        """One random crop of each file index in `files` [B] -> float32 [B, C, F, crop_frames]."""
        u = torch.rand(len(files), generator=generator, dtype=torch.float64)
        out = torch.full((len(files), self.channels, self.n_mels, self.crop_frames), SILENCE)  # short files: padded
        for b, i in enumerate(files.tolist()):
            n = int(self.where[i, 2])
            start = int(u[b] * max(1, n - self.crop_frames + 1))
            crop = self._frames(i, start, min(n, start + self.crop_frames))
            out[b, :, :, : crop.shape[-1]] = crop
        return out

    def file_mel(self, i: int) -> Tensor:
        """The whole normalized log-mel of file i, float32 [C, F, N_i]."""
        return self._frames(i, 0, int(self.where[i, 2]))

    def _frames(self, i: int, start: int, stop: int) -> Tensor:
        """Frames start..stop-1 of file i, float32 [C, F, stop - start]; reads only those values of its chunk."""
        chunk, offset, _ = self.where[i]
        row = self.channels * self.n_mels
        flat = self.chunks[chunk][offset + start * row : offset + stop * row]
        frames = torch.from_numpy(flat.astype(np.float32).reshape(stop - start, self.channels, self.n_mels))
        return frames.permute(1, 2, 0)


MIN_HELD, MAX_HELD = 8, 64  # fewer held-out files score too noisily to be worth the training clips; more cost time


def holdout(n: int, share: float, seed: int) -> tuple[list[int], list[int]]:
    """(training, held-out) indices of n files: round(share * n) of them held out, at most MAX_HELD, drawn with
    `seed`; none held out when that is fewer than MIN_HELD."""
    count = min(MAX_HELD, round(share * n))
    if count < MIN_HELD:
        return list(range(n)), []
    held = set(np.random.default_rng(seed).permutation(n)[:count].tolist())
    return [i for i in range(n) if i not in held], sorted(held)


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


def load_waves(data_dir: str | Path, mel: MelSpectrogram, progress: bool = True,
               skip: tuple[Path, ...] = ()) -> tuple[WaveDataset, DataReport]:
    """Every usable audio file under data_dir, decoded, mixed to mono, resampled to the mel's rate, DC removed."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: not a folder")
    files = find_audio_files(data_dir, skip=skip)
    report = DataReport(found=len(files))
    waves, used = [], []
    for path in tqdm(files, desc="loading audio", unit="file", disable=not progress, leave=False):
        wav, reason = usable_wave(path, str(path), mel, True)
        if wav is None:
            report.skipped.append((str(path), reason))
            continue
        waves.append(torch.from_numpy(wav[0]))
        used.append(str(path.relative_to(data_dir)))
    report.used = len(used)
    if not used:
        first = "; ".join(f"{p}: {r}" for p, r in report.skipped[:3]) or "no audio files found"
        raise ValueError(f"{data_dir}: no usable audio file among {len(files)} ({first})")
    return WaveDataset(torch.cat(waves), torch.tensor([len(w) for w in waves]), used), report

"""Folder of audio files -> log-mels computed once and cached -> random crops for training.

Every file soundfile can read under the folder (recursively) is decoded once, mixed to mono (or made
stereo: audio.to_channels), resampled, and turned into a normalized log-mel (one per channel), in a pool of
worker processes for large folders.
The mels go to a sharded, memory-mapped store (`melcache.py`) in the run's cache folder, keyed per
file by path, size and modification time: adding or removing files prepares only those files, and
training reads its crops from the mapped shards, so memory stays flat in the size of the data and
processes on one machine share it. Unusable files are skipped and reported, never fatal on their own.
"""

from __future__ import annotations

import hashlib
import io
import json
import multiprocessing
import os
import secrets
import sys
import tarfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO, Callable, Iterator

import numpy as np
import torch
from torch import Tensor
from tqdm.auto import tqdm

from ..audio.io import AudioError, audio_extensions, read
from ..audio.mel import SILENCE, MelSpectrogram
from ..config import MelConfig
from .melcache import SHARD_BYTES, ShardWriter, Store

# Bump when the audio -> mel preprocessing changes (1: DC removal added), so older caches are rebuilt.
PREPROCESS_VERSION = 1
SILENCE_PEAK = 1e-4  # a file whose |peak| stays below this (-80 dBFS) is treated as silent
FILES_PER_WORKER = 16  # fewer files to prepare than this per worker: prepared in this process (a pool would cost more)
JOB_FILES = 2000  # at most this many files per preparation job
SAVE_EVERY_S = 30.0  # the cache index is saved at least this often during a preparation (and at its end)


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


def find_audio_files(data_dir: Path, exts: frozenset[str] | None = None) -> list[Path]:
    """Files under data_dir with an extension soundfile reads (or one of `exts`), sorted; symlinked folders are
    not followed."""
    return [data_dir / rel for rel, _ in _walk(data_dir, exts or audio_extensions())]


def _walk(data_dir: Path, exts: frozenset[str]) -> list[tuple[str, os.DirEntry]]:
    """(path relative to data_dir, directory entry) of the files under data_dir with one of `exts`, sorted by
    path components (the order of sorted Paths); hidden files and folders are left out and symlinked folders
    are not followed. Strings and os.scandir, not pathlib: a folder of a million files is listed in seconds."""
    found, stack = [], [("", os.fspath(data_dir))]
    while stack:
        rel, path = stack.pop()
        try:
            entries = list(os.scandir(path))
        except OSError:  # an unreadable subfolder is passed over, as os.walk does
            continue
        for e in entries:
            if e.name.startswith("."):
                continue
            if e.is_dir(follow_symlinks=False):
                stack.append((rel + e.name + os.sep, e.path))
            elif e.name.rsplit(".", 1)[-1].lower() in exts and not _links_to_folder(e):
                found.append((rel + e.name, e))
    found.sort(key=lambda item: item[0].split(os.sep))
    return found


def load_mels(data_dir: str | Path, mel: MelSpectrogram, crop_frames: int, cache_dir: Path | None = None,
              progress: bool = True, skip_silent: bool = True, workers: int | None = None,
              prepare: bool = True, shard_bytes: int = SHARD_BYTES, channels: int = 1) -> tuple[MelDataset, DataReport]:
    """The mel dataset of every usable audio file under data_dir, from (and kept in) the store in cache_dir, with
    `channels` channels (1: mono; 2: left and right).

    skip_silent=False keeps silent files (evaluation must score a generator that outputs silence).
    workers: processes that decode and compute mels (default: the cores; results do not depend on it).
    prepare=False: only read a store another process keeps up to date (DDP ranks other than 0); a file
    the store lacks is then an error. cache_dir=None keeps the mels in memory.
    """
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise ValueError(f"{data_dir}: not a folder")
    listing = _listing(data_dir)
    if not listing:
        raise ValueError(f"{data_dir}: no audio files found (looked for {', '.join(sorted(audio_extensions()))}, "
                         "also inside .tar files)")
    report = DataReport(found=len(listing))
    how = Preparation(mel.config, channels, skip_silent)
    if cache_dir is None:
        entries, chunks = _prepare_in_memory(data_dir, listing, how, workers, progress, report)
    else:
        store = _open_store(cache_dir, how, report, prepare)
        todo = _update_index(store, listing, prepare)
        report.cached = len(listing) - len(todo)
        if todo:
            _prepare_into(store, data_dir, todo, how, workers, progress, report, shard_bytes)
        entries, chunks = store.entries, store.maps()
    for f in listing:
        if "skipped" in entries.get(f, {}):
            report.skipped.append((str(data_dir / f), entries[f]["skipped"]))
    data = _dataset(listing, entries, chunks, mel.config.n_mels, crop_frames, channels)
    if data is None:
        first = "; ".join(f"{p}: {r}" for p, r in report.skipped[:3])
        raise ValueError(f"{data_dir}: none of the {len(listing)} audio files is usable ({first})")
    report.used, report.padded = len(data), int((data.lengths < crop_frames).sum())
    if channels > 1:
        sources = [entries[f].get("source_channels", channels) for f in data.files]
        report.duplicated = sum(n < channels for n in sources)
        report.mixed_down = sum(n > channels for n in sources)
    return data, report


@dataclass(frozen=True)
class Preparation:
    """How each file becomes a mel: the mel config, channels (1 or 2) and whether silent files are skipped."""

    config: MelConfig
    channels: int = 1
    skip_silent: bool = True


def _links_to_folder(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()
    except OSError:  # a link loop: a file that decoding reports as unreadable
        return False


def _listing(data_dir: Path) -> dict[str, dict]:
    """{path relative to data_dir: record} of every audio file under data_dir, then of every audio member of the
    uncompressed .tar files there (WebDataset-style shards, read in place: key TAR/MEMBER, record with the
    member's size and data offset and the tar's mtime). A .tar that cannot be read is listed as a file, so that
    it is reported as skipped with the reason."""
    exts = audio_extensions()
    found = _walk(data_dir, exts | {"tar"})  # one walk of the folder for both
    listing = {rel: _stat(e) for rel, e in found if not rel.lower().endswith(".tar")}
    for rel, e in found:
        if not rel.lower().endswith(".tar"):
            continue
        tar, record = data_dir / rel, _stat(e)
        try:
            with tarfile.open(tar, "r:") as archive:
                members = [m for m in archive if m.isfile() and not Path(m.name).name.startswith(".")
                           and m.name.rsplit(".", 1)[-1].lower() in exts]
        except (tarfile.TarError, OSError):
            listing[rel] = record
            continue
        for m in members:
            listing[f"{rel}/{m.name}"] = {"size": m.size, "mtime_ns": record["mtime_ns"], "tar_offset": m.offset_data}
    return listing


def _container(data_dir: Path, f: str, record: dict) -> Path:
    """The file on disk that holds entry f: itself, or the .tar it is a member of."""
    if "tar_offset" not in record:
        return data_dir / f
    parts = Path(f).parts
    return data_dir.joinpath(*parts[: next(i for i, p in enumerate(parts) if p.endswith(".tar")) + 1])


def _stat(path: Path | os.DirEntry) -> dict:
    """What identifies a version of a file for the cache; an unreadable file (a dangling link) is size -1,
    and decoding it reports why."""
    try:
        st = path.stat()  # a DirEntry follows a symlinked file like Path.stat
    except OSError:
        return {"size": -1, "mtime_ns": 0}
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _open_store(cache_dir: Path, how: Preparation, report: DataReport, prepare: bool) -> Store:
    """The store for this mel config in cache_dir, with damaged shards (and their files' entries) dropped.
    Checksums are verified for shards changed since they were last verified (melcache.Store.damaged).
    prepare=False (a reader): nothing is changed or verified beyond the shards' sizes."""
    old = sorted(cache_dir.glob("mels-*.safetensors")) if cache_dir.is_dir() and prepare else []
    for path in old:  # the single-file cache of earlier versions, replaced by the sharded store
        path.unlink(missing_ok=True)
    if old:
        report.notes.append(f"note: {cache_dir}: mel cache in the old single-file format; rebuilding it as shards")
    store = Store.open(cache_dir / f"mels-{_config_key(how)}", how.config.n_mels * how.channels)
    verified = {name: info.get("mtime_ns") for name, info in store.shards.items()}
    bad = store.damaged(checksums=prepare)
    if prepare and not bad and verified != {name: info.get("mtime_ns") for name, info in store.shards.items()}:
        store.save()  # shards verified again after their mtime changed (a copied cache): not again next time
    if bad and prepare:
        lost = store.drop_shards(bad)
        report.notes.append(f"warning: {store.root}: {len(bad)} damaged shard(s) ({', '.join(bad)}); "
                            f"preparing their {len(lost)} files again")
    elif bad:
        raise ValueError(f"{store.root}: shards {', '.join(bad)} are missing or truncated")
    return store


def _update_index(store: Store, listing: dict[str, dict], prepare: bool) -> list[tuple[str, dict]]:
    """Forget entries of files gone or changed; returns the files to prepare, (relative path, stat record)."""
    todo = [(f, rec) for f, rec in listing.items()
            if {k: store.entries.get(f, {}).get(k) for k in rec} != rec]
    if not prepare:
        if todo:
            raise ValueError(f"{store.root}: the mel cache lacks {todo[0][0]} (and {len(todo) - 1} more files)")
        return []
    stale = [f for f in store.entries if f not in listing] + [f for f, _ in todo if f in store.entries]
    for f in stale:
        del store.entries[f]
    if store.tidy() or stale:
        store.save()
    return todo


def _dataset(listing: dict[str, dict], entries: dict[str, dict], chunks: dict[str, np.ndarray], n_mels: int,
             crop_frames: int, channels: int) -> MelDataset | None:
    """The dataset of the usable files among `listing`, in its order; None if there is none."""
    used = [f for f in listing if "shard" in entries[f]]
    if not used:
        return None
    names = list(chunks)
    index = {name: i for i, name in enumerate(names)}
    where = np.array([(index[e["shard"]], e["offset"], e["frames"]) for e in map(entries.get, used)], dtype=np.int64)
    return MelDataset([chunks[n] for n in names], where, used, n_mels, crop_frames, channels)


def _prepare_in_memory(data_dir: Path, listing: dict[str, dict], how: Preparation, workers: int | None,
                       progress: bool, report: DataReport) -> tuple[dict, dict]:
    """(entries, chunks) like a store's, each file's mel its own chunk named after the file."""
    entries, chunks = {}, {}
    for job, results in _prepare(data_dir, list(listing.items()), how, workers, progress, report, _job_to_memory, ()):
        for (f, record), (m, extra) in zip(job, results):
            if m is None:
                entries[f] = {**record, **extra}
            else:
                entries[f] = {**record, **extra, "shard": f, "offset": 0, "frames": m.shape[0]}
                chunks[f] = m.reshape(-1)
    return entries, chunks


def _prepare_into(store: Store, data_dir: Path, todo: list[tuple[str, dict]], how: Preparation, workers: int | None,
                  progress: bool, report: DataReport, shard_bytes: int) -> None:
    """Prepare `todo` into new shards of `store`: each job writes its own shards (in a worker process when there
    are several); the index takes in each finished job and is saved every SAVE_EVERY_S and at the end."""
    prefix, saved = secrets.token_hex(4), time.monotonic()
    try:
        for job, (entries, shards) in _prepare(data_dir, todo, how, workers, progress, report, _job_to_shards,
                                               (str(store.root), store.n_mels, prefix, shard_bytes)):
            store.merge(entries, shards)
            if time.monotonic() - saved > SAVE_EVERY_S:
                store.save()
                saved = time.monotonic()
        store.save()
    except OSError as e:  # a full disk, say: the index names only whole shards; the others are tidied later
        raise OSError(e.errno, f"{store.root}: cannot extend the mel cache ({e.strerror or e}); the files "
                               f"cached so far are intact") from None


def _prepare(data_dir: Path, todo: list[tuple[str, dict]], how: Preparation, workers: int | None, progress: bool,
             report: DataReport, job_fn: Callable, extra: tuple) -> Iterator[tuple[list, Any]]:
    """Run job_fn over jobs of consecutive files of `todo`, in this process or a pool; yields (job, its result) in
    order, after checking that the job's files did not change meanwhile (an error if one did)."""
    n = _worker_count(workers, len(todo))
    size = JOB_FILES if n == 1 else max(1, min(JOB_FILES, -(-len(todo) // (4 * n))))  # a pool: >= 4 jobs per worker
    jobs = [todo[i : i + size] for i in range(0, len(todo), size)]
    args = [(j, [(f, rec, _source(data_dir, f, rec)) for f, rec in job], how, *extra)
            for j, job in enumerate(jobs)]
    bar = tqdm(total=len(todo), desc="preparing mels", unit="file", disable=not progress, leave=False)
    for job, result in zip(jobs, _map(job_fn, args, n)):
        for f, record in job:
            _check_unchanged(data_dir, f, record)
        yield job, result
        report.prepared += len(job)
        bar.update(len(job))
    bar.close()


def _map(fn: Callable, args: list, workers: int) -> Iterator:
    """fn over args in order: in this process, or in `workers` processes running torch on one thread each."""
    if workers <= 1:
        yield from map(fn, args)
        return
    ctx = multiprocessing.get_context("fork" if sys.platform == "linux" else "spawn")  # fork: no re-imports
    pool = ProcessPoolExecutor(workers, ctx, initializer=torch.set_num_threads, initargs=(1,))
    try:
        yield from pool.map(fn, args)
    finally:
        pool.shutdown(cancel_futures=True)  # after an error: the jobs not yet started are dropped


def _job_to_memory(args: tuple) -> list[tuple[np.ndarray | None, dict]]:
    """`_file_mel` of each file of a job."""
    _, items, how = args
    mel = MelSpectrogram(how.config)
    return [_file_mel(source, mel, how) for _, _, source in items]


def _job_to_shards(args: tuple) -> tuple[dict, dict]:
    """Writes a job's mels to shards of its own; returns their (entries, shards) index records."""
    j, items, how, root, n_mels, prefix, shard_bytes = args
    mel = MelSpectrogram(how.config)
    writer = ShardWriter(Path(root), n_mels, f"{prefix}-{j:05d}", shard_bytes)
    try:
        for f, record, source in items:
            m, extra = _file_mel(source, mel, how)
            writer.add(f, {**record, **extra}, m)
        writer.close()
    except BaseException:
        writer.abort()
        raise
    return writer.entries, writer.shards


def _source(data_dir: Path, f: str, record: dict) -> tuple[str, str, int | None, int]:
    """What a job reads for entry f: (name, file on disk, offset of the data in it or None, size)."""
    return str(data_dir / f), str(_container(data_dir, f, record)), record.get("tar_offset"), record["size"]


def _check_unchanged(data_dir: Path, f: str, record: dict) -> None:
    now = _stat(_container(data_dir, f, record))
    if now["mtime_ns"] != record["mtime_ns"] or ("tar_offset" not in record and now != record):
        raise ValueError(f"{data_dir / f}: changed while its mel was being prepared; run again once the folder is "
                         "no longer being written to")


def _file_mel(source: tuple, mel: MelSpectrogram, how: Preparation) -> tuple[np.ndarray | None, dict]:
    """(normalized log-mel float16 [N, C * F], time-major, of mono or left/right audio; what to add to its index entry:
    the file's own channel count where it differs from C) of a usable file, or (None, {"skipped": why}).
    source: see `_source`."""
    name, path, offset, size = source
    if offset is None:
        wav, reason = _usable_wave(Path(path), name, mel, how.skip_silent, how.channels)
    else:  # a tar member: its bytes sit at offset in the (uncompressed) tar
        with open(path, "rb") as f:
            f.seek(offset)
            wav, reason = _usable_wave(io.BytesIO(f.read(size)), name, mel, how.skip_silent, how.channels)
    if wav is None:
        return None, {"skipped": reason}
    wav, source_channels = wav
    with torch.no_grad():
        x = torch.from_numpy(wav).reshape(how.channels, -1)
        m = mel.per_channel(x[None])[0].half()  # [C, F, N]
    extra = {"source_channels": source_channels} if source_channels != how.channels else {}
    return m.permute(2, 0, 1).reshape(m.shape[-1], -1).contiguous().numpy(), extra


def _worker_count(workers: int | None, files: int) -> int:
    return min(workers or _cores(), max(1, files // FILES_PER_WORKER))


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _usable_wave(source: Path | BinaryIO, name: str, mel: MelSpectrogram, skip_silent: bool,
                 channels: int = 1) -> tuple[tuple[np.ndarray, int] | None, str | None]:
    """((float32 wav [T] or [channels, T] (left, right) at the mel's rate, DC removed; the file's channel count),
    None) of a usable file, or (None, why it is not)."""
    try:
        wav, source_channels = read(source, mel.config.sample_rate, name, channels)
    except AudioError as e:
        return None, str(e).removeprefix(f"{name}: ")
    wav = wav - wav.mean(axis=-1, keepdims=True)  # a DC offset is a recording defect, not something to learn as bass
    reason = _unusable(wav, mel, skip_silent)
    return (None, reason) if reason else ((np.ascontiguousarray(wav, dtype=np.float32), source_channels), None)


def _unusable(wav: np.ndarray, mel: MelSpectrogram, skip_silent: bool) -> str | None:
    if wav.shape[-1] < mel.config.n_fft:
        return f"too short ({wav.shape[-1]} samples, need at least n_fft = {mel.config.n_fft})"
    peak = float(np.abs(wav).max())
    if skip_silent and peak < SILENCE_PEAK:
        return f"silent (peak {20 * np.log10(max(peak, 1e-12)):.0f} dBFS)"
    return None


def _config_key(how: Preparation) -> str:
    extra = {"channels": how.channels} if how.channels > 1 else {}  # mono caches keep the key they had
    key = json.dumps({**how.config.__dict__, **extra, "preprocess": PREPROCESS_VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]


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
    for path in tqdm(files, desc="loading audio", unit="file", disable=not progress, leave=False):
        wav, reason = _usable_wave(path, str(path), mel, True)
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

"""Folder of audio files -> log-mels computed once and cached (load_mels).

Every file soundfile can read under the folder (recursively) is decoded once, mixed to mono (or made
stereo: audio.to_channels), resampled, and turned into a normalized log-mel (one per channel), in a pool of
worker processes for large folders.
The mels go to a sharded, memory-mapped store (melcache.py) in the run's cache folder, keyed per
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
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from ..audio.io import audio_extensions
from ..audio.mel import MelSpectrogram
from ..config import MelConfig
from .datasets import DataReport, MelDataset
from .folders import check_unchanged, file_source, list_files, usable_wave
from .melcache import SHARD_BYTES, ShardWriter, Store

# Bump when the audio -> mel preprocessing changes (1: DC removal added), so older caches are rebuilt.
PREPROCESS_VERSION = 1


FILES_PER_WORKER = 16  # fewer files to prepare than this per worker: prepared in this process (a pool would cost more)


JOB_FILES = 2000  # at most this many files per preparation job


SAVE_EVERY_S = 30.0  # the cache index is saved at least this often during a preparation (and at its end)


def load_mels(data_dir: str | Path, mel: MelSpectrogram, crop_frames: int, cache_dir: Path | None = None,
              progress: bool = True, skip_silent: bool = True, workers: int | None = None,
              prepare: bool = True, shard_bytes: int = SHARD_BYTES, channels: int = 1,
              skip: tuple[Path, ...] = ()) -> tuple[MelDataset, DataReport]:
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
    listing = list_files(data_dir, skip)
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
    args = [(j, [(f, rec, file_source(data_dir, f, rec)) for f, rec in job], how, *extra)
            for j, job in enumerate(jobs)]
    bar = tqdm(total=len(todo), desc="preparing mels", unit="file", disable=not progress, leave=False)
    for job, result in zip(jobs, _map(job_fn, args, n)):
        for f, record in job:
            check_unchanged(data_dir, f, record)
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


def _file_mel(source: tuple, mel: MelSpectrogram, how: Preparation) -> tuple[np.ndarray | None, dict]:
    """(normalized log-mel float16 [N, C * F], time-major, of mono or left/right audio; what to add to its index entry:
    the file's own channel count where it differs from C) of a usable file, or (None, {"skipped": why}).
    source: see `file_source`."""
    name, path, offset, size = source
    if offset is None:
        wav, reason = usable_wave(Path(path), name, mel, how.skip_silent, how.channels)
    else:  # a tar member: its bytes sit at offset in the (uncompressed) tar
        with open(path, "rb") as f:
            f.seek(offset)
            wav, reason = usable_wave(io.BytesIO(f.read(size)), name, mel, how.skip_silent, how.channels)
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


def _config_key(how: Preparation) -> str:
    extra = {"channels": how.channels} if how.channels > 1 else {}  # mono caches keep the key they had
    key = json.dumps({**how.config.__dict__, **extra, "preprocess": PREPROCESS_VERSION}, sort_keys=True)
    return hashlib.sha256(key.encode()).hexdigest()[:16]

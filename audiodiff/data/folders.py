"""The files of a data folder: found (recursively, links followed once), listed with size and modification
time, read, and judged usable (not silent, long enough)."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path
from typing import BinaryIO

import numpy as np

from ..audio.io import AudioError, audio_extensions, read
from ..audio.mel import MelSpectrogram

SILENCE_PEAK = 1e-4  # a file whose |peak| stays below this (-80 dBFS) is treated as silent


def find_audio_files(data_dir: Path, exts: frozenset[str] | None = None, skip: tuple[Path, ...] = ()) -> list[Path]:
    """Files under data_dir with an extension soundfile reads (or one of `exts`), sorted; symlinked folders and
    the folders in `skip` are not followed."""
    return [data_dir / rel for rel, _ in _walk(data_dir, exts or audio_extensions(), skip)]


def inside(folder: Path, data_dir: Path) -> str | None:
    """`folder` as a path relative to data_dir ending in the separator, if it lies inside data_dir; else None."""
    rel = os.path.relpath(os.path.abspath(folder), os.path.abspath(data_dir))
    return None if rel == os.curdir or rel.split(os.sep)[0] == os.pardir else rel + os.sep


def _walk(data_dir: Path, exts: frozenset[str], skip: tuple[Path, ...] = ()) -> list[tuple[str, os.DirEntry]]:
    """(path relative to data_dir, directory entry) of the files under data_dir with one of `exts`, sorted by
    path components (the order of sorted Paths); hidden files and folders are left out and symlinked folders
    are not followed, nor the folders in `skip` (a run's own folder inside its data: its previews are not data).
    Strings and os.scandir, not pathlib: a folder of a million files is listed in seconds."""
    skipped = {r for r in (inside(s, data_dir) for s in skip) if r}
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
                if rel + e.name + os.sep not in skipped:
                    stack.append((rel + e.name + os.sep, e.path))
            elif e.name.rsplit(".", 1)[-1].lower() in exts and not _links_to_folder(e):
                found.append((rel + e.name, e))
    found.sort(key=lambda item: item[0].split(os.sep))
    return found


def _links_to_folder(e: os.DirEntry) -> bool:
    try:
        return e.is_dir()
    except OSError:  # a link loop: a file that decoding reports as unreadable
        return False


def list_files(data_dir: Path, skip: tuple[Path, ...] = ()) -> dict[str, dict]:
    """{path relative to data_dir: record} of every audio file under data_dir, then of every audio member of the
    uncompressed .tar files there (WebDataset-style shards, read in place: key TAR/MEMBER, record with the
    member's size and data offset and the tar's mtime). A .tar that cannot be read is listed as a file, so that
    it is reported as skipped with the reason."""
    exts = audio_extensions()
    found = _walk(data_dir, exts | {"tar"}, skip)  # one walk of the folder for both
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


def file_source(data_dir: Path, f: str, record: dict) -> tuple[str, str, int | None, int]:
    """What a job reads for entry f: (name, file on disk, offset of the data in it or None, size)."""
    return str(data_dir / f), str(_container(data_dir, f, record)), record.get("tar_offset"), record["size"]


def check_unchanged(data_dir: Path, f: str, record: dict) -> None:
    now = _stat(_container(data_dir, f, record))
    if now["mtime_ns"] != record["mtime_ns"] or ("tar_offset" not in record and now != record):
        raise ValueError(f"{data_dir / f}: changed while its mel was being prepared; run again once the folder is "
                         "no longer being written to")


def usable_wave(source: Path | BinaryIO, name: str, mel: MelSpectrogram, skip_silent: bool,
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

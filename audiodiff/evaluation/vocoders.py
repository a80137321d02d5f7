"""Vocoders scored on real audio: paired round-trip distances (mel L1, MR-STFT, SNR, LSD; PESQ/STOI for speech)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ..audio.io import load
from ..audio.mel import MelSpectrogram
from ..audio.metrics import UNSEEN_STFT_RESOLUTION, log_spectral_distance, mel_l1, mr_stft, snr_db, speech_scores
from ..config import MelConfig
from ..data.folders import find_audio_files
from ..data.labels import file_labels
from ..vocoders.base import Vocoder
from ..vocoders.registry import build_vocoder, describe, reconstruct


def evaluate_vocoder(files: list[Path], mel: MelSpectrogram, vocoder: Vocoder, seed: int = 0,
                     speech: bool = False) -> dict:
    """Mean paired round-trip scores of `vocoder` on the files, and its real-time factor on this device.

    speech=True adds PESQ-wb and STOI (optional packages), averaged over the clips where they are defined.
    """
    rows, extra, seconds, elapsed = [], [], 0.0, 0.0
    mel_cpu = MelSpectrogram(mel.config)  # scores on CPU whatever device the vocoder runs on
    for i, path in enumerate(files):
        wav = load(path, mel.config.sample_rate)
        t0 = time.perf_counter()
        est, _ = reconstruct(wav, mel, vocoder, seed=seed + i)
        elapsed += time.perf_counter() - t0
        seconds += len(wav) / mel.config.sample_rate
        rows.append((log_spectral_distance(wav, est), mel_l1(wav, est, mel_cpu), mr_stft(wav, est),
                     mr_stft(wav, est, UNSEEN_STFT_RESOLUTION), snr_db(wav, est)))
        if speech:
            extra.append(speech_scores(wav, est, mel.config.sample_rate))
    lsd, l1, mr, unseen, snr = (float(np.mean(c)) for c in zip(*rows))
    result = {"clips": len(files), "lsd_db": lsd, "mel_l1": l1, "mr_stft": mr, "stft_unseen": unseen, "snr_db": snr,
              "rtf": elapsed / seconds}
    for key in ("pesq_wb", "stoi") if speech else ():
        defined = [e[key] for e in extra if e[key] == e[key]]
        result[key] = float(np.mean(defined)) if defined else float("nan")
        result[f"{key}_clips"] = len(defined)  # clips where the score is defined
    return result


def vocoder_files(data: str | Path, clips: int, seed: int = 0, label_column: str | None = None
                  ) -> tuple[list[Path], str]:
    """A seeded random sample of `clips` audio files under `data`, and a line saying how it was drawn.

    Stratified when the folder has labels (first-level subfolders, or `label_column` of its metadata.csv):
    each label's files are shuffled and labels take turns, so every label is represented as evenly as
    the count allows (not the first files by name, which on a sorted folder are one label's).
    """
    data = Path(data)
    files = find_audio_files(data)
    if not files:
        raise ValueError(f"{data}: no audio files found")
    rng = np.random.default_rng(seed)
    labelled = file_labels(data, [str(f.relative_to(data)) for f in files], label_column)
    groups = [[files[i] for i in rng.permutation(len(files))]]
    if labelled is not None:
        names, idx = labelled
        groups = [[files[i] for i in rng.permutation(np.flatnonzero(idx.numpy() == k))] for k in range(len(names))]
    turns = [g[i] for i in range(max(map(len, groups))) for g in groups if i < len(g)]
    picked = sorted(turns[:clips])
    how = f"{len(picked)} of {len(files)} files in {data}, drawn at random with seed {seed}"
    if labelled is not None:
        chosen = set(picked)
        counts = {name: sum(f in chosen for f in g) for name, g in zip(labelled[0], groups)}
        how += ", stratified by label: " + ", ".join(f"{k} {n}" for k, n in counts.items())
    return picked, how


def compare_vocoders(data_dir: str | Path, specs: tuple[str, ...], mel_config: MelConfig, clips: int = 50,
                     seed: int = 0, label_column: str | None = None, speech: bool = False,
                     device: torch.device | None = None) -> tuple[dict[str, dict], str]:
    """`audiodiff evaluate vocoder`: round-trip scores of each vocoder spec on the same seeded sample of
    data_dir's files -> ({spec: scores, with "training" for a saved vocoder that records it}, the sample)."""
    mel = MelSpectrogram(mel_config).to(device or torch.device("cpu"))
    files, how = vocoder_files(data_dir, clips, seed, label_column)
    built = [build_vocoder(v, mel) for v in specs]  # all specs checked before the long work
    rows = {}
    for v in built:
        rows[describe(v)] = {**evaluate_vocoder(files, mel, v, seed=seed, speech=speech), "sample": how}
        if getattr(v, "record", None):
            rows[describe(v)]["training"] = v.record  # how long it trained, on what
    return rows, how

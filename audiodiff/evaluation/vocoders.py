"""Vocoders scored on real audio: paired round-trip distances (mel L1, MR-STFT, SNR, LSD; PESQ/STOI for speech)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..audio.io import format_for, load, save
from ..audio.mel import MelSpectrogram
from ..audio.metrics import UNSEEN_STFT_RESOLUTION, log_spectral_distance, mel_l1, mr_stft, snr_db, speech_scores
from ..audio.plot import save_spectrogram
from ..config import MelConfig
from ..data.folders import find_audio_files
from ..data.labels import file_labels
from ..device import resolve_device
from ..files import writable_dir
from ..vocoders.base import Vocoder
from ..vocoders.registry import build_vocoder, describe, reconstruct
from ..vocoders.registry import mel_config as mel_config_of


def paired_scores(wav: torch.Tensor, est: torch.Tensor, mel: MelSpectrogram) -> dict[str, float]:
    """A round trip's distances to its input (float [T] each, at the mel's rate; `mel` on the CPU)."""
    return {"lsd_db": log_spectral_distance(wav, est), "mel_l1": mel_l1(wav, est, mel), "mr_stft": mr_stft(wav, est),
            "stft_unseen": mr_stft(wav, est, UNSEEN_STFT_RESOLUTION), "snr_db": snr_db(wav, est)}


def reconstruct_file(in_audio: Path, out: Path, run: Path | None = None, vocoder: str | None = None, seed: int = 0,
                     device: str = "auto") -> dict[str, Any]:
    """`audiodiff reconstruct`: IN_AUDIO through the mel front end (a run's, a trained vocoder's or the default) and
    the vocoder (default griffinlim), written to `out` with the input's spectrogram beside it (out.png).
    Returns the paired scores of the result against the input, the vocoder's description and the real-time factor
    (vocoder built and run, over the clip's duration)."""
    format_for(out)  # an output it cannot write fails before the work
    mel_config = mel_config_of(run, (vocoder,) if vocoder else ())
    mel = MelSpectrogram(mel_config).to(resolve_device(device))
    wav = load(in_audio, mel_config.sample_rate)
    if len(wav) < mel_config.hop_length:
        raise ValueError(f"{in_audio}: {len(wav)} samples at {mel_config.sample_rate} Hz, shorter than one mel frame "
                         f"({mel_config.hop_length} samples)")
    t0 = time.perf_counter()
    voc = build_vocoder(vocoder or "griffinlim", mel)
    est, logmel = reconstruct(wav, mel, voc, seed)
    elapsed = time.perf_counter() - t0
    writable_dir(out.parent)
    save(out, est.numpy(), mel_config.sample_rate)
    save_spectrogram(out.with_suffix(".png"), logmel[0, 0].numpy(), mel_config, f"{in_audio.name} (input mel)")
    return {**paired_scores(wav, est, MelSpectrogram(mel_config)), "vocoder": describe(voc),
            "rtf": elapsed / (len(wav) / mel_config.sample_rate)}


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
        rows.append(paired_scores(wav, est, mel_cpu))
        if speech:
            extra.append(speech_scores(wav, est, mel.config.sample_rate))
    result = {"clips": len(files), **{k: float(np.mean([r[k] for r in rows])) for k in rows[0]},
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

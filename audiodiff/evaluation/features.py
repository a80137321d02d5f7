"""Per-clip feature vectors for set-level distances.

melstats (weight-free): per clip, the mean and standard deviation over time of each normalized log-mel band and of
the first 20 MFCCs (DCT-II of the log-mel), a 2 * (n_mels + 20)-dim vector; the trained embedder's penultimate
layer; and the stereo image of two-channel clips.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.fft
import torch

from ..audio.io import AudioError, read
from ..audio.mel import MelSpectrogram
from ..data.folders import find_audio_files
from ..data.prepare import load_mels
from ..model.embedder import Embedder

N_MFCC = 20


def clip_features(logmel: np.ndarray) -> np.ndarray:
    """Normalized log-mel [F, N] -> melstats vector float64 [2 F + 2 min(N_MFCC, F)]."""
    logmel = np.asarray(logmel, dtype=np.float64)
    mfcc = scipy.fft.dct(logmel, type=2, norm="ortho", axis=0)[:N_MFCC]
    return np.concatenate([logmel.mean(1), logmel.std(1), mfcc.mean(1), mfcc.std(1)])


def stereo_image(wav: np.ndarray) -> tuple[float, float]:
    """Stereo audio [2, T] (left, right) -> (inter-channel correlation of the samples, in [-1, 1]; level
    difference 20 log10(rms L / rms R) in dB). Mono copied to both sides gives (1, 0)."""
    left, right = np.asarray(wav, dtype=np.float64)
    rms = np.sqrt(np.array([np.mean(left**2), np.mean(right**2)])) + 1e-12
    corr = float(np.mean(left * right) / (rms[0] * rms[1]))
    return corr, float(20 * np.log10(rms[0] / rms[1]))


def stereo_images(folder: str | Path, sample_rate: int) -> np.ndarray:
    """`stereo_image` of every stereo file under folder, float64 [N, 2] (mono and unreadable files left out)."""
    out = []
    for path in find_audio_files(Path(folder)):
        try:
            wav, channels = read(path, sample_rate, channels=2)
        except AudioError:
            continue
        if channels == 2:
            out.append(stereo_image(wav))
    return np.array(out, dtype=np.float64).reshape(-1, 2)


def stereo_summary(images: np.ndarray) -> dict:
    """Mean and 5-95% range of the correlations and level differences of `stereo_images`."""
    def spread(v: np.ndarray) -> list[float]:
        return [float(v.mean()), float(np.percentile(v, 5)), float(np.percentile(v, 95))]

    return {"clips": len(images), "correlation": spread(images[:, 0]), "level_db": spread(images[:, 1]),
            "abs_level_db": spread(np.abs(images[:, 1]))}


def folder_features(folder: str | Path, mel: MelSpectrogram, progress: bool = False) -> tuple[np.ndarray, list[str]]:
    """melstats of every readable audio file under folder (silent files included): ([N, D], names)."""
    feats, names, _ = scored_features(folder, mel, progress)
    return feats, names


def scored_features(folder: str | Path, mel: MelSpectrogram, progress: bool = False
                    ) -> tuple[np.ndarray, list[str], list[tuple[str, str]]]:
    """`folder_features` plus the audio files that could not be scored, as (path, reason): unreadable,
    corrupt, NaN samples or shorter than one FFT window. For a generated set these are failures."""
    data, report = load_mels(folder, mel, crop_frames=1, progress=progress, skip_silent=False)
    feats = [clip_features(data.file_mel(i)[0].numpy()) for i in range(len(data))]
    return np.stack(feats), data.files, [(str(p), r) for p, r in report.skipped]


def embedder_features(folder: str | Path, embedder: Embedder, progress: bool = False
                      ) -> tuple[np.ndarray, torch.Tensor | None, list[str]]:
    """Embeddings [N, D] (and class probabilities [N, C] if the embedder classifies) of every clip in folder."""
    mel = MelSpectrogram(embedder.mel_config)
    data, _ = load_mels(folder, mel, crop_frames=1, progress=progress, skip_silent=False)
    with torch.inference_mode():
        outs = [embedder.embed_clip(data.file_mel(i)[0]) for i in range(len(data))]
    emb = torch.stack([e for e, _ in outs]).double().numpy()
    probs = torch.stack([p for _, p in outs]) if embedder.labels else None
    return emb, probs, data.files

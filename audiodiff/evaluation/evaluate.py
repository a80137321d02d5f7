"""Offline evaluation: set-level distances for generators, paired round-trip scores for vocoders.

Nothing here downloads weights. The generator embedding is weight-free ("melstats"): per clip, the
mean and standard deviation over time of each normalized log-mel band and of the first 20 MFCCs
(DCT-II of the log-mel), a 2 * (n_mels + 20)-dim vector. Features are standardized with the
reference set's per-dimension mean and std, so every dimension counts on the same scale.

Generator figures (generated set G vs reference set R of real audio):
    FD   Frechet distance between Gaussians fitted to the two sets (Heusel et al. 2017)
    KID  unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 (Binkowski et al. 2018)
with bootstrap 95% intervals (+- 1.96 bootstrap sd), and the real-vs-real floor: a seeded share of R,
as many clips as G, held back and scored like G against the rest of R (no part of the evaluation was
fitted on it). With a training folder, a memorization check too (nearest-training-clip distances of
G compared with those of R).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.fft
import torch

from ..audio.io import AudioError, load, read
from ..audio.mel import MelSpectrogram
from ..audio.metrics import UNSEEN_STFT_RESOLUTION, log_spectral_distance, mel_l1, mr_stft, snr_db, speech_scores
from ..config import EmbedderConfig, MelConfig
from ..data.datasets import find_audio_files, load_mels
from ..data.labels import CLIP_LABEL_COLUMN, clip_labels_recorded, file_labels
from ..vocoders.base import Vocoder
from ..vocoders.registry import build_vocoder, describe, reconstruct
from .embedder import Embedder, inception_score, modified_inception_score, train_embedder

N_MFCC = 20
Metric = Callable[[np.ndarray, np.ndarray], float]


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


def spectral_flux(logmel: np.ndarray) -> np.ndarray:
    """Normalized log-mel [C, F, N] -> flux float64 [N - 1]: the mean absolute change from frame n to n + 1."""
    return np.abs(np.diff(np.asarray(logmel, dtype=np.float64), axis=-1)).mean(axis=(0, 1))


def flux_ratios(flux: np.ndarray, frames: list[int], width: int = 2) -> np.ndarray:
    """For each frame j, the largest flux from frame j - width to j + width, over the clip's median flux: how
    much a change near j stands out (a seam at a window join shows as a ratio well above the real audio's)."""
    median = max(float(np.median(flux)), 1e-12)
    return np.array([flux[max(0, j - 1 - width) : j + width].max() / median for j in frames])


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


def standardize(reference: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    mu, sd = reference.mean(0), reference.std(0) + 1e-6
    return [(x - mu) / sd for x in (reference, *others)]


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)) for features [N, D], [M, D].

    tr((S_a S_b)^(1/2)) is computed as the sum of square roots of the eigenvalues of the symmetric
    PSD matrix S_a^(1/2) S_b S_a^(1/2), which stays real and stable for rank-deficient covariances.
    """
    mu_a, mu_b = a.mean(0), b.mean(0)
    s_a, s_b = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    w, v = np.linalg.eigh(s_a)
    root_a = (v * np.sqrt(w.clip(min=0))) @ v.T
    cross = np.sqrt(np.linalg.eigvalsh(root_a @ s_b @ root_a).clip(min=0)).sum()
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(s_a) + np.trace(s_b) - 2 * cross)


def kernel_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Unbiased MMD^2 with k(x, y) = (x.y / D + 1)^3: about 0 for one distribution, may dip below 0."""
    d = a.shape[1]
    k_aa, k_bb, k_ab = ((x @ y.T / d + 1) ** 3 for x, y in ((a, a), (b, b), (a, b)))
    m, n = len(a), len(b)
    return float((k_aa.sum() - np.trace(k_aa)) / (m * (m - 1)) + (k_bb.sum() - np.trace(k_bb)) / (n * (n - 1))
                 - 2 * k_ab.mean())


def bootstrap_interval(metric: Metric, a: np.ndarray, b: np.ndarray, rounds: int = 200, seed: int = 0) -> tuple[float, float]:
    """95% interval metric(a, b) +- 1.96 sd, the sd over resamples of both sets with replacement.

    Not the percentile interval: resampling duplicates clips, which biases FD and KID upward (on the
    shared sets the percentile interval of the floor did not even contain the estimate), while
    the spread of the resampled values is still a fair estimate of the sampling error.
    """
    rng = np.random.default_rng(seed)
    values = [metric(a[rng.integers(0, len(a), len(a))], b[rng.integers(0, len(b), len(b))]) for _ in range(rounds)]
    centre, half = metric(a, b), 1.96 * float(np.std(values))
    return centre - half, centre + half


def nearest_distances(queries: np.ndarray, pool: np.ndarray, exclude_self: bool = False) -> np.ndarray:
    """Euclidean distance from each query [N, D] to its nearest row of pool [M, D]."""
    d = np.sqrt(((queries[:, None, :] - pool[None, :, :]) ** 2).sum(-1))
    if exclude_self:
        np.fill_diagonal(d, np.inf)
    return d.min(1)


@dataclass
class SetScore:
    name: str
    clips: int
    fd: float
    fd_ci: tuple[float, float]
    kid: float
    kid_ci: tuple[float, float]


def score_sets(name: str, gen: np.ndarray, ref: np.ndarray, rounds: int, seed: int) -> SetScore:
    return SetScore(name, len(gen), frechet_distance(gen, ref), bootstrap_interval(frechet_distance, gen, ref, rounds, seed),
                    kernel_distance(gen, ref), bootstrap_interval(kernel_distance, gen, ref, rounds, seed))


def split_reference(n_ref: int, n_gen: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded disjoint split of n_ref reference clips: (indices that stay the reference, indices of the floor set).

    The floor set gets min(n_gen, n_ref // 2) clips, so the real-vs-real floor is measured at the
    generated set's count when the reference folder holds at least twice as many clips.
    """
    order = np.random.default_rng(seed).permutation(n_ref)
    k = min(n_gen, n_ref // 2)
    return np.sort(order[k:]), np.sort(order[:k])


def evaluate_generated(gen: np.ndarray, ref: np.ndarray, train: np.ndarray | None = None, rounds: int = 200,
                       seed: int = 0) -> dict:
    """FD/KID of generated vs reference features, the real-vs-real floor, and (with train) memorization.

    The floor is fair: a seeded share of the reference clips (as many as there are generated clips, at
    most half) is held back and scored exactly like the generated set against the rest, which is then
    the reference for both. No clip of the floor set was used to fit anything: not the embedder (trained
    on training clips) and not the standardization (fitted on the remaining reference clips). When the
    floor set is smaller than the generated set, result["warnings"] says so (FD is biased upward at
    smaller counts, so such a floor flatters the generator).
    """
    if len(gen) < 2 or len(ref) < 4:
        raise ValueError(f"need at least 2 generated and 4 reference clips, got {len(gen)} and {len(ref)}")
    keep, held = split_reference(len(ref), len(gen), seed)
    ref_s, gen_s, floor_s, *rest = standardize(ref[keep], gen, ref[held], *([train] if train is not None else []))
    result: dict = {"generated": score_sets("generated", gen_s, ref_s, rounds, seed).__dict__,
                    "floor": score_sets("held-out (real)", floor_s, ref_s, rounds, seed).__dict__,
                    "reference_clips": len(keep), "warnings": []}
    if len(held) < len(gen):
        result["warnings"].append(
            f"the floor uses {len(held)} real clips against {len(gen)} generated: give the reference folder at "
            f"least {2 * len(gen)} clips for a floor at the same count")
    if rest:
        result["memorization"] = memorization(gen_s, ref_s, rest[0])
    return result


def memorization(gen: np.ndarray, ref: np.ndarray, train: np.ndarray) -> dict:
    """How close generated clips sit to their nearest training clip, against held-out real clips.

    `too_close` is the share of generated clips nearer to a training clip than the 5th percentile of
    the reference-to-train distances: about 0.05 without memorization, near 1 for copies.
    """
    d_gen, d_ref = nearest_distances(gen, train), nearest_distances(ref, train)
    return {**_too_close(d_gen, d_ref), "median_ref_to_train": float(np.median(d_ref))}


def _too_close(d_gen: np.ndarray, d_real: np.ndarray) -> dict:
    """The share of generated clips nearer to the training set than the 5th percentile of real clips' distances."""
    threshold = float(np.percentile(d_real, 5))
    return {"median_gen_to_train": float(np.median(d_gen)), "too_close": float((d_gen < threshold).mean()),
            "threshold": threshold}


def near_copies(train: np.ndarray, gen: np.ndarray) -> dict:
    """Memorization with no held-out set (a fine-tune's summary): the share of generated clips nearer to a
    training clip than the 5th percentile of the training clips' distances to their nearest other training clip
    (features [N, D], standardized alike). About 0.05 for clips as new as the training clips are to each other,
    near 1 for copies."""
    d_gen, d_train = nearest_distances(gen, train), nearest_distances(train, train, exclude_self=True)
    return {**_too_close(d_gen, d_train), "median_train_to_train": float(np.median(d_train))}


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


def class_scores(probs: torch.Tensor) -> dict[str, float]:
    """IS and modified IS of class probabilities [N, C]."""
    return {"is": inception_score(probs), "modified_is": modified_inception_score(probs)}


def heldout_accuracy(embedder: Embedder, folder: str | Path, label_column: str | None) -> tuple[float, int]:
    """Classification accuracy of a classifier embedder on a labelled folder: (accuracy, clip count)."""
    _, probs, files = embedder_features(folder, embedder)
    accuracy = class_accuracy(embedder, probs, folder, files, label_column)
    if accuracy is None:
        raise ValueError(f"{folder}: no labels found (subfolders or --label-column)")
    return accuracy, len(files)


def class_accuracy(embedder: Embedder, probs: torch.Tensor, folder: str | Path, files: list[str],
                   label_column: str | None = None) -> float | None:
    """Share of clips whose argmax class is their label (subfolder or metadata column); None without labels."""
    per = label_accuracy(embedder, probs, folder, files, label_column)
    return None if per is None else overall_accuracy(per)


def overall_accuracy(per_label: dict[str, tuple[float, int]]) -> float:
    """The share of all clips classified as their label, from `label_accuracy`'s (share, count) per label."""
    return sum(a * n for a, n in per_label.values()) / sum(n for _, n in per_label.values())


def label_accuracy(embedder: Embedder, probs: torch.Tensor, folder: str | Path, files: list[str],
                   label_column: str | None = None) -> dict[str, tuple[float, int]] | None:
    """Per label: (share of its clips classified as it, clip count); None when the folder has no labels.
    The per-label view of DiffWave's SC09 accuracy: it shows which classes a conditional model gets wrong."""
    labelled = file_labels(folder, files, label_column)
    if labelled is None:
        return None
    names, idx = labelled
    unknown = sorted(set(names) - set(embedder.labels))
    if unknown:
        raise ValueError(f"{folder}: labels {unknown} are not among the embedder's labels {embedder.labels}")
    truth = torch.tensor([embedder.labels.index(names[i]) for i in idx.tolist()])
    hit = probs.argmax(-1) == truth
    return {name: (float(hit[truth == embedder.labels.index(name)].float().mean()),
                   int((truth == embedder.labels.index(name)).sum())) for name in names}


def evaluate_with_embedder(emb: Embedder, gen_dir: Path, ref_dir: Path, train_dir: Path | None, rounds: int = 200,
                           seed: int = 0) -> dict:
    """`evaluate_generated` in the embedder's space, plus IS / modified IS when it is a classifier, and the
    class accuracy of generated clips when GEN_DIR files them in subfolders named by intended class or records
    each clip's class in its metadata.csv, as `audiodiff generate` does for a class-conditional run."""
    (gen, gen_p, gen_files), (ref, ref_p, _) = embedder_features(gen_dir, emb), embedder_features(ref_dir, emb)
    train = embedder_features(train_dir, emb)[0] if train_dir else None
    result = evaluate_generated(gen, ref, train, rounds=rounds, seed=seed)
    if gen_p is not None:
        result["generated_classes"], result["reference_classes"] = class_scores(gen_p), class_scores(ref_p)
        # generated clips filed in class subfolders, or their classes in GEN_DIR/metadata.csv (`audiodiff generate`)
        column = CLIP_LABEL_COLUMN if clip_labels_recorded(gen_dir, gen_files) else None
        per_label = label_accuracy(emb, gen_p, gen_dir, gen_files, column)
        if per_label is not None:
            result["generated_classes"]["accuracy"] = overall_accuracy(per_label)
            result["generated_classes"]["per_label"] = per_label
    return result


def evaluate_folders(gen_dir: str | Path, ref_dir: str | Path, train_dir: str | Path | None = None,
                     embedder_dir: str | Path | None = None, rounds: int = 200, seed: int = 0,
                     sample_rate: int = 16000) -> tuple[dict, int]:
    """`audiodiff evaluate generated`: ({"melstats": ..., "embedder": ... if embedder_dir, "stereo": ... if the
    generated clips are stereo}, reference clip count).

    melstats: the weight-free embedding (`clip_features`) with the default mel front end at sample_rate (stereo
    clips mixed to mono); its "failed_clips" lists generated files that could not be scored, as "path: reason".
    stereo: `stereo_summary` of the generated and the reference clips (the stereo image).
    """
    mel = MelSpectrogram(MelConfig(sample_rate=sample_rate, f_max=min(8000.0, sample_rate / 2)))
    gen, _, failed = scored_features(gen_dir, mel)
    ref, _ = folder_features(ref_dir, mel)
    train_feats = folder_features(train_dir, mel)[0] if train_dir else None
    results = {"melstats": evaluate_generated(gen, ref, train_feats, rounds=rounds, seed=seed)}
    results["melstats"]["failed_clips"] = [f"{path}: {reason}" for path, reason in failed]
    if embedder_dir:
        results["embedder"] = evaluate_with_embedder(Embedder.load(embedder_dir), Path(gen_dir), Path(ref_dir),
                                                     Path(train_dir) if train_dir else None, rounds, seed)
    gen_images = stereo_images(gen_dir, sample_rate)
    if len(gen_images):
        ref_images = stereo_images(ref_dir, sample_rate)
        results["stereo"] = {"generated": stereo_summary(gen_images),
                             "reference": stereo_summary(ref_images) if len(ref_images) else None}
    return results, len(ref)


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


def train_embedder_on(data_dir: str | Path, out: str | Path, label_column: str | None = None,
                      heldout: str | Path | None = None, config: EmbedderConfig = EmbedderConfig(),
                      progress: bool = True, log: Callable[[str], None] = print) -> Path:
    """`audiodiff evaluate train-embedder`: train the evaluation embedder on data_dir (a classifier of the
    labels, or contrastive without) and save it as out/embedder.safetensors; returns that path."""
    mel_config = MelConfig()
    data, report = load_mels(data_dir, MelSpectrogram(mel_config), config.crop_frames, progress=progress)
    log(f"data: {report.summary()}")
    labelled = file_labels(data_dir, data.files, label_column)
    names, labels = labelled if labelled else ([], None)
    log(f"objective: {'classify ' + str(len(names)) + ' labels' if names else 'contrastive (no labels)'}")
    model = Embedder(config, mel_config, names)
    stats = train_embedder(model, data, labels, progress)
    line = f"trained {config.steps} steps: loss {stats['loss']:.3f}"
    if names:
        line += f", train accuracy {stats['train_accuracy']:.3f}"
    meta = {"data": str(data_dir), "label_column": label_column, **stats}
    if heldout and names:
        meta["heldout_accuracy"], count = heldout_accuracy(model, heldout, label_column)
        line += f", held-out accuracy {meta['heldout_accuracy']:.3f} on {count} clips"
    target = Path(out) / "embedder.safetensors"
    target.parent.mkdir(parents=True, exist_ok=True)
    model.save(target, meta)
    log(f"{line} -> {target}")
    return target

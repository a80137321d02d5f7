"""Set-level distances between generated and real feature sets, with bootstrap intervals and floors.

Generator figures (generated set G vs reference set R of real audio):
    FD   Frechet distance between Gaussians fitted to the two sets (Heusel et al. 2017)
    KID  unbiased MMD^2 with the cubic polynomial kernel (x.y / d + 1)^3 (Binkowski et al. 2018)
with bootstrap 95% intervals (+- 1.96 bootstrap sd), and the real-vs-real floor: a seeded share of R,
as many clips as G, held back and scored like G against the rest of R (no part of the evaluation was
fitted on it). With a training folder, a memorization check too (nearest-training-clip distances of
G compared with those of R). Features are standardized with the reference set's per-dimension mean and std, so
every dimension counts on the same scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

Metric = Callable[[np.ndarray, np.ndarray], float]


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

"""Class figures from the trained embedder: inception scores of a generated set and the accuracy of its
recorded labels."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..data.labels import file_labels
from ..model.embedder import Embedder
from .features import embedder_features


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


def inception_score(probs: Tensor) -> float:
    """exp(E_x KL(p(y|x) || p(y))) for class probabilities [N, C] (Salimans et al. 2016)."""
    p_y = probs.mean(0, keepdim=True)
    return float(torch.exp((probs * (probs.clamp_min(1e-12).log() - p_y.clamp_min(1e-12).log())).sum(-1).mean()))


def modified_inception_score(probs: Tensor) -> float:
    """exp(E_{x, x'} KL(p(y|x) || p(y|x'))) (Gurumurthy et al. 2017): also rewards within-class diversity."""
    logp = probs.clamp_min(1e-12).log()
    kl = (probs * logp).sum(-1)[:, None] - probs @ logp.T  # [i, j] = KL(p_i || p_j)
    return float(torch.exp(kl.mean()))

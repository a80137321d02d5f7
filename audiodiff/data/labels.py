"""Class labels, all of them: read from a folder's layout or a metadata.csv, resolved against a base run or a
teacher, grown by a fine-tune, counted, drawn per generated clip, and recorded beside the clips.

A run's labels are `config.data.labels` (sorted names; class id = index) and `config.data.label_counts`; a
conditional network has one more class, "no label" (id = len(labels)), which classifier-free guidance uses.
"""

from __future__ import annotations

import bisect
import csv
import itertools
import os
from pathlib import Path
from typing import Callable

import torch
from torch import Tensor

from ..config import Config
from ..files import atomic_path

Log = Callable[[str], None]


def file_labels(data_dir: str | Path, files: list[str], column: str | None = None) -> tuple[list[str], Tensor] | None:
    """Class labels of `files` (paths relative to data_dir): (sorted label names, long [len(files)]), or None.

    column=None: the first-level subfolder of each file, if every file sits in one and there are at
    least two. Otherwise `column` of a metadata.csv in data_dir or its parent, whose `path` column
    holds paths relative to the CSV's folder.
    """
    data_dir = Path(data_dir)
    if column is None:
        parts = [Path(f).parts for f in files]
        if all(len(p) > 1 for p in parts) and len({p[0] for p in parts}) > 1:
            return _encode([p[0] for p in parts])
        return None
    csv_path = next((d / "metadata.csv" for d in (data_dir, data_dir.parent) if (d / "metadata.csv").is_file()), None)
    if csv_path is None:
        raise ValueError(f"{data_dir}: --label-column {column!r} given but no metadata.csv here or in the parent folder")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or column not in rows[0] or "path" not in rows[0]:
        raise ValueError(f"{csv_path}: needs columns 'path' and {column!r}")
    by_path: dict[str, str] = {}
    for r in rows:
        key, label = Path(r["path"]).as_posix(), r[column]
        if by_path.setdefault(key, label) != label:
            raise ValueError(f"{csv_path}: {key} has two rows with different {column!r}: {by_path[key]!r} and {label!r}")
    root = os.path.abspath(csv_path.parent)  # absolute, not resolved: a linked file is found by its link's path
    names = []
    for f in files:
        key = Path(os.path.relpath(os.path.abspath(data_dir / f), root)).as_posix()
        if key not in by_path:
            raise ValueError(f"{csv_path}: no row for {key}")
        if not by_path[key].strip():
            raise ValueError(f"{csv_path}: {key} has an empty {column!r}; give it a label or remove the file")
        names.append(by_path[key])
    return _encode(names)


def _encode(names: list[str]) -> tuple[list[str], Tensor]:
    classes = sorted(set(names))
    index = {c: i for i, c in enumerate(classes)}
    return classes, torch.tensor([index[n] for n in names])


def labels_with(base_labels: tuple[str, ...], found: list[str], new_labels: bool, where: str) -> tuple[str, ...]:
    """The fine-tuned run's labels: the base's, then (with new_labels) the labels `found` in the data that the
    base lacks, sorted. ValueError for new labels without new_labels."""
    new = sorted(set(found) - set(base_labels))
    if new and not new_labels:
        have = f"trained on {', '.join(base_labels[:10])}" if base_labels else "unconditional"
        raise ValueError(f"{where}: labels the base run was not trained on: {', '.join(new[:10])} (the base is "
                         f"{have}); pass --new-labels to add them")
    return tuple(base_labels) + tuple(new)


def finetune_labels(base: Config, data_dir: Path, files: list[str], column: str | None, new_labels: bool,
                     warn: Log) -> tuple[tuple[str, ...], torch.Tensor | None]:
    """(the fine-tuned run's labels, class id of each file or None) for a base with `base.data.labels`."""
    found = file_labels(data_dir, files, column)
    if found is None:
        if base.data.labels:  # every clip is trained as the base's "no label" class, which `generate` then samples
            warn(f"note: {data_dir}: no labels here (first-level subfolders named after labels, or --label-column); "
                 f"the base is conditional on {len(base.data.labels)}, so these clips are learned as its 'no label' "
                 "class, which generate samples unless given a --label")
            return base.data.labels, torch.full((len(files),), len(base.data.labels))
        return (), None
    mine, ids = found
    if not base.data.labels and not new_labels:
        warn(f"note: {data_dir}: the base run is unconditional, so the labels here are ignored (--new-labels "
             "learns them)")
        return (), None
    names = labels_with(base.data.labels, mine, new_labels, str(data_dir))
    return names, _reindexed(names, mine, ids)


def teacher_labels(config: Config, data_dir: Path, files: list[str], column: str | None) -> torch.Tensor | None:
    """Class ids of `files` in the teacher's label order, for a conditional teacher; None for an unconditional one."""
    names = config.data.labels
    if not names:
        return None
    found = file_labels(data_dir, files, column)
    if found is None:
        raise ValueError(f"{data_dir}: the teacher is conditional on {len(names)} labels but no labels were found "
                         "here (first-level subfolders, or --label-column of a metadata.csv)")
    mine, ids = found
    unknown = sorted(set(mine) - set(names))
    if unknown:
        raise ValueError(f"{data_dir}: labels the teacher was not trained on: {', '.join(unknown[:10])}")
    return _reindexed(names, mine, ids)


def _reindexed(names: tuple[str, ...], found: list[str], ids: Tensor) -> Tensor:
    """Class ids `ids` into the sorted names `found` (file_labels) as ids into a run's own label order `names`."""
    return torch.tensor([names.index(found[i]) for i in ids.tolist()])


def label_counts(labels: Tensor | None, n: int) -> tuple[int, ...]:
    """Clips per class id 0..n-1 of `labels` (ids of n, a fine-tune's "no label" class, are not counted); ()
    for an unlabelled run."""
    if labels is None or not n:
        return ()
    return tuple(int(c) for c in torch.bincount(labels, minlength=n + 1)[:n])


def run_label_counts(stored: Config | None, names: tuple[str, ...], labels: torch.Tensor | None) -> tuple[int, ...]:
    """The run's data.label_counts: a continued run keeps those it started with (none in a run made before they
    were recorded); otherwise, and where the labels changed (refused later, naming the labels), the data's."""
    if stored is not None and stored.data.labels == names:
        return stored.data.label_counts
    return label_counts(labels, len(names))


def data_label(seed: int, counts: tuple[int, ...]) -> int:
    """The class id of the clip with this seed when labels follow the training proportions `counts`: the seed's
    point on a Weyl sequence (seed / golden ratio, mod 1) falls in class k's share of [0, 1). Any run of consecutive
    seeds covers [0, 1) nearly evenly, so n clips take class k about n * counts[k] / sum(counts) times (within a
    few clips), and a clip's label depends on its seed alone; a class with no clips is never drawn."""
    u = (seed * 0.6180339887498949 + 0.5) % 1.0
    return bisect.bisect_right(list(itertools.accumulate(counts)), u * sum(counts))


CLIP_LABEL_COLUMN = "label"  # the metadata.csv column in which generated clips' classes are recorded


def write_clip_labels(folder: Path, labels: dict[str, str]) -> Path | None:
    """Record the class of each clip (path relative to `folder` -> label) in folder/metadata.csv, in a
    `CLIP_LABEL_COLUMN` column beside `path`, as `file_labels` reads them. A metadata.csv already there keeps its
    other rows, columns and order (rows of these paths get the label, new clips are appended), and is replaced
    atomically; one without a `path` column is left alone (None)."""
    path = folder / "metadata.csv"
    fields, rows = ["path", CLIP_LABEL_COLUMN], []
    if path.is_file():
        with open(path, newline="") as f:
            reader = csv.DictReader(f)
            if "path" not in (reader.fieldnames or []):
                return None
            fields = list(reader.fieldnames) + [CLIP_LABEL_COLUMN] * (CLIP_LABEL_COLUMN not in reader.fieldnames)
            rows = list(reader)
    for row in rows:
        if row["path"] in labels:
            row[CLIP_LABEL_COLUMN] = labels[row["path"]]
    known = {row["path"] for row in rows}
    rows += [{"path": clip, CLIP_LABEL_COLUMN: label} for clip, label in labels.items() if clip not in known]
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fields, restval="", extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    return path


def clip_labels_recorded(folder: str | Path, files: list[str]) -> bool:
    """Whether folder/metadata.csv (not its parent's) records a non-empty `CLIP_LABEL_COLUMN` for every one of
    `files`."""
    path = Path(folder) / "metadata.csv"
    if not path.is_file():
        return False
    with open(path, newline="") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or not {"path", CLIP_LABEL_COLUMN} <= set(reader.fieldnames):
            return False
        known = {Path(r["path"]).as_posix() for r in reader if r[CLIP_LABEL_COLUMN]}
    return bool(files) and all(Path(f).as_posix() in known for f in files)

"""Offline evaluation of folders of clips: generated against real (melstats or embedder features, with floors and
class figures), and the embedder trained for it. Nothing here downloads weights.

features.py makes the vectors, distances.py the set distances, classes.py the class figures, vocoders.py the
paired vocoder scores; this module puts them together for `audiodiff evaluate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

from ..audio.mel import MelSpectrogram
from ..config import EmbedderConfig, MelConfig
from ..data.labels import CLIP_LABEL_COLUMN, clip_labels_recorded, file_labels
from ..data.prepare import load_mels
from ..model.embedder import Embedder
from ..training.embedder import train_embedder
from .classes import class_scores, heldout_accuracy, label_accuracy, overall_accuracy
from .distances import evaluate_generated
from .features import embedder_features, folder_features, scored_features, stereo_images, stereo_summary


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

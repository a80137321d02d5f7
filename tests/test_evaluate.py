import json

import numpy as np
import pytest
import scipy.linalg
import soundfile as sf
import torch
from click.testing import CliRunner

from audiodiff.audio.mel import MelSpectrogram
from audiodiff.audio.metrics import log_spectral_distance
from audiodiff.cli import main
from audiodiff.config import MelConfig
from audiodiff.evaluation.distances import bootstrap_interval, evaluate_generated, frechet_distance, kernel_distance, memorization, split_reference
from audiodiff.evaluation.features import clip_features, folder_features
from audiodiff.evaluation.vocoders import vocoder_files

from .conftest import SR, tone

MEL = MelSpectrogram(MelConfig(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, f_max=4000.0))


def gaussian(n, d, shift=0.0, scale=1.0, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)) * scale + shift


def test_frechet_matches_the_scipy_sqrtm_formula():
    a, b = gaussian(300, 6, seed=1), gaussian(200, 6, shift=0.5, scale=1.5, seed=2)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    want = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s_a + s_b - 2 * scipy.linalg.sqrtm(s_a @ s_b).real)
    assert frechet_distance(a, b) == pytest.approx(want, rel=1e-6)
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    # closed form for isotropic Gaussians: d * shift^2 + d * (1 - scale)^2
    big_a, big_b = gaussian(20000, 3, seed=3), gaussian(20000, 3, shift=1.0, scale=2.0, seed=4)
    assert frechet_distance(big_a, big_b) == pytest.approx(3 * 1.0 + 3 * 1.0, rel=0.05)


def test_kernel_distance_unbiased_and_growing_with_shift():
    a, b = gaussian(400, 8, seed=5), gaussian(400, 8, seed=6)
    same = kernel_distance(a, b)
    assert abs(same) < 0.05
    shifted = [kernel_distance(a, gaussian(400, 8, shift=s, seed=7)) for s in (0.5, 1.0, 2.0)]
    assert same < shifted[0] < shifted[1] < shifted[2]


def test_bootstrap_interval_covers_the_true_value():
    """Known answer: two 2-D unit Gaussians whose means differ by 1 along one axis have FD = 1. Over 60
    independent draws of both sets, the 95% interval must contain 1 about 95% of the time, and its
    half-width must match the estimator's actual spread (1.96 sd over the draws)."""
    hits, halves, estimates = 0, [], []
    for trial in range(60):
        a, b = gaussian(150, 2, seed=1000 + trial), gaussian(150, 2, shift=1.0 / 2**0.5, seed=2000 + trial)
        lo, hi = bootstrap_interval(frechet_distance, a, b, rounds=60, seed=trial)
        hits += lo <= 1.0 <= hi
        halves.append((hi - lo) / 2)
        estimates.append(frechet_distance(a, b))
    assert 0.85 <= hits / 60 <= 1.0
    assert 0.7 < np.mean(halves) / (1.96 * np.std(estimates)) < 1.4


def test_kernel_distance_closed_form():
    """k(x, y) = (x y + 1)^3 in 1-D on a = {0, 1}, b = {2, 3}: within-a 1, within-b 343, across mean 93/4."""
    a, b = np.array([[0.0], [1.0]]), np.array([[2.0], [3.0]])
    assert kernel_distance(a, b) == pytest.approx(1 + 343 - 2 * 93 / 4)


def test_floor_is_held_out_and_at_the_generated_count():
    ref, gen = gaussian(100, 3, seed=20), gaussian(30, 3, seed=21)
    out = evaluate_generated(gen, ref, rounds=5)
    assert out["floor"]["clips"] == 30 and out["reference_clips"] == 70 and not out["warnings"]
    keep, held = split_reference(100, 30)
    assert not set(keep) & set(held) and len(set(keep) | set(held)) == 100
    small = evaluate_generated(gaussian(60, 3, seed=22), ref, rounds=5)
    assert small["floor"]["clips"] == 50 and "give the reference folder at least 120 clips" in small["warnings"][0]


def test_floor_of_a_real_set_is_near_the_generated_score_of_more_real_clips():
    """The held-back floor and another real set from the same distribution score alike (neither is fitted on)."""
    ref, real = gaussian(400, 3, seed=30), gaussian(200, 3, seed=31)
    out = evaluate_generated(real, ref, rounds=5)
    assert abs(out["generated"]["fd"] - out["floor"]["fd"]) < 0.1


def test_vocoder_files_are_a_seeded_stratified_sample(tmp_path):
    for label, n in (("a", 10), ("b", 10), ("c", 4)):
        _tone_folder(tmp_path / "set" / label, ord(label), n=n)
    files, how = vocoder_files(tmp_path / "set", 9, seed=1)
    assert [f.parent.name for f in files].count("c") == 3 and len(files) == 9
    assert "stratified by label: a 3, b 3, c 3" in how and "seed 1" in how
    assert vocoder_files(tmp_path / "set", 9, seed=1)[0] == files
    assert vocoder_files(tmp_path / "set", 9, seed=2)[0] != files


def test_memorization_flags_copies():
    train, ref = gaussian(200, 5, seed=10), gaussian(100, 5, seed=11)
    copies = train[:50] + 1e-3
    fresh = gaussian(50, 5, seed=12)
    assert memorization(copies, ref, train)["too_close"] == 1.0
    assert memorization(fresh, ref, train)["too_close"] < 0.25


def test_features_shape_and_values():
    logmel = np.tile(np.linspace(-1, 1, 16)[:, None], (1, 10))
    f = clip_features(logmel)
    assert f.shape == (2 * 16 + 2 * 16,)  # min(20, n_mels) MFCCs
    np.testing.assert_allclose(f[:16], np.linspace(-1, 1, 16))
    np.testing.assert_allclose(f[16:32], 0.0, atol=1e-12)  # constant over time: zero std


def _tone_folder(path, seed, n=24, kind="tone"):
    path.mkdir(parents=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        if kind == "tone":
            x = tone(rng.uniform(200, 900), 0.5, amp=rng.uniform(0.2, 0.6)) + tone(rng.uniform(1000, 2000), 0.5, amp=0.1)
        elif kind == "noise":
            x = rng.uniform(-0.5, 0.5, SR // 2).astype(np.float32)
        else:
            x = np.zeros(SR // 2, dtype=np.float32)
        sf.write(path / f"{i:02d}.wav", x, SR)
    return path


def test_silence_and_noise_score_far_worse_than_real(tmp_path):
    ref, _ = folder_features(_tone_folder(tmp_path / "ref", 1), MEL)
    train, _ = folder_features(_tone_folder(tmp_path / "train", 2, n=60), MEL)
    real, _ = folder_features(_tone_folder(tmp_path / "real", 3), MEL)
    noise, _ = folder_features(_tone_folder(tmp_path / "noise", 4, kind="noise"), MEL)
    silence, _ = folder_features(_tone_folder(tmp_path / "silence", 5, kind="silence"), MEL)
    scores = {k: evaluate_generated(v, ref, train, rounds=20) for k, v in
              {"real": real, "noise": noise, "silence": silence}.items()}
    real_fd = scores["real"]["generated"]["fd"]
    assert real_fd < 3 * scores["real"]["floor"]["fd"] + 1.0
    for bad in ("noise", "silence"):
        assert scores[bad]["generated"]["fd"] > 20 * real_fd
        assert scores[bad]["generated"]["kid"] > 20 * max(scores["real"]["generated"]["kid"], 1e-3)


def test_log_spectral_distance_known_answer():
    x = np.random.default_rng(0).standard_normal(8000).astype(np.float32) * 0.1
    assert log_spectral_distance(x, x) == 0.0
    assert log_spectral_distance(x, 0.5 * x) == pytest.approx(20 * np.log10(2), abs=1e-3)


def test_cli_evaluate_generated_and_vocoder(tmp_path):
    _tone_folder(tmp_path / "ref", 1, n=12)
    _tone_folder(tmp_path / "gen", 2, n=12)
    _tone_folder(tmp_path / "train", 3, n=20)
    res = CliRunner().invoke(main, ["evaluate", "generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"),
                                    "--train", str(tmp_path / "train"), "--bootstrap", "10", "--sample-rate", str(SR),
                                    "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)["melstats"]
    assert out["generated"]["clips"] == 12 and out["floor"]["clips"] == 6 and "too_close" in out["memorization"]
    assert out["reference_clips"] == 6 and "at least 24 clips" in out["warnings"][0] and out["failed_clips"] == []
    (tmp_path / "gen" / "broken.wav").write_bytes(b"RIFF not really")
    sf.write(tmp_path / "gen" / "short.wav", np.zeros(10, dtype=np.float32), SR)
    res = CliRunner().invoke(main, ["evaluate", "generated", str(tmp_path / "gen"), "--reference", str(tmp_path / "ref"),
                                    "--bootstrap", "10", "--sample-rate", str(SR)])
    assert res.exit_code == 0 and "FAILED: 2 of 14 generated files could not be scored" in res.output
    res = CliRunner().invoke(main, ["evaluate", "vocoder", "--data", str(tmp_path / "ref"), "--clips", "3",
                                    "--vocoder", "griffinlim-0/pinv", "--vocoder", "pghi-8"])
    assert res.exit_code == 0, res.output
    assert "clips: 3 of 12 files" in res.output and "drawn at random with seed 0" in res.output
    assert "griffinlim-0/pinv" in res.output and "pghi-8/nnls" in res.output
    res = CliRunner().invoke(main, ["evaluate", "vocoder", "--data", str(tmp_path / "ref"), "--vocoder", "vocos"])
    assert res.exit_code == 1 and "unknown vocoder 'vocos'" in res.output


def test_inception_scores_closed_form():
    from audiodiff.evaluation.classes import inception_score, modified_inception_score

    confident_uniform = torch.eye(4).repeat(5, 1)  # 20 clips, each certain, classes balanced
    assert inception_score(confident_uniform) == pytest.approx(4.0, rel=1e-4)
    collapsed = torch.tensor([[1.0, 0, 0, 0]]).repeat(20, 1)
    assert inception_score(collapsed) == pytest.approx(1.0, rel=1e-4)
    assert modified_inception_score(collapsed) == pytest.approx(1.0, rel=1e-4)
    assert modified_inception_score(confident_uniform) > 10  # distinct certain clips: large pairwise KL


def test_file_labels_from_subfolders_and_metadata(tmp_path):
    from audiodiff.data.labels import file_labels

    names, idx = file_labels(tmp_path, ["a/x.wav", "b/y.wav", "a/z.wav"])
    assert names == ["a", "b"] and idx.tolist() == [0, 1, 0]
    assert file_labels(tmp_path, ["x.wav", "y.wav"]) is None
    (tmp_path / "train").mkdir()
    (tmp_path / "metadata.csv").write_text("path,digit\ntrain/x.wav,3\ntrain/y.wav,7\n")
    names, idx = file_labels(tmp_path / "train", ["x.wav", "y.wav"], "digit")
    assert names == ["3", "7"] and idx.tolist() == [0, 1]
    with pytest.raises(ValueError, match="no row for train/q.wav"):
        file_labels(tmp_path / "train", ["q.wav"], "digit")
    with pytest.raises(ValueError, match="needs columns 'path' and 'speaker'"):
        file_labels(tmp_path / "train", ["x.wav"], "speaker")
    # a folder of links to files elsewhere, with its own metadata.csv: rows name the links
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "audio_1.wav").write_bytes(b"")
    (tmp_path / "linked").mkdir()
    (tmp_path / "linked" / "x.wav").symlink_to(tmp_path / "elsewhere" / "audio_1.wav")
    (tmp_path / "linked" / "metadata.csv").write_text("path,digit\nx.wav,5\n")
    assert file_labels(tmp_path / "linked", ["x.wav"], "digit")[0] == ["5"]


@pytest.mark.parametrize("labelled", [True, False])
def test_train_embedder_cli_and_scores(tmp_path, labelled):
    """Two classes of tones (low vs high): the classifier must separate them on held-out clips."""
    for split, seed in (("train", 1), ("heldout", 2)):
        rng = np.random.default_rng(seed)
        for cls, (lo, hi) in {"low": (150, 300), "high": (1500, 3000)}.items():
            d = tmp_path / split / cls if labelled else tmp_path / split
            d.mkdir(parents=True, exist_ok=True)
            for i in range(12):
                sf.write(d / f"{cls}{i}.wav", tone(rng.uniform(lo, hi), 1.0, sr=16000, amp=rng.uniform(0.2, 0.6)), 16000)
    args = ["evaluate", "train-embedder", str(tmp_path / "train"), "--out", str(tmp_path / "emb"), "--steps", "60",
            "--no-progress"]
    if labelled:
        args += ["--heldout", str(tmp_path / "heldout")]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    if labelled:
        acc = float(res.output.split("held-out accuracy ")[1].split()[0])
        assert acc >= 0.9, res.output
    else:
        assert "contrastive" in res.output
    res = CliRunner().invoke(main, ["evaluate", "generated", str(tmp_path / "heldout"), "--reference",
                                    str(tmp_path / "train"), "--embedder", str(tmp_path / "emb"), "--bootstrap", "5",
                                    "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.output)["embedder"]
    assert out["generated"]["clips"] == 24
    if labelled:
        assert out["generated_classes"]["is"] > 1.5  # two balanced, well-separated classes: IS near 2
        assert out["generated_classes"]["accuracy"] >= 0.9  # "generated" clips filed in class subfolders
        # the same clips in one folder, their classes in its metadata.csv as `audiodiff generate` records them;
        # with the classes swapped, the accuracy must collapse (the file's labels are the ones used)
        from audiodiff.data.labels import write_clip_labels

        flat = tmp_path / "flat"
        flat.mkdir()
        truth = {}
        for f in sorted((tmp_path / "heldout").glob("*/*.wav")):
            (flat / f.name).write_bytes(f.read_bytes())
            truth[f.name] = f.parent.name
        for labels, ok in ((truth, lambda a: a >= 0.9), ({k: {"low": "high", "high": "low"}[v] for k, v in
                                                          truth.items()}, lambda a: a <= 0.1)):
            write_clip_labels(flat, labels)
            res = CliRunner().invoke(main, ["evaluate", "generated", str(flat), "--reference", str(tmp_path / "train"),
                                            "--embedder", str(tmp_path / "emb"), "--bootstrap", "5", "--json"])
            classes = json.loads(res.output)["embedder"]["generated_classes"]
            assert ok(classes["accuracy"]) and set(classes["per_label"]) == {"low", "high"}, classes


def test_speech_scores_when_installed():
    pytest.importorskip("pesq")
    pytest.importorskip("pystoi")
    from audiodiff.audio.metrics import speech_scores

    t = np.arange(32000) / 16000
    # a crude voiced signal: 150 Hz harmonics, syllable-rate amplitude modulation
    x = sum(np.sin(2 * np.pi * 150 * k * t) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 4 * t)) ** 2
    x = (0.1 * x).astype(np.float32)
    clean = speech_scores(x, x, 16000)
    noisy = speech_scores(x, x + 0.05 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32), 16000)
    assert clean["stoi"] > 0.99 and noisy["stoi"] < clean["stoi"]
    assert noisy["pesq_wb"] < clean["pesq_wb"] or np.isnan(clean["pesq_wb"])


def test_label_accuracy_per_label_closed_form(tmp_path):
    from types import SimpleNamespace

    from audiodiff.evaluation.classes import class_accuracy, label_accuracy

    files = ["a/1.wav", "a/2.wav", "a/3.wav", "b/1.wav", "b/2.wav"]
    emb = SimpleNamespace(labels=["a", "b"])
    probs = torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4]])  # a a b | b a
    per = label_accuracy(emb, probs, tmp_path, files)
    assert per == {"a": (pytest.approx(2 / 3), 3), "b": (0.5, 2)}
    assert class_accuracy(emb, probs, tmp_path, files) == pytest.approx(3 / 5)
    assert label_accuracy(emb, probs, tmp_path, [f.split("/")[1] for f in files]) is None  # no labels


def test_clip_labels_are_recorded_merged_and_checked(tmp_path):
    from audiodiff.data.labels import clip_labels_recorded, file_labels, write_clip_labels

    assert not clip_labels_recorded(tmp_path, ["sample_000.wav"])  # no metadata.csv
    write_clip_labels(tmp_path, {"sample_000.wav": "b", "sample_001.wav": "a"})
    write_clip_labels(tmp_path, {"sample_001.wav": "c", "sample_002.wav": "a"})  # a later call: merged, replaced
    assert (tmp_path / "metadata.csv").read_text().splitlines() == [
        "path,label", "sample_000.wav,b", "sample_001.wav,c", "sample_002.wav,a"]
    names, ids = file_labels(tmp_path, ["sample_000.wav", "sample_001.wav"], "label")
    assert names == ["b", "c"] and ids.tolist() == [0, 1]
    assert clip_labels_recorded(tmp_path, ["sample_002.wav", "sample_000.wav"])
    assert not clip_labels_recorded(tmp_path, ["sample_000.wav", "sample_003.wav"])  # a clip without a row
    (tmp_path / "metadata.csv").write_text("path,family\nsample_000.wav,x\nother.wav,y\n")  # a dataset's own file
    assert not clip_labels_recorded(tmp_path, ["sample_000.wav"])
    write_clip_labels(tmp_path, {"sample_000.wav": "a", "sample_001.wav": "b"})  # its rows, order and columns kept
    assert (tmp_path / "metadata.csv").read_text().splitlines() == [
        "path,family,label", "sample_000.wav,x,a", "other.wav,y,", "sample_001.wav,,b"]
    assert clip_labels_recorded(tmp_path, ["sample_000.wav", "sample_001.wav"])
    assert not clip_labels_recorded(tmp_path, ["sample_000.wav", "other.wav"])  # other.wav has no label
    (tmp_path / "metadata.csv").write_text("name,family\nsample_000.wav,x\n")  # no path column: not touched
    assert write_clip_labels(tmp_path, {"sample_000.wav": "a"}) is None
    assert (tmp_path / "metadata.csv").read_text() == "name,family\nsample_000.wav,x\n"


def test_vocoder_scores_on_each_device(tmp_path, device):
    """Round-trip scores with the vocoder on `device` (the scores themselves are computed on CPU)."""
    from audiodiff.evaluation.vocoders import evaluate_vocoder
    from audiodiff.vocoders.registry import build_vocoder

    files, _ = vocoder_files(_tone_folder(tmp_path / "set", 1, n=3), 3)
    config = MEL.config
    on_device = MelSpectrogram(config).to(device)
    got = evaluate_vocoder(files, on_device, build_vocoder("griffinlim-8", on_device))
    want = evaluate_vocoder(files, MelSpectrogram(config), build_vocoder("griffinlim-8", MelSpectrogram(config)))
    assert got["clips"] == 3 and all(np.isfinite(got[k]) for k in ("lsd_db", "mel_l1", "mr_stft", "stft_unseen"))
    for key in ("mel_l1", "mr_stft", "lsd_db"):
        assert got[key] == pytest.approx(want[key], rel=0 if device.type == "cpu" else 0.05), key

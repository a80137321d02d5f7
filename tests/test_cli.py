import subprocess
import sys

import pytest
import soundfile as sf
from click.testing import CliRunner

from audiodiff.cli import main
from audiodiff.config import Config

from .conftest import SR, tone


@pytest.fixture
def run(tmp_path, audio_dir, tiny_config):
    """A trained 4-step run made through the CLI."""
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    out = tmp_path / "run"
    res = invoke("train", str(audio_dir), "--out", str(out), "--config", str(cfg), "--device", "cpu", "--no-progress")
    assert res.exit_code == 0, res.output
    assert "6 of 6 audio files used" in res.output and (out / "config.toml").exists()
    return out


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_help_lists_commands():
    res = invoke("--help")
    assert res.exit_code == 0 and all(c in res.output for c in ("train", "generate", "reconstruct"))
    proc = subprocess.run([sys.executable, "-m", "audiodiff", "generate", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--sampler" in proc.stdout


def test_generate_is_reproducible(tmp_path, run):
    args = ["generate", str(run), "-n", "2", "--steps", "3", "--seed", "5", "--no-progress"]
    assert invoke(*args, "--out", str(tmp_path / "g1")).exit_code == 0
    assert invoke(*args, "--out", str(tmp_path / "g2")).exit_code == 0
    for i in range(2):
        assert (tmp_path / "g1" / f"sample_00{i}.wav").read_bytes() == (tmp_path / "g2" / f"sample_00{i}.wav").read_bytes()
        assert (tmp_path / "g1" / f"sample_00{i}.png").exists()
    assert (tmp_path / "g1" / "sample_000.wav").read_bytes() != (tmp_path / "g1" / "sample_001.wav").read_bytes()
    res = invoke(*args, "--out", str(tmp_path / "g1"))
    assert res.exit_code == 1 and "sample_000.wav: exists; pass --force" in res.output
    res = invoke("generate", str(run), "--out", str(tmp_path / "long"), "-n", "1", "--steps", "2", "--seconds", "0.5",
                 "--sampler", "ddpm", "--no-progress")
    assert res.exit_code == 0, res.output
    wav, sr = sf.read(tmp_path / "long" / "sample_000.wav")
    assert sr == SR and len(wav) == 4000  # 0.5 s: four times the training crop


def test_resume_and_refusal(tmp_path, run, audio_dir):
    res = invoke("train", str(audio_dir), "--out", str(run), "--steps", "6", "--no-progress")
    assert res.exit_code == 0 and "resuming from" in res.output and "step 6" in res.output
    res = invoke("train", str(audio_dir), "--out", str(run), "--preset", "tiny", "--no-progress")
    assert res.exit_code == 1 and "incompatible config" in res.output and "unet.channels: 8 in the run, 16 asked for" in res.output


def test_reconstruct(tmp_path):
    src = tmp_path / "in.wav"
    sf.write(src, tone(440, 1.0, sr=22050), 22050)
    res = invoke("reconstruct", str(src), "--out", str(tmp_path / "rt.wav"), "--vocoder", "pghi-4")
    assert res.exit_code == 0, res.output
    assert "mel L1" in res.output and "MR-STFT" in res.output and "vocoder pghi-4/nnls" in res.output
    wav, sr = sf.read(tmp_path / "rt.wav")
    assert sr == 16000 and len(wav) == 16000
    assert (tmp_path / "rt.png").exists()
    res = invoke("reconstruct", str(src), "--out", str(tmp_path / "rt.wav"))
    assert res.exit_code == 1 and "exists; pass --force" in res.output


@pytest.mark.parametrize("case", ["missing_dir", "empty_dir", "only_bad", "unknown_preset", "not_a_run", "out_under_file",
                                  "resume_nothing", "bad_config_file"])
def test_train_errors(tmp_path, audio_dir, case):
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.wav").write_bytes(b"garbage")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "thesis.pdf").write_text("precious")
    (tmp_path / "file").write_text("")
    (tmp_path / "bad.toml").write_text("[unet]\nchanels = 3\n")
    data, out = str(audio_dir), str(tmp_path / "out")
    args, code, message = {
        "missing_dir": ([str(tmp_path / "nope"), "--out", out], 1, "nope: not a folder"),
        "empty_dir": ([str(tmp_path / "empty"), "--out", out], 1, "empty: no audio files found"),
        "only_bad": ([str(tmp_path / "bad"), "--out", out], 1, "none of the 1 audio files is usable"),
        "unknown_preset": ([data, "--out", out, "--preset", "huge"], 2, "'huge' is not one of"),
        "not_a_run": ([data, "--out", str(tmp_path / "other")], 1, "other: folder exists and is not an audiodiff run"),
        "out_under_file": ([data, "--out", str(tmp_path / "file" / "run")], 1, "run: cannot write here"),
        "resume_nothing": ([data, "--out", out, "--resume"], 1, "--resume given but there is no run here"),
        "bad_config_file": ([data, "--out", out, "--config", str(tmp_path / "bad.toml")], 1,
                            "bad.toml: unknown config key 'unet.chanels'"),
    }[case]
    res = CliRunner().invoke(main, ["train", *args, "--no-progress"])
    assert res.exit_code == code, res.output
    assert message in res.output
    assert (tmp_path / "other" / "thesis.pdf").read_text() == "precious"


def test_generate_errors(tmp_path):
    res = CliRunner().invoke(main, ["generate", str(tmp_path / "nope"), "--out", str(tmp_path / "g")])
    assert res.exit_code == 1 and "nope: no such run directory or checkpoint file" in res.output
    (tmp_path / "run").mkdir()
    res = CliRunner().invoke(main, ["generate", str(tmp_path / "run"), "--out", str(tmp_path / "g")])
    assert res.exit_code == 1 and "no checkpoint in" in res.output


def test_prediction_flag_recorded_and_fixed_for_the_run(tmp_path, audio_dir, tiny_config):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    out = tmp_path / "run"
    args = ["train", str(audio_dir), "--out", str(out), "--config", str(cfg), "--no-progress", "--steps", "2"]
    assert invoke(*args, "--prediction", "eps").exit_code == 0
    assert 'prediction = "eps"' in (out / "config.toml").read_text()
    res = invoke(*args, "--prediction", "x0")
    assert res.exit_code == 1 and "diffusion.prediction: 'eps' in the run, 'x0' asked for" in res.output
    res = invoke("generate", str(out), "--out", str(tmp_path / "g"), "-n", "1", "--steps", "3", "--sampler", "dpmpp-2m",
                 "--no-progress")
    assert res.exit_code == 0, res.output


def _low_and_high(tmp_path, tiny_config, per_class: int):
    """A folder of low and high tones in two label subfolders, and the tiny config as a TOML file."""
    data = tmp_path / "data"
    for cls, freq in (("low", 220), ("high", 1760)):
        (data / cls).mkdir(parents=True)
        for i in range(per_class):
            sf.write(data / cls / f"{i}.wav", tone(freq * (1 + 0.05 * i), 0.3), SR)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    return data, cfg


def test_class_conditional_run(tmp_path, tiny_config):
    data, cfg = _low_and_high(tmp_path, tiny_config, 3)
    out = tmp_path / "run"
    res = invoke("train", str(data), "--out", str(out), "--config", str(cfg), "--no-progress")
    assert res.exit_code == 0, res.output
    assert "class-conditional on 2 labels: high, low" in res.output
    stored = Config.from_toml(out / "config.toml")
    assert stored.data.labels == ("high", "low") and stored.unet.num_classes == 2
    assert stored.data.label_counts == (3, 3)
    res = invoke("train", str(data), "--out", str(out), "--config", str(cfg), "--steps", "6", "--no-progress")
    assert res.exit_code == 0 and "resuming from" in res.output  # the same command line continues
    gen = ["generate", str(out), "-n", "2", "--steps", "3", "--no-progress"]
    res = invoke(*gen, "--out", str(tmp_path / "g"), "--label", "high", "--guidance", "2")
    assert res.exit_code == 0, res.output
    res = invoke(*gen, "--out", str(tmp_path / "g2"), "--guidance", "2", "--unconditional")
    assert res.exit_code == 1 and "guidance needs a label" in res.output
    res = invoke(*gen, "--out", str(tmp_path / "g2"), "--label", "low", "--unconditional")
    assert res.exit_code == 1 and "label 'low' and unconditional contradict each other" in res.output
    one = [*gen[:3], "1", *gen[4:], "--batch-size", "1"]
    runs = {"default": [*one[:3], "2", *one[4:]], "w15": [*one, "--label", "high", "--guidance", "1.5"],
            "w0": [*one, "--label", "high", "--guidance", "0"], "low": [*one, "--label", "low", "--seed", "1"],
            "uncond": [*one, "--unconditional"], "mix": [*one, "--seed", "1", "--label-mix", "data"],
            "mixed": [*one, "--seed", "1", "--label", "high", "--guidance", "1.5"]}  # data_label(1, (3, 3)) = 0
    for name, args in runs.items():
        assert invoke(*args, "--out", str(tmp_path / name)).exit_code == 0, name
    wav = {name: (tmp_path / name / "sample_000.wav").read_bytes() for name in runs}
    # each clip's label is recorded beside it, for `evaluate generated`; an unconditional sampling records none
    assert (tmp_path / "default" / "metadata.csv").read_text().split() == ["path,label", "sample_000.wav,high",
                                                                            "sample_001.wav,low"]
    assert (tmp_path / "low" / "metadata.csv").read_text().split() == ["path,label", "sample_000.wav,low"]
    assert not (tmp_path / "uncond" / "metadata.csv").exists()
    (tmp_path / "nopath").mkdir()  # a metadata.csv without a path column is left alone, and generate says so
    (tmp_path / "nopath" / "metadata.csv").write_text("name,family\nx.wav,y\n")
    res = invoke(*one, "--label", "low", "--out", str(tmp_path / "nopath"))
    assert res.exit_code == 0 and "has no 'path' column, so the clips' labels were not recorded" in res.output
    assert (tmp_path / "nopath" / "metadata.csv").read_text() == "name,family\nx.wav,y\n"
    assert "not recorded" not in invoke(*one, "--label", "low", "--out", str(tmp_path / "withpath")).output
    # no label: clip i takes the labels in turn (high, low) with the run's guidance, 1.5 when its config is silent
    assert wav["default"] == wav["w15"] != wav["w0"]
    assert (tmp_path / "default" / "sample_001.wav").read_bytes() == wav["low"] != wav["uncond"] != wav["default"]
    assert wav["mix"] == wav["mixed"] != wav["low"]
    for command in ("generate", "vary"):  # --help states where the default comes from
        assert "Default: the run's own ([sample] guidance" in " ".join(invoke(command, "--help").output.split())
    res = invoke(*gen, "--out", str(tmp_path / "g2"), "--label", "mid")
    assert res.exit_code == 1 and "label 'mid': not a label of this run (labels: high, low)" in res.output
    res = invoke("train", str(data), "--out", str(out), "--unconditional", "--no-progress")
    assert res.exit_code == 1 and "unet.num_classes: 2 in the run, 0 asked for" in res.output


def test_a_run_without_label_counts_continues_and_mixes_labels_evenly(tmp_path, tiny_config, monkeypatch):
    data, cfg = _low_and_high(tmp_path, tiny_config, 2)
    out = tmp_path / "run"
    with monkeypatch.context() as m:  # as runs were made before the counts were recorded
        m.setattr("audiodiff.data.labels.label_counts", lambda labels, n: ())
        assert invoke("train", str(data), "--out", str(out), "--config", str(cfg), "--no-progress").exit_code == 0
    res = invoke("train", str(data), "--out", str(out), "--config", str(cfg), "--steps", "6", "--no-progress")
    assert res.exit_code == 0 and "resuming from" in res.output, res.output
    assert Config.from_toml(out / "config.toml").data.label_counts == ()
    gen = ["generate", str(out), "-n", "1", "--steps", "2", "--no-progress"]
    res = invoke(*gen, "--out", str(tmp_path / "g"), "--label-mix", "data")
    assert res.exit_code == 1 and "this run has no label counts" in res.output
    assert invoke(*gen, "--out", str(tmp_path / "g")).exit_code == 0


def test_label_on_unconditional_run(tmp_path, run):
    res = invoke("generate", str(run), "--out", str(tmp_path / "g"), "--label", "x", "--no-progress")
    assert res.exit_code == 1 and "this run is unconditional" in res.output


def test_a_run_names_its_default_vocoder(tmp_path, run, audio_dir):
    from audiodiff.generation.pipeline import SpectrogramDiffusion

    res = invoke("train", str(audio_dir), "--out", str(run), "--vocoder", "griffin", "--no-progress")
    assert res.exit_code == 1 and "unknown vocoder 'griffin'" in res.output
    assert SpectrogramDiffusion.load(run).vocoder.name == "griffinlim"  # the default
    res = invoke("train", str(audio_dir), "--out", str(run), "--steps", "6", "--vocoder", "pghi-2", "--no-progress")
    assert res.exit_code == 0, res.output
    assert 'vocoder = "pghi-2"' in (run / "config.toml").read_text()
    pipe = SpectrogramDiffusion.load(run)
    assert pipe.vocoder.name == "pghi" and pipe.vocoder.n_iter == 2
    res = invoke("generate", str(run), "--out", str(tmp_path / "g"), "-n", "1", "--steps", "2", "--no-progress",
                 "--vocoder", "griffinlim-1")
    assert res.exit_code == 0, res.output


def test_out_of_range_flags_are_one_line_errors(tmp_path, audio_dir, run):
    res = invoke("train", str(audio_dir), "--out", str(tmp_path / "r"), "--preset", "tiny", "--checkpoint-every", "0",
                 "--device", "cpu", "--no-progress")
    assert res.exit_code != 0
    assert "Error: train.checkpoint_every = 0 is out of range: must be at least 1" in res.output
    assert not (tmp_path / "r" / "checkpoints").exists()
    res = invoke("generate", str(run), "--out", str(tmp_path / "g"), "--eta", "1.5", "--no-progress")
    assert res.exit_code == 2 and "--eta" in res.output and "1.5" in res.output
    res = invoke("generate", str(run), "--out", str(tmp_path / "g"), "-n", "0", "--no-progress")
    assert res.exit_code == 2 and "-n" in res.output


def test_spectrogram_png_leaves_the_matplotlib_backend_alone(tmp_path):
    """A notebook user's backend must survive audiodiff drawing a spectrogram (no matplotlib.use)."""
    code = ("import matplotlib; matplotlib.use('svg'); import numpy as np; from audiodiff.config import MelConfig; "
            "from audiodiff.audio.plot import save_spectrogram; "
            f"save_spectrogram(r'{tmp_path / 'x.png'}', np.zeros((80, 10)), MelConfig()); "
            "print(matplotlib.get_backend())")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == "svg", proc.stderr
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_edit_titles_name_each_outputs_seed(tmp_path, run, monkeypatch):
    import audiodiff.generation.options

    titles = []
    real = audiodiff.generation.options.write_clips
    monkeypatch.setattr(audiodiff.generation.options, "write_clips",
                        lambda *a, **k: (titles.extend(k["titles"]), real(*a, **k))[1])
    src = tmp_path / "in.wav"
    sf.write(src, tone(440, 0.5), SR)
    res = invoke("vary", str(run), str(src), "--out", str(tmp_path / "v"), "-n", "2", "--steps", "2", "--seed", "5",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    assert [t.rsplit(", ", 1)[1] for t in titles] == ["seed 5", "seed 6"]

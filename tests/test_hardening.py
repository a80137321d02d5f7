"""What a shared run folder, a second writer or an unlucky command cannot do (issue "Hardening"): each test fails on
the behaviour the review found and passes now."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner

from audiodiff.audio.mel import MelSpectrogram
from audiodiff.cli import main
from audiodiff.data.melcache import INDEX
from audiodiff.data.prepare import load_mels

from .test_melcache import SMALL_SHARDS, store_dir

ROOT = Path(__file__).resolve().parents[1]


def crafted_index(index: dict, names: list[str], size: int) -> dict:
    """The index with extra shards under `names` (paths outside the store), each holding a real file's entry."""
    index = json.loads(json.dumps(index))
    real_file = next(iter(index["entries"]))
    for k, name in enumerate(names):
        index["shards"][name] = {"bytes": size, "sha256": "0" * 64, "mtime_ns": 0}
        index["entries"][f"ghost{k}.wav"] = {**index["entries"][real_file], "shard": name, "offset": 0}
    return index


@pytest.mark.parametrize("how", ["relative", "absolute"])
def test_a_crafted_cache_index_touches_nothing_outside_the_store(tmp_path, audio_dir, tiny_config, how):
    mel = MelSpectrogram(tiny_config.mel)
    cache = tmp_path / "run" / "cache"
    load_mels(audio_dir, mel, 16, cache, progress=False, shard_bytes=SMALL_SHARDS)
    root = store_dir(cache)
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me" * 100)
    name = str(victim) if how == "absolute" else os.path.relpath(victim, root)
    index = json.loads((root / INDEX).read_text())
    (root / INDEX).write_text(json.dumps(crafted_index(index, [name], victim.stat().st_size)))
    data, _ = load_mels(audio_dir, mel, 16, cache, progress=False, shard_bytes=SMALL_SHARDS)
    assert victim.read_text() == "keep me" * 100  # neither deleted nor mapped as training data
    assert not any(f.startswith("ghost") for f in data.files) and len(data) == 6
    assert torch.isfinite(data.file_mel(0)).all()


def _write_many(path: str, text: str, n: int) -> int:
    """Write `text` to `path` n times with files.write_text; returns how many writes failed."""
    from audiodiff.files import write_text

    failed = 0
    for _ in range(n):
        try:
            write_text(path, text)
        except OSError:
            failed += 1
    return failed


def test_two_writers_of_one_file_never_fail_each_other(tmp_path):
    import multiprocessing

    target = tmp_path / "config.toml"
    with multiprocessing.get_context("spawn").Pool(2) as pool:
        failed = pool.starmap(_write_many, [(str(target), "a" * 5000, 150), (str(target), "b" * 5000, 150)])
    assert failed == [0, 0]
    assert target.read_text() in ("a" * 5000, "b" * 5000)
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]  # no temporary file left behind


def train_command(data: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "audiodiff", "train", str(data), "--out", str(out), "--preset", "tiny",
            "--batch-size", "2", "--no-progress", *extra]


@pytest.mark.slow
def test_a_second_train_on_one_folder_is_refused_and_a_killed_holders_run_resumes(tmp_path, audio_dir):
    out = tmp_path / "run"
    first = subprocess.Popen(train_command(audio_dir, out, "--steps", "100000", "--checkpoint-every", "3"),
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not list((out / "checkpoints").glob("step_*.safetensors")):
            assert first.poll() is None, first.stderr.read()
            assert time.monotonic() < deadline, "the first run wrote no checkpoint"
            time.sleep(0.2)
        second = subprocess.run(train_command(audio_dir, out, "--seed", "1", "--steps", "6"), capture_output=True,
                                text=True)
        assert second.returncode == 1, second.stderr
        error = second.stderr.strip().splitlines()
        assert len(error) == 1 and f"pid {first.pid}" in error[0] and "another audiodiff process" in error[0]
    finally:
        first.kill()
        first.wait()
    step = max(int(p.stem.split("_")[1]) for p in (out / "checkpoints").glob("step_*.safetensors"))
    resumed = subprocess.run(train_command(audio_dir, out, "--steps", str(step + 2)), capture_output=True, text=True)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming from" in resumed.stdout and f"step {step + 2}" in resumed.stdout


def cli(*args: str) -> str:
    res = CliRunner().invoke(main, [*args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_continuing_a_base_run_keeps_what_its_lora_runs_need(tmp_path, audio_dir):
    keep_one = tmp_path / "keep.toml"
    keep_one.write_text("[train]\nkeep_checkpoints = 1\ncheckpoint_every = 2\npreview_count = 0\n")
    base, lora = tmp_path / "base", tmp_path / "lora"
    cli("train", str(audio_dir), "--out", str(base), "--preset", "tiny", "--config", str(keep_one), "--steps", "2",
        "--batch-size", "2", "--no-progress")
    cli("finetune", str(base), str(audio_dir), "--out", str(lora), "--lora", "4", "--steps", "2", "--batch-size", "2",
        "--no-progress")
    cli("train", str(audio_dir), "--out", str(base), "--steps", "4", "--no-progress")  # prunes step 2
    assert [p.name for p in (base / "checkpoints").iterdir()] == ["step_00000004.safetensors"]
    cli("generate", str(lora), "--out", str(tmp_path / "clips"), "-n", "1", "--steps", "2", "--no-progress")
    cli("merge", str(lora), "--out", str(tmp_path / "merged"))


def test_a_refused_lora_rank_writes_nothing(tmp_path, audio_dir):
    base, lora = tmp_path / "base", tmp_path / "lora"
    cli("train", str(audio_dir), "--out", str(base), "--preset", "tiny", "--steps", "2", "--batch-size", "2",
        "--no-progress")
    res = CliRunner().invoke(main, ["finetune", str(base), str(audio_dir), "--out", str(lora), "--lora", "100000",
                                    "--steps", "2", "--no-progress"])
    assert res.exit_code == 1 and "LoRA rank 100000" in res.output
    assert not lora.exists()
    cli("finetune", str(base), str(audio_dir), "--out", str(lora), "--lora", "4", "--steps", "2", "--batch-size", "2",
        "--no-progress")


def test_generate_keeps_an_existing_metadata_csv_as_it_was(tmp_path):
    out = tmp_path / "clips"
    out.mkdir()
    mine = "path,label,note\nz.wav,x,first\na.wav,y,second\na.wav,y,again\n"
    (out / "metadata.csv").write_text(mine)
    cli("generate", str(ROOT / "samples" / "models" / "digits"), "--out", str(out), "--label", "7", "-n", "2",
        "--steps", "2", "--no-progress")
    lines = (out / "metadata.csv").read_text().splitlines()
    assert lines[:4] == mine.splitlines()  # order, duplicates and the other column kept
    assert lines[4:] == ["sample_000.wav,7,", "sample_001.wav,7,"]


def test_a_run_inside_its_data_folder_does_not_train_on_its_previews(tmp_path, audio_dir):
    labelled = tmp_path / "data"
    for label in ("low", "high"):
        (labelled / label).mkdir(parents=True)
    for k, f in enumerate(sorted(p for p in audio_dir.rglob("*") if p.suffix in (".wav", ".flac", ".ogg"))):
        f.rename(labelled / ("low" if k % 2 else "high") / f.name)
    out = labelled / "run"
    args = ["train", str(labelled), "--out", str(out), "--preset", "tiny", "--steps", "2", "--batch-size", "2",
            "--no-progress"]
    cli(*args)
    assert list((out / "samples").glob("*.wav"))  # previews inside DATA_DIR now
    said = cli(*args[:6], "--steps", "4", "--batch-size", "2", "--no-progress")
    assert " of 6 audio files used" in said and "on 2 labels" in said  # not 8 files, not a label "run"


def test_a_gallery_inside_its_source_does_not_copy_its_own_copies(tmp_path):
    source = tmp_path / "clips"
    cli("generate", str(ROOT / "samples" / "models" / "drums"), "--out", str(source), "-n", "2", "--steps", "2",
        "--no-progress")
    for _ in range(2):
        cli("gallery", str(source), "--out", str(source / "site"), "--force")
    assert sorted(p.name for p in (source / "site" / "clips").rglob("*.wav")) == ["sample_000.wav", "sample_001.wav"]


def test_lora_scale_zero_gives_the_base_back(tmp_path):
    from audiodiff.generation.pipeline import SpectrogramDiffusion

    base, lora = ROOT / "samples" / "models" / "notes-tiny", tmp_path / "lora"
    cli("finetune", str(base), str(ROOT / "samples" / "notes" / "heldout"), "--out", str(lora), "--lora", "4",
        "--label-column", "family", "--steps", "3", "--lr", "0.05", "--batch-size", "4", "--no-progress")
    def clips(run, **kw):
        return SpectrogramDiffusion.load(run, **kw).generate(2, steps=3, seed=0, label="flute").logmel
    assert not torch.equal(clips(lora), clips(base))  # the fine-tune moved it
    assert torch.equal(clips(lora, lora_scale=0.0), clips(base))
    for command in (["generate", str(lora), "--out", str(tmp_path / "g")],
                    ["merge", str(lora), "--out", str(tmp_path / "m")]):
        res = CliRunner().invoke(main, [*command, "--lora-scale", "nan"])
        assert res.exit_code == 2 and "'nan' is not a finite number" in res.output, res.output
    with pytest.raises(ValueError, match="LoRA scale nan: must be a finite number"):  # the library checks it too
        SpectrogramDiffusion.load(lora, lora_scale=float("nan"))


@pytest.mark.parametrize("toml, message", [
    ('vocoder = "no-such-vocoder"\n', "no-such-vocoder"),
    ("[train]\npreview_steps = 5000\n", "train.preview_steps = 5000"),
    ("[mel]\nmin_db = nan\n", "mel.min_db = nan"),
    ("[mel]\nmax_db = inf\n", "mel.max_db = inf"),
])
def test_a_bad_setting_in_a_config_file_is_refused_before_anything_is_written(tmp_path, audio_dir, toml, message):
    bad = tmp_path / "bad.toml"
    bad.write_text(toml)
    out = tmp_path / "run"
    res = CliRunner().invoke(main, ["train", str(audio_dir), "--out", str(out), "--preset", "tiny", "--config",
                                    str(bad), "--steps", "2", "--no-progress"])
    assert res.exit_code == 1 and message in res.output and res.output.count("\n") == 1, res.output
    assert not out.exists()


def test_user_text_in_a_spectrogram_title_is_text(tmp_path):
    """A label or file name with dollar signs reaches the PNG's title (it crashed matplotlib's TeX parser)."""
    import numpy as np

    from audiodiff.audio.plot import save_spectrogram
    from audiodiff.config import MelConfig

    save_spectrogram(tmp_path / "x.png", np.zeros((80, 64)), MelConfig(), "label a$\\notacommand$b, x $^^$ y")
    assert (tmp_path / "x.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_reconstruct_writes_the_format_its_name_asks_for(tmp_path):
    import soundfile as sf

    clip = ROOT / "samples" / "notes" / "heldout" / "bass_00013.flac"
    cli("reconstruct", str(clip), "--out", str(tmp_path / "x.flac"))
    assert sf.info(str(tmp_path / "x.flac")).format == "FLAC"
    res = CliRunner().invoke(main, ["reconstruct", str(clip), "--out", str(tmp_path / "y.mp4")])
    assert res.exit_code == 1 and "cannot write .mp4 audio" in res.output and not (tmp_path / "y.png").exists()


def test_checkpoints_and_exports_are_readable_as_the_umask_allows(tmp_path, audio_dir):
    run = tmp_path / "run"
    cli("train", str(audio_dir), "--out", str(run), "--preset", "tiny", "--steps", "2", "--batch-size", "2",
        "--no-progress")
    cli("export", str(run), "--out", str(tmp_path / "shared"))
    mask = os.umask(0o022)
    os.umask(mask)
    for path in [*run.glob("checkpoints/*"), *(tmp_path / "shared").glob("checkpoints/*")]:
        assert path.stat().st_mode & 0o777 == 0o666 & ~mask, path


def test_conflicting_or_empty_labels_in_metadata_are_refused(tmp_path, audio_dir):
    from audiodiff.data.labels import file_labels

    files = ["one.wav", "two.flac"]
    (audio_dir / "metadata.csv").write_text("path,kind\none.wav,a\ntwo.flac,b\none.wav,c\n")
    with pytest.raises(ValueError, match="one.wav has two rows with different 'kind'"):
        file_labels(audio_dir, files, "kind")
    (audio_dir / "metadata.csv").write_text("path,kind\none.wav,a\ntwo.flac, \n")
    with pytest.raises(ValueError, match="two.flac has an empty 'kind'"):
        file_labels(audio_dir, files, "kind")
    (audio_dir / "metadata.csv").write_text("path,kind\none.wav,a\ntwo.flac,b\none.wav,a\n")  # the same row twice
    assert file_labels(audio_dir, files, "kind")[0] == ["a", "b"]


def snapshot(root: Path, leave_out: tuple[Path, ...]) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file under root outside the folders in leave_out."""
    found = {}
    for path in root.rglob("*"):
        if path.is_file() and not any(path.is_relative_to(f) for f in leave_out):
            st = path.stat()
            found[str(path)] = (st.st_size, st.st_mtime_ns)
    return found


CRAFTED_CONFIGS = [
    'vocoder = "../../victim.txt"\n',
    'vocoder = "/etc/passwd"\n',
    "[train]\nsteps = 1e308\n",
    "[train]\nlr = nan\n",
    "[train]\nbatch_size = 99999999999999999999\n",
    "[data]\nlabels = [\"../../x\", \"/abs\"]\n",
    '[finetune]\nbase = "../../victim.txt"\nbase_sha256 = "00"\nlora_rank = 2\n',
    '[distill]\nteacher = "/etc/passwd"\n',
    "preset = \"\\u0000\\u202e$\\\\frac{\"\n",
    "[mel]\nsample_rate = -1\n",
    "not toml at all = = =\n",
]
CRAFTED_METADATA = [
    "path,label\n../victim.txt,a\none.wav,b\n",
    "path,label\n/etc/passwd,a\n",
    "path,label\none.wav,=HYPERLINK(\"x\")\ntwo.flac,$\\frac{\n",
    "path,label\none.wav,nan\ntwo.flac,inf\n",
    "path,label\n" + "x" * 10000 + ".wav,a\n",
]


@pytest.mark.slow
def test_crafted_configs_and_metadata_touch_nothing_outside_the_run_folder(tmp_path, audio_dir):
    """train, finetune and gallery on crafted config.toml and metadata.csv files: each ends with exit 0 or one
    `Error:` line (no traceback), and no file outside the run folder changes."""
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    base = tmp_path / "base"
    cli("train", str(audio_dir), "--out", str(base), "--preset", "tiny", "--steps", "2", "--batch-size", "2",
        "--no-progress")
    cases = [("config", text) for text in CRAFTED_CONFIGS] + [("metadata", text) for text in CRAFTED_METADATA]
    for k, (kind, text) in enumerate(cases):
        run = tmp_path / f"run{k}"
        run.mkdir()
        before = snapshot(tmp_path, (run,))
        if kind == "config":
            (run / "config.toml").write_text(text)
            commands = [["train", str(audio_dir), "--out", str(run), "--steps", "2", "--no-progress"],
                        ["generate", str(run), "--out", str(run / "g"), "--steps", "2", "--no-progress"],
                        ["gallery", str(run), "--out", str(run / "site")]]
        else:
            (audio_dir / "metadata.csv").write_text(text)
            commands = [["train", str(audio_dir), "--out", str(run), "--preset", "tiny", "--label-column", "label",
                         "--steps", "2", "--batch-size", "2", "--no-progress"],
                        ["finetune", str(base), str(audio_dir), "--out", str(run / "ft"), "--label-column", "label",
                         "--new-labels", "--steps", "2", "--batch-size", "2", "--no-progress"]]
        for command in commands:
            res = CliRunner().invoke(main, command)
            assert res.exit_code in (0, 1) and (res.exception is None or isinstance(res.exception, SystemExit)), \
                (text, command, res.output, res.exception)
            if res.exit_code == 1:
                assert res.output.startswith("Error: ") or "\nError: " in res.output, (text, command, res.output)
        (audio_dir / "metadata.csv").unlink(missing_ok=True)
        after = snapshot(tmp_path, (run,))
        assert after == before, (text, set(after.items()) ^ set(before.items()))
        assert victim.read_text() == "keep me"


def test_train_into_an_exported_model_changes_nothing(tmp_path, audio_dir):
    shared = tmp_path / "shared"
    shutil.copytree(ROOT / "samples" / "models" / "digits", shared)
    before = snapshot(shared, ())
    res = CliRunner().invoke(main, ["train", str(audio_dir), "--out", str(shared), "--steps", "2", "--no-progress"])
    assert res.exit_code == 1 and "an exported run (EMA weights only) cannot be trained further" in res.output
    assert snapshot(shared, ()) == before and not (shared / "cache").exists()


NOTES = ROOT / "samples" / "models" / "notes-tiny"
CLIP = ROOT / "samples" / "notes" / "heldout" / "bass_00013.flac"
SWEEP = [  # command line, what the one line says; every float option refuses nan and inf
    (["generate", str(NOTES), "--guidance", "nan"], "'nan' is not a finite number"),
    (["generate", str(NOTES), "--guidance", "inf"], "'inf' is not a finite number"),
    (["generate", str(NOTES), "--seconds", "inf"], "'inf' is not a finite number"),
    (["generate", str(NOTES), "--seconds", "1e308"], "seconds must be in (0, 3600.0]"),
    (["generate", str(NOTES), "--autoguidance", "nan"], "'nan' is not a finite number"),
    (["generate", str(NOTES), "--guidance-interval", "5", "inf"], "'inf' is not a finite number"),
    (["generate", str(NOTES), "--device", "bogus"], "--device bogus: not a device"),
    (["inpaint", str(NOTES), str(CLIP), "--start", "0.1", "--end", "0.3", "--band", "nan", "5"], "not a finite"),
    (["continue", str(NOTES), str(CLIP), "--seconds", "1e9"], "seconds must be in (0, 3600.0]"),
    (["vary", str(NOTES), str(CLIP), "--strength", "nan"], "'nan' is not a finite number"),
    (["train", "DATA", "--preset", "tiny", "--lr", "nan"], "'nan' is not a finite number"),
    (["train", "DATA", "--preset", "tiny", "--min-snr", "inf"], "'inf' is not a finite number"),
    (["reconstruct", "SHORT"], "shorter than one mel frame"),
    (["reconstruct", "NOT_AUDIO"], "cannot read audio"),
    (["vary", str(NOTES), "SHORT", "--strength", "0.4"], "need audio of at least"),
]


@pytest.mark.parametrize("args, message", SWEEP, ids=[" ".join(a[:1] + a[3:5]) for a, _ in SWEEP])
def test_bad_values_get_one_line(tmp_path, audio_dir, args, message):
    import numpy as np
    import soundfile as sf

    sf.write(tmp_path / "short.wav", np.zeros(10, dtype=np.float32), 16000)
    (tmp_path / "not_audio.wav").write_text("not audio")
    where = {"DATA": str(audio_dir), "SHORT": str(tmp_path / "short.wav"), "NOT_AUDIO": str(tmp_path / "not_audio.wav")}
    args = [where.get(a, a) for a in args]
    args += ["--out", str(tmp_path / ("out.wav" if args[0] == "reconstruct" else "out"))]
    res = CliRunner().invoke(main, args)
    assert res.exit_code in (1, 2) and isinstance(res.exception, SystemExit), (res.output, res.exception)
    assert message in res.output and "Traceback" not in res.output, res.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["samples", "checkpoints/step_00000002.safetensors", "cache/mels-x", "loss.csv"])
def test_a_run_folder_with_links_out_of_it_is_refused(tmp_path, audio_dir, where):
    run, elsewhere = tmp_path / "run", tmp_path / "elsewhere"
    cli("train", str(audio_dir), "--out", str(run), "--preset", "tiny", "--steps", "2", "--batch-size", "2",
        "--no-progress")
    elsewhere.mkdir()
    (elsewhere / "step_00000001.safetensors").write_text("someone's file")
    link = run / where
    if link.exists():
        shutil.rmtree(link) if link.is_dir() else link.unlink()
    link.symlink_to(elsewhere if "." not in link.name else elsewhere / "step_00000001.safetensors")
    before = snapshot(elsewhere, ())
    res = CliRunner().invoke(main, ["train", str(audio_dir), "--out", str(run), "--steps", "4", "--no-progress"])
    assert res.exit_code == 1 and "a symbolic link inside a run folder" in res.output, res.output
    assert snapshot(elsewhere, ()) == before


def test_distill_guidance_help_names_the_teachers_own_default():
    res = CliRunner().invoke(main, ["distill", "--help"])
    assert "teacher's own" in " ".join(res.output.split()) and "default 1.5" not in res.output


@pytest.mark.parametrize("command", ["vary", "inpaint", "continue", "interpolate"])
def test_every_edit_given_a_file_that_is_not_audio_says_so_in_one_line(tmp_path, command):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    extra = {"vary": ["--strength", "0.4"], "inpaint": ["--start", "0.1", "--end", "0.2"],
             "continue": ["--seconds", "1"], "interpolate": [str(CLIP)]}[command]
    res = CliRunner().invoke(main, [command, str(NOTES), str(bad), *extra, "--out", str(tmp_path / "out")])
    assert res.exit_code == 1 and isinstance(res.exception, SystemExit) and "cannot read audio" in res.output
    assert res.output.count("\n") == 1 and not (tmp_path / "out").exists()


def test_reconstruct_keeps_an_existing_spectrogram_unless_forced(tmp_path):
    (tmp_path / "x.png").write_text("mine")
    res = CliRunner().invoke(main, ["reconstruct", str(CLIP), "--out", str(tmp_path / "x.wav")])
    assert res.exit_code == 1 and "x.png: exists; pass --force" in res.output
    assert (tmp_path / "x.png").read_text() == "mine" and not (tmp_path / "x.wav").exists()
    cli("reconstruct", str(CLIP), "--out", str(tmp_path / "x.wav"), "--force")
    assert (tmp_path / "x.png").read_bytes()[:4] == b"\x89PNG"

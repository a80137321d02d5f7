"""Issue 8: no lost work under crashes, bad data and bad checkpoints."""

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from audiodiff import checkpoint
from audiodiff.audio.io import AudioError, load
from audiodiff.audio.mel import MelSpectrogram
from audiodiff.data.prepare import load_mels
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.training.diffusion import latest_checkpoint, train

from .conftest import SR, tone


def write_bad_corpus(d: Path) -> dict[str, str]:
    """Files that must be skipped, with a fragment of the reason each should give."""
    d.mkdir(parents=True, exist_ok=True)
    (d / "zero-bytes.wav").write_bytes(b"")
    good = d / "_good.wav"
    sf.write(good, tone(440, 0.3), SR)
    (d / "truncated-header.wav").write_bytes(good.read_bytes()[:30])
    good.unlink()
    (d / "text-named.wav").write_text("this is a text file, not audio\n" * 20)
    (d / "image-named.flac").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    sf.write(d / "one-sample.wav", np.array([0.5], dtype=np.float32), SR)
    nan = tone(440, 0.3)
    nan[100:110] = np.nan
    sf.write(d / "nan-samples.wav", nan, SR, subtype="FLOAT")
    sf.write(d / "silence 静か.wav", np.zeros(SR, dtype=np.float32), SR)
    os.symlink("loop-b.wav", d / "loop-a.wav")
    os.symlink("loop-a.wav", d / "loop-b.wav")
    os.symlink("missing-target.wav", d / "dangling.wav")
    os.symlink(".", d / "dir-loop")  # a symlinked folder pointing at its parent: never followed
    return {"zero-bytes.wav": "cannot read audio", "truncated-header.wav": "cannot read audio",
            "text-named.wav": "cannot read audio", "image-named.flac": "cannot read audio",
            "one-sample.wav": "too short", "nan-samples.wav": "NaN or infinite", "silence 静か.wav": "silent",
            "loop-a.wav": "cannot read audio", "loop-b.wav": "cannot read audio", "dangling.wav": "cannot read audio"}


def write_odd_but_good_corpus(d: Path) -> list[str]:
    """Legal but unusual files that must be used."""
    d.mkdir(parents=True, exist_ok=True)
    x = tone(440, 0.4, sr=SR)
    sf.write(d / "pcm-u8.wav", x, SR, subtype="PCM_U8")
    sf.write(d / "pcm-24.flac", x, SR, subtype="PCM_24")
    sf.write(d / "float64.wav", x.astype(np.float64), SR, subtype="DOUBLE")
    sf.write(d / "six-channels.wav", np.stack([x] * 6, axis=1), SR)
    sf.write(d / "dc-offset.wav", 0.1 * x + 0.85, SR, subtype="FLOAT")
    for rate in (8000, 11025, 22050, 44100, 48000, 96000):
        sf.write(d / f"rate {rate} Hz ♪.wav", tone(440, 0.4, sr=rate), rate)
    flac_named_wav = d / "really-flac.wav"
    sf.write(flac_named_wav, x, SR, format="FLAC")
    return sorted(p.name for p in d.iterdir())


def test_mixed_corpus_trains_and_reports(tmp_path, tiny_config):
    bad = write_bad_corpus(tmp_path / "data" / "bad")
    good = write_odd_but_good_corpus(tmp_path / "data" / "good")
    data, report = load_mels(tmp_path / "data", MelSpectrogram(tiny_config.mel), 16, progress=False)
    assert sorted(Path(f).name for f in data.files) == good
    reasons = {Path(p).name: r for p, r in report.skipped}
    assert set(reasons) == set(bad)
    for name, fragment in bad.items():
        assert fragment in reasons[name], (name, reasons[name])
    assert max(float(data.file_mel(i).max()) for i in range(len(data))) < 1.5  # the DC offset was removed, not learned as a loud bass
    state = train(tiny_config, data, tmp_path / "run", torch.device("cpu"), progress=False)
    assert state.step == tiny_config.train.steps


def test_only_bad_files_is_one_clear_error(tmp_path, tiny_config):
    write_bad_corpus(tmp_path / "bad")
    with pytest.raises(ValueError, match=r"bad: none of the 10 audio files is usable"):
        load_mels(tmp_path / "bad", MelSpectrogram(tiny_config.mel), 16, progress=False)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(blob=st.binary(max_size=600), prefix=st.sampled_from([b"", b"RIFF", b"RIFF\x24\x00\x00\x00WAVEfmt ",
                                                            b"fLaC", b"OggS", b"FORM"]))
def test_fuzz_audio_loader(tmp_path, blob, prefix):
    path = tmp_path / "fuzz.wav"
    path.write_bytes(prefix + blob)
    try:
        wav = load(path, SR)
    except AudioError as e:
        assert str(e).startswith(str(path))
    else:
        assert wav.dtype == np.float32 and wav.ndim == 1 and np.isfinite(wav).all()


def _small_checkpoint(tmp_path, tiny_config, audio_dir) -> Path:
    data, _ = load_mels(audio_dir, MelSpectrogram(tiny_config.mel), 16, progress=False)
    train(tiny_config.replace("train", steps=2, preview_count=0), data, tmp_path / "run", torch.device("cpu"),
          progress=False)
    return latest_checkpoint(tmp_path / "run")


def test_fuzz_checkpoint_loader(tmp_path, tiny_config, audio_dir):
    path = _small_checkpoint(tmp_path, tiny_config, audio_dir)
    blob = path.read_bytes()
    header_len = int.from_bytes(blob[:8], "little")
    rng = random.Random(0)
    target = tmp_path / "mutant.safetensors"
    original = checkpoint.read(path)
    outcomes = {"refused": 0, "same content": 0}
    for i in range(300):
        b = bytearray(blob)
        kind = i % 4
        if kind == 0:  # truncate anywhere
            b = b[: rng.randrange(len(b))]
        elif kind == 1:  # flip bytes in the JSON header (metadata, names, shapes, offsets)
            for _ in range(rng.randint(1, 4)):
                b[rng.randrange(8, 8 + header_len)] = rng.randrange(256)
        elif kind == 2:  # flip bytes in the tensor data
            for _ in range(rng.randint(1, 16)):
                b[rng.randrange(8 + header_len, len(b))] = rng.randrange(256)
        else:  # corrupt the header length
            b[:8] = rng.randrange(2**40).to_bytes(8, "little")
        target.write_bytes(bytes(b))
        try:
            SpectrogramDiffusion.load(target, device="cpu")
        except checkpoint.CheckpointError as e:
            assert str(e).startswith(str(target)), e
            outcomes["refused"] += 1
            continue
        # loaded: only a change that left every tensor and metadata entry as it was (e.g. a flip of the
        # header's space padding to another space, or a "flip" to the same byte) may load
        tensors, meta = checkpoint.read(target)
        assert meta == original[1] and tensors.keys() == original[0].keys(), f"mutant {i} loaded changed content"
        assert all(torch.equal(tensors[k], original[0][k]) for k in tensors), f"mutant {i} loaded changed tensors"
        outcomes["same content"] += 1
    print(f"checkpoint fuzz: {outcomes}")
    assert outcomes["refused"] >= 290  # most mutations change the content; none that did was loaded


def _rewrite_metadata(path: Path, target: Path, change) -> None:
    """Copy a checkpoint with its metadata changed by change(meta), keeping the stored checksum."""
    from safetensors import safe_open
    from safetensors.torch import save_file

    with safe_open(path, framework="pt") as f:
        meta, tensors = dict(f.metadata()), {k: f.get_tensor(k) for k in f.keys()}
    change(meta)
    save_file(tensors, target, metadata=meta)


def test_checksum_covers_the_metadata(tmp_path, tiny_config, audio_dir):
    path = _small_checkpoint(tmp_path, tiny_config, audio_dir)
    target = tmp_path / "changed.safetensors"

    def other_rate(meta):
        config = json.loads(meta["config"])
        config["mel"]["sample_rate"] = 16000
        meta["config"] = json.dumps(config)

    _rewrite_metadata(path, target, other_rate)
    with pytest.raises(checkpoint.CheckpointError, match="do not match the checksum"):
        checkpoint.read(target)
    _rewrite_metadata(path, target, lambda meta: meta.update(step="7"))
    with pytest.raises(checkpoint.CheckpointError, match="do not match the checksum"):
        checkpoint.read(target)


def test_checkpoints_of_the_older_format_still_load(tmp_path, tiny_config, audio_dir):
    """Files written before the checksum covered the metadata carry a digest of the tensors alone."""
    path = _small_checkpoint(tmp_path, tiny_config, audio_dir)
    tensors, _ = checkpoint.read(path)
    old = tmp_path / "old.safetensors"

    def legacy(meta):
        del meta["checksum_covers"]
        meta["sha256"] = json.dumps(checkpoint._digest(tensors, None))

    _rewrite_metadata(path, old, legacy)
    SpectrogramDiffusion.load(old, device="cpu")


def test_disk_full_keeps_previous_checkpoint(tmp_path, tiny_config, audio_dir, monkeypatch):
    data, _ = load_mels(audio_dir, MelSpectrogram(tiny_config.mel), 16, progress=False)
    run = tmp_path / "run"
    train(tiny_config.replace("train", steps=2), data, run, torch.device("cpu"), progress=False)
    before = latest_checkpoint(run).read_bytes()

    def full_disk(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(checkpoint, "save_file", full_disk)
    with pytest.raises(OSError, match=r"step_00000004.safetensors: cannot write checkpoint \(No space left on device\)"):
        train(tiny_config, data, run, torch.device("cpu"), progress=False)
    assert latest_checkpoint(run).name == "step_00000002.safetensors"
    assert latest_checkpoint(run).read_bytes() == before
    assert not [p for p in (run / "checkpoints").iterdir() if p.name.startswith(".")]  # no temp files left
    monkeypatch.undo()
    state = train(tiny_config, data, run, torch.device("cpu"), progress=False)  # and the run continues
    assert state.step == 4


@pytest.mark.slow
def test_kill_nine_loop(tmp_path, tiny_config, audio_dir):
    """SIGKILL a training process at random moments; every resume continues from the last checkpoint."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(tiny_config.replace("train", steps=400, checkpoint_every=5, log_every=1, keep_checkpoints=2,
                                       preview_count=0).to_toml())
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "audiodiff", "train", str(audio_dir), "--out", str(run), "--config", str(cfg),
           "--device", "cpu", "--no-progress"]
    rng = random.Random(0)
    kills, steps_seen = 0, []
    while kills < 10:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        start_step = _latest_step(run)
        deadline = time.monotonic() + 60
        while _latest_step(run) <= start_step + rng.randint(0, 10) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(rng.uniform(0, 0.3))
        if proc.poll() is not None:
            pytest.fail(f"training exited before it was killed: {proc.stderr.read().decode()[-500:]}")
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        ckpts = sorted((run / "checkpoints").glob("step_*.safetensors"))
        for c in ckpts:
            checkpoint.read(c)  # never corrupt
        steps_seen.append(_latest_step(run))
    print(f"kill -9 loop: {kills} kills, last checkpoint step after each: {steps_seen}")
    assert steps_seen == sorted(steps_seen) and steps_seen[-1] > steps_seen[0]
    final = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-1000:]
    rows = [line.split(",") for line in (run / "loss.csv").read_text().splitlines()[1:]]
    steps = [int(r[0]) for r in rows]
    assert steps == list(range(1, 401))  # the loss curve continues: every step once, no gaps, no duplicates
    assert all(len(r) == 6 for r in rows)


def _latest_step(run: Path) -> int:
    ckpt = latest_checkpoint(run) if (run / "checkpoints").exists() else None
    return int(ckpt.stem.split("_")[1]) if ckpt else 0

"""Golden test: a tiny class-conditional run trained and sampled through the CLI with fixed seeds must give
the same loss log and the same WAV bytes as the values recorded before the "Foundations" restructuring
(commit 7c1b9ac). A refactor that changes what a user gets for a seed fails here.

Bit-identical floats need the same torch build and CPU kernels as the recording: on another machine the
test is skipped with the reason (the numbers would differ in their last bits, not in substance).

Re-record (only for an intended change of behaviour, say so in the commit):
    python -m tests.test_golden
"""

from __future__ import annotations

import csv
import hashlib
import json
import sys
from pathlib import Path

import pytest
import soundfile as sf
import torch
from click.testing import CliRunner

from audiodiff.cli import main
from audiodiff.config import Config, DataConfig, DiffusionConfig, MelConfig, TrainConfig, UNetConfig

from .conftest import SR, tone

GOLDEN = Path(__file__).with_name("golden.json")


def machine() -> str:
    return f"torch {torch.__version__}, {torch.backends.cpu.get_cpu_capability()}, {torch.get_num_threads()} threads"


def make_run(root: Path) -> dict[str, str]:
    """Train the golden run in root/run and generate from it; returns {file: digest} for what must not change."""
    data = root / "data"
    for cls, freq in (("low", 220), ("high", 1760)):
        (data / cls).mkdir(parents=True)
        for i in range(3):
            sf.write(data / cls / f"{i}.wav", tone(freq * (1 + 0.05 * i), 0.3), SR)
    config = Config(
        mel=MelConfig(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, f_min=0.0, f_max=4000.0),
        unet=UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), head_channels=8),
        diffusion=DiffusionConfig(num_steps=100),
        data=DataConfig(crop_frames=16),
        train=TrainConfig(steps=4, batch_size=4, lr=1e-3, warmup_steps=2, log_every=1, checkpoint_every=2,
                          keep_checkpoints=5, preview_count=2, preview_steps=3, precision="bf16", seed=7),
        preset="golden",
    )
    (root / "golden.toml").write_text(config.to_toml())
    run = root / "run"
    commands = [
        ["train", str(data), "--out", str(run), "--config", str(root / "golden.toml"), "--device", "cpu"],
        ["generate", str(run), "--out", str(root / "gen"), "-n", "2", "--steps", "4", "--label", "high", "--seed", "3",
         "--device", "cpu"],
        ["generate", str(run), "--out", str(root / "long"), "-n", "1", "--steps", "3", "--seconds", "0.6",
         "--sampler", "dpmpp-2m", "--label", "low", "--guidance", "0", "--vocoder", "pghi-2", "--device", "cpu"],
    ]
    for args in commands:
        res = CliRunner().invoke(main, [*args, "--no-progress"], catch_exceptions=False)
        assert res.exit_code == 0, res.output
    with open(run / "loss.csv", newline="") as f:  # samples_per_s is a timing: everything else is fixed by the seed
        rows = [",".join(r[k] for k in ("step", "loss", "lr", "grad_norm", "bad_steps")) for r in csv.DictReader(f)]
    digests = {"loss.csv": hashlib.sha256("\n".join(rows).encode()).hexdigest()}
    for wav in sorted([*run.glob("samples/*.wav"), *root.glob("gen/*.wav"), *root.glob("long/*.wav")]):
        digests[str(wav.relative_to(root))] = hashlib.sha256(wav.read_bytes()).hexdigest()
    return digests


def test_golden_run(tmp_path):
    golden = json.loads(GOLDEN.read_text())
    if golden["machine"] != machine():
        pytest.skip(f"golden bytes were recorded with {golden['machine']}; this machine has {machine()}")
    assert make_run(tmp_path) == golden["digests"]


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        digests = make_run(Path(tmp))
    GOLDEN.write_text(json.dumps({"machine": machine(), "digests": digests}, indent=1) + "\n")
    print(f"recorded {len(digests)} digests on {machine()} -> {GOLDEN}", file=sys.stderr)

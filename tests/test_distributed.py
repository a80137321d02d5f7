"""Data-parallel training: torchrun with 2 CPU processes (gloo) against one process with the same global batch."""

import os
import subprocess
import sys

import pytest
import torch

from audiodiff import checkpoint
from audiodiff.training.diffusion import latest_checkpoint
from audiodiff.training.distributed import Dist, shutdown

from .test_cli import invoke


def torchrun(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "audiodiff", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_share_splits_the_global_batch():
    x = torch.arange(8)
    assert torch.equal(Dist(0, 2).share(x), torch.arange(4)) and torch.equal(Dist(1, 2).share(x), torch.arange(4, 8))
    assert torch.equal(Dist().share(x), x)


def test_two_processes_match_one(tmp_path, audio_dir, tiny_config):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.replace("train", preview_count=0).to_toml())
    common = ["--config", str(cfg), "--device", "cpu", "--no-progress"]
    proc = torchrun("train", str(audio_dir), "--out", str(tmp_path / "ddp"), *common)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "on 2 processes (cpu)" in proc.stdout and "2 processes: weights identical on every rank" in proc.stdout
    assert proc.stdout.count("data: ") == 1  # only rank 0 talks
    res = invoke("train", str(audio_dir), "--out", str(tmp_path / "one"), *common)
    assert res.exit_code == 0, res.output

    ddp, _ = checkpoint.read(latest_checkpoint(tmp_path / "ddp"))
    one, meta = checkpoint.read(latest_checkpoint(tmp_path / "one"))
    assert meta["step"] == 4 and set(ddp) == set(one)
    moved = max((one[k] - checkpoint.read(sorted((tmp_path / "one" / "checkpoints").glob("*"))[0])[0][k]).abs().max()
                for k in one if k.startswith("model."))
    worst = max((ddp[k].float() - one[k].float()).abs().max() for k in one if k.startswith(("model.", "ema.")))
    assert moved > 1e-3 and worst < 1e-5, (moved, worst)  # training moved the weights; DDP took the same steps
    assert torch.equal(ddp["rng.data"], one["rng.data"])  # the same data stream: resumable by either

    proc = torchrun("train", str(audio_dir), "--out", str(tmp_path / "ddp"), "--steps", "6", *common)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "resuming from" in proc.stdout and "step 6" in proc.stdout


@pytest.mark.parametrize("batch", [3])
def test_batch_must_divide_among_processes(tmp_path, audio_dir, tiny_config, batch):
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.replace("train", batch_size=batch, preview_count=0).to_toml())
    proc = torchrun("train", str(audio_dir), "--out", str(tmp_path / "r"), "--config", str(cfg), "--device", "cpu",
                    "--no-progress")
    assert proc.returncode != 0 and "batch size 3 does not divide among 2 processes" in proc.stderr


@pytest.mark.skipif(not os.path.isdir("/proc/self/task"), reason="thread names come from Linux's /proc")
def test_shutdown_stops_the_process_groups_threads(tmp_path):
    """A DDP-wrapped model must not keep the gloo group (and its threads) alive past shutdown: threads left to die
    with the interpreter aborted a rank now and then."""
    def gloo_threads() -> int:
        tasks = os.listdir("/proc/self/task")
        return sum(open(f"/proc/self/task/{t}/comm").read().startswith(("pt_gloo", "gloo")) for t in tasks)

    store = torch.distributed.FileStore(str(tmp_path / "store"), 1)
    torch.distributed.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        assert gloo_threads() > 0
        net = torch.nn.parallel.DistributedDataParallel(torch.nn.Linear(3, 2))
        net(torch.randn(4, 3)).sum().backward()
        del net
    finally:
        shutdown(Dist(0, 2))  # `active` is what shutdown checks; this process's group has one rank
    assert not torch.distributed.is_initialized() and gloo_threads() == 0

"""benchmarks/gpu_check.sh: on a machine without a GPU it must stop at once, saying so (issue "GPU readiness")."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "gpu_check.sh"


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present: the script would run the whole check")
def test_gpu_check_fails_clearly_without_a_gpu(tmp_path):
    env = {**os.environ, "OUT": str(tmp_path / "out"), "PYTHON": sys.executable}
    proc = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "no CUDA GPU is visible to torch on this machine" in proc.stdout
    assert f"torch {torch.__version__}" in proc.stdout  # the environment is printed first
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "no CUDA GPU" in summary and not (tmp_path / "out" / "install.log").exists()  # nothing installed

"""benchmarks/loop_rate.py: one short round at HEAD against this tree prints a rate for each side and their ratio,
and leaves no worktree behind."""

import re
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "loop_rate.py"
REPO = SCRIPT.parents[1]


def test_one_round_prints_both_sides_and_cleans_up():
    before = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    proc = subprocess.run([sys.executable, str(SCRIPT), "--base", "HEAD", "--rounds", "1", "--steps", "40"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = re.findall(r"^\| (.+?) \| ([\d.]+) \| ([\d.]+) \|$", proc.stdout, re.M)
    assert [r[0] for r in rows][-1] == "this tree" and len(rows) == 2, proc.stdout
    assert all(float(best) > 0 and each == best for _, each, best in rows)
    assert re.search(r"this tree / \w+: [\d.]+x", proc.stdout) and "command: python" in proc.stdout
    after = subprocess.run(["git", "-C", str(REPO), "worktree", "list"], capture_output=True, text=True).stdout
    assert after == before

"""Every command shown in README.md and docs/ runs as written (with fewer steps), in a folder that holds the
repository's samples/: the tour, the manual's examples, the main job. Synopses with placeholders go in ```text
blocks; runnable commands in ```bash blocks, and this test runs each of them."""

from __future__ import annotations

import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner

from audiodiff.cli import main

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
INSTALL_AND_TEST = ("python3 -m venv", ". .venv/bin/activate", "pip install", "python -m pytest")  # .ci/run runs these

# Appended to a command so that it runs in seconds; click keeps the last value of an option given twice.
FAST = {
    ("train",): ["--steps", "2", "--no-progress"],
    ("distill",): ["--steps", "2", "--no-progress"],
    ("finetune",): ["--steps", "2", "--no-progress"],
    ("vocoder", "train"): ["--steps", "2", "--no-progress"],
    ("evaluate", "train-embedder"): ["--steps", "2", "--no-progress"],
    ("evaluate", "generated"): ["--bootstrap", "10"],
    ("generate",): ["--steps", "2", "--no-progress"],
    ("vary",): ["--steps", "2", "--no-progress"],
    ("inpaint",): ["--steps", "2", "--no-progress"],
    ("continue",): ["--steps", "2", "--no-progress"],
    ("interpolate",): ["--steps", "2", "--no-progress"],
    ("inspect",): ["--no-timing", "--no-progress"],  # the timing is tests/test_inspect.py's (on the tiny preset)
}


def blocks(page: Path, language: str) -> list[str]:
    return re.findall(rf"^[ \t]*```{language}\n(.*?)^[ \t]*```", page.read_text(), re.S | re.M)


def commands(page: Path) -> list[str]:
    """The shell commands of a page's ```bash blocks, in order: comments dropped, continuations joined, `a && b`
    split."""
    found = []
    for block in blocks(page, "bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                found += [part.strip() for part in line.split("&&")]
    return found


def inline_commands(page: Path) -> list[str]:
    """Whole commands quoted in a page's prose (`audiodiff ... --out ...` without placeholders), outside blocks."""
    prose = re.sub(r"^[ \t]*```.*?^[ \t]*```", "", page.read_text(), flags=re.S | re.M)
    quoted = re.findall(r"`(audiodiff [^`]*--out [^`]*)`", prose)
    return [c for c in quoted if not re.search(r"\b[A-Z][A-Z0-9_]{2,}\b", c)]


def fast(args: list[str]) -> list[str]:
    if "--minutes" in args:  # a budget becomes two steps too (the budget itself is tests/test_budget.py's)
        i = args.index("--minutes")
        args = args[:i] + args[i + 2:]
    for head, extra in FAST.items():
        if tuple(args[:len(head)]) == head:
            return args + extra
    return args


def run_page(page: Path, where: Path, skip_main_job: bool = False) -> list[str]:
    ran = []
    for command in commands(page) + inline_commands(page):
        if command.startswith(INSTALL_AND_TEST):
            continue
        words = shlex.split(command)
        assert words[0] == "audiodiff", f"{page.name}: {command!r} is neither an audiodiff command nor the install " \
                                        "or test command; show it in a ```text block or make it one"
        if skip_main_job and command in main_job():
            continue
        if words[1] == "studio":
            serve_briefly(words, where)
            ran.append(command)
            continue
        res = CliRunner().invoke(main, fast(words[1:]), catch_exceptions=False)
        assert res.exit_code == 0, f"{page.name}: {command}\n{res.output}"
        ran.append(command)
    return ran


def serve_briefly(words: list[str], where: Path) -> None:
    """A server command runs as its own process on a free port until its page answers, then Ctrl-C stops it."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "audiodiff", *words[1:], "--port", str(port), "--device", "cpu"],
                            cwd=where, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        for _ in range(240):
            assert proc.poll() is None, proc.stdout.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as page:
                    assert page.status == 200
                    break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError(f"{shlex.join(words)}: no page on port {port} after 120 s")
    finally:
        proc.send_signal(signal.SIGINT)
        said = proc.communicate(timeout=60)[0]
    assert "127.0.0.1" in said, said


def main_job() -> list[str]:
    line = next(c for c in commands(ROOT / "README.md") if c.startswith("audiodiff train samples/notes/train"))
    return [c for c in commands(ROOT / "README.md") if c == line or c.startswith("audiodiff generate runs/notes-tiny "
                                                                                  "--out runs/notes-tiny/generated")]


def sandbox(path: Path) -> Path:
    """A folder with a copy of the repository's samples/ (a command that writes into samples/ changes the copy)."""
    path.mkdir(parents=True, exist_ok=True)
    shutil.copytree(ROOT / "samples", path / "samples")
    return path


@pytest.fixture(scope="module")
def after_main_job(tmp_path_factory) -> Path:
    """A folder with samples/ and the main job's run (2 steps), as the manual's pages assume."""
    where = sandbox(tmp_path_factory.mktemp("main-job"))
    with pytest.MonkeyPatch.context() as m:
        m.chdir(where)
        for command in main_job():
            res = CliRunner().invoke(main, fast(shlex.split(command)[1:]), catch_exceptions=False)
            assert res.exit_code == 0, res.output
    return where


@pytest.mark.slow
def test_readme_commands_run(tmp_path, monkeypatch):
    monkeypatch.chdir(sandbox(tmp_path))
    ran = run_page(ROOT / "README.md", tmp_path)
    assert len(ran) >= 20 and ran[:2] == main_job()
    assert (tmp_path / "runs" / "notes-tiny" / "generated" / "sample_007.wav").exists()
    assert (tmp_path / "runs" / "notes-tiny-site" / "index.html").exists()


@pytest.mark.slow
@pytest.mark.parametrize("page", [p for p in PAGES if p.name != "README.md"], ids=lambda p: p.name)
def test_manual_commands_run(page, tmp_path, monkeypatch, after_main_job):
    shutil.copytree(after_main_job / "runs", tmp_path / "runs")
    monkeypatch.chdir(sandbox(tmp_path))
    run_page(page, tmp_path, skip_main_job=True)


def test_every_page_with_commands_is_found():
    assert {p.name for p in PAGES} >= {"README.md", "training.md", "generating.md", "finetuning.md", "vocoders.md",
                                        "evaluation.md", "scale.md", "reliability.md", "architecture.md", "results.md"}


def test_synopses_hold_placeholders_only():
    """A ```text block names placeholders (DATA_DIR, RUN_DIR, ...), so no runnable command hides from the test."""
    for page in PAGES:
        for block in blocks(page, "text"):
            for line in block.splitlines():
                if re.match(r"\s*(audiodiff|torchrun|bash|python)\b", line):
                    assert re.search(r"\b[A-Z][A-Z0-9_]{2,}\b", line), f"{page.name}: {line!r} has no placeholder"


def test_readme_is_short_and_starts_with_install_and_the_main_job():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 250
    head = "\n".join(lines[:40])
    assert "pip install -c constraints.txt" in head and main_job()[0] in head and "python -m pytest" in head


def test_ci_runs_the_readmes_install_and_test_commands():
    ci = (ROOT / ".ci" / "run").read_text()
    readme = [c for c in commands(ROOT / "README.md") if c.startswith(INSTALL_AND_TEST[2:])]
    assert len(readme) == 2 and all(c in ci for c in readme), readme


def test_the_command_finder_sees_continuations_comments_and_chains(tmp_path):
    page = tmp_path / "p.md"
    page.write_text("```bash\naudiodiff a \\\n  --b 1   # note\n# only a comment\naudiodiff c && audiodiff d\n```\n"
                    "```text\naudiodiff train DATA_DIR\n```\n")
    assert commands(page) == ["audiodiff a    --b 1", "audiodiff c", "audiodiff d"]
    page.write_text("Run `audiodiff generate runs/x --out y -n 2`, or `audiodiff generate RUN --out y`; "
                    "`audiodiff train`.\n```bash\naudiodiff z --out q\n```\n")
    assert inline_commands(page) == ["audiodiff generate runs/x --out y -n 2"]

"""The README's library example runs as written (with fewer steps, into a temporary folder)."""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def library_example() -> str:
    text = README.read_text()
    section = text[text.index("## Library\n"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_library_example_trains_and_generates(tmp_path, monkeypatch):
    code = library_example()
    assert 'run.train("samples/notes/train"' in code and "pipe.generate(" in code
    code = code.replace('"runs/notes-lib"', repr(str(tmp_path / "run")))
    code = re.sub(r'"steps": \d+', '"steps": 2', code)
    code = re.sub(r"steps=\d+", "steps=2", code)
    monkeypatch.chdir(README.parent)  # the example's data path is relative to the repository
    scope: dict = {}
    exec(compile(code, str(README), "exec"), scope)
    out, again = scope["out"], scope["again"]
    assert out.audio.shape == (4, 16128) and out.sample_rate == 16000
    assert again.audio.shape == (1, 32000) and scope["pipe"].vocoder.name == "pghi"
    assert (tmp_path / "run" / "config.toml").exists() and (tmp_path / "run" / "loss.csv").exists()

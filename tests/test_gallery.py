"""The static gallery: every clip gets a player and a picture whose files exist; checked in headless Chromium
when it is installed (Debian: apt install chromium)."""

import functools
import http.server
import json
import re
import shutil
import subprocess
import threading
from html.parser import HTMLParser

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from audiodiff.cli import main
from audiodiff.generation.gallery import build_gallery

from .conftest import SR, tone

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


class Sources(HTMLParser):
    def __init__(self):
        super().__init__()
        self.audio, self.img = [], []

    def handle_starttag(self, tag, attrs):
        if tag in ("audio", "img"):
            getattr(self, tag).append(dict(attrs)["src"])


@pytest.fixture
def fake_run(tmp_path, tiny_config):
    """A run folder as train + generate leave it: config.toml, generated/ with PNGs, samples/ without."""
    run = tmp_path / "my run"
    (run / "generated").mkdir(parents=True)
    (run / "samples").mkdir()
    (run / "config.toml").write_text(tiny_config.to_toml())
    for i, f in enumerate((300, 450)):
        sf.write(run / "generated" / f"sample_00{i}.wav", tone(f, 0.5), SR)
    from audiodiff.audio.plot import save_spectrogram

    save_spectrogram(run / "generated" / "sample_000.png", np.zeros((16, 20)), tiny_config.mel, "given")
    sf.write(run / "samples" / "step 2 & <odd>.wav", tone(500, 0.3), SR)  # a name that needs escaping
    (run / "cache").mkdir()
    sf.write(run / "cache" / "not_a_clip.wav", tone(100, 0.1), SR)  # outside generated/ and samples/
    return run


def test_gallery_page_references_every_clip(tmp_path, fake_run):
    page = build_gallery(fake_run, tmp_path / "site")
    parsed = Sources()
    parsed.feed(page.read_text())
    assert len(parsed.audio) == len(parsed.img) == 3
    from urllib.parse import unquote

    for src in parsed.audio:
        data, sr = sf.read(page.parent / unquote(src))
        assert sr == SR and len(data) > 0
    for src in parsed.img:
        assert (page.parent / unquote(src)).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    text = page.read_text()
    assert "step 2 &amp; &lt;odd&gt;.wav" in text and "<odd>" not in text
    assert "Run preset <b>test</b>" in text and "not_a_clip" not in text
    drawn = tmp_path / "site" / "clips" / "samples" / "step 2 & <odd>.png"
    assert drawn.exists()  # no PNG beside that clip: drawn from its mel


def test_gallery_rebuild_drops_clips_gone_from_the_source(tmp_path, fake_run):
    site = tmp_path / "site"
    build_gallery(fake_run, site)
    (site / "clips" / "notes.txt").write_text("kept: not a clip")
    shutil.rmtree(fake_run / "samples")
    build_gallery(fake_run, site)
    left = sorted(p.relative_to(site / "clips").as_posix() for p in (site / "clips").rglob("*"))
    assert left == ["generated", "generated/sample_000.png", "generated/sample_000.wav", "generated/sample_001.png",
                    "generated/sample_001.wav", "notes.txt"]
    # a first build into a folder that is not a gallery yet removes nothing
    other = tmp_path / "other"
    (other / "clips").mkdir(parents=True)
    (other / "clips" / "mine.wav").write_bytes(b"RIFF")
    build_gallery(fake_run, other)
    assert (other / "clips" / "mine.wav").exists()
    # a gallery written inside its own source keeps the source clips it found there
    inside = fake_run / "generated"
    build_gallery(inside, inside)
    build_gallery(inside, inside)
    assert (inside / "sample_000.wav").exists() and (inside / "clips" / "sample_000.wav").exists()


def test_gallery_cli(tmp_path, fake_run):
    runner = CliRunner()
    res = runner.invoke(main, ["gallery", str(fake_run), "--out", str(tmp_path / "site"), "--title", "Demo"])
    assert res.exit_code == 0, res.output
    assert "<title>Demo</title>" in (tmp_path / "site" / "index.html").read_text()
    res = runner.invoke(main, ["gallery", str(fake_run), "--out", str(tmp_path / "site")])
    assert res.exit_code == 1 and "exists; pass --force" in res.output
    empty = tmp_path / "empty"
    empty.mkdir()
    res = runner.invoke(main, ["gallery", str(empty), "--out", str(tmp_path / "site2")])
    assert res.exit_code == 1 and "no .wav clips found" in res.output


HARNESS = """<!doctype html><body><script>
const frame = document.createElement('iframe');
frame.src = 'index.html';
frame.onload = async () => {
  const d = frame.contentDocument;
  const images = [...d.images].map(i => i.complete && i.naturalWidth > 0);
  const audios = await Promise.all([...d.querySelectorAll('audio')].map(a => new Promise(done => {
    const ok = () => done(a.canPlayType('audio/wav') !== '' && a.duration > 0);
    if (a.readyState >= 1) return ok();
    a.addEventListener('loadedmetadata', ok);
    a.addEventListener('error', () => done(false));
    a.load();
  })));
  const out = document.createElement('pre');
  out.id = 'result';
  out.textContent = 'RESULT' + JSON.stringify({images, audios}) + 'END';
  document.body.appendChild(out);
};
document.body.appendChild(frame);
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium not installed (apt install chromium)")
def test_gallery_loads_in_headless_chromium(tmp_path, fake_run):
    site = tmp_path / "site"
    build_gallery(fake_run, site)
    (site / "check.html").write_text(HARNESS)
    (site / "broken.html").write_text((site / "index.html").read_text().replace(".wav", ".missing"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    handler.log_message = lambda *a: None
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        result = _check(f"http://127.0.0.1:{server.server_port}/check.html")
        assert result == {"images": [True] * 3, "audios": [True] * 3}
        (site / "check.html").write_text(HARNESS.replace("index.html", "broken.html"))
        broken = _check(f"http://127.0.0.1:{server.server_port}/check.html")
        assert broken["audios"] == [False] * 3  # the check can fail
    finally:
        server.shutdown()


def _check(url: str) -> dict:
    proc = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--autoplay-policy=no-user-gesture-required",
                           "--virtual-time-budget=15000", "--dump-dom", url], capture_output=True, text=True, timeout=120)
    found = re.search(r"<pre id=\"result\">RESULT(.*?)END</pre>", proc.stdout)
    assert found, proc.stdout[-2000:] + proc.stderr[-2000:]
    return json.loads(found.group(1))

"""A static HTML gallery of audio clips: an audio player and a spectrogram per clip, one section per folder.

The page is self-contained (no scripts, no network): the clips and pictures are copied beside index.html,
so the folder can be opened from disk, served, or published as it is.
"""

from __future__ import annotations

import datetime
import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import soundfile as sf
import torch

from ..audio.io import load
from ..audio.mel import MelSpectrogram
from ..audio.plot import save_spectrogram
from ..config import Config, MelConfig
from ..files import copy_file, write_text
from ..runfolder import CLIP_FOLDERS, run_config


@dataclass
class Clip:
    source: Path  # the original WAV
    name: str  # its path relative to the gallery's source, POSIX
    seconds: float
    sample_rate: int


def find_clips(source: Path, skip: Path | None = None) -> tuple[list[Clip], Config | None]:
    """WAV files of a run (its generated/ and samples/ folders) or of any folder (recursively), sorted;
    plus the run's config when `source` is a run. `skip`: a folder inside source to leave out (the gallery's own
    output, whose copies would otherwise be copied again at every rebuild)."""
    if not source.is_dir():
        raise ValueError(f"{source}: not a folder")
    config = run_config(source)
    roots = [source / f for f in CLIP_FOLDERS if (source / f).is_dir()] if config else [source]
    clips = []
    for root in roots:
        for path in sorted(root.rglob("*.wav")):
            if any(part.startswith(".") for part in path.relative_to(source).parts):
                continue
            if skip is not None and path.resolve().is_relative_to(skip.resolve()):
                continue
            info = sf.info(str(path))
            clips.append(Clip(path, path.relative_to(source).as_posix(), info.duration, info.samplerate))
    if not clips:
        where = " or ".join(f"{source / f}" for f in CLIP_FOLDERS) if config else str(source)
        raise ValueError(f"{where}: no .wav clips found (generate some with `audiodiff generate`)")
    return clips, config


def build_gallery(source: str | Path, out: str | Path, title: str | None = None) -> Path:
    """Copy every clip of `source` (and its spectrogram PNG, drawn when missing) under out/clips and write
    out/index.html. Rebuilding over an earlier gallery (out/index.html exists) also removes the clips it copied
    that `source` no longer has. Returns the page's path."""
    source, out = Path(source), Path(out)
    page = out / "index.html"
    rebuild = page.exists()
    clips, config = find_clips(source, skip=out / "clips")  # not its own copies, if out lies inside source
    mel_config = config.mel if config else MelConfig()
    keep = set()  # this build's copies and the clips it copied from
    for clip in clips:
        target = out / "clips" / clip.name
        target.parent.mkdir(parents=True, exist_ok=True)
        copy_file(clip.source, target)
        png = clip.source.with_suffix(".png")
        if png.is_file():
            copy_file(png, target.with_suffix(".png"))
        else:
            _draw(clip.source, target.with_suffix(".png"), mel_config)
        keep |= {p.resolve() for p in (target, target.with_suffix(".png"), clip.source, png)}
    if rebuild:  # a first build never removes what it did not write
        _prune(out / "clips", keep)
    write_text(page, render(clips, title or source.name, config))
    return page


def _prune(clips_dir: Path, keep: set[Path]) -> None:
    """Remove what an earlier build left in clips_dir that this page no longer shows (a rebuild with --force after
    clips were removed from the source); files in `keep` (this build's copies and the source clips) stay."""
    for path in sorted(clips_dir.rglob("*"), reverse=True):  # deepest first, so emptied folders can go too
        if path.is_file() and path.suffix in (".wav", ".png") and path.resolve() not in keep:
            path.unlink()
        elif path.is_dir() and not any(path.iterdir()):
            path.rmdir()


def _draw(wav_path: Path, png: Path, mel_config: MelConfig) -> None:
    mel = MelSpectrogram(mel_config)
    wav = torch.from_numpy(load(wav_path, mel_config.sample_rate))[None]
    with torch.no_grad():
        save_spectrogram(png, mel(wav)[0, 0].numpy(), mel_config, wav_path.name)


def render(clips: list[Clip], title: str, config: Config | None) -> str:
    """The page: a header (with the run's settings when known) and a section of clip cards per folder."""
    sections: dict[str, list[Clip]] = {}
    for clip in clips:
        sections.setdefault(clip.name.rpartition("/")[0] or ".", []).append(clip)
    body = "".join(_section(folder, group) for folder, group in sections.items())
    about = ""
    if config:
        labels = f", labels: {', '.join(config.data.labels)}" if config.data.labels else ""
        about = (f"<p>Run preset <b>{html.escape(config.preset)}</b>, {config.train.steps} training steps, "
                 f"{config.mel.sample_rate} Hz, {config.mel.n_mels} mel bins, vocoder "
                 f"<code>{html.escape(Path(config.vocoder).name if '/' in config.vocoder else config.vocoder)}</code>"
                 f"{html.escape(labels)}.</p>")
    made = datetime.date.today().isoformat()
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; padding: 0 1rem; color: #222; }}
.grid {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(22rem, 1fr)); gap: 1rem; }}
figure {{ margin: 0; border: 1px solid #ddd; border-radius: 6px; padding: 0.6rem; }}
figure img {{ width: 100%; height: auto; display: block; }}
figure audio {{ width: 100%; margin-top: 0.4rem; }}
figcaption {{ font-size: 0.85rem; color: #555; }}
</style>
</head>
<body>
<h1>{html.escape(title)}</h1>
{about}
<p>{len(clips)} clips. Made by <code>audiodiff gallery</code> on {made}.</p>
{body}
</body>
</html>
"""


def _section(folder: str, clips: list[Clip]) -> str:
    cards = "".join(_card(c) for c in clips)
    return f'<section>\n<h2>{html.escape(folder)}</h2>\n<div class="grid">\n{cards}</div>\n</section>\n'


def _card(clip: Clip) -> str:
    src = "clips/" + quote(clip.name)
    png = src[: -len(".wav")] + ".png"
    stem = html.escape(clip.name.rpartition("/")[2])
    return (f'<figure>\n<img src="{png}" alt="spectrogram of {stem}">\n'
            f'<audio controls preload="metadata" src="{src}"></audio>\n'
            f"<figcaption>{stem}: {clip.seconds:.2f} s, {clip.sample_rate} Hz</figcaption>\n</figure>\n")

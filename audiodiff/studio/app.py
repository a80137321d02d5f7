"""`audiodiff studio`: a local web page (Gradio) to pick a model, generate, edit, compare results and watch a run
train. The buttons call studio/jobs.py (the commands' own library calls); this module is only the page.

Safe by default: it binds 127.0.0.1, makes no share link, serves only the model folders it was given or found
under --root (read only) and its own temporary folder, which holds the uploads (size-limited) and the results and
is deleted when the server stops. Requests are queued: one runs at a time, the next waits its turn.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import traceback
from functools import wraps
from pathlib import Path
from typing import Any, Callable

from ..runfolder import CONFIG_FILE
from . import jobs
from .models import describe, labels, watch

MAX_UPLOAD = "20mb"
EACH = "(each label in turn)"
DATA_MIX = "(labels in the data's proportions)"  # generate --label-mix data
OWN = "(the model's own)"
SAMPLERS = [OWN, "ddim", "dpmpp-2m", "heun", "ddpm", "consistency"]
VOCODERS = [OWN, "griffinlim", "pghi"]


def _gradio() -> Any:
    try:
        import gradio as gr
    except ImportError:
        raise ValueError("the studio needs Gradio: pip install -e \".[studio]\"") from None
    return gr


def _friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Every error a request meets becomes one line in the page (gr.Error), never a traceback; the server goes on."""
    gr = _gradio()

    @wraps(fn)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:  # noqa: BLE001 - shown to the user in one line; the server keeps running
            traceback.print_exc()  # the server's console keeps the details
            raise gr.Error(f"{type(e).__name__}: {e}" if not isinstance(e, ValueError) else str(e)) from None

    return call


def _none(value: Any) -> Any:
    """A blank field or the "own" choice: None, the command's default."""
    return None if value in (None, "", OWN, EACH, DATA_MIX) or value != value else value


def _positive(value: Any) -> Any:
    """A number field whose 0 (or -1) means the command's default: None there."""
    return None if _none(value) is None or value <= 0 else value


class Studio:
    """The page's state on the server: the models it may read and its own folder for results."""

    def __init__(self, models: dict[str, Path], workdir: Path, device: str = "auto") -> None:
        self.models, self.workdir, self.device, self.count = models, workdir, device, 0

    def model(self, name: str) -> Path:
        if name not in self.models:
            raise ValueError(f"{name!r} is not one of the models this studio serves")
        return self.models[name]

    def out(self, what: str) -> Path:
        self.count += 1
        return self.workdir / "results" / f"{self.count:03d}-{what}"

    def generate(self, name: str, label: str, n: float, seed: float, sampler: str, steps: float | None,
                 guidance: float | None, seconds: float | None, loop: bool, vocoder: str) -> jobs.Result:
        return jobs.generate(self.model(name), self.out("generate"), n=int(n), seed=int(seed), label=_none(label),
                             label_mix="data" if label == DATA_MIX else None, sampler=_none(sampler), steps=_int(steps),
                             guidance=None if _none(guidance) is None or guidance < 0 else float(guidance),
                             seconds=_positive(seconds), loop=bool(loop), vocoder=_none(vocoder), device=self.device)

    def edit(self, name: str, how: str, clip: str | None, other: str | None, label: str, n: float, seed: float,
             steps: float | None, strength: float, start: float, end: float, band_lo: float | None,
             band_hi: float | None, seam: float, seconds: float, frames: float) -> jobs.Result:
        if not clip:
            raise ValueError("upload a clip (or pick a result) to edit first")
        band = (float(band_lo), float(band_hi)) if _positive(band_hi) is not None else None
        return jobs.edit(self.model(name), self.out(how), how, Path(clip), n=int(n), seed=int(seed),
                         steps=_int(steps), label=_none(label), strength=float(strength), start=float(start),
                         end=float(end), band=band, seconds=float(seconds), other=Path(other) if other else None,
                         frames=int(frames), seam=float(seam), device=self.device)


def _int(value: float | None) -> int | None:
    return None if _positive(value) is None else int(value)


def build(studio: Studio) -> Any:
    """The page: a model picker and its description, then the Generate, Edit, Compare and Watch tabs."""
    gr = _gradio()
    names = list(studio.models)
    with gr.Blocks(title="audiodiff studio", delete_cache=(3600, 3600)) as page:
        gr.Markdown("# audiodiff studio")
        model = gr.Dropdown(names, value=names[0] if names else None, label="model")
        about = gr.Markdown(describe(studio.models[names[0]]) if names else "no models")

        def config_text(name: str) -> str:
            return (studio.model(name) / CONFIG_FILE).read_text()  # every model served has one (models.is_model)

        with gr.Accordion("config.toml", open=False):
            config = gr.Textbox(config_text(names[0]) if names else "", lines=16, max_lines=40, show_label=False,
                                interactive=False)
        history = gr.State([])
        with gr.Tab("Generate"):
            gen = _generate_tab(gr, studio, model, history)
        with gr.Tab("Edit"):
            edit_label = _edit_tab(gr, studio, model, history)
        with gr.Tab("Compare"):
            _compare_tab(gr, history)
        with gr.Tab("Watch"):
            _watch_tab(gr, studio, names)

        def chosen(name: str) -> tuple:
            found = list(labels(studio.model(name)))
            mixes = [EACH, DATA_MIX] if found else [EACH]
            return (describe(studio.model(name)), config_text(name), gr.update(choices=mixes + found, value=EACH),
                    gr.update(choices=[EACH, *found], value=EACH))

        model.change(_friendly(chosen), model, [about, config, gen, edit_label], api_name="describe")
    return page


def _players(gr: Any, count: int) -> list:
    with gr.Row():
        return [gr.Audio(type="filepath", label=f"clip {i + 1}", visible=i == 0, interactive=False)
                for i in range(count)]


def _shown(result: jobs.Result, count: int) -> list:
    gr = _gradio()
    wavs = [str(w) for w in result.wavs]
    return [gr.update(value=wavs[i] if i < len(wavs) else None, visible=i < len(wavs)) for i in range(count)]


def _remember(history: list, result: jobs.Result) -> list:
    return history + [{"title": f"{len(history) + 1}. {result.title}", "wav": str(result.wavs[0]),
                       "png": str(result.pngs[0]), "command": result.command}]


def _generate_tab(gr: Any, studio: Studio, model: Any, history: Any) -> Any:
    first = next(iter(studio.models.values()), None)
    found = labels(first) if first else ()
    choices = [EACH, *([DATA_MIX] if found else []), *found]
    with gr.Row():
        # any value reaches the job, which names the model's labels when it has no such one (a model picked later
        # has other labels than the page's first choices)
        label = gr.Dropdown(choices, value=choices[0], label="label", allow_custom_value=True)
        n = gr.Slider(1, jobs.MAX_CLIPS, value=1, step=1, label="clips")
        seed = gr.Number(0, precision=0, label="seed")
    with gr.Row():
        sampler = gr.Dropdown(SAMPLERS, value=OWN, label="sampler")
        steps = gr.Number(0, precision=0, minimum=0, label="steps (0: the model's own)")
        guidance = gr.Number(-1, minimum=-1, label="guidance (-1: the model's own)")
        seconds = gr.Number(0, minimum=0, label="seconds (0: one crop)")
        loop = gr.Checkbox(False, label="loop")
        vocoder = gr.Dropdown(VOCODERS, value=OWN, label="vocoder")
    go = gr.Button("Generate", variant="primary", elem_id="generate")
    players = _players(gr, jobs.MAX_CLIPS)
    pictures = gr.Gallery(label="spectrograms", columns=4, height=320, object_fit="contain")
    files = gr.File(label="download WAV", file_count="multiple")
    command = gr.Textbox(label="the command that makes these clips", interactive=False)

    def run(name, lab, count, s, samp, st, g, sec, lp, voc, past, progress=gr.Progress(track_tqdm=True)):
        result = studio.generate(name, lab, count, s, samp, st, g, sec, lp, voc)
        return (*_shown(result, jobs.MAX_CLIPS), [str(p) for p in result.pngs], [str(w) for w in result.wavs],
                result.command, _remember(past, result))

    go.click(_friendly(run), [model, label, n, seed, sampler, steps, guidance, seconds, loop, vocoder, history],
             [*players, pictures, files, command, history], api_name="generate")
    return label


EDITS = ["vary", "inpaint", "loop", "continue", "interpolate"]


def _edit_tab(gr: Any, studio: Studio, model: Any, history: Any) -> Any:
    """Long because it lays out every edit's settings; what a click on the spectrogram does is _clicked_time."""
    with gr.Row():
        clip = gr.Audio(type="filepath", sources=["upload"], label="clip to edit (upload)", elem_id="clip")
        other = gr.Audio(type="filepath", sources=["upload"], label="second clip (interpolate)")
    picked = gr.Dropdown([], label="... or a result of this session", allow_custom_value=False)
    how = gr.Radio(EDITS, value="vary", label="edit (loop: make the clip loop without a seam)")
    with gr.Row():
        label = gr.Dropdown([EACH], value=EACH, label="steer to label (vary, inpaint, loop, continue)",
                            allow_custom_value=True)
        n = gr.Slider(1, jobs.MAX_CLIPS, value=1, step=1, label="outputs")
        seed = gr.Number(0, precision=0, label="seed")
        steps = gr.Number(0, precision=0, minimum=0, label="steps (0: the model's own)")
    with gr.Row():
        strength = gr.Slider(0, 1, value=0.5, label="vary: strength")
        start = gr.Slider(0, 10, value=0.3, step=0.01, label="inpaint: start (s; or click the spectrogram)",
                          elem_id="start")
        end = gr.Slider(0, 10, value=0.6, step=0.01, label="inpaint: end (s; the next click)", elem_id="end")
        band_lo = gr.Number(0, minimum=0, label="inpaint: band from Hz (0 and 0: all)")
        band_hi = gr.Number(0, minimum=0, label="inpaint: band to Hz")
        seam = gr.Slider(0.05, 2, value=0.25, step=0.05, label="loop: seam (s)")
        seconds = gr.Slider(0.5, 10, value=1, step=0.5, label="continue: seconds")
        frames = gr.Slider(2, 8, value=3, step=1, label="interpolate: frames")
    go = gr.Button("Edit", variant="primary", elem_id="edit")
    with gr.Row():
        before = gr.Image(label="before (click twice: the span to inpaint)", type="filepath", interactive=False,
                          elem_id="before")
        after = gr.Image(label="after", type="filepath", interactive=False, elem_id="after")
    with gr.Row():
        before_audio = gr.Audio(type="filepath", label="before", interactive=False)
        after_audio = gr.Audio(type="filepath", label="after", interactive=False)
    command = gr.Textbox(label="the command that makes this", interactive=False)
    shown, clicks = gr.State(None), gr.State(0)  # the before picture's time axis; clicks on it so far

    def show_input(name, c):
        if not c:
            return None, None, 0
        folder = studio.out("input")
        folder.mkdir(parents=True)
        picture = jobs.spectrogram(studio.model(name), Path(c), folder / "input.png")
        return str(picture.png), picture, 0

    def run(name, kind, c, o, lab, count, s, st, strg, a, b, lo, hi, sm, sec, fr, past,
            progress=gr.Progress(track_tqdm=True)):
        result = studio.edit(name, kind, c, o, lab, count, s, st, strg, a, b, lo, hi, sm, sec, fr)
        return str(result.pngs[0]), c, str(result.wavs[0]), result.command, _remember(past, result)

    history.change(lambda past: gr.update(choices=[h["title"] for h in past]), history, picked)
    picked.change(lambda title, past: next((h["wav"] for h in past if h["title"] == title), None), [picked, history],
                  clip)
    clip.change(_friendly(show_input), [model, clip], [before, shown, clicks], api_name="show_input")

    def clicked(picture, count, a, b, evt):
        return _clicked_time(picture, count, a, b, evt.index[0])

    clicked.__annotations__ = {"evt": gr.SelectData}  # Gradio hands the click to the parameter typed so
    before.select(clicked, [shown, clicks, start, end], [start, end, clicks], api_name=False)
    go.click(_friendly(run), [model, how, clip, other, label, n, seed, steps, strength, start, end, band_lo, band_hi,
                              seam, seconds, frames, history],
             [after, before_audio, after_audio, command, history], api_name="edit")
    return label


def _clicked_time(picture: jobs.Picture | None, clicks: int, start: float, end: float, x: float) -> tuple:
    """A click at pixel column x of the before spectrogram: the first sets the span's start, the next its end (the
    two kept in order). Returns (start, end, clicks)."""
    if picture is None:
        return start, end, clicks
    t = picture.seconds_at(x)
    if clicks % 2 == 0:
        return t, max(end, t), clicks + 1
    return min(start, t), max(start, t), clicks + 1


def _compare_tab(gr: Any, history: Any) -> None:
    gr.Markdown("Every result of this session; pick two to hear and see them side by side.")
    with gr.Row():
        # any value reaches show(), which finds it in this session's history or shows nothing
        pick_a, pick_b = (gr.Dropdown([], label=side, allow_custom_value=True) for side in "AB")
    with gr.Row():
        audio_a, audio_b = gr.Audio(type="filepath", label="A"), gr.Audio(type="filepath", label="B")
    with gr.Row():
        image_a, image_b = gr.Image(type="filepath", label="A"), gr.Image(type="filepath", label="B")
    with gr.Row():
        command_a, command_b = gr.Textbox(label="A's command"), gr.Textbox(label="B's command")

    def listed(past: list) -> tuple:
        titles = [h["title"] for h in past]
        return gr.update(choices=titles), gr.update(choices=titles)

    def show(title: str, past: list) -> tuple:
        found = next((h for h in past if h["title"] == title), None)
        return (found["wav"], found["png"], found["command"]) if found else (None, None, "")

    history.change(listed, history, [pick_a, pick_b], api_name=False)
    pick_a.change(show, [pick_a, history], [audio_a, image_a, command_a], api_name="compare_a")
    pick_b.change(show, [pick_b, history], [audio_b, image_b, command_b], api_name="compare_b")


def _watch_tab(gr: Any, studio: Studio, names: list[str]) -> None:
    gr.Markdown("A run that trains now (or finished), refreshed every 5 s. Read only.")
    run = gr.Dropdown(names, value=names[0] if names else None, label="run")
    status = gr.Markdown()
    with gr.Row():
        loss = gr.LinePlot(x="step", y="loss", label="loss (loss.csv)")
        val = gr.LinePlot(x="step", y="fd", label="validation FD (validation.csv)")
    previews = gr.Gallery(label="newest previews", columns=4, height="auto")
    preview = gr.Audio(type="filepath", label="newest preview", interactive=False)

    def refresh(name: str) -> tuple:
        import pandas as pd

        text, losses, scores, wavs = watch(studio.model(name))
        pngs = [str(w.with_suffix(".png")) for w in wavs[:8] if w.with_suffix(".png").exists()]
        return (text, pd.DataFrame(losses or [], columns=["step", "loss"]),
                pd.DataFrame(scores or [], columns=["step", "fd", "floor"]), pngs, str(wavs[0]) if wavs else None)

    outputs = [status, loss, val, previews, preview]
    run.change(_friendly(refresh), run, outputs, api_name="watch")
    gr.Timer(5.0).tick(_friendly(refresh), run, outputs, api_name=False)


def serve(models: dict[str, Path], host: str = "127.0.0.1", port: int = 7860, device: str = "auto",
          log: Callable[[str], None] = print, block: bool = True) -> tuple[Any, Path]:
    """Start the studio on host:port; returns (the Gradio page, its work folder). block=False returns at once (the
    tests); otherwise it serves until interrupted and then deletes its work folder."""
    if not models:
        raise ValueError("no models to serve: give run or model folders, or --root DIR with some under it")
    workdir = Path(tempfile.mkdtemp(prefix="audiodiff-studio-"))
    os.environ["GRADIO_TEMP_DIR"] = str(workdir / "uploads")  # uploads land in the studio's own folder
    page = build(Studio(models, workdir, device)).queue(default_concurrency_limit=1)
    where = "this machine only" if host in ("127.0.0.1", "localhost") else f"every machine that reaches {host}"
    log(f"studio: {len(models)} model(s) at http://{host}:{port} ({where}; --host 0.0.0.0 serves your network); "
        "no public share link")
    try:
        page.launch(server_name=host, server_port=port, share=False, max_file_size=MAX_UPLOAD, show_error=True,
                    allowed_paths=[str(p) for p in models.values()] + [str(workdir)], prevent_thread_lock=not block,
                    quiet=True)
    except BaseException:
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    if block:
        shutil.rmtree(workdir, ignore_errors=True)
    return page, workdir

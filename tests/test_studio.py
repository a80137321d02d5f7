"""`audiodiff studio`, driven through its own API (gradio_client) on a free local port, on a tiny run trained here:
a generated clip is `audiodiff generate`'s bit for bit, an inpainted range, bad input as one message, the server
still serving after it, and the page in headless Chromium (a screenshot under the test's tmp folder)."""

import shlex
import shutil
import socket
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from gradio_client import Client, handle_file

from audiodiff.studio.app import DATA_MIX, EACH, OWN, serve
from audiodiff.studio.models import find_models, watch

from .conftest import SR, tone
from .test_cli import invoke

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    from audiodiff.config import Config, DataConfig, DiffusionConfig, MelConfig, TrainConfig, UNetConfig

    root = tmp_path_factory.mktemp("studio")
    for label, freq in (("low", 220), ("high", 880)):
        (root / "audio" / label).mkdir(parents=True)
        for i in range(3):
            sf.write(root / "audio" / label / f"{i}.wav", tone(freq * (1 + i / 10), 0.5), SR)
    config = Config(mel=MelConfig(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, f_max=4000.0),
                    unet=UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,),
                                    head_channels=8),
                    diffusion=DiffusionConfig(num_steps=100), data=DataConfig(crop_frames=16),
                    train=TrainConfig(steps=4, batch_size=4, warmup_steps=2, log_every=1, checkpoint_every=2,
                                      preview_count=1, preview_steps=3, precision="fp32"), preset="test")
    (root / "tiny.toml").write_text(config.to_toml())
    run = root / "run"
    res = invoke("train", str(root / "audio"), "--out", str(run), "--config", str(root / "tiny.toml"), "--device",
                 "cpu", "--no-progress")
    assert res.exit_code == 0, res.output
    return run


@pytest.fixture(scope="module")
def studio(tiny_run, tmp_path_factory):
    said = []
    port = free_port()
    broken = tmp_path_factory.mktemp("broken") / "run"  # a model damaged after the studio started serving it
    shutil.copytree(tiny_run, broken)
    page, workdir = serve({"tiny": tiny_run, "broken": broken}, port=port, device="cpu", log=said.append, block=False)
    for ckpt in (broken / "checkpoints").glob("*.safetensors"):
        ckpt.write_bytes(ckpt.read_bytes()[:1000])
    url = f"http://127.0.0.1:{port}/"
    yield url, said, workdir
    page.close()
    shutil.rmtree(workdir, ignore_errors=True)


GENERATE = dict(sampler=OWN, steps=5, guidance=-1, seconds=0, loop=False, vocoder=OWN)


def generate(client: Client, label: str, n: int = 1, seed: int = 0, **kw):
    o = {**GENERATE, **kw}
    return client.predict("tiny", label, n, seed, o["sampler"], o["steps"], o["guidance"], o["seconds"], o["loop"],
                          o["vocoder"], api_name="/generate")


def test_safe_defaults_are_said(studio):
    url, said, workdir = studio
    assert url.startswith("http://127.0.0.1:") and "this machine only" in said[0] and "no public share link" in said[0]
    assert workdir.name.startswith("audiodiff-studio-")


def test_generate_equals_the_command_it_shows_bit_for_bit(studio, tiny_run, tmp_path):
    client = Client(studio[0], verbose=False)
    out = generate(client, "high", n=2, seed=3)
    players, files, command = out[:8], out[9], out[10]
    assert [p["visible"] for p in players] == [True, True] + [False] * 6  # a player per clip
    assert all(Path(p["value"]).exists() for p in players[:2])
    args = shlex.split(command)
    assert args[:3] == ["audiodiff", "generate", str(tiny_run)] and "--label" in args and "high" in args
    i = args.index("--out")
    args[i + 1] = str(tmp_path / "cli")
    res = invoke(*args[1:], "--no-progress")
    assert res.exit_code == 0, res.output
    for k, served in enumerate(files):
        assert Path(served).read_bytes() == (tmp_path / "cli" / f"sample_{k:03d}.wav").read_bytes()


def test_inpaint_a_range(studio, tmp_path):
    clip = tmp_path / "in.wav"
    sf.write(clip, tone(440, 0.6), SR)
    client = Client(studio[0], verbose=False)
    before = client.predict("tiny", handle_file(str(clip)), api_name="/show_input")[0]  # the upload's picture
    after, before_audio, after_audio, command = client.predict(
        "tiny", "inpaint", handle_file(str(clip)), None, EACH, 1, 0, 5, 0.5, 0.2, 0.4, 0, 0, 0.25, 1.0, 3,
        api_name="/edit")
    assert "--start 0.2 --end 0.4" in command and command.startswith("audiodiff inpaint ")
    got, sr = sf.read(after_audio)
    assert sr == SR and abs(len(got) - int(0.6 * SR)) < 256  # the clip's own length, its range regenerated
    kept = sf.read(clip)[0]
    assert np.abs(got[: int(0.1 * SR)] - kept[: int(0.1 * SR)]).max() < 0.05  # before the range: the input's own
    assert Path(before).exists() and Path(after).exists()


def test_make_a_loop_equals_the_command_it_shows(studio, tmp_path):
    clip = tmp_path / "in.wav"
    sf.write(clip, tone(440, 0.6), SR)
    client = Client(studio[0], verbose=False)
    _, _, after_audio, command = client.predict(
        "tiny", "loop", handle_file(str(clip)), None, EACH, 1, 2, 5, 0.5, 0.2, 0.4, 0, 0, 0.15, 1.0, 3,
        api_name="/edit")
    args = shlex.split(command)
    assert args[:2] == ["audiodiff", "inpaint"] and "--loop" in args and args[args.index("--seam") + 1] == "0.15"
    args[args.index("--out") + 1] = str(tmp_path / "cli")
    res = invoke(*args[1:], "--no-progress")
    assert res.exit_code == 0, res.output
    assert Path(after_audio).read_bytes() == (tmp_path / "cli" / "inpaint_000.wav").read_bytes()


def test_a_click_on_the_spectrogram_names_the_time_under_it(tmp_path):
    from PIL import Image

    from audiodiff.audio.plot import save_spectrogram
    from audiodiff.config import MelConfig
    from audiodiff.studio.app import _clicked_time
    from audiodiff.studio.jobs import Picture

    mel = MelConfig(sample_rate=SR, n_fft=256, hop_length=64, n_mels=16, f_max=4000.0)
    logmel = np.full((16, 125), 1.0, dtype=np.float32)  # 1 s, all at the top of the colour scale
    left, right = save_spectrogram(tmp_path / "s.png", logmel, mel)
    image = np.asarray(Image.open(tmp_path / "s.png").convert("RGB")).astype(int)
    h = image.shape[0]
    spines = np.flatnonzero((image[h // 3 : 2 * h // 3].sum(axis=2) < 60).all(axis=0))  # black top to bottom: frames
    assert abs(spines[0] - left * image.shape[1]) <= 1 and np.abs(spines - right * image.shape[1]).min() <= 1
    assert (image[image.shape[0] // 2, spines[0] + 2 : int(right * image.shape[1]) - 1] > 150).all()  # bright inside
    picture = Picture(tmp_path / "s.png", image.shape[1], left, right, 1.0)
    at = lambda seconds: left * image.shape[1] + seconds * (right - left) * image.shape[1]  # noqa: E731
    assert picture.seconds_at(at(0.25)) == pytest.approx(0.25, abs=0.002)
    assert picture.seconds_at(0) == 0.0 and picture.seconds_at(image.shape[1]) == 1.0
    start, end, clicks = _clicked_time(picture, 0, 0.3, 0.6, at(0.7))  # first click: the start
    assert (start, end, clicks) == (pytest.approx(0.7, abs=0.002), pytest.approx(0.7, abs=0.002), 1)
    assert _clicked_time(picture, clicks, start, end, at(0.2))[:2] == (pytest.approx(0.2, abs=0.002), start)


def test_the_data_mix_continue_and_interpolate_from_the_page(studio, tiny_run, tmp_path):
    client = Client(studio[0], verbose=False)
    about, config, *_ = client.predict("tiny", api_name="/describe")
    assert "labels (2)" in about and "[unet]" in config and "preset = \"test\"" in config
    out = generate(client, DATA_MIX, n=2, seed=5)
    args = shlex.split(out[10])
    assert args[args.index("--label-mix") + 1] == "data" and "--label" not in args
    args[args.index("--out") + 1] = str(tmp_path / "cli")
    assert invoke(*args[1:], "--no-progress").exit_code == 0
    assert [Path(f).read_bytes() for f in out[9]] == [(tmp_path / "cli" / f"sample_{k:03d}.wav").read_bytes()
                                                      for k in range(2)]
    clip, other = tmp_path / "a.wav", tmp_path / "b.wav"
    sf.write(clip, tone(440, 0.6), SR)
    sf.write(other, tone(880, 0.6), SR)
    _, _, longer, command = client.predict("tiny", "continue", handle_file(str(clip)), None, EACH, 1, 0, 5, 0.5, 0.2,
                                           0.4, 0, 0, 0.25, 0.5, 3, api_name="/edit")
    assert "audiodiff continue " in command and "--seconds 0.5" in command
    assert sf.info(longer).frames == int(0.6 * SR) + int(0.5 * SR)
    _, _, first, command = client.predict("tiny", "interpolate", handle_file(str(clip)), handle_file(str(other)), EACH,
                                          1, 0, 5, 0.5, 0.2, 0.4, 0, 0, 0.25, 1.0, 3, api_name="/edit")
    assert "audiodiff interpolate " in command and "--frames 3" in command and Path(first).exists()


def test_compare_keeps_a_session_history_side_by_side(studio, tiny_run):
    client = Client(studio[0], verbose=False)  # one session: its history is its own
    low, high = generate(client, "low", seed=1), generate(client, "high", seed=2)
    name = tiny_run.name  # results are titled by the model folder's name
    audio_a, image_a, command_a = client.predict(f"1. {name}: low, seed 1", api_name="/compare_a")
    audio_b, image_b, command_b = client.predict(f"2. {name}: high, seed 2", api_name="/compare_b")
    assert Path(audio_a).read_bytes() == Path(low[9][0]).read_bytes() and command_a == low[10]
    assert Path(audio_b).read_bytes() == Path(high[9][0]).read_bytes() and command_b == high[10]
    assert Path(image_a).exists() and Path(image_b).exists()
    other = Client(studio[0], verbose=False)  # another session has none of them
    assert other.predict(f"1. {name}: low, seed 1", api_name="/compare_a")[2] == ""


def test_bad_input_is_one_message_and_the_server_goes_on(studio, tmp_path):
    client = Client(studio[0], verbose=False)
    junk = tmp_path / "junk.wav"
    junk.write_text("this is not audio")
    with pytest.raises(Exception) as bad:
        client.predict("tiny", "vary", handle_file(str(junk)), None, EACH, 1, 0, 5, 0.5, 0.2, 0.4, 0, 0, 0.25,
                       1.0, 3, api_name="/edit")
    assert "junk.wav" in str(bad.value) and "Traceback" not in str(bad.value)
    with pytest.raises(Exception, match="violin") as bad:
        generate(client, "violin")
    assert "high" in str(bad.value) and "Traceback" not in str(bad.value)  # the model's labels are named
    with pytest.raises(Exception, match="greater than maximum value 8"):
        generate(client, "low", n=20)
    with pytest.raises(Exception, match="elsewhere is not in the list of choices"):  # only the models given
        client.predict("elsewhere", "low", 1, 0, OWN, 5, -1, 0, False, OWN, api_name="/generate")
    with pytest.raises(Exception) as bad:
        client.predict("broken", "low", 1, 0, OWN, 5, -1, 0, False, OWN, api_name="/generate")
    assert "step_" in str(bad.value) and "Traceback" not in str(bad.value)  # names the damaged checkpoint
    assert Path(generate(client, "low")[0]["value"]).exists()  # still serving


def test_watch_reads_a_run_without_writing(studio, tiny_run):
    before = sorted((p, p.stat().st_mtime_ns) for p in tiny_run.rglob("*") if p.is_file())
    client = Client(studio[0], verbose=False)
    status, *_ = client.predict("tiny", api_name="/watch")
    assert "step 4 of 4 (finished)" in status
    text, losses, scores, previews = watch(tiny_run)
    assert [r["step"] for r in losses] == [1, 2, 3, 4] and previews and scores == []
    assert sorted((p, p.stat().st_mtime_ns) for p in tiny_run.rglob("*") if p.is_file()) == before


def test_models_are_only_what_was_given(tmp_path, tiny_run):
    assert list(find_models([tiny_run])) == [str(tiny_run)]
    assert list(find_models([], root=tiny_run.parent)) == [str(tiny_run)]
    with pytest.raises(ValueError, match="not a run or exported model"):
        find_models([tmp_path / "missing"])
    with pytest.raises(ValueError, match="no models to serve"):
        serve({}, block=False)


def chromium():
    """Headless Chromium driven by selenium, as a user's browser would load the page."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,1600"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=Service(DRIVER))


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                    reason="headless Chromium not installed (apt install chromium chromium-driver; .ci/run does)")
def test_the_page_generates_in_headless_chromium(studio, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser = chromium()
    try:
        browser.get(studio[0])
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: b.find_elements(By.ID, "generate"))[0].click()
        # the player's file: a WAV served by the studio, which a browser <audio> element loads and can play
        link = wait.until(lambda b: next((a.get_attribute("href") for a in b.find_elements(By.TAG_NAME, "a")
                                          if ".wav" in (a.get_attribute("href") or "")), None))
        playable = browser.execute_async_script(
            "const done = arguments[1]; const a = new Audio(arguments[0]);"
            "a.onloadedmetadata = () => done(a.duration); a.onerror = () => done(-1);", link)
        image = wait.until(lambda b: next((i for i in b.find_elements(By.TAG_NAME, "img")
                                           if ".png" in (i.get_attribute("src") or "") and b.execute_script(
                                               "return arguments[0].complete && arguments[0].naturalWidth > 0", i)),
                                          None))
        time.sleep(0.5)
        browser.save_screenshot(str(tmp_path / "studio.png"))
        assert playable > 0 and image.get_attribute("src")
        assert (tmp_path / "studio.png").read_bytes()[:4] == b"\x89PNG"
    finally:
        browser.quit()


@pytest.mark.skipif(CHROMIUM is None or DRIVER is None,
                    reason="headless Chromium not installed (apt install chromium chromium-driver; .ci/run does)")
def test_the_page_inpaints_a_span_clicked_on_the_spectrogram(studio, tiny_run, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    from audiodiff.studio.jobs import spectrogram

    clip = tmp_path / "in.wav"
    sf.write(clip, tone(440, 0.6), SR)
    picture = spectrogram(tiny_run, clip, tmp_path / "expected.png")  # the same picture the page draws
    browser = chromium()
    try:
        browser.get(studio[0])
        wait = WebDriverWait(browser, 60)
        wait.until(lambda b: next((t for t in b.find_elements(By.CSS_SELECTOR, "button[role=tab]")
                                   if t.text.strip() == "Edit"), None)).click()
        wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "#clip input[type=file]"))[0].send_keys(str(clip))
        image = wait.until(lambda b: next((i for i in b.find_elements(By.CSS_SELECTOR, "#before img")
                                           if b.execute_script("return arguments[0].complete && "
                                                               "arguments[0].naturalWidth > 0", i)), None))
        shown, natural = browser.execute_script("return [arguments[0].clientWidth, arguments[0].naturalWidth]", image)
        assert natural == picture.width  # the page shows the picture the studio measured
        said = []
        for seconds in (0.4, 0.15):  # the start, then the end: the span is put in order
            x = (picture.left + seconds / picture.duration * (picture.right - picture.left)) * shown
            ActionChains(browser).move_to_element_with_offset(image, round(x - shown / 2), 0).click().perform()
            time.sleep(1.0)
            said.append(picture.seconds_at(round(x) * natural / shown))
        start, end = (float(browser.find_element(By.CSS_SELECTOR, f"#{k} input[type=number]").get_attribute("value"))
                      for k in ("start", "end"))
        assert start == pytest.approx(0.15, abs=0.02) and end == pytest.approx(0.4, abs=0.02), (start, end, said)
        next(r for r in browser.find_elements(By.CSS_SELECTOR, "input[type=radio]")
             if r.get_attribute("value") == "inpaint").click()
        browser.find_element(By.ID, "edit").click()
        wait.until(lambda b: next((i for i in b.find_elements(By.CSS_SELECTOR, "#after img")
                                   if b.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0",
                                                       i)), None))
        command = wait.until(lambda b: next((t.get_attribute("value") for t in b.find_elements(By.TAG_NAME, "textarea")
                                             if "audiodiff inpaint" in (t.get_attribute("value") or "")), None))
        assert f"--start {start:g} --end {end:g}" in command
        browser.save_screenshot(str(tmp_path / "edit.png"))
    finally:
        browser.quit()

"""`audiodiff vocoder train`: a neural vocoder trained on a folder of audio, or continued."""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from ..audio.mel import MelSpectrogram
from ..config import VocoderConfig
from ..data.datasets import load_waves
from ..device import peak_memory, resolve_device
from ..files import folder_lock, refuse_foreign, write_text
from ..runfolder import CONFIG_FILE
from ..training.vocoder import VocoderState, check_same_vocoder
from ..training.vocoder import train_vocoder as train_vocoder_model
from ..vocoders.registry import mel_config
from .setup import Session, report_skipped


def train_vocoder(data_dir: str | Path, out: str | Path, *, run: str | Path | None = None,
                  config_file: Path | None = None, overrides: dict[str, Any] | None = None,
                  session: Session = Session()) -> VocoderState:
    """Train a vocoder on every audio file under data_dir, or continue the one in `out`, as `audiodiff vocoder
    train` does. Config: the folder's own, else the default; the mel of `run` if given; then config_file;
    then overrides of [train] fields. session: device, progress bars, where its lines go (a vocoder logs
    loss.csv only; workers and log_to are not used). Returns the final state."""
    s = session
    device, progress, log, warn = s.device, s.progress, s.log, s.warn
    data_dir, out = Path(data_dir), Path(out)
    stored = VocoderConfig.from_toml(out / CONFIG_FILE) if (out / CONFIG_FILE).exists() else None
    if stored is None:
        refuse_foreign(out, f"an audiodiff vocoder (no {CONFIG_FILE})")
    config = stored or VocoderConfig()
    if run:
        config = dataclasses.replace(config, mel=mel_config(run))
    if config_file:
        config = VocoderConfig.from_toml(config_file, config)
    config = config.replace("train", **(overrides or {}))
    if stored is not None:
        check_same_vocoder(stored, config, str(out))
    dev = resolve_device(device)
    t0 = time.perf_counter()
    data, report = load_waves(data_dir, MelSpectrogram(config.mel), progress, skip=(out,))  # reads only
    report_skipped(report, warn)
    log(f"data: {report.summary()}, {len(data.wav) / config.mel.sample_rate / 60:.1f} min of audio, "
        f"in {time.perf_counter() - t0:.1f} s")
    with folder_lock(out):  # one writer at a time; makes the folder, after the data proved usable
        write_text(out / CONFIG_FILE, config.to_toml())
        c = config.train
        log(f"training vocoder on {dev} ({c.precision}{', adversarial' if c.adversarial else ''}), {c.steps} steps of "
            f"{c.batch_size} x {c.segment_frames * config.mel.hop_length / config.mel.sample_rate:.2f} s segments "
            f"-> {out}")
        state = train_vocoder_model(config, data, out, dev, progress=progress, log=log)
        log(f"done: step {state.step} in {time.perf_counter() - t0:.0f} s, {peak_memory(dev)}. "
            f"Next: audiodiff evaluate vocoder --data HELDOUT_DIR --vocoder {out} --vocoder griffinlim")
        return state

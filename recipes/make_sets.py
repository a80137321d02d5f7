#!/usr/bin/env python3
"""Build the recipes' data sets from Debian packages: one-second, 16 kHz mono clips with labels, and stereo
music loops at 44.1 kHz.

    python recipes/make_sets.py OUT_DIR [--sets notes digits drums loops] [--seed 0] [--jobs 2]

- notes:  single notes of 11 instrument families (two General MIDI programs each) rendered with
          fluidsynth from three GM SoundFonts (fluid-soundfont-gm, timgm6mb-soundfont,
          musescore-general-soundfont-small); held for 0.75 s. Labels: family, program, font, pitch, velocity.
- digits: the words "zero" to "nine" spoken by espeak-ng (English voices x voice variants x pitch x rate)
          and flite (its voices x pitch x speed), each combination a pseudo-speaker. Labels: digit (0-9),
          speaker, engine.
- drums:  one-shots of 7 categories: GM drum kits rendered from the SoundFonts, and the recorded samples
          of hydrogen-drumkits. Labels: category, source, kit, instrument.
- loops:  procedurally composed phrases of 2 or 4 bars (4-8 s) in a random key, mode and tempo: drums, bass,
          chords and a melody (chords or melody sometimes left out), each part its own GM program, chords and
          melody panned to opposite sides, rendered in stereo at 44.1 kHz by fluidsynth (with its reverb) from
          one of the three SoundFonts. Labels: mode, key, tempo, bars, instruments, programs, font.

Each set goes to OUT_DIR/SET/{train,heldout}/*.wav with OUT_DIR/SET/metadata.csv (path, split, labels),
OUT_DIR/SET/SOURCES.txt (the Debian packages, their versions and copyright files, copied into
OUT_DIR/SET/licenses/) and OUT_DIR/SET/manifest.json (counts, seed, tool versions). About 15% of each
label's groups are held out; a group (one note at all velocities, one speaker, one drum instrument)
never straddles the split. Every random choice comes from a generator seeded by --seed and the item's
own key, so the output does not depend on --jobs and is byte-identical for the same seed and packages.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import hashlib
import json
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Callable

import numpy as np
import soundfile as sf
import soxr

SR = 16000
CLIP = SR  # every clip is one second
FONTS = {  # name -> (file, Debian package)
    "fluidr3": ("/usr/share/sounds/sf2/FluidR3_GM.sf2", "fluid-soundfont-gm"),
    "timgm6mb": ("/usr/share/sounds/sf2/TimGM6mb.sf2", "timgm6mb-soundfont"),
    "musescore": ("/usr/share/sounds/sf3/MuseScore_General_Lite.sf3", "musescore-general-soundfont-small"),
}
FAMILIES = {  # family -> (two GM programs, lowest and highest MIDI pitch played)
    "keyboard": ((0, 4), 36, 96), "mallet": ((11, 13), 53, 96), "organ": ((16, 19), 36, 91),
    "guitar": ((24, 25), 40, 84), "bass": ((32, 33), 28, 67), "string": ((40, 42), 36, 91),
    "brass": ((56, 57), 40, 84), "reed": ((65, 71), 50, 86), "flute": ((72, 73), 60, 96),
    "synth_lead": ((80, 81), 36, 91), "vocal": ((52, 53), 45, 79),
}
DRUM_KITS = (0, 8, 16, 24, 25, 32, 40)  # GM bank-128 presets: standard, room, power, electronic, 808, jazz, brush
GM_DRUMS = {  # category -> GM percussion keys
    "kick": (35, 36), "snare": (38, 40, 37), "hihat": (42, 44, 46), "tom": (41, 43, 45, 47, 48, 50),
    "cymbal": (49, 51, 52, 55, 57, 59, 53), "clap": (39,), "percussion": (54, 56, 60, 61, 62, 63, 64, 75, 76, 77),
}
DRUM_WORDS = (  # hydrogen instrument name (lower case) contains -> category; the first match wins
    ("percussion", ("cowbell", "tamb", "shaker", "conga", "bongo", "clave", "perc", "block")),
    ("kick", ("kick", "bass drum", "bd")), ("snare", ("snare", "rim", "sd")), ("hihat", ("hat", "hh")),
    ("tom", ("tom",)), ("cymbal", ("crash", "ride", "cymbal", "china", "splash", "bell")), ("clap", ("clap",)),
)
DIGITS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def rng_for(seed: int, *key: object) -> np.random.Generator:
    """A generator for one item: the same seed and key give the same draws in any order or process."""
    digest = hashlib.sha256(repr((seed, *key)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def run(cmd: list[str]) -> None:
    proc = subprocess.run(cmd, capture_output=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-300:]}")


def midi_file(path: Path, notes: list[tuple[float, float, int, int, int]], program: int = 0,
              programs: dict[int, int] | None = None, pans: dict[int, int] | None = None) -> None:
    """A format-0 MIDI file of (start s, length s, channel, key, velocity) notes at 120 bpm (480 ticks = 0.5 s),
    each channel set to `program` or its entry in `programs` (on channel 9, the GM drum channel, that picks the
    drum kit) and panned to its entry in `pans` (controller 10: 0 left, 64 centre, 127 right), and 1 s of
    silence after the last note so its release is rendered whole."""
    def vlq(n: int) -> bytes:
        out = [n & 0x7F]
        while n > 0x7F:
            n >>= 7
            out.insert(0, (n & 0x7F) | 0x80)
        return bytes(out)

    events = []
    for start, length, ch, key, vel in notes:
        events += [(round(start * 960), bytes([0x90 | ch, key, vel])), (round((start + length) * 960), bytes([0x80 | ch, key, 0]))]
    channels = sorted({n[2] for n in notes})
    head = b"".join(bytes([0, 0xC0 | c, (programs or {}).get(c, program)]) for c in channels)
    head += b"".join(bytes([0, 0xB0 | c, 10, pan]) for c, pan in sorted((pans or {}).items()))
    body, now = bytearray(head), 0
    for tick, msg in sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 == 0x90)):
        body += vlq(tick - now) + msg
        now = tick
    body += vlq(960) + b"\xff\x2f\x00"
    path.write_bytes(b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big")
                     + (480).to_bytes(2, "big") + b"MTrk" + len(body).to_bytes(4, "big") + bytes(body))


def render(font: str, mid: Path, wav: Path) -> np.ndarray:
    """fluidsynth, no reverb or chorus, at SR; returns mono float32."""
    run(["fluidsynth", "-ni", "-g", "0.5", "-R", "0", "-C", "0", "-r", str(SR), "-T", "wav", "-F", str(wav), font, str(mid)])
    x, sr = sf.read(wav, dtype="float32", always_2d=True)
    x = x.mean(1)
    return x if sr == SR else soxr.resample(x, sr, SR).astype(np.float32)


def fit(x: np.ndarray, rng: np.random.Generator | None = None, peak_db: tuple[float, float] = (-12.0, -3.0)) -> np.ndarray:
    """One second: cut (20 ms fade-out) or pad with silence, peak scaled to a seeded level in peak_db dBFS."""
    x = x[:CLIP].astype(np.float64)
    fade = min(len(x), SR // 50)
    if len(x) == CLIP:
        x[-fade:] *= np.linspace(1, 0, fade)
    x = np.pad(x, (0, CLIP - len(x)))
    peak = np.abs(x).max()
    level = (rng or np.random.default_rng(0)).uniform(*peak_db)
    return (x / peak * 10 ** (level / 20)).astype(np.float32) if peak > 0 else x.astype(np.float32)


def trim(x: np.ndarray, rel_db: float = -40.0) -> np.ndarray:
    """Drop leading and trailing samples below rel_db of the peak."""
    loud = np.flatnonzero(np.abs(x) > np.abs(x).max() * 10 ** (rel_db / 20))
    return x[loud[0]: loud[-1] + 1] if len(loud) else x[:0]


# ---- notes -------------------------------------------------------------------------------------------------

def note_items(seed: int) -> list[dict]:
    items = []
    for font in FONTS:
        for family, (programs, low, high) in FAMILIES.items():
            for program in programs:
                for pitch in range(low + (program % 3), high + 1, 3):
                    for vel in (75, 110):
                        items.append({"font": font, "family": family, "program": program, "pitch": pitch, "velocity": vel,
                                      "group": f"{font}-{program}-{pitch}", "label": family})
    return items


def render_notes(job: tuple[str, int, list[dict]], seed: int, tmp: Path) -> list[tuple[dict, np.ndarray]]:
    """One fluidsynth call per (font, program): its notes 1.5 s apart, each held 0.75 s, cut into clips."""
    font, program, items = job
    mid, wav = tmp / f"{font}-{program}.mid", tmp / f"{font}-{program}.wav"
    midi_file(mid, [(1.5 * i, 0.75, 0, it["pitch"], it["velocity"]) for i, it in enumerate(items)], program=program)
    x = render(FONTS[font][0], mid, wav)
    out = []
    for i, it in enumerate(items):
        clip = x[round(1.5 * i * SR): round(1.5 * i * SR) + CLIP]
        if np.abs(clip).max() > 1e-3:  # a font without this program or pitch renders silence: skip it
            out.append((it, fit(clip, rng_for(seed, "notes", it["group"], it["velocity"]), (-14.0, -3.0))))
    return out


def build_notes(seed: int, tmp: Path, jobs: int) -> list[tuple[dict, np.ndarray]]:
    by = {}
    for it in note_items(seed):
        by.setdefault((it["font"], it["program"]), []).append(it)
    with cf.ThreadPoolExecutor(jobs) as pool:
        parts = pool.map(lambda k: render_notes((k[0], k[1], by[k]), seed, tmp), sorted(by))
        return [clip for part in parts for clip in part]


# ---- digits ------------------------------------------------------------------------------------------------

def speakers(seed: int) -> list[dict]:
    """Pseudo-speakers: a seeded sample of espeak-ng voice x variant x pitch x rate, and flite voice x pitch x speed."""
    rng = rng_for(seed, "speakers")
    voices = ["en-us", "en-gb", "en-gb-scotland", "en-gb-x-rp", "en-029", "en-gb-x-gbclan"]
    variants = ["m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "klatt", "klatt2"]
    combos = [(v, var, p, r) for v in voices for var in variants for p in (30, 50, 70) for r in (130, 165)]
    chosen = [combos[i] for i in sorted(rng.choice(len(combos), 80, replace=False))]
    out = [{"engine": "espeak-ng", "voice": f"{v}+{var}", "pitch": p, "rate": r, "speaker": f"espeak-{v}+{var}-p{p}-r{r}"}
           for v, var, p, r in chosen]
    for voice in ("kal16", "awb", "rms", "slt"):
        for f0 in (0.85, 1.0, 1.2):
            for stretch in (0.9, 1.15):
                out.append({"engine": "flite", "voice": voice, "pitch": f0, "rate": stretch,
                            "speaker": f"flite-{voice}-f{f0}-s{stretch}"})
    return out


def say(spk: dict, word: str, wav: Path) -> np.ndarray:
    if spk["engine"] == "espeak-ng":
        run(["espeak-ng", "-v", spk["voice"], "-p", str(spk["pitch"]), "-s", str(spk["rate"]), "-w", str(wav), word])
    else:
        base = {"kal16": 100, "awb": 100, "rms": 95, "slt": 170}[spk["voice"]]
        run(["flite", "-voice", spk["voice"], "--setf", f"duration_stretch={spk['rate']}",
             "--setf", f"int_f0_target_mean={base * spk['pitch']:.0f}", "-t", word, "-o", str(wav)])
    x, sr = sf.read(wav, dtype="float32", always_2d=True)
    x = x.mean(1)
    return x if sr == SR else soxr.resample(x, sr, SR).astype(np.float32)


def speak(job: tuple[dict, int], seed: int, tmp: Path) -> tuple[dict, np.ndarray] | None:
    spk, d = job
    item = {"digit": str(d), "word": DIGITS[d], "speaker": spk["speaker"], "engine": spk["engine"],
            "group": spk["speaker"], "stratum": spk["engine"], "label": str(d)}
    x = trim(say(spk, DIGITS[d], tmp / f"{spk['speaker']}-{d}.wav"))
    if len(x) < SR // 10:
        return None
    rng = rng_for(seed, "digits", spk["speaker"], d)
    start = int(rng.integers(0, max(1, CLIP - len(x)) // 2 + 1))  # a seeded lead-in, at most half the spare time
    return item, fit(np.concatenate([np.zeros(start, np.float32), x]), rng)


def build_digits(seed: int, tmp: Path, jobs: int) -> list[tuple[dict, np.ndarray]]:
    work = [(spk, d) for spk in speakers(seed) for d in range(10)]
    with cf.ThreadPoolExecutor(jobs) as pool:
        return [r for r in pool.map(lambda j: speak(j, seed, tmp), work) if r is not None]


# ---- drums -------------------------------------------------------------------------------------------------

def gm_drum_clips(font: str, seed: int, tmp: Path) -> list[tuple[dict, np.ndarray]]:
    """Every kit x key x velocity of one font in one fluidsynth call per kit, 1.5 s apart."""
    out = []
    for kit in DRUM_KITS:
        hits = [(cat, key, vel) for cat, keys in GM_DRUMS.items() for key in keys for vel in (70, 115)]
        mid, wav = tmp / f"{font}-kit{kit}.mid", tmp / f"{font}-kit{kit}.wav"
        midi_file(mid, [(1.5 * i, 0.2, 9, key, vel) for i, (_, key, vel) in enumerate(hits)], program=kit)
        x = render(FONTS[font][0], mid, wav)
        for i, (cat, key, vel) in enumerate(hits):
            clip = x[round(1.5 * i * SR): round(1.5 * i * SR) + CLIP]
            if np.abs(clip).max() > 1e-3:
                item = {"category": cat, "source": font, "kit": f"gm{kit}", "instrument": f"key{key}", "velocity": vel,
                        "group": f"{font}-gm{kit}-{key}", "label": cat}
                out.append((item, fit(clip, rng_for(seed, "drums", item["group"], vel))))
    return out


def hydrogen_clips(seed: int, root: Path = Path("/usr/share/hydrogen/data/drumkits")) -> list[tuple[dict, np.ndarray]]:
    """Each layer sample of each hydrogen kit instrument whose name says its category."""
    out = []
    for xml in sorted(root.glob("*/drumkit.xml")):
        ns = {"h": "http://www.hydrogen-music.org/drumkit"}
        tree = ET.parse(xml).getroot()
        for inst in tree.iterfind(".//h:instrument", ns):
            name = (inst.findtext("h:name", "", ns) or "").strip()
            cat = next((c for c, words in DRUM_WORDS if any(w in name.lower() for w in words)), None)
            files = sorted({f.text for f in inst.iterfind(".//h:filename", ns) if f.text})
            for i, fname in enumerate(files[:4]):
                path = xml.parent / fname
                if cat is None or not path.is_file():
                    continue
                x, sr = sf.read(path, dtype="float32", always_2d=True)
                x = trim(x.mean(1) if sr == SR else soxr.resample(x.mean(1), sr, SR).astype(np.float32), -60.0)
                if len(x) >= SR // 50:
                    item = {"category": cat, "source": "hydrogen", "kit": xml.parent.name, "instrument": name,
                            "velocity": i, "group": f"hydrogen-{xml.parent.name}-{name}", "label": cat}
                    out.append((item, fit(x, rng_for(seed, "drums", item["group"], i))))
    return out


def build_drums(seed: int, tmp: Path, jobs: int) -> list[tuple[dict, np.ndarray]]:
    with cf.ThreadPoolExecutor(jobs) as pool:
        parts = list(pool.map(lambda f: gm_drum_clips(f, seed, tmp), sorted(FONTS)))
    return [c for part in parts for c in part] + hydrogen_clips(seed)


# ---- loops ------------------------------------------------------------------------------------------------
LOOP_SR = 44100
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10)}
PROGRESSIONS = {"major": ((0, 4, 5, 3), (0, 3, 4, 3), (5, 3, 0, 4), (0, 5, 3, 4)),  # scale degrees, one a bar
                "minor": ((0, 5, 2, 6), (0, 3, 4, 0), (0, 6, 5, 6), (0, 3, 6, 2))}
LOOP_PROGRAMS = {"bass": (32, 33, 34, 35, 38, 39), "chords": (0, 4, 5, 16, 19, 24, 25, 48, 49, 88, 89),
                 "melody": (11, 13, 22, 56, 65, 71, 73, 80, 81)}
LOOP_CHANNELS = {"bass": 0, "chords": 1, "melody": 2, "drums": 9}
KEYS = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def loop_items(seed: int, count: int = 480) -> list[dict]:
    """The score of each loop: key, mode, tempo, bars, parts with programs and pans, and its notes."""
    items = []
    for i in range(count):
        rng = rng_for(seed, "loop", i)
        mode, root = ("major", "minor")[int(rng.integers(2))], int(rng.integers(12))
        bpm = int(rng.integers(80, 141))
        bars = 2 if 8 * 60 / bpm >= 4.0 else 4  # 4-8 s either way
        parts = ["drums", "bass"] + [p for p in ("chords", "melody") if rng.random() > 0.2]
        programs = {LOOP_CHANNELS[p]: int(rng.choice(LOOP_PROGRAMS[p])) for p in parts if p != "drums"}
        programs[9] = int(rng.choice(DRUM_KITS))
        side = 1 if rng.random() < 0.5 else -1  # chords on one side, the melody on the other
        pans = {0: 64, 9: 64, 1: 64 + side * int(rng.integers(20, 41)), 2: 64 - side * int(rng.integers(20, 41))}
        step = 60 / bpm / 4  # a sixteenth note, seconds
        chords = PROGRESSIONS[mode][int(rng.integers(4))][:bars]
        notes = []
        for p in parts:
            notes += PARTS[p](rng, SCALES[mode], root, chords, step)
        items.append({"label": mode, "group": f"loop{i:04d}", "stratum": mode, "mode": mode, "key": KEYS[root],
                      "tempo": bpm, "bars": bars, "seconds": round(bars * 16 * step, 4), "instruments": "+".join(parts),
                      "programs": " ".join(f"{p}:{programs[LOOP_CHANNELS[p]]}" for p in parts),
                      "font": list(FONTS)[int(rng.integers(len(FONTS)))], "notes": notes, "programs_by_channel": programs,
                      "pans": pans})
    return items


def _triad(scale: tuple[int, ...], degree: int) -> list[int]:
    """Semitones above the key's root of the triad on a scale degree (0-based)."""
    return [scale[(degree + k) % 7] + 12 * ((degree + k) // 7) for k in (0, 2, 4)]


def _drums(rng, scale, root, chords, step) -> list[tuple]:
    kick = {0, 8} | {s for s in (3, 6, 10, 14) if rng.random() < 0.3}
    hat = range(0, 16, 1 if rng.random() < 0.4 else 2)
    open_hat = rng.random() < 0.3
    notes = []
    for bar in range(len(chords)):
        t0 = bar * 16
        for s in range(16):
            if s in kick:
                notes.append(((t0 + s) * step, step, 9, 36, int(rng.integers(95, 121))))
            if s in (4, 12):
                notes.append(((t0 + s) * step, step, 9, 38, int(rng.integers(90, 116))))
            if s in hat and not (open_hat and s == 14):
                notes.append(((t0 + s) * step, step, 9, 42, int(rng.integers(55, 90)) + 15 * (s % 4 == 0)))
            if open_hat and s == 14:
                notes.append(((t0 + s) * step, 2 * step, 9, 46, 80))
    return notes


def _bass(rng, scale, root, chords, step) -> list[tuple]:
    rhythm = [(0, 4), (4, 4), (8, 4), (12, 4)] if rng.random() < 0.4 else \
        [(0, 3), (3, 3), (6, 2), (8, 3), (11, 3), (14, 2)]
    notes = []
    for bar, degree in enumerate(chords):
        triad = _triad(scale, degree)
        for k, (s, n) in enumerate(rhythm):
            key = 36 + root % 12 + (triad[0] if k % 3 != 2 else triad[2])
            notes.append(((bar * 16 + s) * step, n * step * 0.9, 0, key, int(rng.integers(85, 111))))
    return notes


def _chords(rng, scale, root, chords, step) -> list[tuple]:
    hits = [(0, 16)] if rng.random() < 0.4 else [(0, 6), (8, 6)] if rng.random() < 0.5 else [(2, 2), (6, 2), (10, 2), (14, 2)]
    notes = []
    for bar, degree in enumerate(chords):
        for s, n in hits:
            for semis in _triad(scale, degree):
                notes.append(((bar * 16 + s) * step, n * step * 0.95, 1, 60 + root % 12 + semis, int(rng.integers(60, 86))))
    return notes


def _melody(rng, scale, root, chords, step) -> list[tuple]:
    notes, pos, s, end = [], int(rng.integers(0, 7)), 0, 16 * len(chords)
    while s < end:
        n = min(int(rng.choice([2, 2, 4, 1, 3])), end - s)
        if rng.random() > 0.3:
            key = 72 + root % 12 + scale[pos % 7] + 12 * (pos // 7)
            notes.append((s * step, n * step * 0.9, 2, key, int(rng.integers(75, 106))))
        pos = int(np.clip(pos + rng.integers(-2, 3), 0, 9))
        s += n
    return notes


PARTS = {"drums": _drums, "bass": _bass, "chords": _chords, "melody": _melody}


def render_loop(item: dict, seed: int, tmp: Path) -> tuple[dict, np.ndarray]:
    """One loop in stereo at LOOP_SR, [T, 2] float32: cut to its bars (10 ms fade-out), peak at a seeded -6..-1 dBFS."""
    mid, wav = tmp / f"{item['group']}.mid", tmp / f"{item['group']}.wav"
    midi_file(mid, item["notes"], programs=item["programs_by_channel"], pans=item["pans"])
    run(["fluidsynth", "-ni", "-g", "0.4", "-R", "1", "-C", "0", "-r", str(LOOP_SR), "-T", "wav", "-F", str(wav),
         FONTS[item["font"]][0], str(mid)])
    x, sr = sf.read(wav, dtype="float32", always_2d=True)
    if sr != LOOP_SR or x.shape[1] != 2 or np.abs(x).max() < 1e-4:
        raise RuntimeError(f"fluidsynth rendered {item['group']} as {x.shape[1]} channels at {sr} Hz, peak "
                           f"{np.abs(x).max():.1e} (font {FONTS[item['font']][0]})")
    n = round(item["seconds"] * LOOP_SR)
    x = np.pad(x[:n].astype(np.float64), ((0, max(0, n - len(x))), (0, 0)))
    fade = LOOP_SR // 100
    x[-fade:] *= np.linspace(1, 0, fade)[:, None]
    level = rng_for(seed, "level", item["group"]).uniform(-6.0, -1.0)
    x *= 10 ** (level / 20) / max(np.abs(x).max(), 1e-9)
    return item, x.astype(np.float32)


def build_loops(seed: int, tmp: Path, jobs: int) -> list[tuple[dict, np.ndarray]]:
    with cf.ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda it: render_loop(it, seed, tmp), loop_items(seed)))


# ---- split and write -----------------------------------------------------------------------------------------

def split(items: list[dict], seed: int, name: str, share: float = 0.15) -> list[str]:
    """'heldout' for a seeded ~share of each stratum's groups, 'train' for the rest; a group stays on one side.
    The stratum is the label where each group has one label (notes, drums), the engine for digits, whose
    groups (speakers) say every label."""
    groups: dict[str, dict[str, None]] = {}
    for it in items:
        groups.setdefault(it.get("stratum", it["label"]), {})[it["group"]] = None
    held = set()
    for stratum, names in sorted(groups.items()):
        names = sorted(names)
        k = max(1, round(share * len(names))) if len(names) > 1 else 0
        held |= {names[i] for i in rng_for(seed, "split", name, stratum).permutation(len(names))[:k]}
    return ["heldout" if it["group"] in held else "train" for it in items]


PACKAGES = {"notes": ["fluidsynth", *(p for _, p in FONTS.values())], "digits": ["espeak-ng", "flite"],
            "drums": ["fluidsynth", *(p for _, p in FONTS.values()), "hydrogen-drumkits", "hydrogen-data"],
            "loops": ["fluidsynth", *(p for _, p in FONTS.values())]}
BUILDERS: dict[str, Callable[[int, Path, int], list[tuple[dict, np.ndarray]]]] = {
    "notes": build_notes, "digits": build_digits, "drums": build_drums, "loops": build_loops}
COLUMNS = {"notes": ["family", "program", "font", "pitch", "velocity"], "digits": ["digit", "word", "speaker", "engine"],
           "drums": ["category", "source", "kit", "instrument", "velocity"],
           "loops": ["mode", "key", "tempo", "bars", "seconds", "instruments", "programs", "font"]}
RATES = {"loops": LOOP_SR}  # the other sets: SR


def package_versions(packages: list[str]) -> dict[str, str]:
    out = {}
    for p in packages:
        proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", p], capture_output=True, text=True)
        out[p] = proc.stdout.strip() if proc.returncode == 0 else "not installed"
    return out


def unique(clips: list[tuple[dict, np.ndarray]]) -> list[tuple[dict, np.ndarray]]:
    """Drop clips whose 16-bit samples equal an earlier clip's (e.g. a font without a drum kit falls back to
    its standard kit)."""
    seen, out = set(), []
    for item, x in clips:
        key = hashlib.sha256((np.clip(x, -1, 1) * 32767).astype(np.int16).tobytes()).digest()
        if key not in seen:
            seen.add(key)
            out.append((item, x))
    return out


def write_set(name: str, clips: list[tuple[dict, np.ndarray]], out: Path, seed: int) -> dict:
    clips = unique(sorted(clips, key=lambda c: (c[0]["label"], c[0]["group"], str(c[0].get("velocity", "")))))
    sides = split([c[0] for c in clips], seed, name)
    root = out / name
    if root.exists():
        shutil.rmtree(root)
    rows = []
    for i, ((item, x), side) in enumerate(zip(clips, sides)):
        rel = f"{side}/{item['label']}_{i:05d}.wav"
        (root / side).mkdir(parents=True, exist_ok=True)
        sf.write(root / rel, x, RATES.get(name, SR), subtype="PCM_16")
        rows.append({"path": rel, "split": side, **{k: item[k] for k in COLUMNS[name]}})
    with open(root / "metadata.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["path", "split", *COLUMNS[name]])
        w.writeheader()
        w.writerows(rows)
    versions = package_versions(PACKAGES[name])
    (root / "licenses").mkdir()
    lines = [f"{name}: rendered by recipes/make_sets.py (seed {seed}) from these Debian packages; each package's "
             "copyright file, with its licence, is copied into licenses/.", ""]
    for p, v in versions.items():
        src = Path(f"/usr/share/doc/{p}/copyright")
        if src.is_file():
            shutil.copyfile(src, root / "licenses" / f"{p}.copyright")
        lines.append(f"{p} {v}")
    (root / "SOURCES.txt").write_text("\n".join(lines) + "\n")
    counts = {side: sum(s == side for s in sides) for side in ("train", "heldout")}
    per_label = {}
    for it, side in zip((c[0] for c in clips), sides):
        per_label.setdefault(it["label"], {"train": 0, "heldout": 0})[side] += 1
    seconds = sorted({round(len(x) / RATES.get(name, SR), 3) for _, x in clips})
    manifest = {"set": name, "seed": seed, "sample_rate": RATES.get(name, SR), "channels": clips[0][1].ndim,
                "seconds": seconds[0] if len(seconds) == 1 else [seconds[0], seconds[-1]], "clips": counts,
                "per_label": per_label,
                "packages": versions}
    (root / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--sets", nargs="+", choices=list(BUILDERS), default=list(BUILDERS))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--jobs", type=int, default=2, help="rendering processes at a time (the output does not depend on it)")
    args = ap.parse_args()
    missing = [t for t in ("fluidsynth", "espeak-ng", "flite", "dpkg-query") if shutil.which(t) is None]
    if missing:
        raise SystemExit(f"make_sets: missing {', '.join(missing)}; recipes/prepare.sh installs them (apt-get)")
    for name in args.sets:
        with tempfile.TemporaryDirectory() as tmp:
            m = write_set(name, BUILDERS[name](args.seed, Path(tmp), args.jobs), args.out, args.seed)
        print(f"{name}: {m['clips']['train']} train + {m['clips']['heldout']} held-out clips, "
              f"{len(m['per_label'])} labels -> {args.out / name}", flush=True)


if __name__ == "__main__":
    main()

"""Data at scale: memory of training from the mel cache vs hours of audio, preparation throughput with 1 and 2
workers, re-preparation after adding 1% of files, and batch assembly from the memory-mapped shards.

    python benchmarks/data_scale.py --root /tmp/scale --hours 1 8 64

Synthetic data: 10-second 16 kHz mono clips (two decaying tones and noise, seeded), written once under
ROOT/h{HOURS}. Training runs are `audiodiff train --preset tiny` subprocesses with previews off; their memory
is sampled every 0.1 s from /proc (RSS and PSS summed over the process and its children: PSS splits pages
shared between processes, such as the mapped shards and torch's libraries, among them).
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from audiodiff.audio.mel import SILENCE, MelSpectrogram
from audiodiff.data.prepare import load_mels
from audiodiff.presets import preset

SR, CLIP_S = 16000, 10
MEL = preset("tiny").mel


def make_folder(folder: Path, hours: float, seed: int = 0) -> Path:
    """hours of 10-second clips under folder (kept if already complete)."""
    n = round(hours * 3600 / CLIP_S)
    if folder.is_dir() and len(list(folder.glob("*/*.wav"))) == n:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    rng = np.random.default_rng(seed)
    t = np.arange(SR * CLIP_S) / SR
    for i in range(n):
        f1, f2 = rng.uniform(60, 2000, 2)
        wav = (0.3 * np.sin(2 * np.pi * f1 * t) * np.exp(-rng.uniform(0.2, 3) * t) + 0.2 * np.sin(2 * np.pi * f2 * t)
               + 0.02 * rng.standard_normal(len(t)))
        path = folder / f"{i // 1000:03d}" / f"clip_{i:06d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wav.astype(np.float32), SR, subtype="PCM_16")
    return folder


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                ppid = int(open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def memory_of(pids: list[int]) -> tuple[int, int]:
    """(RSS, PSS) in bytes, summed over python processes among pids."""
    rss = pss = 0
    for p in pids:
        try:
            if "python" not in open(f"/proc/{p}/comm").read():
                continue
            for line in open(f"/proc/{p}/smaps_rollup"):
                if line.startswith("Rss:"):
                    rss += int(line.split()[1]) * 1024
                elif line.startswith("Pss:"):
                    pss += int(line.split()[1]) * 1024
        except OSError:
            continue
    return rss, pss


def watched(cmd: list[str]) -> tuple[float, int, int, str]:
    """Run cmd; (seconds, peak summed RSS, peak summed PSS, output)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1" if "torch.distributed.run" in cmd else
                                 os.environ.get("OMP_NUM_THREADS", "2")})
    peak_rss = peak_pss = 0
    while proc.poll() is None:
        rss, pss = memory_of(descendants(proc.pid))
        peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
        time.sleep(0.1)
    out = proc.stdout.read()
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out[-2000:]}")
    return time.perf_counter() - t0, peak_rss, peak_pss, out


def train_cmd(folder: Path, run: Path, steps: int, config: Path, ddp: bool = False) -> list[str]:
    head = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"] if ddp \
        else [sys.executable]
    return head + ["-m", "audiodiff", "train", str(folder), "--out", str(run), "--preset", "tiny", "--steps",
                   str(steps), "--config", str(config), "--device", "cpu", "--no-progress"]


def gib(b: int) -> str:
    return f"{b / 2**30:.2f}"


def memory_table(root: Path, hours: list[float]) -> None:
    config = root / "no_previews.toml"
    config.write_text("[train]\npreview_count = 0\ncheckpoint_every = 1000\n")
    print("\n## Training memory vs hours of audio (tiny preset, batch 16; summed over processes)")
    print("| hours | files | cache GiB | phase | wall s | peak RSS GiB | peak PSS GiB |")
    print("|---|---|---|---|---|---|---|")
    for h in hours:
        folder = make_folder(root / f"h{h:g}", h)
        run = root / f"run_h{h:g}"
        shutil.rmtree(run, ignore_errors=True)
        rows = [("building cache, 5 steps", train_cmd(folder, run, 5, config)),
                ("from cache, 5 more steps", train_cmd(folder, run, 10, config)),
                ("from cache, 2 DDP ranks, 10 more", train_cmd(folder, run, 20, config, ddp=True))]
        for phase, cmd in rows:
            if "DDP" in phase and h != max(hours) and h != min(hours):
                continue
            secs, rss, pss, _ = watched(cmd)
            size = sum(p.stat().st_size for p in (run / "cache").rglob("shard-*"))
            files = len(list(folder.glob("*/*.wav")))
            print(f"| {h:g} | {files} | {size / 2**30:.2f} | {phase} | {secs:.0f} | {gib(rss)} | {gib(pss)} |",
                  flush=True)


def preparation_table(root: Path, hours: float, repeats: int) -> None:
    folder = make_folder(root / f"h{hours:g}", hours)
    mel = MelSpectrogram(MEL)
    threads = torch.get_num_threads()
    variants = {"1 (torch on 1 thread)": (1, 1), f"1 (torch on {threads} threads, the default)": (1, threads),
                "2 (1 torch thread each, the default)": (2, threads)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, (workers, n_threads) in variants.items():  # interleaved
            cache = root / "prep_cache"
            shutil.rmtree(cache, ignore_errors=True)
            torch.set_num_threads(n_threads)
            t0 = time.perf_counter()
            load_mels(folder, mel, 64, cache, progress=False, workers=workers)
            times[name].append(time.perf_counter() - t0)
    torch.set_num_threads(threads)
    print(f"\n## Preparation of {hours:g} h ({len(list(folder.glob('*/*.wav')))} files), min of {repeats}")
    print("| workers | seconds | hours of audio per minute |")
    print("|---|---|---|")
    for name, ts in times.items():
        print(f"| {name} | {min(ts):.1f} | {hours / min(ts) * 60:.1f} |")
    best = {name: min(ts) for name, ts in times.items()}
    one_thread, one, two = best.values()
    print(f"2 workers vs 1 worker on 1 thread: {one_thread / two:.2f}x; vs 1 worker on {threads} threads: {one / two:.2f}x")
    print(f"the machine's own scaling, 2 processes of single-threaded STFTs vs 1: {raw_scaling(repeats + 1):.2f}x")



def repreparation_table(root: Path, hours_list: list[float], repeats: int) -> None:
    """Full preparation (default workers; min of repeats) vs preparing again after 1% new files were added (min of repeats; the
    new files are removed and written anew between repeats, so each repeat prepares them again)."""
    mel = MelSpectrogram(MEL)
    print("\n## Re-preparation after adding 1% new files (default workers)")
    print("| hours | files | full preparation s | new files | re-preparation s | share |")
    print("|---|---|---|---|---|---|")
    for hours in hours_list:
        extra = root / f"h{hours:g}" / "extra"
        shutil.rmtree(extra, ignore_errors=True)  # left by an interrupted run
        folder, cache = make_folder(root / f"h{hours:g}", hours), root / "reprep_cache"
        full = []
        for _ in range(repeats):
            shutil.rmtree(cache, ignore_errors=True)
            t0 = time.perf_counter()
            load_mels(folder, mel, 64, cache, progress=False)
            full.append(time.perf_counter() - t0)
        n_files = len(list(folder.glob("*/*.wav")))
        n_new, rng, again = round(0.01 * n_files), np.random.default_rng(1), []
        for _ in range(repeats):
            extra.mkdir()
            for i in range(n_new):
                sf.write(extra / f"new_{i:04d}.wav", (0.1 * rng.standard_normal(SR * CLIP_S)).astype(np.float32), SR)
            t0 = time.perf_counter()
            _, report = load_mels(folder, mel, 64, cache, progress=False)
            again.append(time.perf_counter() - t0)
            assert report.prepared == n_new and report.cached == n_files, report.summary()
            shutil.rmtree(extra)
            load_mels(folder, mel, 64, cache, progress=False)  # forgets them again
        shutil.rmtree(cache)
        print(f"| {hours:g} | {n_files} | {min(full):.1f} | {n_new} | {min(again):.2f} | "
              f"{min(again) / min(full) * 100:.1f}% |")


BURN = """
import time, torch
torch.set_num_threads(1)
x, w = torch.randn(1, 160000), torch.hann_window(1024)
t = time.perf_counter()
for _ in range(300):
    s = torch.stft(x, 1024, 256, window=w, return_complex=True)
print(time.perf_counter() - t)
"""


def raw_scaling(repeats: int) -> float:
    """Throughput of two single-threaded compute processes at once over one alone (min of repeats, interleaved)."""
    one, two = [], []
    for _ in range(repeats):
        one.append(float(subprocess.run([sys.executable, "-c", BURN], capture_output=True, text=True).stdout))
        procs = [subprocess.Popen([sys.executable, "-c", BURN], stdout=subprocess.PIPE, text=True) for _ in range(2)]
        two.append(max(float(p.communicate()[0]) for p in procs))
    return 2 * min(one) / min(two)


def old_crops(mels: torch.Tensor, offsets: torch.Tensor, lengths: torch.Tensor, files: torch.Tensor,
              crop: int, g: torch.Generator) -> torch.Tensor:
    """The crops of the single in-memory cache this replaces (all mels in one [F, sum N] float16 tensor)."""
    u = torch.rand(len(files), generator=g, dtype=torch.float64)
    out = torch.full((len(files), 1, mels.shape[0], crop), SILENCE)
    for b, i in enumerate(files.tolist()):
        n = int(lengths[i])
        start = int(u[b] * max(1, n - crop + 1))
        piece = mels[:, offsets[i] + start : offsets[i] + min(n, start + crop)]
        out[b, 0, :, : piece.shape[1]] = piece.float()
    return out


def assembly_table(root: Path, hours: float, batches: int) -> None:
    run = root / f"run_h{hours:g}"
    data, _ = load_mels(root / f"h{hours:g}", MelSpectrogram(MEL), 64, run / "cache", progress=False)
    mels = torch.cat([data.file_mel(i)[0].half() for i in range(len(data))], dim=1)
    offsets = torch.cat([torch.zeros(1, dtype=torch.long), data.lengths.cumsum(0)])
    g = torch.Generator().manual_seed(0)
    new, old = [], []
    for _ in range(batches):  # interleaved
        files = data.sample_files(16, g)
        t0 = time.perf_counter()
        data.crops(files, torch.Generator().manual_seed(1))
        new.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        old_crops(mels, offsets, data.lengths, files, 64, torch.Generator().manual_seed(1))
        old.append(time.perf_counter() - t0)
    step = _step_seconds(run)
    print(f"\n## Batch assembly, 16 crops of 64 frames from {hours:g} h, {batches} batches (warm page cache)")
    print("| cache | median ms | min ms |")
    print("|---|---|---|")
    for name, ts in (("memory-mapped shards", new), ("single in-memory tensor (before)", old)):
        print(f"| {name} | {np.median(ts) * 1e3:.2f} | {min(ts) * 1e3:.2f} |")
    print(f"ratio (median): {np.median(new) / np.median(old):.2f}x; a tiny-preset training step here: "
          f"{step * 1e3:.0f} ms, so assembly is {np.median(new) / step * 100:.1f}% of a step")


def _step_seconds(run: Path) -> float:
    rows = [r.split(",") for r in (run / "loss.csv").read_text().splitlines()]
    col = rows[0].index("samples_per_s")
    return 16 / float(rows[-1][col])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", type=Path, default=Path("/tmp/scale"))
    p.add_argument("--hours", type=float, nargs="+", default=[1, 8, 64])
    p.add_argument("--prep-hours", type=float, default=8)
    p.add_argument("--reprep-hours", type=float, nargs="+", default=[8, 64])
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--parts", nargs="+", default=["memory", "prep", "reprep", "assembly"])
    args = p.parse_args()
    print(f"# {' '.join(sys.argv)}  ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPUs, torch {torch.__version__})")
    args.root.mkdir(parents=True, exist_ok=True)
    if "memory" in args.parts:
        memory_table(args.root, args.hours)
    if "prep" in args.parts:
        preparation_table(args.root, args.prep_hours, args.repeats)
    if "reprep" in args.parts:
        repreparation_table(args.root, args.reprep_hours, args.repeats)
    if "assembly" in args.parts:
        assembly_table(args.root, max(args.hours), 200)


if __name__ == "__main__":
    main()

"""Print a recipe's result tables (markdown) from what recipes/run.sh left in OUT_DIR.

    python recipes/tables.py runs/recipe-notes
"""

from __future__ import annotations

import json
import os
import platform
import re
import sys
from pathlib import Path

import torch


def seconds_from_log(path: Path) -> str:
    """'done: step N in X s' lines of a train or vocoder-train log -> 'X s for N steps', X summed over the
    sessions logged (run.sh appends, so a continued or re-run recipe counts each session once), or '-'."""
    if not path.exists():
        return "-"
    found = re.findall(r"done: step (\d+) in (\d+) s", path.read_text())
    return f"{sum(int(s) for _, s in found)} s for {found[-1][0]} steps" if found else "-"


def vocoder_training(out: Path) -> str:
    """How long the trained vocoder trained, on what: from its own record (evaluate vocoder --json)."""
    rows = json.loads((out / "vocoders.json").read_text()) if (out / "vocoders.json").exists() else {}
    t = next((r["training"] for r in rows.values() if "training" in r), None)
    if t is None:
        return seconds_from_log(out / "logs" / "vocoder.log")
    return f"{t['seconds']:.0f} s for {t['step']} steps on {t['hardware']}"


def ci(s: dict, key: str, digits: int) -> str:
    lo, hi = s[f"{key}_ci"]
    return f"{s[key]:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def vocoder_table(out: Path) -> list[str]:
    rows = json.loads((out / "vocoders.json").read_text())
    speech = "pesq_wb" in next(iter(rows.values()))
    lines = ["| vocoder | LSD dB | logmel L1 | MR-STFT | STFT-u | SNR dB | CPU RTF |" + (" PESQ-wb | STOI |" if speech else ""),
             "|---|---|---|---|---|---|---|" + ("---|---|" if speech else "")]
    for name, r in rows.items():
        label = "trained (Vocos-style)" if "/" in name and not name.startswith(("griffinlim", "pghi")) else name
        lines.append(f"| {label} | {r['lsd_db']:.2f} | {r['mel_l1']:.3f} | {r['mr_stft']:.3f} | "
                     f"{r.get('stft_unseen', float('nan')):.3f} | {r['snr_db']:.1f} | "
                     f"{r['rtf']:.4f} |" + (f" {r['pesq_wb']:.2f} | {r['stoi']:.3f} |" if speech else ""))
    first = next(iter(rows.values()))
    how = first.get("sample", f"{first['clips']} held-out clips")
    return [f"Round trips of {how} (mel -> vocoder -> audio vs the original). logmel L1: L1 of ln sqrt(power mel); "
            "MR-STFT includes two of the trained vocoder's loss resolutions, STFT-u (1536/384) none:", ""] + lines


def generated_table(out: Path) -> tuple[list[str], list[str]]:
    files = sorted((out / "generated").glob("*.json"))
    lines = ["| sampler | steps | vocoder | clips | melstats FD | melstats KID | embedder FD | IS | class accuracy |",
             "|---|---|---|---|---|---|---|---|---|"]
    per_label, floor = [], None
    for f in files:
        r = json.loads(f.read_text())
        sampler, steps, voc = re.match(r"^(.*?)-(\d+)-(.+)$", f.stem).groups()  # e.g. dpmpp-2m-10-griffinlim
        m, e = r["melstats"], r["embedder"]
        g = e.get("generated_classes", {})
        acc = f"{g['accuracy']:.3f}" if "accuracy" in g else "-"
        voc = voc if voc in ("griffinlim", "pghi") else "trained"
        lines.append(f"| {sampler} | {steps} | {voc} | {m['generated']['clips']} | {ci(m['generated'], 'fd', 1)} | "
                     f"{ci(m['generated'], 'kid', 3)} | {ci(e['generated'], 'fd', 1)} | {g.get('is', float('nan')):.2f} | {acc} |")
        floor = floor or r
        if "per_label" in g:
            per_label.append((f"{sampler}-{steps}, {voc}", g["per_label"]))
    if floor:
        m, e = floor["melstats"], floor["embedder"]
        ref_is = e.get("reference_classes", {}).get("is", float("nan"))
        lines.append(f"| held-out clips not in the reference (floor) | - | - | {m['floor']['clips']} | {ci(m['floor'], 'fd', 1)} | "
                     f"{ci(m['floor'], 'kid', 3)} | {ci(e['floor'], 'fd', 1)} | {ref_is:.2f} (held-out) | - |")
    label_lines = []
    if per_label:
        names = list(per_label[0][1])
        label_lines = ["| generated with | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        label_lines += [f"| {what} | " + " | ".join(f"{acc[n][0]:.2f}" for n in names) + " |" for what, acc in per_label]
    return lines, label_lines


def main(out: Path) -> None:
    print(f"Machine: {platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"torch {torch.__version__}.")
    print(f"Diffusion model training: {seconds_from_log(out / 'logs' / 'train.log')}; "
          f"vocoder training: {vocoder_training(out)}.\n")
    if (out / "vocoders.json").exists():
        print("\n".join(vocoder_table(out)) + "\n")
    lines, label_lines = generated_table(out)
    print("Generated vs held-out clips (95% bootstrap intervals; lower FD/KID is better):\n")
    print("\n".join(lines) + "\n")
    if label_lines:
        print("Classifier accuracy of generated clips per intended label:\n")
        print("\n".join(label_lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]))

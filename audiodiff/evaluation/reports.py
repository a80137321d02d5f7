"""Plain-text reports of evaluation results (the dicts that evaluate.py returns), as the CLI prints them."""

from __future__ import annotations

from pathlib import Path


def _score(s: dict) -> str:
    return (f"{s['name']:14} {s['clips']:5d}  FD {s['fd']:8.2f} [{s['fd_ci'][0]:.2f}, {s['fd_ci'][1]:.2f}]  "
            f"KID {s['kid']:8.4f} [{s['kid_ci'][0]:.4f}, {s['kid_ci'][1]:.4f}]")


def generated_report(results: dict, ref_dir: Path, ref_count: int) -> list[str]:
    """Lines for `evaluate.evaluate_folders`' results: per embedding space, the generated set and the floor,
    warnings, the memorization check and class scores."""
    lines = []
    failed = results["melstats"]["failed_clips"]
    if failed:
        scored = results["melstats"]["generated"]["clips"]
        lines.append(f"FAILED: {len(failed)} of {len(failed) + scored} generated files could not be scored "
                     f"(first: {failed[0]})")
    for space, result in results.items():
        if space == "stereo":
            continue
        lines.append(f"{space} embedding, reference: {result['reference_clips']} of the {ref_count} clips in "
                     f"{ref_dir}, 95% bootstrap intervals")
        lines.append(_score(result["generated"]))
        lines.append(_score(result["floor"]) + "   <- real-vs-real floor (held-out clips not in the reference)")
        lines += [f"warning: {w}" for w in result["warnings"]]
        if "memorization" in result:
            m = result["memorization"]
            lines.append(f"memorization: median distance to nearest training clip {m['median_gen_to_train']:.2f} "
                         f"(reference clips: {m['median_ref_to_train']:.2f}); {100 * m['too_close']:.0f}% of "
                         "generated clips closer than 95% of reference clips (about 5% expected without copying)")
        for name in ("generated_classes", "reference_classes"):
            if name in result:
                c = result[name]
                acc = f", class accuracy {c['accuracy']:.3f}" if "accuracy" in c else ""
                lines.append(f"{name.split('_')[0]:14} IS {c['is']:.2f}, modified IS {c['modified_is']:.2f}{acc}")
                if "per_label" in c:
                    lines.append("accuracy per label: "
                                 + ", ".join(f"{k} {a:.2f} ({n})" for k, (a, n) in c["per_label"].items()))
    if "stereo" in results:
        lines.append("stereo image, mean [5%, 95%]: inter-channel correlation, |level difference L/R| dB")
        for name in ("generated", "reference"):
            s = results["stereo"][name]
            if s is None:
                lines.append(f"{name:14} no stereo clips")
                continue
            corr, level = s["correlation"], s["abs_level_db"]
            lines.append(f"{name:14} {corr[0]:.3f} [{corr[1]:.3f}, {corr[2]:.3f}], {level[0]:.2f} [{level[1]:.2f}, "
                         f"{level[2]:.2f}] dB ({s['clips']} clips)")
    return lines


def vocoder_report(rows: dict[str, dict], how: str, speech: bool, where: str) -> list[str]:
    """Lines for `evaluate.compare_vocoders`' rows: a table, PESQ/STOI coverage, training records, legends.
    where: the device and thread count the real-time factors were measured with."""
    lines = [f"clips: {how}",
             f"{'vocoder':20} {'clips':>5} {'LSD dB':>7} {'logmel L1':>9} {'MR-STFT':>8} {'STFT-u':>7} {'SNR dB':>7} "
             f"{'RTF':>7}" + (f" {'PESQ-wb':>7} {'STOI':>6}" if speech else "")]
    for name, r in rows.items():
        lines.append(f"{name:20} {r['clips']:5d} {r['lsd_db']:7.2f} {r['mel_l1']:9.3f} {r['mr_stft']:8.3f} "
                     f"{r['stft_unseen']:7.3f} {r['snr_db']:7.1f} {r['rtf']:7.4f}"
                     + (f" {r['pesq_wb']:7.2f} {r['stoi']:6.3f}" if speech else ""))
    if speech:
        r = next(iter(rows.values()))
        lines.append(f"PESQ-wb defined on {r['pesq_wb_clips']}, STOI on {r['stoi_clips']} of {r['clips']} clips "
                     "(STOI needs about 30 frames, ~0.4 s, of speech)")
    for name, r in rows.items():
        if "training" in r:
            t = r["training"]
            lines.append(f"{name}: trained {t.get('step', '?')} steps in {t.get('seconds', 0) / 60:.1f} min "
                         f"on {t.get('hardware', 'unknown hardware')}")
    lines.append("logmel L1: L1 of ln sqrt(power mel) (not HiFi-GAN's magnitude-mel L1); MR-STFT at 512/128, 2048/512 "
                 "and 256/64 (the first two are also the trained vocoder's loss resolutions); STFT-u: the same "
                 "distance at 1536/384, a resolution no vocoder trained on")
    lines.append(f"RTF: seconds of computing per second of audio on {where} (other load on the machine inflates it)")
    return lines

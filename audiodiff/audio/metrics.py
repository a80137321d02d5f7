"""Paired distances between a reference waveform and an estimate of it (vocoder round trips).

All take float waveforms [T] or [B, T] at the same sample rate and return a Python float (the
mean over the batch). Lower is better for every metric except SNR.
"""

from __future__ import annotations

import warnings

import torch
from torch import Tensor

from .mel import MelSpectrogram

# (n_fft, hop_length) of the MR-STFT score, as in Yamamoto et al. 2020. For the default 1024/256 mel, the
# first two are also resolutions of the trained vocoder's own loss (training.vocoder.LOSS_SCALES), so that
# vocoder is scored partly on what it was fitted to; UNSEEN_STFT_RESOLUTION is none of its loss resolutions.
MR_STFT_RESOLUTIONS = ((512, 128), (2048, 512), (256, 64))
UNSEEN_STFT_RESOLUTION = ((1536, 384),)
_EPS = 1e-5


def _pair(ref: Tensor, est: Tensor) -> tuple[Tensor, Tensor]:
    ref, est = torch.as_tensor(ref).float(), torch.as_tensor(est).float()
    n = min(ref.shape[-1], est.shape[-1])
    return ref[..., :n].reshape(-1, n), est[..., :n].reshape(-1, n)


def log_mel_distance(ref: Tensor, est: Tensor, mel: MelSpectrogram) -> Tensor:
    """Mean |ln sqrt(P_ref) - ln sqrt(P_est)| where P is the power mel (mel filterbank on |STFT|^2), sqrt(P)
    clamped at 1e-5: half the L1 distance of natural-log power mels. Not HiFi-GAN's / Vocos' mel L1, which
    applies the filterbank to |STFT| (a magnitude mel); the two differ, so the figures are not comparable
    with theirs. float waveforms [B, T] -> scalar tensor (differentiable: the trained vocoder's loss)."""
    a = mel.power_mel(ref).clamp_min(_EPS**2).sqrt().log()
    b = mel.power_mel(est).clamp_min(_EPS**2).sqrt().log()
    return (a - b).abs().mean()


def mr_stft_distance(ref: Tensor, est: Tensor, resolutions: tuple[tuple[int, int], ...],
                     pooled: bool = False) -> Tensor:
    """Mean over resolutions of spectral convergence + mean |ln S_ref - ln S_est| (Yamamoto et al. 2020);
    float waveforms [B, T] -> scalar tensor (differentiable). pooled: spectral convergence over the whole
    batch, not per clip (a training loss: a near-silent segment would blow up its own ratio)."""
    total = ref.new_zeros(())
    dims = (-3, -2, -1) if pooled else (-2, -1)
    for n_fft, hop in resolutions:
        w = torch.hann_window(n_fft, device=ref.device)
        a, b = (torch.stft(x, n_fft, hop, window=w, return_complex=True).abs().clamp_min(_EPS) for x in (ref, est))
        sc = (a - b).square().sum(dims).sqrt() / a.square().sum(dims).sqrt().clamp_min(_EPS)
        total = total + (sc + (a.log() - b.log()).abs().mean(dim=(-2, -1))).mean()
    return total / len(resolutions)


def mel_l1(ref: Tensor, est: Tensor, mel: MelSpectrogram) -> float:
    """`log_mel_distance` as a float: L1 of ln sqrt(power mel), half the L1 of natural-log power mels."""
    return float(log_mel_distance(*_pair(ref, est), mel))


def mr_stft(ref: Tensor, est: Tensor, resolutions: tuple[tuple[int, int], ...] = MR_STFT_RESOLUTIONS) -> float:
    """Multi-resolution STFT distance: mean over resolutions of spectral convergence + mean |ln S_ref - ln S_est|.
    With UNSEEN_STFT_RESOLUTION it is the same distance at one resolution no trained vocoder's loss uses."""
    return float(mr_stft_distance(*_pair(ref, est), resolutions))


def snr_db(ref: Tensor, est: Tensor) -> float:
    """Waveform SNR in dB, 10 log10(|ref|^2 / |ref - est|^2). Phase-sensitive: low for any phase retrieval."""
    ref, est = _pair(ref, est)
    num = ref.square().sum(-1)
    den = (ref - est).square().sum(-1).clamp_min(1e-12)
    return float((10 * torch.log10(num.clamp_min(1e-12) / den)).mean())


def log_spectral_distance(ref: Tensor, est: Tensor, n_fft: int = 2048, hop_length: int = 512) -> float:
    """LSD in dB: per frame sqrt(mean_f (10 log10 P_ref - 10 log10 P_est)^2), averaged over frames (power floor 1e-10)."""
    ref, est = _pair(ref, est)
    w = torch.hann_window(n_fft)
    p_ref, p_est = (torch.stft(x, n_fft, hop_length, window=w, return_complex=True).abs().square() for x in (ref, est))
    diff = 10 * torch.log10(p_ref.clamp_min(1e-10)) - 10 * torch.log10(p_est.clamp_min(1e-10))
    return float(diff.square().mean(dim=-2).sqrt().mean())


def speech_scores(ref: Tensor, est: Tensor, sample_rate: int) -> dict[str, float]:
    """PESQ wide-band (ITU-T P.862.2, 16 kHz only) and STOI of one speech clip, when the optional `pesq`
    and `pystoi` packages are installed (`pip install audiodiff[speech]`). NaN where a score is undefined
    (PESQ finds no utterance; STOI has under 30 frames of speech). Raises ImportError naming the extra if they are missing."""
    try:
        from pesq import BufferTooShortError, NoUtterancesError, pesq
        from pystoi import stoi
    except ImportError:
        raise ImportError("speech scores need the optional packages: pip install pesq pystoi") from None
    ref, est = _pair(ref, est)
    a, b = ref[0].double().numpy(), est[0].double().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi warns, and returns 1e-5, when speech is under ~30 frames
        value = float(stoi(a, b, sample_rate, extended=False))
    out = {"stoi": value if value > 1e-5 else float("nan"), "pesq_wb": float("nan")}
    if sample_rate == 16000:
        try:
            out["pesq_wb"] = float(pesq(16000, a, b, "wb"))
        except (NoUtterancesError, BufferTooShortError):  # undefined for this clip: no speech, or too short
            pass  # any other error (bad input, out of memory) propagates
    return out

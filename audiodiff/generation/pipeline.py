"""Load a trained run and generate audio: noise -> sampler(unet, schedule) -> mel inverse -> vocoder -> audio.

    >>> from audiodiff import SpectrogramDiffusion
    >>> pipe = SpectrogramDiffusion.load("runs/notes")
    >>> out = pipe.generate(4, steps=50, seed=0)      # out.audio: float32 [4, T] ([4, 2, T] stereo), out.sample_rate
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import Tensor, nn

from ..audio.mel import MelSpectrogram
from ..config import Config, differences
from ..data.labels import clip_labels_recorded, data_label
from ..device import resolve_device
from ..diffusion.denoiser import autoguided, for_sampling
from ..diffusion.editing import (
    circular,
    ddim_invert,
    loop_audio,
    noised,
    outpaint,
    slerp,
    splice,
    strength_start,
    time_keep,
)
from ..diffusion.editing import inpaint as editing_inpaint
from ..diffusion.sampling import Model, ddim, item_noise
from ..diffusion.schedule import GaussianSchedule
from ..model.adapt import ema_model
from ..model.conditioning import from_config as conditioning_of
from ..model.conditioning import guided
from ..model.lora import set_scale
from ..model.unet import UNet
from ..runfolder import read_checkpoint
from ..vocoders.base import Vocoder
from .options import EACH_LABEL, Generated, Options, write_clips
from .representation import MAX_SECONDS, for_run


class SpectrogramDiffusion:
    """A trained spectrogram diffusion model (EMA weights) with its schedule, mel front end and vocoder."""

    def __init__(self, model: UNet, config: Config, vocoder: Vocoder | None = None,
                 device: str | torch.device | None = None, step: int = 0) -> None:
        self.device = resolve_device(device) if not isinstance(device, torch.device) else device
        self.config = config
        self.step = step
        self.model = for_sampling(model.to(self.device).eval(), config.diffusion)  # (x_t, t, y) on the chain
        self.schedule = GaussianSchedule.from_config(config.diffusion)
        self.rep = for_run(config, self.device, vocoder)  # audio <-> what the model sees (representation.py)

    def options(self, options: Options = Options(), **changes: Any) -> Options:
        """`options` with `changes`, and this run's own sampler, steps and guidance where they are None."""
        o = dataclasses.replace(options, **changes)
        sampler, steps = self.config.default_sampling()
        if o.sampler is None and o.eta is not None:
            sampler = "ddim"  # eta is DDIM's
        guidance = o.guidance
        if guidance is None and o.label is not None and o.autoguide_from is None:
            guidance = 0.0 if self.config.distill.method else self.config.sample.guidance
        interval = self.config.sample.interval() if o.guidance_interval is None else o.guidance_interval
        return dataclasses.replace(o, sampler=o.sampler or sampler, steps=o.steps or steps, guidance=guidance,
                                   guidance_interval=interval, label_mix=o.label_mix or self.config.sample.label_mix)

    def generate_options(self, options: Options = Options(), **changes: Any) -> Options:
        """`options` as `generate` resolves them: on a class-conditional run given no label (and not told
        `unconditional`), the clips take the run's labels in turn (EACH_LABEL), guided as the run says, unless
        its `[sample] each_label` is false."""
        o = self.options(options, **changes)
        if o.label is None and not o.unconditional and self.config.data.labels and self.config.sample.each_label:
            o = self.options(o, label=EACH_LABEL)
        if o.label == EACH_LABEL and o.label_mix == "data" and not any(self.config.data.label_counts):
            raise ValueError("label mix 'data': this run has no label counts (trained before they were recorded, or "
                             "on unlabelled clips); use 'even'")
        return o

    def clip_label(self, o: Options, seed: int) -> str | None:
        """The label that the output with this seed is sampled with. With EACH_LABEL and the "even" mix,
        labels[seed % len(labels)] (clip i of `generate` uses seed + i, so n clips from seed 0 take the first n
        labels, then start over); with the "data" mix, label k for a share of the seeds equal to its share of
        the training clips (`data_label`)."""
        labels, counts = self.config.data.labels, self.config.data.label_counts
        if o.label != EACH_LABEL or not labels:
            return o.label
        if (o.label_mix or self.config.sample.label_mix) == "data" and any(counts):
            return labels[data_label(seed, counts)]
        return labels[seed % len(labels)]

    @classmethod
    def load(cls, run: str | Path, device: str | torch.device | None = None, vocoder: Vocoder | None = None,
             lora_scale: float | None = None) -> SpectrogramDiffusion:
        """Rebuild the model from a run directory (newest checkpoint) or a checkpoint file alone. A LoRA run (audiodiff
        finetune --lora) is read with its base; lora_scale scales its adapters' update (default 1: as trained;
        0: the base)."""
        config, tensors, meta, path = read_checkpoint(run)
        model = ema_model(config, tensors, path)
        if lora_scale is not None:
            if not config.finetune.lora_rank:
                raise ValueError(f"{path}: --lora-scale is for LoRA runs (audiodiff finetune --lora); this one is not")
            set_scale(model, lora_scale)
        return cls(model, config, vocoder, device, int(meta.get("step", 0)))

    def use_vocoder(self, spec: str) -> None:
        """Switch the vocoder by spec, e.g. "griffinlim", "pghi", "griffinlim-64/pinv" (`vocoders.build_vocoder`)."""
        self.rep.use_vocoder(spec)

    @property
    def vocoder(self) -> Vocoder:
        return self.rep.vocoder

    @property
    def mel(self) -> MelSpectrogram:
        return self.rep.mel

    @property
    def sample_rate(self) -> int:
        return self.rep.sample_rate

    @property
    def channels(self) -> int:
        """Audio channels of the run's clips: 1 (mono) or 2 (stereo)."""
        return self.rep.channels

    def frames_for(self, seconds: float | None) -> int:
        """Frames covering `seconds` (default: the training crop); cut back to the samples asked for after decoding."""
        return self.config.data.crop_frames if seconds is None else self.rep.frames_for(seconds)

    @property
    def window(self) -> int:
        """Frames the network sees at once: the training crop, rounded up to what the UNet divides evenly."""
        f = self.config.unet.downsample_factor
        return -(-self.config.data.crop_frames // f) * f

    def generate(self, n: int = 1, seconds: float | None = None, loop: bool = False, options: Options = Options(),
                 **changes: Any) -> Generated:
        """n clips (`Options` for steps, sampler, seed, batch_size, label, guidance, ...); clip i depends only on
        seed + i (and steps, sampler, seconds), not on n or batch_size, up to float rounding: the same clip
        computed in a batch of another size can differ in its last bits (convolution kernels block the work
        differently per batch size); with the same n and batch_size it is bit-identical.

        Clips longer than the training crop are sampled window by window: the first window with `sampler`, each
        later one by outpainting (`editing.outpaint`: RePaint on DDIM steps, whatever the sampler).
        loop: sample circularly so the clip's end continues into its start; the length is rounded up to
        whole frames that the UNet divides evenly, and the audio is exactly that many hops long.
        """
        o = self.generate_options(options, **changes)
        model = self._conditioned(o)
        if loop:
            return self._generate_loop(n, seconds, o, model)
        frames = self.frames_for(seconds)
        f, w = self.config.unet.downsample_factor, self.window
        width = -(-frames // f) * f if frames <= w else w

        def draw(seeds: list[int]) -> Tensor:
            noise = self._noise(seeds, width)
            x = o.run(model(seeds), self.schedule, noise(), o.steps, noise)
            if frames > w:  # like every later window, the first one leaves its right edge to the next
                x = outpaint(model(seeds), self.schedule, x[..., : w - w // 8], frames, w, noise, o.steps,
                             silence=self.rep.silence, progress=o.progress)
            return x[..., :frames]

        num = None if seconds is None else round(seconds * self.sample_rate)
        return self._batched(n, o, draw, num)

    def _noise(self, seeds: list[int], frames: int):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return item_noise(generators, self.rep.shape(frames), self.device)

    def _batched(self, n: int, o: Options, draw: Callable[[list[int]], Tensor], num_samples: int | None,
                 vocode: Callable[[Tensor, list[int]], Tensor] | None = None) -> Generated:
        """Run draw(seeds) -> x [b, C, F, N] over batches of seeds seed..seed+n-1, decode, cut to num_samples."""
        if n < 1:
            raise ValueError(f"n must be at least 1, got {n}")
        vocode = vocode or self.rep.decode
        mels, wavs = [], []
        for start in range(0, n, o.batch_size):
            seeds = [o.seed + i for i in range(start, min(n, start + o.batch_size))]
            with torch.inference_mode():
                logmel = draw(seeds)
                wavs.append(vocode(logmel, seeds).cpu())
            mels.append(logmel.cpu())
        audio = torch.cat(wavs)
        if num_samples is not None:  # the vocoder gives (frames - 1) * hop samples: cut, or pad the last < hop
            audio = torch.nn.functional.pad(audio[..., :num_samples], (0, max(0, num_samples - audio.shape[-1])))
        return Generated(audio, self.sample_rate, torch.cat(mels))

    def _generate_loop(self, n: int, seconds: float | None, o: Options,
                       model: Callable[[list[int]], Model]) -> Generated:
        f = self.config.unet.downsample_factor
        frames = self.window if seconds is None else self.rep.frames_for(seconds) - 1  # a period: N frames, N hops
        frames = -(-frames // f) * f

        def draw(seeds: list[int]) -> Tensor:
            noise = self._noise(seeds, frames)
            return o.run(circular(model(seeds)), self.schedule, noise(), o.steps, noise)

        def decode(x: Tensor, seeds: list[int]) -> Tensor:
            return loop_audio(self.rep.decode, x, seeds, self.rep.samples_for(x.shape[-1] + 1),
                              self.rep.config.n_fft)

        return self._batched(n, o, draw, None, decode)

    def write_generated(self, out: Path, result: Generated, o: Options, autoguidance: float | None = None
                        ) -> tuple[list[Path], bool]:
        """Write `generate`'s clips as sample_NNN.wav + .png, each titled with its sampler, seed, label and guidance;
        a conditional run's labels go to out/metadata.csv. Returns (the WAVs, whether the labels were recorded:
        False only where an existing metadata.csv without a path column kept them out)."""
        n = len(result.audio)
        what = f", guidance {o.guidance:g}" if o.guidance else ""
        what += f" at t {o.guidance_interval[0]:g}..{o.guidance_interval[1]:g}" if o.guidance and o.guidance_interval else ""
        what += f", autoguidance {autoguidance:g}" if autoguidance is not None else ""
        labels = [self.clip_label(o, o.seed + i) for i in range(n)] if o.label is not None else None
        titles = [f"{o.sampler} {o.steps} steps, seed {o.seed + i}, step {self.step}"
                  + (f", {labels[i]}" if labels else "") + what for i in range(n)]
        paths = write_clips(out, result, self.config.mel, titles=titles, labels=labels)
        return paths, not labels or clip_labels_recorded(out, [p.name for p in paths])

    # ---- editing: the chain started from a given clip (editing.py holds the math) ----

    def _pad(self, logmel: Tensor) -> Tensor:
        """Pad frames on the right, repeating the last one, to a width the UNet divides evenly."""
        f = self.config.unet.downsample_factor
        return torch.nn.functional.pad(logmel, (0, -logmel.shape[-1] % f, 0, 0), mode="replicate")

    def vary(self, wav: np.ndarray, strength: float, n: int = 1, options: Options = Options(), **changes: Any) -> Generated:
        """Variations of a clip (SDEdit): noise its mel to timestep strength * T and denoise with the sampler.

        strength 0 returns the clip itself (audio and mel unchanged); 1 starts from nearly pure noise, an
        unrelated sample. Uses round(strength * steps) network steps. Output has the input's length.
        """
        o, wav = self.options(options, **changes), self.rep.audio(wav)
        start, k = strength_start(self.schedule, strength, o.steps)
        model = self._conditioned(o)
        known = self.rep.encode(wav)
        frames, x0 = known.shape[-1], self._pad(known)

        def draw(seeds: list[int]) -> Tensor:
            if start is None:
                return known.expand(len(seeds), -1, -1, -1)
            noise = self._noise(seeds, x0.shape[-1])
            x = noised(self.schedule, x0.expand(len(seeds), -1, -1, -1), start, noise())
            return o.run(model(seeds), self.schedule, x, k, noise, start=start)[..., :frames]

        out = self._batched(n, o, draw, wav.shape[-1])
        if start is None:
            out = out._replace(audio=torch.from_numpy(wav)[None].repeat(n, *[1] * wav.ndim))
        return out

    def inpaint(self, wav: np.ndarray, start: float, end: float, band: tuple[float, float] | None = None,
                n: int = 1, resample: int = 1, fade: int = 3, options: Options = Options(), **changes: Any) -> Generated:
        """Regenerate seconds start..end of a clip (only mel bins within band = (lo_hz, hi_hz) if given), keeping
        the rest: the kept mel is re-imposed at every step (RePaint; resample > 1 for its back-and-forth).

        The kept region of the mel equals the input's except `fade` frames at each edge, where the two
        crossfade. For a time span, the audio outside it is the input's samples too, crossfaded over the
        same frames; with a band, all of the audio comes from the vocoder.
        """
        o, wav = self.options(options, **changes), self.rep.audio(wav)
        known = self.rep.encode(wav)
        frames, length = known.shape[-1], wav.shape[-1]
        duration = length / self.sample_rate
        if not 0 <= start < end or start >= duration:
            raise ValueError(f"need 0 <= start < end and start < {duration:.3f} s (the clip), got {start}..{end}")
        a, b = self.rep.frame_of(start), min(frames, self.rep.frame_of(end, up=True) + 1)
        bins = None if band is None else self.rep.band(*band)
        x0 = self._pad(known)
        keep = time_keep(tuple(x0.shape), a, b, bins).to(self.device)  # padding is kept: no crossfade at the end
        model = self._conditioned(o)

        def draw(seeds: list[int]) -> Tensor:
            noise = self._noise(seeds, x0.shape[-1])
            return editing_inpaint(model(seeds), self.schedule, noise(), o.steps, noise, known=x0, keep=keep,
                                   resample=resample, fade=fade, progress=o.progress)[..., :frames]

        out = self._batched(n, o, draw, length)
        if band is None:
            kept = torch.ones(length)
            kept[min(length, self.rep.samples_for(a + 1)) : min(length, self.rep.samples_for(b) + 1)] = 0.0
            out = out._replace(audio=splice(wav, out.audio, kept, self.rep.samples_for(fade + 1)))
        return out

    def make_loop(self, wav: np.ndarray, seam: float = 0.25, n: int = 1, resample: int = 1, fade: int = 3,
                  options: Options = Options(), **changes: Any) -> Generated:
        """Make a clip loop: redraw `seam` seconds around the join of its end to its start, so that played on repeat
        it has no seam. The clip is turned half round (its join then sits in the middle, its middle at the ends),
        inpainted over the join, and turned back; every other sample is the input's own, so the end still runs
        into the start sample by sample."""
        wav = self.rep.audio(wav)
        length, hop = wav.shape[-1], self.config.mel.hop_length
        if not 0 < seam < length / self.sample_rate / 2:
            raise ValueError(f"seam must be in (0, {length / self.sample_rate / 2:.3f}) s (half the clip), got {seam}")
        half = length // 2 // hop * hop  # whole hops, so the mel turns back by whole frames
        join = (length - half) / self.sample_rate  # where the input's end meets its start once turned
        out = self.inpaint(np.roll(wav, -half, axis=-1), join - seam / 2, join + seam / 2, n=n, resample=resample,
                           fade=fade, options=options, **changes)
        return out._replace(audio=torch.roll(out.audio, half, dims=-1),
                            logmel=torch.roll(out.logmel, half // hop, dims=-1))

    def extend(self, wav: np.ndarray, seconds: float, n: int = 1, overlap: float = 0.5, fade: int = 3,
               resample: int = 1, options: Options = Options(), **changes: Any) -> Generated:
        """Continue a clip by `seconds` (outpainting window by window; each window keeps `overlap` of itself
        from what came before). The input's own samples are kept, crossfaded into the continuation over
        `fade` frames before its end."""
        o, wav = self.options(options, **changes), self.rep.audio(wav)
        if not 0 < seconds <= MAX_SECONDS:
            raise ValueError(f"seconds must be in (0, {MAX_SECONDS}], got {seconds}")
        valid = self.rep.context_frames(wav.shape[-1])
        known = self.rep.encode(wav)[..., :valid]
        total = wav.shape[-1] + round(seconds * self.sample_rate)
        frames = self.frames_for(total / self.sample_rate)
        model = self._conditioned(o)

        def draw(seeds: list[int]) -> Tensor:
            noise = self._noise(seeds, self.window)
            x = known.expand(len(seeds), -1, -1, -1)
            return outpaint(model(seeds), self.schedule, x, frames, self.window, noise, o.steps, overlap, fade,
                            resample, self.rep.silence, o.progress)

        out = self._batched(n, o, draw, total)
        kept = torch.zeros(total)
        kept[: self.rep.samples_for(valid)] = 1.0
        padded = np.pad(wav, [(0, 0)] * (wav.ndim - 1) + [(0, total - wav.shape[-1])])
        return out._replace(audio=splice(padded, out.audio, kept, self.rep.samples_for(fade + 1)))

    def interpolate(self, wav_a: np.ndarray, wav_b: np.ndarray, frames: int = 5, options: Options = Options(),
                    **changes: Any) -> Generated:
        """`frames` clips from a to b: DDIM-invert both mels to noise, slerp, decode with DDIM (unclipped).

        The log-mels are deterministic; seed + i seeds the vocoder of clip i (Griffin-Lim's initial phase).
        b is cut or padded with silence to a's length. The ends reconstruct a and b up to the
        inversion's error, which shrinks as steps grow.
        """
        o = self.options(options, **changes)
        if frames < 2:
            raise ValueError(f"frames must be at least 2 (the two ends), got {frames}")
        if self.config.distill.method:
            raise ValueError("interpolate inverts clips to noise along the ODE with DDIM, which a distilled "
                             f"(consistency) run cannot do; use its teacher, {self.config.distill.teacher}")
        wav_a, wav_b = self.rep.audio(wav_a), self.rep.audio(wav_b)
        ma = self.rep.encode(wav_a)
        n = ma.shape[-1]
        mb = self.rep.encode(wav_b)[..., :n]
        mb = torch.nn.functional.pad(mb, (0, n - mb.shape[-1]), value=self.rep.silence)
        with torch.inference_mode():
            z = ddim_invert(self.model, self.schedule, self._pad(torch.cat([ma, mb])), o.steps, progress=o.progress)
        ws = torch.linspace(0.0, 1.0, frames).tolist()
        zs = torch.cat([slerp(z[:1], z[1:], w) for w in ws])

        def draw(seeds: list[int]) -> Tensor:
            x = zs[seeds[0] - o.seed : seeds[-1] - o.seed + 1]
            return ddim(self.model, self.schedule, x, o.steps, lambda: torch.zeros_like(x), clip_x0=False,
                        progress=o.progress)[..., :n]

        return self._batched(frames, o, draw, wav_a.shape[-1])

    def weak_model(self, run: str | Path) -> nn.Module:
        """The EMA model of a checkpoint file or run folder (newest checkpoint), ready for sampling on this run's
        chain; refuses one whose mel, diffusion or labels differ from this run's (its outputs would not mix)."""
        config, tensors, _, path = read_checkpoint(run)
        found = differences(self.config.to_dict(), config.to_dict(),
                            ("mel", "diffusion", "data.labels", "data.channels"))
        differ = list(dict.fromkeys(name if name.startswith("data.") else name.split(".")[0] for name, _, _ in found))
        if differ:
            raise ValueError(f"{path}: cannot guide with it: its settings differ from this run's in {', '.join(differ)}")
        return for_sampling(ema_model(config, tensors, path).to(self.device).eval(), config.diffusion)

    def _conditioned(self, o: Options) -> Callable[[list[int]], Model]:
        """the seeds of a batch -> the model to sample them from, for o's label and guidance (resolved by
        `options`)."""
        label, guidance = o.label, o.guidance
        cond = conditioning_of(self.config)
        if label is not None and cond is None:
            raise ValueError(f"label {label!r}: this run is unconditional (trained without labels)")
        if label not in (None, EACH_LABEL):
            cond.encode(label, 1, self.device)  # an unknown label fails here, before any work

        def encode(seeds: list[int]) -> Tensor | None:
            if label is None:
                return None
            return torch.cat([cond.encode(self.clip_label(o, s), 1, self.device) for s in seeds])

        if o.autoguide_from is not None:
            weak = self.weak_model(o.autoguide_from)
            return lambda seeds: autoguided(self.model, weak, o.autoguidance, encode(seeds))
        if label is None:
            if guidance:
                raise ValueError("guidance needs a label: it pulls samples towards a class")
            return lambda seeds: self.model
        w = 0.0 if guidance is None else guidance
        return lambda seeds: guided(self.model, cond, encode(seeds), w, o.guidance_interval)



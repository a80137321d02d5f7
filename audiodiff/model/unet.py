"""A 2D UNet for denoising (Ho et al. 2020, with the ADM refinements of Dhariwal & Nichol 2021:
scale-shift timestep conditioning, residual up/down paths, multi-head self-attention at low
resolutions). It knows nothing about audio: [B, C, H, W] in, [B, C, H, W] out.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..config import UNetConfig
from .conditioning import ClassLabel, Conditioning


def timestep_embedding(t: Tensor, dim: int, max_period: float = 10000.0) -> Tensor:
    """Sinusoidal embedding of t [B] (float or long) -> float32 [B, dim] (Vaswani et al. 2017)."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _norm(channels: int) -> nn.GroupNorm:
    # up to 32 groups of at least 4 channels; the largest such count that divides `channels`
    groups = next(g for g in range(min(32, max(1, channels // 4)), 0, -1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def _zero(module: nn.Module) -> nn.Module:
    """Zero-initialized output layers make every residual branch start as the identity."""
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice, the timestep embedding applied as scale and shift after the second norm."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = _norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = _norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = _zero(nn.Conv2d(out_ch, out_ch, 3, padding=1))
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


def attention(q: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """Scaled dot-product attention laid out channels first, as the convolutions leave it:
    q, k, v [B, heads, d, T] -> v weighted by softmax over keys of q.k / sqrt(d), [B, heads, d, T].

    CUDA and MPS get torch's fused scaled_dot_product_attention. On CPU, torch's SDPA was slower, forward and
    backward, than these two matmuls and a softmax at this model's sizes (experiments/LOG.md, "CPU step parts").
    """
    if q.device.type != "cpu":
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return out.transpose(-1, -2)
    weights = torch.softmax((q * q.shape[-2] ** -0.5).transpose(-1, -2) @ k, dim=-1)  # [B, heads, T_q, T_k]
    return v @ weights.transpose(-1, -2)


class Attention(nn.Module):
    """Multi-head self-attention over all H*W positions."""

    def __init__(self, channels: int, head_channels: int) -> None:
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = _norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = _zero(nn.Conv2d(channels, channels, 1))

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3 * self.heads, c // self.heads, h * w)
        out = attention(*qkv.chunk(3, dim=1))  # q, k, v: channels [0, c), [c, 2c), [2c, 3c), by head
        return x + self.proj(out.reshape(b, c, h, w))


class FreqAttention(Attention):
    """Multi-head self-attention along the rows (frequency) only, with Attention's layers: each column (time frame)
    of [B, C, H, W] is a sequence of H tokens, told their row by a sinusoidal embedding added to the input of the
    queries, keys and values. Costs H^2 W per head against (H W)^2 for attention over all positions."""

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        rows = timestep_embedding(torch.arange(h, device=x.device), c).to(x.dtype)  # [H, C]
        qkv = self.qkv(self.norm(x) + rows.T[None, :, :, None])  # [B, 3C, H, W]
        # columns become the batch: [B, 3C, H, W] -> [B * W, 3 * heads, C / heads, H]
        qkv = qkv.permute(0, 3, 1, 2).reshape(b * w, 3 * self.heads, c // self.heads, h)
        out = attention(*qkv.chunk(3, dim=1))  # [B * W, heads, C / heads, H]
        return x + self.proj(out.reshape(b, w, c, h).permute(0, 2, 3, 1))


class Level(nn.Module):
    """Residual blocks at one resolution, each optionally followed by attention (over all positions, then along
    frequency)."""

    def __init__(self, chans: list[tuple[int, int]], emb_dim: int, attention: bool, cfg: UNetConfig,
                 freq_attention: bool = False) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(ResBlock(i, o, emb_dim, cfg.dropout) for i, o in chans)
        self.attns = nn.ModuleList(
            Attention(o, cfg.head_channels) if attention else nn.Identity() for _, o in chans
        )
        # None without it, so that runs made without it keep their parameter names
        self.freq_attns = None
        if freq_attention:
            self.freq_attns = nn.ModuleList(FreqAttention(o, cfg.head_channels) for _, o in chans)

    def block(self, i: int, h: Tensor, emb: Tensor) -> Tensor:
        """Block i, its attention and its frequency attention, if any."""
        h = self.attns[i](self.blocks[i](h, emb))
        return h if self.freq_attns is None else self.freq_attns[i](h)


class UNet(nn.Module):
    """Denoiser f_theta(x_t, t[, y]) predicting the schedule's target (v by default, or eps or x0):
    float [B, in_channels, H, W], timesteps [B] (and class ids [B]) -> float [B, in_channels, H, W].

    H and W need not be multiples of `config.downsample_factor`: inputs are zero-padded and the
    output cropped back, so any length along time works (the network is fully convolutional there,
    attention included).
    """

    def __init__(self, config: UNetConfig, conditioning: Conditioning | None = None) -> None:
        """conditioning: what the network is told besides (x_t, t) (conditioning.py); default class labels
        when config.num_classes > 0 (ids 0..n-1 and n for "no label"), else none."""
        super().__init__()
        self.config = cfg = config
        if conditioning is None and cfg.num_classes:
            conditioning = ClassLabel([str(i) for i in range(cfg.num_classes)])
        self.conditioning = conditioning
        ch = [cfg.channels * m for m in cfg.channel_mult]
        emb_dim = 4 * cfg.channels
        self.emb = nn.Sequential(nn.Linear(cfg.channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        # its null value ("no label") is learned too, for classifier-free guidance
        self.label_emb = conditioning.embedding(emb_dim) if conditioning is not None else None
        fold = cfg.patch ** 2  # channels per input channel after folding patch x patch blocks into them
        self.conv_in = nn.Conv2d((cfg.in_channels + cfg.row_position) * fold, ch[0], 3, padding=1)

        skips, prev = [ch[0]], ch[0]
        self.down, self.downsample = nn.ModuleList(), nn.ModuleList()
        for i, c in enumerate(ch):
            pairs = [(prev if j == 0 else c, c) for j in range(cfg.num_res_blocks)]
            self.down.append(Level(pairs, emb_dim, i in cfg.attention_levels, cfg, i in cfg.freq_attention_levels))
            skips += [c] * cfg.num_res_blocks
            prev = c
            if i < len(ch) - 1:
                self.downsample.append(nn.Conv2d(c, c, 3, stride=2, padding=1))
                skips.append(c)

        self.mid1 = ResBlock(prev, prev, emb_dim, cfg.dropout)
        self.mid_attn = Attention(prev, cfg.head_channels)
        self.mid2 = ResBlock(prev, prev, emb_dim, cfg.dropout)

        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i, c in reversed(list(enumerate(ch))):
            pairs = []
            for _ in range(cfg.num_res_blocks + 1):
                pairs.append((prev + skips.pop(), c))
                prev = c
            self.up.append(Level(pairs, emb_dim, i in cfg.attention_levels, cfg, i in cfg.freq_attention_levels))
            if i > 0:
                prev = ch[i - 1] if cfg.narrow_upsample else c
                self.upsample.append(nn.Conv2d(c, prev, 3, padding=1))
        self.norm_out = _norm(prev)
        self.conv_out = _zero(nn.Conv2d(prev, cfg.in_channels * fold, 3, padding=1))

    def forward(self, x: Tensor, t: Tensor, y: Tensor | None = None) -> Tensor:
        """y: the encoded condition [B, ...] of a conditional model (`conditioning.encode`; class ids for class
        labels), None = the null condition ("no label") for all."""
        h_in, w_in = x.shape[-2:]
        f = self.config.downsample_factor
        x = F.pad(x, (0, -w_in % f, 0, -h_in % f))
        emb = self.emb(timestep_embedding(t, self.config.channels).to(x.dtype))
        if self.label_emb is not None:
            y = self.conditioning.null(x.shape[0], x.device) if y is None else y
            emb = emb + self.label_emb(y)
        elif y is not None:
            raise ValueError("this UNet is unconditional but a condition (class labels) was given")

        if self.config.row_position:  # the row's place in the unpadded input, constant along time
            rows = torch.linspace(-1.0, 1.0, h_in, device=x.device, dtype=x.dtype)
            rows = F.pad(rows, (0, x.shape[-2] - h_in), value=1.0)
            x = torch.cat([x, rows[:, None].expand(x.shape[0], 1, -1, x.shape[-1])], dim=1)
        if self.config.patch > 1:
            x = F.pixel_unshuffle(x, self.config.patch)
        h = self.conv_in(x)
        skips = [h]
        for i, level in enumerate(self.down):
            for j in range(len(level.blocks)):
                h = level.block(j, h, emb)
                skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
                skips.append(h)

        h = self.mid2(self.mid_attn(self.mid1(h, emb)), emb)

        for i, level in enumerate(self.up):
            for j in range(len(level.blocks)):
                h = level.block(j, torch.cat([h, skips.pop()], dim=1), emb)
            if i < len(self.upsample):
                h = self.upsample[i](F.interpolate(h, scale_factor=2.0, mode="nearest"))

        out = self.conv_out(F.silu(self.norm_out(h)))
        if self.config.patch > 1:
            out = F.pixel_shuffle(out, self.config.patch)
        return out[..., :h_in, :w_in]

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from audiodiff.config import UNetConfig
from audiodiff.model.unet import Attention, FreqAttention, UNet, attention, timestep_embedding

from .conftest import tolerance

CFG = UNetConfig(channels=8, channel_mult=(1, 2, 2), num_res_blocks=1, attention_levels=(1, 2), head_channels=8)


def test_timestep_embedding_closed_form():
    e = timestep_embedding(torch.tensor([0, 3]), 8)
    assert e.shape == (2, 8)
    torch.testing.assert_close(e[0], torch.tensor([1.0] * 4 + [0.0] * 4))
    freqs = torch.exp(-torch.log(torch.tensor(10000.0)) * torch.arange(4) / 4)
    torch.testing.assert_close(e[1], torch.cat([torch.cos(3 * freqs), torch.sin(3 * freqs)]))


@pytest.mark.parametrize("shape", [(2, 1, 16, 16), (1, 1, 80, 64), (3, 1, 13, 37)])
def test_shapes_any_size(shape, device):
    model = UNet(CFG)
    nn_init_output(model)
    model.to(device)
    out = model(torch.randn(shape, device=device), torch.randint(0, 1000, (shape[0],), device=device))
    assert out.shape == shape and out.device.type == device.type and torch.isfinite(out).all()


def nn_init_output(model):
    """Give the zero-initialized output layers weights, so the output depends on the input."""
    torch.manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.Conv2d):
            torch.nn.init.normal_(m.weight, std=0.05)


def test_zero_initialized_output_and_gradients(device):
    model = UNet(CFG).to(device)
    x, t = torch.randn(2, 1, 16, 16, device=device), torch.tensor([1, 500], device=device)
    out = model(x, t)
    assert torch.count_nonzero(out) == 0  # every residual branch and the output conv start at zero
    (out - torch.randn_like(out)).square().mean().backward()  # a training loss: gradients reach the output layer
    assert model.conv_out.weight.grad.abs().sum() > 0


def test_timestep_and_batch_items_are_independent(device):
    model = UNet(CFG)
    nn_init_output(model)
    model.to(device).eval()
    x = torch.randn(2, 1, 16, 24, device=device)
    t900 = torch.tensor([900], device=device)
    both = model(x, torch.tensor([10, 900], device=device))
    assert not torch.allclose(both[0], model(x[:1], t900)[0])  # t matters
    tol = tolerance(device, 1e-5, 1e-3)
    torch.testing.assert_close(both[1:], model(x[1:], t900), atol=tol, rtol=tol * 10)


def test_bad_attention_level():
    with pytest.raises(ValueError, match="attention_levels"):
        UNetConfig(channel_mult=(1, 2), attention_levels=(2,))


def test_widths_not_divisible_by_32_groups_build():
    """48 x 3 = 144 channels: 32 GroupNorm groups do not divide it; the largest count <= 32 that does is used."""
    model = UNet(UNetConfig(channels=48, channel_mult=(1, 3), num_res_blocks=1, attention_levels=()))
    norms = [m for m in model.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert {(m.num_groups, m.num_channels) for m in norms} >= {(12, 48), (24, 144)}
    assert model(torch.randn(2, 1, 8, 8), torch.tensor([1, 2])).shape == (2, 1, 8, 8)


def test_narrow_upsample_outputs_finer_width():
    """With narrow_upsample each upsampling conv outputs the next finer level's width; the default keeps its own."""
    cfg = UNetConfig(channels=8, channel_mult=(1, 4, 8), num_res_blocks=1, attention_levels=(2,), head_channels=8)
    wide, narrow = UNet(cfg), UNet(dataclasses.replace(cfg, narrow_upsample=True))
    assert [(c.in_channels, c.out_channels) for c in wide.upsample] == [(64, 64), (32, 32)]
    assert [(c.in_channels, c.out_channels) for c in narrow.upsample] == [(64, 32), (32, 8)]
    # the first block after each upsampling takes that width plus the skip connection's
    assert narrow.up[1].blocks[0].conv1.in_channels == 32 + 32 and wide.up[1].blocks[0].conv1.in_channels == 64 + 32
    assert narrow.up[2].blocks[0].conv1.in_channels == 8 + 8 and wide.up[2].blocks[0].conv1.in_channels == 32 + 8
    nn_init_output(narrow)
    x = torch.randn(2, 1, 13, 37)
    out = narrow(x, torch.tensor([3, 700]))
    assert out.shape == x.shape and torch.isfinite(out).all()


def test_default_layout_unchanged_for_old_checkpoints():
    """Runs saved before narrow_upsample existed have no such key; their state dicts must still load."""
    keys = {k: tuple(v.shape) for k, v in UNet(CFG).state_dict().items()}
    assert keys["upsample.0.weight"] == (16, 16, 3, 3) and keys["upsample.1.weight"] == (16, 16, 3, 3)
    assert UNetConfig().narrow_upsample is False


def test_attention_matches_torch_sdpa_and_closed_form():
    q, k, v = torch.randn(3, 2, 4, 16, 37, dtype=torch.float64).unbind(0)  # [B, heads, d, T]
    ref = F.scaled_dot_product_attention(q.mT, k.mT, v.mT).mT  # torch's kernel, tokens in rows
    torch.testing.assert_close(attention(q, k, v), ref)
    # identical keys -> uniform weights -> every query gets the mean of the values
    same_keys = k[..., :1].expand_as(k)
    torch.testing.assert_close(attention(q, same_keys, v), v.mean(-1, keepdim=True).expand_as(v))


def test_attention_heads_keep_the_checkpoint_layout():
    """qkv channels are [q | k | v], each split into heads of head_channels, as saved runs expect."""
    torch.manual_seed(0)
    block = Attention(channels=16, head_channels=8).double()
    torch.nn.init.normal_(block.proj.weight)
    x = torch.randn(2, 16, 5, 3, dtype=torch.float64)
    qkv = block.qkv(block.norm(x)).reshape(2, 3, 2, 8, 15)  # [B, q/k/v, heads, d, T]
    q, k, v = qkv.mT.unbind(1)
    out = F.scaled_dot_product_attention(q, k, v).mT.reshape(2, 16, 5, 3)
    torch.testing.assert_close(block(x), x + block.proj(out))


@pytest.mark.parametrize("row_position", [False, True])
def test_row_position_tells_the_network_its_frequency(row_position):
    """On an input that is the same in every row, a convolutional net gives the same output in rows far from
    the edges (translation equivariance); with row_position it no longer does. Old configs keep their layout."""
    cfg = UNetConfig(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(), head_channels=8,
                     row_position=row_position)
    torch.manual_seed(0)
    model = UNet(cfg)
    assert model.conv_in.weight.shape[1] == 1 + row_position
    for p in model.parameters():  # wake the zero-initialized output layer
        torch.nn.init.normal_(p, std=0.05)
    x = torch.full((1, 1, 64, 8), 0.3)
    with torch.no_grad():
        out = model(x, torch.tensor([500]))
    same = torch.allclose(out[..., 24, :], out[..., 40, :], atol=1e-6)
    assert same != row_position
    assert model(torch.randn(2, 1, 13, 10), torch.tensor([1, 2])).shape == (2, 1, 13, 10)  # any height still works


def test_freq_attention_against_sdpa_per_column():
    """FreqAttention is scaled dot-product attention over the rows of each column, on normalized features plus
    sinusoidal row embeddings: checked against torch's SDPA on those inputs, column by column."""
    torch.manual_seed(0)
    block = FreqAttention(16, head_channels=8).double()
    torch.nn.init.normal_(block.proj.weight, std=0.1)
    x = torch.randn(2, 16, 5, 3, dtype=torch.float64)
    rows = timestep_embedding(torch.arange(5), 16).double()  # [H, C]
    qkv = block.qkv(block.norm(x) + rows.T[None, :, :, None])  # [B, 3C, H, W]
    for w in range(3):
        q, k, v = qkv[..., w].reshape(2, 3, 2, 8, 5).mT.unbind(1)  # [B, heads, H, d]
        out = F.scaled_dot_product_attention(q, k, v).mT.reshape(2, 16, 5)
        torch.testing.assert_close(block(x)[..., w], x[..., w] + block.proj(out[..., None])[..., 0])


def test_freq_attention_mixes_rows_not_columns_and_knows_its_row():
    torch.manual_seed(0)
    block = FreqAttention(8, head_channels=8)
    torch.nn.init.normal_(block.proj.weight, std=0.5)
    block.norm = torch.nn.Identity()  # GroupNorm's statistics span all columns; the attention's mixing does not
    x = torch.randn(1, 8, 12, 6)
    y = x.clone()
    y[..., 4, 2] += 1.0  # one row of one column
    with torch.no_grad():
        diff = (block(y) - block(x)).abs().sum(dim=1)[0]  # [H, W]
        assert diff[:, 2].gt(1e-6).all()  # every row of that column heard it
        assert diff[:, [0, 1, 3, 4, 5]].max() == 0  # no other column did
        # the row embedding breaks the symmetry: flipping the rows does not flip the output
        assert not torch.allclose(block(x.flip(2)), block(x).flip(2), atol=1e-4)


def test_freq_attention_levels_add_modules_only_where_asked():
    """Runs without it keep their parameter names (saved runs load); with it, the shapes are kept."""
    plain = UNet(CFG)
    assert not any("freq_attns" in k for k in plain.state_dict())
    with_freq = UNet(dataclasses.replace(CFG, freq_attention_levels=(0,)))
    names = [k for k in with_freq.state_dict() if "freq_attns" in k]
    assert names and all(k.startswith(("down.0.", "up.2.")) for k in names)
    with_freq.load_state_dict({**plain.state_dict(), **{k: with_freq.state_dict()[k] for k in names}})
    nn_init_output(with_freq)
    assert with_freq(torch.randn(2, 1, 16, 12), torch.tensor([1, 900])).shape == (2, 1, 16, 12)
    with pytest.raises(ValueError, match="freq_attention_levels"):
        UNetConfig(channel_mult=(1, 2), attention_levels=(1,), freq_attention_levels=(2,))


@pytest.mark.parametrize("row_position", [False, True])
def test_patch_is_an_unpatched_net_on_folded_input(row_position):
    """patch = 2 is the same network with patch**2 times the input channels, run on the input folded into 2 x 2
    blocks (the row channel folded with it) and its output unfolded: weights copied across, the outputs agree.
    Any size still works (padded to the patch and levels), and the output conv starts at zero."""
    kw = dict(channels=8, channel_mult=(1, 2), num_res_blocks=1, attention_levels=(1,), head_channels=8,
              num_classes=3)
    patched = UNet(UNetConfig(patch=2, row_position=row_position, **kw))
    assert patched.config.downsample_factor == 4
    x, t, y = torch.randn(2, 1, 16, 24, dtype=torch.float64), torch.tensor([3, 700]), torch.tensor([0, 2])
    assert torch.count_nonzero(patched.float()(x.float(), t, y)) == 0
    nn_init_output(patched)
    patched.double()
    plain = UNet(UNetConfig(in_channels=4, **kw)).double()
    assert patched.conv_in.weight.shape[1] == 4 * (1 + row_position)
    state = patched.state_dict()
    if row_position:  # the plain net gets the row channel, folded, as four more input channels
        rows = torch.linspace(-1.0, 1.0, 16, dtype=torch.float64)[:, None].expand(2, 1, 16, 24)
        x_plain = F.pixel_unshuffle(torch.cat([x, rows], dim=1), 2)
        plain.conv_in = torch.nn.Conv2d(8, 8, 3, padding=1).double()
    else:
        x_plain = F.pixel_unshuffle(x, 2)
    plain.load_state_dict(state)
    with torch.no_grad():
        out = patched(x, t, y)
        torch.testing.assert_close(out, F.pixel_shuffle(plain(x_plain, t, y), 2))
    assert out.abs().sum() > 0
    assert patched(torch.randn(1, 1, 13, 10, dtype=torch.float64), t[:1], y[:1]).shape == (1, 1, 13, 10)

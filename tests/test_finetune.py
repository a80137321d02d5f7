"""Fine-tuning (`audiodiff finetune`), LoRA adapters (lora.py), label growth (adapt.py) and `audiodiff merge`."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from audiodiff import checkpoint
from audiodiff.config import Config
from audiodiff.data.labels import labels_with
from audiodiff.generation.pipeline import SpectrogramDiffusion
from audiodiff.model import lora
from audiodiff.model.adapt import grow_labels
from audiodiff.model.unet import UNet
from audiodiff.run import Session
from audiodiff.runfolder import checkpoints, read_checkpoint

from .test_cli import invoke, run  # noqa: F401  (the tiny trained run fixture)


def random_unet(config: Config, seed: int = 0) -> UNet:
    """A UNet with every weight random (a fresh one outputs zeros: its output layers start at zero)."""
    torch.manual_seed(seed)
    model = UNet(config.unet).eval()
    for p in model.parameters():
        nn.init.normal_(p, std=0.1)
    return model


def inputs(config: Config, batch: int = 2):
    g = torch.Generator().manual_seed(1)
    return torch.randn(batch, 1, config.mel.n_mels, 16, generator=g), torch.tensor([3, 70][:batch])


def randomize_adapters(model: nn.Module) -> None:
    for a in lora.adapters(model).values():
        nn.init.normal_(a.up.weight, std=0.2)


def test_a_new_adapter_leaves_outputs_unchanged_and_freezes_the_base(tiny_config):
    model = random_unet(tiny_config)
    x, t = inputs(tiny_config)
    before = model(x, t)
    adapted = lora.add_adapters(model, 2, "conv")
    assert adapted and torch.equal(model(x, t), before)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(".adapter." in n for n in trainable)
    assert "conv_out" not in adapted  # 1 output channel: no rank-2 update is smaller than the layer


def test_the_update_is_the_low_rank_product_and_merging_keeps_the_function(tiny_config):
    layer = nn.Conv2d(6, 5, 3, padding=1)
    x = torch.randn(2, 6, 7, 9)
    plain = layer(x)
    wrapper = nn.Sequential(layer)
    lora.add_adapters(wrapper, 2, "conv")
    randomize_adapters(wrapper)
    a = layer.adapter
    expected = plain + nn.functional.conv2d(nn.functional.conv2d(x, a.down.weight, padding=1), a.up.weight)
    torch.testing.assert_close(wrapper(x), expected)
    delta = torch.einsum("or,rikl->oikl", a.up.weight[:, :, 0, 0], a.down.weight)  # U D as a 3x3 kernel
    torch.testing.assert_close(a.delta(), delta)

    model = random_unet(tiny_config)
    lora.add_adapters(model, 2, "all")
    randomize_adapters(model)
    x, t = inputs(tiny_config)
    unmerged = model(x, t)
    assert lora.merge(model) > 0 and not lora.adapters(model)
    torch.testing.assert_close(model(x, t), unmerged, atol=1e-5, rtol=1e-5)


def test_the_scale_blends_base_and_adapted(tiny_config):
    model = random_unet(tiny_config)
    x, t = inputs(tiny_config)
    base = model(x, t)
    lora.add_adapters(model, 2, "attention")
    randomize_adapters(model)
    full = model(x, t)
    lora.set_scale(model, 0.0)
    torch.testing.assert_close(model(x, t), base)
    lora.set_scale(model, 1.0)
    assert not torch.allclose(full, base)


def test_layer_choices_and_bad_ranks(tiny_config):
    model = random_unet(tiny_config)
    attention = lora.targets(model, "attention")
    conv, every = lora.targets(model, "conv"), lora.targets(model, "all")
    assert attention and set(attention) < set(conv) < set(every)
    assert all(name.endswith(("qkv", "proj")) for name in attention)
    for rank in (0, -1):
        with pytest.raises(ValueError, match="at least 1"):
            lora.add_adapters(copy.deepcopy(model), rank)
    with pytest.raises(ValueError, match="not below the widest"):
        lora.add_adapters(copy.deepcopy(model), 10_000)
    with pytest.raises(ValueError, match="unknown choice"):
        lora.add_adapters(copy.deepcopy(model), 2, "everything")


def test_labels_grow_keeping_old_ids_and_the_null_row():
    table = torch.arange(12.0).view(3, 4)  # labels a, b and the null row
    grown = grow_labels({"label_emb.weight": table}, 2, 4, 4)["label_emb.weight"]
    assert grown.shape == (5, 4)
    torch.testing.assert_close(grown[:2], table[:2])  # old labels keep their rows (ids)
    for row in (2, 3, 4):  # the new labels start as "no label", which moves to the end
        torch.testing.assert_close(grown[row], table[2])
    zero = grow_labels({}, 0, 2, 4)["label_emb.weight"]  # an unconditional base: zeros leave its outputs alone
    assert zero.shape == (3, 4) and not zero.any()
    assert labels_with(("a", "b"), ["b", "d", "c"], True, "x") == ("a", "b", "c", "d")
    assert labels_with(("a", "b"), ["b"], False, "x") == ("a", "b")
    with pytest.raises(ValueError, match="not trained on: c, d.*--new-labels"):
        labels_with(("a", "b"), ["b", "d", "c"], False, "x")


def test_finetune_full_and_lora_generate_resume_and_merge(tmp_path, run, audio_dir):  # noqa: F811
    """A full fine-tune starts at the base's EMA weights; a LoRA run stores only its adapters, loads with its base,
    resumes exactly, scales, and merges into a whole run that generates the same clips."""
    base_tensors, base_meta = checkpoint.read(checkpoints(run)[-1])
    full = tmp_path / "full"
    res = invoke("finetune", str(run), str(audio_dir), "--out", str(full), "--steps", "2", "--checkpoint-every", "1",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    assert "fine-tuning" in res.output and "memorization:" in res.output
    first = checkpoint.split(checkpoint.read(checkpoints(full)[0])[0], "model")
    assert set(first) == set(checkpoint.split(base_tensors, "ema"))

    out = tmp_path / "lora"
    args = ["finetune", str(run), str(audio_dir), "--out", str(out), "--lora", "2", "--no-progress"]
    assert invoke(*args, "--steps", "2", "--checkpoint-every", "1").exit_code == 0
    tensors, meta = checkpoint.read(checkpoints(out)[-1])
    stored = set(checkpoint.split(tensors, "ema"))
    assert stored and all(".adapter." in k for k in stored)  # no base weight is copied into the run
    config = read_checkpoint(out)[0]
    assert config.finetune.lora_rank == 2 and config.finetune.base_sha256 == base_meta["sha256"]
    assert checkpoint.read(checkpoints(run)[-1])[1]["sha256"] == base_meta["sha256"]  # the base was not written to

    res = invoke(*args, "--steps", "4", "--checkpoint-every", "2")  # continue to step 4 (options as stored)
    assert res.exit_code == 0 and "resuming from" in res.output, res.output
    again = tmp_path / "again"
    assert invoke("finetune", str(run), str(audio_dir), "--out", str(again), "--lora", "2", "--no-progress",
                  "--steps", "4", "--checkpoint-every", "2").exit_code == 0
    a, b = (checkpoint.split(checkpoint.read(checkpoints(r)[-1])[0], "ema") for r in (out, again))
    assert all(torch.equal(a[k], b[k]) for k in a)  # interrupted at 2 and resumed == straight to 4

    pipe = SpectrogramDiffusion.load(out)
    clips = pipe.generate(2, steps=3, seed=0).logmel
    base_clips = SpectrogramDiffusion.load(run).generate(2, steps=3, seed=0).logmel
    torch.testing.assert_close(SpectrogramDiffusion.load(out, lora_scale=0.0).generate(2, steps=3, seed=0).logmel,
                               base_clips)
    assert not torch.allclose(clips, base_clips)
    res = invoke("merge", str(out), "--out", str(tmp_path / "merged"))
    assert res.exit_code == 0, res.output
    merged = SpectrogramDiffusion.load(tmp_path / "merged")
    assert not read_checkpoint(tmp_path / "merged")[0].finetune.lora_rank
    torch.testing.assert_close(merged.generate(2, steps=3, seed=0).logmel, clips, atol=1e-4, rtol=1e-4)
    res = invoke("generate", str(out), "--out", str(tmp_path / "g"), "-n", "1", "--steps", "2", "--lora-scale", "0.5",
                 "--no-progress")
    assert res.exit_code == 0 and (tmp_path / "g" / "sample_000.wav").exists()


def test_refusals(tmp_path, run, audio_dir, tiny_config):  # noqa: F811
    out = tmp_path / "lora"
    assert invoke("finetune", str(run), str(audio_dir), "--out", str(out), "--lora", "2", "--steps", "1",
                  "--no-progress").exit_code == 0
    other = tmp_path / "other.toml"
    other.write_text(tiny_config.replace("mel", n_mels=8).to_toml())
    res = invoke("finetune", str(run), str(audio_dir), "--out", str(tmp_path / "x"), "--config", str(other))
    assert res.exit_code == 1 and "incompatible config: mel.n_mels: 16 in the base, 8 asked for" in res.output
    res = invoke("finetune", str(run), str(audio_dir), "--out", str(tmp_path / "y"), "--lora", "100000")
    assert res.exit_code == 1 and "LoRA rank 100000: not below" in res.output
    res = invoke("finetune", str(run), str(audio_dir), "--out", str(tmp_path / "z"), "--lora", "0")
    assert res.exit_code == 2  # click's range check
    res = invoke("generate", str(run), "--out", str(tmp_path / "g"), "--lora-scale", "0.5")
    assert res.exit_code == 1 and "is for LoRA runs" in res.output
    res = invoke("merge", str(run), "--out", str(tmp_path / "m"))
    assert res.exit_code == 1 and "not a LoRA run" in res.output
    res = invoke("finetune", str(out), str(audio_dir), "--out", str(tmp_path / "w"))
    assert res.exit_code == 1 and "a LoRA run; bake its adapter in first" in res.output

    base = checkpoints(run)[-1]
    base.rename(base.with_suffix(".moved"))  # a missing base, and the run's own link to it gone too
    (out / "base.safetensors").unlink()
    res = invoke("generate", str(out), "--out", str(tmp_path / "g"))
    assert res.exit_code == 1 and "base checkpoint" in res.output and "is missing" in res.output
    tensors, meta = checkpoint.read(base.with_suffix(".moved"))
    tensors["ema.conv_in.bias"] = tensors["ema.conv_in.bias"] + 1  # a changed base
    checkpoint.write(base, tensors, {k: v for k, v in meta.items() if k not in ("sha256", "checksum_covers")})
    res = invoke("generate", str(out), "--out", str(tmp_path / "g"))
    assert res.exit_code == 1 and "has changed" in res.output


def test_labels_need_new_labels_to_grow(tmp_path, audio_dir, tiny_config):
    for label in ("low", "high"):
        (audio_dir / label).mkdir()
    for i, f in enumerate(sorted(audio_dir.rglob("*.wav"))):
        f.rename(audio_dir / ("low" if i % 2 else "high") / f.name)
    for f in [*audio_dir.rglob("*.flac"), *audio_dir.rglob("*.ogg")]:
        f.unlink()
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    assert invoke("train", str(audio_dir), "--out", str(tmp_path / "run"), "--config", str(cfg),
                  "--no-progress").exit_code == 0
    (audio_dir / "mid").mkdir()
    (audio_dir / "low").iterdir().__next__().rename(audio_dir / "mid" / "moved.wav")
    args = ["finetune", str(tmp_path / "run"), str(audio_dir), "--steps", "1", "--no-progress", "--lora", "2"]
    res = invoke(*args, "--out", str(tmp_path / "ft"))
    assert res.exit_code == 1 and "labels the base run was not trained on: mid" in res.output
    res = invoke(*args, "--out", str(tmp_path / "ft"), "--new-labels")
    assert res.exit_code == 0 and "new labels: mid" in res.output, res.output
    config = read_checkpoint(tmp_path / "ft")[0]
    assert config.data.labels == ("high", "low", "mid") and config.unet.num_classes == 3
    wavs = len(list(audio_dir.rglob("*.wav")))
    assert config.data.label_counts == (wavs // 2, wavs - wavs // 2 - 1, 1)  # the fine-tune's data, counted
    res = invoke("generate", str(tmp_path / "ft"), "--out", str(tmp_path / "g"), "-n", "1", "--steps", "2",
                 "--label", "mid", "--no-progress")
    assert res.exit_code == 0, res.output


def test_near_copies_is_about_five_percent_for_new_clips_and_one_for_copies():
    from audiodiff.evaluation.distances import near_copies

    rng = torch.Generator().manual_seed(0)
    train = torch.randn(400, 6, generator=rng).numpy()
    new = torch.randn(400, 6, generator=rng).numpy()
    copies = train[:50] + 1e-3
    assert 0.01 < near_copies(train, new)["too_close"] < 0.12
    assert near_copies(train, copies)["too_close"] == 1.0


def test_export_is_small_generates_alike_and_is_a_base(tmp_path, run, audio_dir):  # noqa: F811
    out = tmp_path / "exported"
    res = invoke("export", str(run), "--out", str(out))
    assert res.exit_code == 0, res.output
    tensors, _ = checkpoint.read(checkpoints(out)[-1])
    assert all(k.startswith("ema.") and v.dtype == torch.float16 for k, v in tensors.items())
    full = checkpoints(run)[-1].stat().st_size
    assert checkpoints(out)[-1].stat().st_size < full / 4  # no model copy, no optimizer, half the bytes
    a = SpectrogramDiffusion.load(run).generate(2, steps=3, seed=0).logmel
    b = SpectrogramDiffusion.load(out).generate(2, steps=3, seed=0).logmel
    torch.testing.assert_close(a, b, atol=0.05, rtol=0.0)  # float16 weights
    res = invoke("finetune", str(out), str(audio_dir), "--out", str(tmp_path / "ft"), "--steps", "1", "--lora", "2",
                 "--no-progress")
    assert res.exit_code == 0, res.output
    res = invoke("train", str(audio_dir), "--out", str(out), "--no-progress")
    assert res.exit_code == 1 and "cannot be trained further" in res.output
    again = tmp_path / "again"  # a copy of the copy, told how to sample: the same tensors, the first run named
    res = invoke("export", str(out), "--out", str(again), "--sampler", "dpmpp-2m", "--steps", "10")
    assert res.exit_code == 0, res.output
    retold, meta = checkpoint.read(checkpoints(again)[-1])
    assert retold.keys() == tensors.keys() and all(torch.equal(retold[k], tensors[k]) for k in tensors)
    assert meta["exported_from"] == str(checkpoints(run)[-1])
    assert SpectrogramDiffusion.load(again).options().sampler == "dpmpp-2m"
    assert SpectrogramDiffusion.load(again).options().steps == 10 and SpectrogramDiffusion.load(out).options().steps == 50


SHIPPED = __import__("pathlib").Path(__file__).resolve().parents[1] / "samples" / "models"


def test_the_shipped_models_generate_and_are_small(tmp_path):
    models = sorted(p for p in SHIPPED.iterdir() if (p / "config.toml").is_file())
    assert models and sum(f.stat().st_size for f in SHIPPED.rglob("*") if f.is_file()) < 10e6
    for model in models:
        labels = Config.from_toml(model / "config.toml").data.labels  # a conditional model: its last label
        res = invoke("generate", str(model), "--out", str(tmp_path / model.name), "-n", "1", "--steps", "2",
                     *(["--label", labels[-1]] if labels else []), "--no-progress")
        assert res.exit_code == 0, res.output
        assert (tmp_path / model.name / "sample_000.wav").exists()
    # generation that keeps up on a CPU: the larger shipped models sample with DPM-Solver++(2M) in 10 calls
    # (docs/results.md, "The shipped models' speed")
    for name in ("digits", "drums"):
        assert SpectrogramDiffusion.load(SHIPPED / name).options().sampler == "dpmpp-2m"
        assert Config.from_toml(SHIPPED / name / "config.toml").default_sampling() == ("dpmpp-2m", 10)


def test_stop_copies_ends_a_fine_tune_at_the_first_checkpoint_past_the_limit(tmp_path, run, audio_dir,  # noqa: F811
                                                                             monkeypatch):
    import audiodiff.run.tune as run_module

    shares = iter([0.0, 0.5, 0.9])
    monkeypatch.setattr(run_module, "copies_share", lambda *a, **k: next(shares, 0.9))
    lines = []
    state = run_module.finetune(run, audio_dir, tmp_path / "ft", stop_copies=0.25,
                                session=Session(progress=False, log=lines.append),
                                overrides={"train": {"steps": 8, "checkpoint_every": 2}})
    assert state.step == 4  # 0% at step 2, 50% > 25% at step 4: stopped there, not at 8
    assert any("step 4: memorization: 50%" in line for line in lines)
    assert any("stopped at step 4" in line for line in lines)


def test_unlabelled_clips_fine_tune_a_conditional_base_as_its_no_label_class(tmp_path, audio_dir, tiny_config):
    labelled = tmp_path / "labelled"
    for i, f in enumerate(sorted(audio_dir.rglob("*.wav"))):
        (labelled / ("low" if i % 2 else "high")).mkdir(parents=True, exist_ok=True)
        f.rename(labelled / ("low" if i % 2 else "high") / f.name)
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(tiny_config.to_toml())
    assert invoke("train", str(labelled), "--out", str(tmp_path / "run"), "--config", str(cfg),
                  "--no-progress").exit_code == 0
    res = invoke("finetune", str(tmp_path / "run"), str(audio_dir), "--out", str(tmp_path / "ft"), "--steps", "2",
                 "--lora", "2", "--no-progress")  # audio_dir keeps only its unlabelled .flac and .ogg files
    assert res.exit_code == 0 and "learned as its 'no label' class" in res.output, res.output
    config = read_checkpoint(tmp_path / "ft")[0]
    assert config.data.labels == ("high", "low") and not config.sample.each_label
    assert config.data.label_counts == (0, 0)  # every clip was the "no label" class
    gen = ["generate", str(tmp_path / "ft"), "-n", "1", "--steps", "2", "--no-progress"]
    for name, extra in (("default", []), ("null", ["--unconditional"]), ("low", ["--label", "low"])):
        assert invoke(*gen, "--out", str(tmp_path / name), *extra).exit_code == 0, name
    wav = {name: (tmp_path / name / "sample_000.wav").read_bytes() for name in ("default", "null", "low")}
    assert wav["default"] == wav["null"] != wav["low"]
    assert SpectrogramDiffusion.load(tmp_path / "run").generate_options().label == "*"  # the base: labels in turn

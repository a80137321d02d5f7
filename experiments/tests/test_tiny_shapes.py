"""experiments/tiny_shapes.py: its first shape is the tiny preset before patches, every shape builds and trains a
step on the main job's crop, and the patched shape has the preset's own plan."""

import dataclasses
import importlib.util
from pathlib import Path

import torch

from audiodiff.presets import preset

spec = importlib.util.spec_from_file_location("tiny_shapes", Path(__file__).resolve().parents[1] / "tiny_shapes.py")
tiny_shapes = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tiny_shapes)


def test_the_baseline_is_the_tiny_preset_unpatched_and_every_shape_steps():
    shapes = tiny_shapes.shapes()
    base = next(iter(shapes.values()))
    assert base.patch == 1 and dataclasses.replace(base, patch=2, num_classes=0) == preset("tiny").unet
    assert shapes["2x2 patches, 16-32-32"] == dataclasses.replace(base, patch=2)
    x, t, y = torch.randn(2, 1, 80, 64), torch.tensor([1, 999]), torch.tensor([0, 10])
    for config in shapes.values():
        step, params = tiny_shapes.step_fn(config, x, t, y)
        step()
        assert params > 0

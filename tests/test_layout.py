"""The package's shape: imports point one way (README, "How it works"), with no cycle."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "audiodiff"

# Lower layers never import higher ones (equal layers do not import each other either).
LAYERS = [
    ["config", "files", "reports", "device", "board"],
    ["checkpoint", "audio", "mel", "distributed", "melcache"],
    ["vocoder", "metrics", "data", "conditioning", "schedule", "trainkit", "plot"],
    ["denoiser"],
    ["vocos", "embedder", "unet", "sampling", "consistency", "lora"],
    ["vocoders", "editing", "adapt"],
    ["representation", "evaluate"],
    ["train", "vocoder_train"],
    ["run"],
    ["pipeline", "gallery"],
    ["cli_options"],
    ["cli_tools"],
    ["cli"],
    ["__main__", "__init__"],
]


def imports(module: str) -> set[str]:
    """The audiodiff modules a module imports, anywhere in it (also inside functions)."""
    tree = ast.parse((PACKAGE / f"{module}.py").read_text())
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            found |= {node.module} if node.module else {a.name for a in node.names}
    return {m.split(".")[0] for m in found}


def test_every_module_has_a_layer():
    assert {p.stem for p in PACKAGE.glob("*.py")} == {m for layer in LAYERS for m in layer}


def test_imports_point_down():
    layer = {m: i for i, ms in enumerate(LAYERS) for m in ms}
    upward = [f"{a} (layer {layer[a]}) imports {b} (layer {layer[b]})"
              for a in layer for b in imports(a) if layer[b] >= layer[a]]
    assert not upward, upward


def test_trainers_import_no_trainer_vocoder_plot_or_sampler():
    banned = {"train", "vocoder_train", "vocoder", "vocoders", "plot", "audio", "sampling", "pipeline", "run"}
    for trainer in ("train", "vocoder_train"):
        assert not imports(trainer) & (banned - {trainer}), trainer


def test_only_the_cli_imports_click():
    for path in PACKAGE.glob("*.py"):
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert ("click" in names) == path.stem.startswith("cli"), path.name

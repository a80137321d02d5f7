"""The package's shape: one folder per stage, imports point one way (docs/architecture.md), with no cycle."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "audiodiff"

# Lower layers never import higher ones; rooms of one layer do not import each other. A room is a subpackage
# (its modules may import each other) or a top-level module.
LAYERS = [
    ["config", "files", "device"],
    ["presets", "checkpoint"],
    ["runfolder"],
    ["audio"],
    ["data", "model"],
    ["diffusion", "vocoders"],
    ["training"],
    ["evaluation", "generation"],
    ["run", "studio"],
    ["cli"],
    ["__main__", "__init__"],
]
MAX_LINES = 400


def room(path: Path) -> str:
    """The room of a module file: its subpackage, or its own name at the top level."""
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def imported_rooms(text: str, package: tuple[str, ...]) -> set[str]:
    """The rooms a module in `package` (its folders under audiodiff/) imports by relative import, anywhere in it
    (also inside functions)."""
    tree = ast.parse(text)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = package[:len(package) - (node.level - 1)]
            target = [*base, *(node.module.split(".") if node.module else [])]
            if target:
                found.add(target[0])
            else:
                found |= {a.name for a in node.names}
    return found


def test_every_room_has_a_layer():
    assert {room(p) for p in modules()} == {r for layer in LAYERS for r in layer}


def upward(name: str, own: str, text: str, package: tuple[str, ...]) -> list[str]:
    """The imports of module `name` (in room `own`) that do not point to a lower layer."""
    layer = {r: i for i, rs in enumerate(LAYERS) for r in rs}
    return [f"{name} ({own}, layer {layer[own]}) imports {b} (layer {layer[b]})"
            for b in imported_rooms(text, package) - {own} if layer[b] >= layer[own]]


def test_imports_point_down():
    found = [line for p in modules() for line in upward(str(p.relative_to(PACKAGE)), room(p), p.read_text(),
                                                          p.relative_to(PACKAGE).parent.parts)]
    assert not found, found


def test_an_upward_import_is_reported():
    assert upward("data/x.py", "data", "def f():\n    from ..training.kit import prune\n", ("data",))
    assert upward("data/x.py", "data", "from ..model import unet\n", ("data",))  # same layer
    assert not upward("data/x.py", "data", "from .melcache import Store\nfrom ..audio.mel import M\n", ("data",))
    assert upward("config.py", "config", "from . import run\n", ())


def test_modules_are_small():
    sizes = {p.relative_to(PACKAGE): len(p.read_text().splitlines()) for p in modules()}
    big = [f"{p}: {n} lines" for p, n in sizes.items() if n > MAX_LINES]
    assert not big, big


def module_imports(path: Path) -> set[str]:
    """The audiodiff modules (dotted, under audiodiff) that a module imports by relative import."""
    package = path.relative_to(PACKAGE).parent.parts
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = list(package[:len(package) - (node.level - 1)])
            target = base + (node.module.split(".") if node.module else [])
            names = [a.name for a in node.names]
            for name in names if not node.module else [None]:
                dotted = ".".join(target + ([name] if name else []))
                found.add(dotted)
    return found


def resolve(dotted: str) -> str | None:
    """The module file's dotted name for an import target (a module, or a package's __init__)."""
    path = PACKAGE.joinpath(*dotted.split("."))
    if path.with_suffix(".py").is_file():
        return dotted
    if (path / "__init__.py").is_file():
        return f"{dotted}.__init__" if dotted else "__init__"
    return None


def test_no_import_cycle_between_modules():
    graph = {}
    for p in modules():
        name = ".".join(p.relative_to(PACKAGE).with_suffix("").parts)
        graph[name] = {r for d in module_imports(p) if (r := resolve(d)) and r != name}
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in graph.get(node, ()):
            assert state.get(nxt) != 1, f"import cycle: {' -> '.join(trail + [node, nxt])}"
            if nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])


def test_no_product_test_loads_a_benchmark_or_experiment_script():
    for path in (PACKAGE.parent / "tests").glob("*.py"):
        text = path.read_text()
        assert not re.search(r"\"(benchmarks|experiments)\"|(benchmarks|experiments)/[\w/]+\.(py|sh)", text) \
            or path.name in ("test_layout.py", "test_docs.py"), path.name


MAX_FUNCTION_LINES = 60


def long_functions(text: str) -> list[str]:
    """Functions of more than MAX_FUNCTION_LINES lines (decorators aside) whose docstring gives no reason
    ("Long because ...")."""
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            n = node.end_lineno - node.lineno + 1
            if n > MAX_FUNCTION_LINES and "Long because" not in (ast.get_docstring(node) or ""):
                found.append(f"{node.name}: {n} lines")
    return found


def test_functions_are_short():
    found = [f"{p.relative_to(PACKAGE)} {f}" for p in modules() for f in long_functions(p.read_text())]
    assert not found, found


def test_a_long_function_is_reported():
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    assert long_functions(f"def f():\n{body}") == [f"f: {MAX_FUNCTION_LINES + 1} lines"]
    assert not long_functions(f'def f():\n    """Long because a table."""\n{body}')


def test_trainers_import_no_vocoder_registry_plot_sampler_or_pipeline():
    banned = {("vocoders", "registry"), ("audio", "plot"), ("diffusion", "sampling"), ("generation",), ("run",)}
    for trainer in ("diffusion.py", "vocoder.py", "kit.py"):
        text = (PACKAGE / "training" / trainer).read_text()
        tree = ast.parse(text)
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                parts = tuple(node.module.split("."))
                assert not any(parts[:len(b)] == b for b in banned), (trainer, node.module)


def test_loading_a_model_imports_no_trainer():
    """Reading a run for generation needs no trainer, DDP, TensorBoard or evaluation."""
    code = ("import sys, audiodiff.generation.pipeline; "
            "print(sorted(m for m in sys.modules if m.split('.')[:2] in (['audiodiff', 'training'], "
            "['audiodiff', 'run'], ['audiodiff', 'evaluation'], ['audiodiff', 'cli'])))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", out


def test_only_the_cli_imports_click():
    for path in modules():
        tree = ast.parse(path.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
        assert ("click" in names) == (room(path) == "cli"), path

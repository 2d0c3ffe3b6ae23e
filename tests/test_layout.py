"""The package reads in pipeline order: no module of elct_jax imports from a later layer, and no source file
is over 400 lines (the project's limit for one concept per file)."""
import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
LAYERS = ("config", "geometry", "hamiltonian", "nn", "data", "train", "inference", "analysis", "cli")


def layer_of(module: str) -> int:
    """Layer index of a dotted elct_jax module (``elct_jax.nn.model`` -> 3)."""
    parts = module.split(".")
    if parts[0] != "elct_jax" or len(parts) < 2 or parts[1] not in LAYERS:
        raise ValueError(f"{module} belongs to no layer of {LAYERS}")
    return LAYERS.index(parts[1])


def imported_modules(path: Path) -> set[str]:
    """Every elct_jax module imported by a file, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("elct_jax"):
            names.add(node.module)
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("elct_jax"))
    return names


def modules():
    for path in sorted((SRC / "elct_jax").rglob("*.py")):
        rel = path.relative_to(SRC).with_suffix("")
        if rel.name != "__init__" or len(rel.parts) > 2:
            yield path, ".".join(p for p in rel.parts if p != "__init__")


@pytest.mark.parametrize("path, module", list(modules()), ids=lambda x: x if isinstance(x, str) else "")
def test_no_module_imports_a_later_layer(path, module):
    own = layer_of(module)
    upward = sorted(m for m in imported_modules(path) if m != "elct_jax" and layer_of(m) > own)
    assert not upward, f"{module} (layer {LAYERS[own]}) imports later layers: {upward}"


def test_no_source_file_over_400_lines():
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"files over 400 lines: {long}"

"""The package's shape: imports point one way, from the pure leaves up to the CLI."""

from __future__ import annotations

import ast
from pathlib import Path

import streamq

PKG = Path(streamq.__file__).parent

# Layers, lowest first: a module may import from its own layer or a lower one, never higher.
LAYERS: dict[str, int] = {
    "errors": 0,
    "keys": 0,
    "job": 0,
    "codec": 0,
    "backoff": 0,
    "clock": 0,
    "outage": 0,
    "settings": 0,
    "options": 0,
    "policy": 0,
    "logging": 0,
    "cron": 0,
    "schedule": 0,
    "plan": 1,
    "scripts": 1,
    "store": 2,
    "producer": 3,
    "worker": 4,
    "upkeep": 5,
    "ops": 6,
    "pool": 7,
    "testing": 8,
    "web": 8,
    "cli": 9,
    "__init__": 10,
    "__main__": 10,
}


def _layer(module: str) -> int:
    """The layer of ``streamq.a.b`` is the layer of ``a`` (a top-level module or subpackage)."""
    parts = module.split(".")
    return LAYERS[parts[1] if len(parts) > 1 else "__init__"]


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module == "streamq":
                out += [f"streamq.{a.name}" for a in node.names]
            elif node.module.startswith("streamq."):
                out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names if a.name.startswith("streamq.")]
    return out


def test_every_module_belongs_to_a_layer() -> None:
    """A new module or subpackage is placed in the layer table on purpose, not by accident."""
    tops = {p.stem for p in PKG.glob("*.py")} | {p.parent.name for p in PKG.glob("*/__init__.py")}
    assert tops <= set(LAYERS), sorted(tops - set(LAYERS))


def test_imports_point_down_the_layers() -> None:
    """No module imports from a higher layer (e.g. the store from the worker)."""
    wrong: list[str] = []
    for path in sorted(PKG.rglob("*.py")):
        rel = path.relative_to(PKG.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        here = _layer(name)
        wrong += [
            f"{name} (layer {here}) imports {imp} (layer {_layer(imp)})"
            for imp in _imports(path)
            if _layer(imp) > here
        ]
    assert not wrong, "\n".join(wrong)

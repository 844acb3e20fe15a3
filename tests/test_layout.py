"""The package layout's rules (docs/ARCHITECTURE.md): lower layers never import higher ones, no private
name is imported across modules, no import cycle, no file over 500 lines, no function over 60."""
from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "stepwiser"

# layer of each top-level part of the package (a module may import its own layer's package and below)
LAYERS = {
    "errors": 0, "__init__": 0,
    "core": 1, "labels": 1,
    "io": 2,
    "data": 3, "models": 3,
    "engines": 4,
    "judges": 5,
    "train": 6,
    "stages": 7,
    "cli": 8, "__main__": 8,
}
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 60


def _modules() -> dict[str, Path]:
    out = {}
    for p in sorted(PKG.rglob("*.py")):
        parts = list(p.relative_to(PKG.parent).with_suffix("").parts)
        if parts[-1] == "__init__" and len(parts) > 1:
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


def _imports(path: Path, name: str) -> list[tuple[str, list[str], int]]:
    """(imported module, names, line) for every import in the file, relative ones resolved."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names if a.name.startswith("stepwiser")]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")
                base = base[: len(base) - (node.level - 1)] if node.level > 1 else base
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.startswith("stepwiser"):
                out.append((mod, [a.name for a in node.names], node.lineno))
    return out


# top-level modules that belong to a package's layer (the C3 import path; `python -m stepwiser`)
GROUPS = {"labels": "core", "__main__": "cli"}


def _layer(mod: str) -> tuple[int, str]:
    parts = mod.split(".")
    top = parts[1] if len(parts) > 1 else "__init__"
    assert top in LAYERS, f"{mod}: add its package to LAYERS (and to docs/ARCHITECTURE.md)"
    return LAYERS[top], GROUPS.get(top, top)


def _resolve(mod: str, names: list[str], mods: dict) -> list[str]:
    """The modules an import statement really loads (`from pkg import sub` loads pkg.sub)."""
    targets = [mod] if mod in mods else []
    targets += [f"{mod}.{n}" for n in names if f"{mod}.{n}" in mods]
    return targets or [mod]


def test_no_upward_or_sideways_import():
    mods = _modules()
    bad = []
    for name, path in mods.items():
        lay, top = _layer(name)
        for mod, names, line in _imports(path, name):
            for target in _resolve(mod, names, mods):
                tl, ttop = _layer(target)
                if tl > lay or (tl == lay and ttop != top):
                    bad.append(f"{path.relative_to(PKG.parent)}:{line} imports {target} (layer {tl} {ttop} "
                               f"from layer {lay} {top})")
    assert not bad, "\n".join(bad)


def test_no_private_name_imported_across_modules():
    mods = _modules()
    bad = [f"{p.relative_to(PKG.parent)}:{line} imports {n} from {mod}"
           for name, p in mods.items() for mod, names, line in _imports(p, name)
           for n in names if n.startswith("_") and not n.startswith("__") and mod != name]
    assert not bad, "\n".join(bad)


def test_no_import_cycle():
    mods = _modules()
    graph = {name: {t for mod, names, _ in _imports(p, name) for t in _resolve(mod, names, mods)
                    if t in mods and t != name and not name.startswith(t + ".")}
             for name, p in mods.items()}
    state: dict[str, int] = {}
    cycles = []

    def visit(n, stack):
        state[n] = 1
        for m in sorted(graph[n]):
            if state.get(m) == 1:
                cycles.append(" -> ".join(stack[stack.index(m):] + [m]))
            elif m not in state:
                visit(m, stack + [m])
        state[n] = 2

    for n in sorted(graph):
        if n not in state:
            visit(n, [n])
    assert not cycles, "\n".join(cycles)


def test_file_and_function_sizes():
    bad = []
    for p in sorted(PKG.rglob("*.py")):
        text = p.read_text(encoding="utf-8")
        if text.count("\n") > MAX_FILE_LINES:
            bad.append(f"{p.relative_to(PKG.parent)}: {text.count(chr(10))} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                n = node.end_lineno - node.lineno + 1
                if n > MAX_FUNCTION_LINES:
                    bad.append(f"{p.relative_to(PKG.parent)}:{node.lineno} {node.name}: {n} lines")
    assert not bad, "\n".join(bad)

"""The layering of docs/architecture.md, enforced on every import in segzoo/ (see that page)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "segzoo"
DOC = ROOT / "docs" / "architecture.md"


def _section(name: str) -> str:
    text = DOC.read_text()
    m = re.search(rf"<!-- architecture-{name}: begin -->(.*?)<!-- architecture-{name}: end -->", text, re.S)
    assert m, f"docs/architecture.md has no {name} section"
    return m.group(1)


def doc_layers() -> dict[str, int]:
    """unit (top-level package or module of segzoo) -> layer, from the doc's table."""
    layers = {}
    for line in _section("layers").splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 2 and cells[0].isdigit():
            for unit in cells[1].replace("\\_", "_").split(","):
                layers[unit.strip()] = int(cells[0])
    return layers


def doc_forbidden_edges() -> list[tuple[str, str]]:
    edges = []
    for m in re.finditer(r"^- forbid: ([\w.]+) -> ([\w.]+)", _section("rules"), re.M):
        edges.append((m.group(1), m.group(2)))
    return edges


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[tuple[str, list[str], int]]:
    """(imported segzoo module, names imported from it, line) of every import in a file."""
    mod = module_name(path)
    package = mod if path.name == "__init__.py" else mod.rsplit(".", 1)[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names if a.name.split(".")[0] == "segzoo"]
        elif isinstance(node, ast.ImportFrom):
            target = node.module or ""
            if node.level:  # relative import
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            if target.split(".")[0] != "segzoo":
                continue
            names = [a.name for a in node.names]
            if target == "segzoo":  # from segzoo import builders, distributed
                for name in names:
                    found.append((f"segzoo.{name}" if (PACKAGE / name).exists() or (PACKAGE / f"{name}.py").exists()
                                  else "segzoo", [name], node.lineno))
            else:
                found.append((target, names, node.lineno))
    return found


def unit(module: str) -> str:
    """The layer unit of a dotted segzoo module: its top-level package or module (``segzoo`` for
    the package root)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "segzoo"


def files():
    return sorted(PACKAGE.rglob("*.py"))


def test_every_package_has_a_layer_in_the_doc():
    layers = doc_layers()
    units = {unit(module_name(f)) for f in files()} - {"segzoo"}
    assert units <= set(layers), f"not in docs/architecture.md's layer table: {sorted(units - set(layers))}"
    assert set(layers) <= units, f"in the table but not in segzoo/: {sorted(set(layers) - units)}"


def _layer(u: str, layers: dict[str, int]) -> float:
    return 2.5 if u == "segzoo" else layers[u]  # the root sits between layers 2 and 3


def test_no_import_goes_up_or_sideways():
    layers = doc_layers()
    bad = []
    for f in files():
        src = unit(module_name(f))
        for target, _, line in imports(f):
            dst = unit(target)
            if dst == src:
                continue
            if _layer(dst, layers) >= _layer(src, layers):
                bad.append(f"{f.relative_to(ROOT)}:{line}: {src} (layer {_layer(src, layers)}) imports "
                           f"{target} (layer {_layer(dst, layers)})")
    assert not bad, "imports against docs/architecture.md:\n" + "\n".join(bad)


def test_forbidden_edges_of_the_doc():
    edges = doc_forbidden_edges()
    assert edges, "the doc's rules section lists no forbidden edge: the parser broke"
    bad = []
    for f in files():
        src = module_name(f)
        for target, names, line in imports(f):
            full = [target] + [f"{target}.{n}" for n in names]
            for a, b in edges:
                if (src == f"segzoo.{a}" or src.startswith(f"segzoo.{a}.")) and any(
                        t == f"segzoo.{b}" or t.startswith(f"segzoo.{b}.") for t in full):
                    bad.append(f"{f.relative_to(ROOT)}:{line}: {a} -> {b}")
    assert not bad, "\n".join(bad)


def test_no_lazy_module_getattr_and_no_private_imports():
    bad = []
    for f in files():
        tree = ast.parse(f.read_text())
        if any(isinstance(n, ast.FunctionDef) and n.name == "__getattr__" for n in tree.body):
            bad.append(f"{f.relative_to(ROOT)}: module-level __getattr__")
        for target, names, line in imports(f):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private:
                bad.append(f"{f.relative_to(ROOT)}:{line}: imports private {', '.join(private)} from {target}")
    assert not bad, "\n".join(bad)


def test_the_checker_sees_a_back_edge(tmp_path):
    """The parser resolves absolute, relative and root imports (else the tests above prove nothing)."""
    layers = doc_layers()
    pkg = tmp_path / "segzoo" / "config"
    pkg.mkdir(parents=True)
    f = pkg / "bad.py"
    f.write_text("from segzoo import builders\nfrom ..engine import trainer\n"
                 "def f():\n    from segzoo.data.transforms import build_pipeline\n")
    global ROOT, PACKAGE
    saved = ROOT, PACKAGE
    ROOT, PACKAGE = tmp_path, tmp_path / "segzoo"
    try:
        (PACKAGE / "builders.py").write_text("")
        found = [unit(t) for t, _, _ in imports(f)]
    finally:
        ROOT, PACKAGE = saved
    assert found == ["builders", "engine", "data"]
    assert all(layers[u] >= layers["config"] for u in found)

"""The package's import rule (docs/developing.md, "Layers, imports and errors"):

* no import circles among the modules of ``workflow/dlrepro``: imports at module level,
  inside functions and under ``TYPE_CHECKING`` all count, so a lower layer never imports
  the layer above, not even lazily;
* no module uses a ``_private`` name of another module (``from dlrepro.x import _y`` or
  ``x._y`` on an imported module): what another module needs is public.

The graph is built from the source with the standard library's ``ast``, without importing
anything.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "dlrepro"

# (importing module, imported module, private name): known violations, each to be fixed by
# the part of the code that owns it. The test fails on an entry that is no longer needed,
# so remove it with the fix.
PRIVATE_IMPORT_ALLOWLIST_WIDTH_STAGE: set[tuple[str, str, str]] = set()  # width's names are public now


def modules(root: Path = PACKAGE) -> dict[str, tuple[Path, bool]]:
    """Module name -> (source file, is a package)."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root.parent).with_suffix("").parts)
        is_pkg = parts[-1] == "__init__"
        out[".".join(parts[:-1] if is_pkg else parts)] = (path, is_pkg)
    return out


def _target(node: ast.ImportFrom, package: str) -> str:
    if not node.level:
        return node.module or ""
    base = package.split(".")
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph(mods: dict[str, tuple[Path, bool]]) -> tuple[dict[str, set[str]], list[tuple[str, str, str, int]]]:
    """The edges module -> modules it imports (anywhere in its source), and every use of a
    private name of another module: (module, imported module, name, line)."""
    edges: dict[str, set[str]] = {}
    private: list[tuple[str, str, str, int]] = []
    for name, (path, is_pkg) in mods.items():
        package = name if is_pkg else name.rpartition(".")[0]
        out: set[str] = set()
        aliases: dict[str, str] = {}  # local name -> dlrepro module it is bound to
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for a in node.names:
                    if a.name in mods:
                        out.add(a.name)
                        if a.asname:
                            aliases[a.asname] = a.name
            elif isinstance(node, ast.ImportFrom):
                target = _target(node, package)
                if target not in mods:
                    continue
                for a in node.names:
                    sub = f"{target}.{a.name}"
                    if sub in mods:  # a submodule
                        out.add(sub)
                        aliases[a.asname or a.name] = sub
                        continue
                    out.add(target)
                    if a.name.startswith("_") and not a.name.startswith("__"):
                        private.append((name, target, a.name, node.lineno))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")
                    and f"{aliases[node.value.id]}.{node.attr}" not in mods):
                private.append((name, aliases[node.value.id], node.attr, node.lineno))
        edges[name] = {m for m in out if m != name}
    return edges, private


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter
                    counter += 1
                    stack.append(w)
                    on_stack.add(w)
                    work.append((w, iter(sorted(edges.get(w, ())))))
                    break
                if w in on_stack:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    component = []
                    while True:
                        w = stack.pop()
                        on_stack.discard(w)
                        component.append(w)
                        if w == v:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def describe(component: list[str], edges: dict[str, set[str]]) -> str:
    inside = set(component)
    return "; ".join(f"{a} -> {b}" for a in component for b in sorted(edges[a] & inside))


@pytest.fixture(scope="module")
def graph():
    return import_graph(modules())


def test_the_graph_sees_every_kind_of_import(tmp_path):
    """The checker itself: module-level, function-level, relative and TYPE_CHECKING imports
    make edges; a cycle through them is found; a private name is found both ways."""
    pkg = tmp_path / "dlrepro"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from dlrepro.sub import b\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from . import c\n")
    (pkg / "sub" / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n"
                                      "    from dlrepro.a import X\n")
    (pkg / "d.py").write_text("import dlrepro.a as a\nfrom dlrepro.sub.b import _hidden\n"
                              "def g():\n    return a._secret, a.__name__\n")
    edges, private = import_graph(modules(pkg))
    assert edges["dlrepro.a"] == {"dlrepro.sub.b"} and edges["dlrepro.sub.b"] == {"dlrepro.sub.c"}
    assert cycles(edges) == [["dlrepro.a", "dlrepro.sub.b", "dlrepro.sub.c"]]
    assert sorted((m, t, n) for m, t, n, _ in private) == [
        ("dlrepro.d", "dlrepro.a", "_secret"), ("dlrepro.d", "dlrepro.sub.b", "_hidden")]


def test_no_import_circles(graph):
    edges, _ = graph
    assert len(edges) > 100  # the whole package was read
    found = cycles(edges)
    assert not found, "import circles: " + " | ".join(describe(c, edges) for c in found)


def test_no_module_uses_another_modules_private_names(graph):
    _, private = graph
    found = {(m, t, n) for m, t, n, _ in private}
    new = sorted(found - PRIVATE_IMPORT_ALLOWLIST_WIDTH_STAGE)
    assert not new, "private names used across modules (make them public): " + ", ".join(
        f"{m} uses {t}.{n}" for m, t, n in new)
    stale = sorted(PRIVATE_IMPORT_ALLOWLIST_WIDTH_STAGE - found)
    assert not stale, f"allowlist entries no longer needed, remove them: {stale}"


def test_no_module_imports_a_command_module(graph):
    """The commands sit on top of their stage: only the entry point reaches them (by name,
    through dlrepro.commands). dlrepro.config (the validation, also check-config) and
    dlrepro.warm (the warm-start server, also serve) are libraries as well."""
    from dlrepro.commands import COMMANDS

    edges, _ = graph
    libraries = {"dlrepro.config", "dlrepro.warm"}
    targets = {c.module for c in COMMANDS.values()} - libraries
    found = sorted((m, o) for m, outs in edges.items() for o in outs if o in targets)
    assert not found, f"modules importing a command module (move what they need below it): {found}"

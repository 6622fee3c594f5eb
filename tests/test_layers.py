"""The import structure is one-way: no module imports, directly or through others, a module that
imports it back — counting imports inside functions too — and the command layer sits on top."""

import ast
from pathlib import Path

import karma_probe

ROOT = Path(karma_probe.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for f in ROOT.rglob("*.py"):
        parts = f.relative_to(ROOT.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _graph() -> dict[str, set[str]]:
    """Module → karma_probe modules it imports anywhere in its body. ``from pkg import sub`` is an
    edge to ``pkg.sub`` (a submodule's import of its siblings is not an import of the package)."""
    mods = _modules()
    graph = {}
    for name, f in mods.items():
        deps = set()
        for n in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(n, ast.ImportFrom) and n.module and n.level == 0 and n.module.startswith("karma_probe"):
                subs = {f"{n.module}.{a.name}" for a in n.names if f"{n.module}.{a.name}" in mods}
                deps |= subs | ({n.module} if len(subs) < len(n.names) else set())
            elif isinstance(n, ast.Import):
                deps |= {a.name for a in n.names if a.name in mods}
        graph[name] = {d for d in deps if d in mods and d != name}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles_even_through_lazy_imports():
    assert _cycles(_graph()) == []


def test_the_cycle_check_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_library_modules_never_import_the_command_layer():
    top = ("karma_probe.cli", "karma_probe.commands", "karma_probe.__main__", "karma_probe.dashboard_app")
    for name, deps in _graph().items():
        if name.startswith(top):
            continue
        assert not [d for d in deps if d.startswith(top)], name


def test_bottom_modules_import_nothing_above_them():
    graph = _graph()
    assert graph["karma_probe.errors"] == set()
    assert graph["karma_probe.tensors"] == set()
    assert all(d.startswith("karma_probe.rundir") or d == "karma_probe.errors"
               for m, deps in graph.items() if m.startswith("karma_probe.rundir") for d in deps)

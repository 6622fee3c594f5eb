"""The import structure is one-way: no module imports, directly or through others, a module that
imports it back — counting imports inside functions too — and the packages stack in pipeline order.

Each stage package declares, on the last line of its docstring, the packages it may import
(``Imports: core, rundir, data.``); the tests below hold the code to those lines and the lines to
the pipeline order, so the tree, the docstrings and the import graph cannot drift apart."""

import ast
import re
from pathlib import Path

import pytest

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


# The pipeline, bottom to top: a package may import only packages before it (and itself).
ORDER = ["core", "rundir", "data", "model", "train", "capture", "analyzers", "report", "calibration",
         "workflows", "dashboard", "commands"]
TOP_MODULES = {"karma_probe", "karma_probe.cli", "karma_probe.__main__"}  # the version, the CLI entry


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (ROOT / parts[1] / "__init__.py").is_file() else None


def _declared() -> dict[str, set[str]]:
    """Package → the packages its docstring's ``Imports:`` line allows."""
    out = {}
    for pkg in ORDER:
        doc = ast.get_docstring(ast.parse((ROOT / pkg / "__init__.py").read_text(encoding="utf-8"))) or ""
        m = re.search(r"^Imports: ([^.(]*)", doc, re.M)
        assert m, f"karma_probe/{pkg}/__init__.py: no 'Imports: ...' line in its docstring"
        names = m.group(1).strip()
        out[pkg] = set() if names.startswith("nothing") else {n.strip() for n in names.split(",")}
    return out


def _violations(graph: dict[str, set[str]], declared: dict[str, set[str]]) -> list[tuple[str, str]]:
    """(module, import) pairs where a package imports one its docstring does not allow."""
    return sorted((m, d) for m, deps in graph.items() if _package(m)
                  for d in deps if _package(d) not in (_package(m), *declared[_package(m)]))


def test_every_module_lives_in_a_stage_package():
    """Only the version, the CLI entry and the packages sit at the top: a new module goes in a stage."""
    assert sorted(m for m in _modules() if _package(m) is None and m not in TOP_MODULES) == []
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}
    assert packages == set(ORDER)


def test_declared_imports_follow_the_pipeline_order():
    for pkg, allowed in _declared().items():
        assert allowed <= set(ORDER[:ORDER.index(pkg)]), pkg


def test_packages_import_only_what_they_declare():
    assert _violations(_graph(), _declared()) == []


@pytest.mark.parametrize("module, dep", [("karma_probe.model.retriever", "karma_probe.train.loop"),
                                         ("karma_probe.report.study", "karma_probe.capture.run"),
                                         ("karma_probe.core.config", "karma_probe.rundir.io")])
def test_the_order_check_finds_an_upward_import(module, dep):
    graph = {m: set(deps) for m, deps in _graph().items()}
    graph[module].add(dep)
    assert _violations(graph, _declared()) == [(module, dep)]


def test_library_modules_never_import_the_command_layer():
    top = ("karma_probe.cli", "karma_probe.commands", "karma_probe.__main__", "karma_probe.dashboard.app",
           "karma_probe.dashboard.panels")
    for name, deps in _graph().items():
        if name.startswith(top):
            continue
        assert not [d for d in deps if d.startswith(top)], name


def test_bottom_modules_import_nothing_above_them():
    graph = _graph()
    assert all(d.startswith("karma_probe.core.") for m, deps in graph.items() if m.startswith("karma_probe.core.") for d in deps)
    assert graph["karma_probe.core.errors"] == set()
    assert all(d.startswith(("karma_probe.rundir", "karma_probe.core."))
               for m, deps in graph.items() if m.startswith("karma_probe.rundir") for d in deps)


def test_the_readme_layout_block_matches_the_tree():
    """README "Layout": one line per package, in ORDER, naming exactly its modules and subpackages."""
    readme = (ROOT.parent / "README.md").read_text(encoding="utf-8")
    block = readme.split("## Layout", 1)[1].split("```text", 1)[1].split("```", 1)[0]
    listed = {}
    for line in block.strip().splitlines()[1:]:
        name, *entries = line.split()
        if name.endswith("/"):
            listed[name[:-1]] = entries
    assert list(listed) == ORDER
    for pkg, entries in listed.items():
        d = ROOT / pkg
        real = {p.stem for p in d.glob("*.py") if p.name != "__init__.py"}
        real |= {f"{p.name}/" for p in d.iterdir() if p.is_dir() and (p / "__init__.py").is_file()}
        assert set(entries) == real, pkg
        assert len(entries) == len(set(entries)), pkg

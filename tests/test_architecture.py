"""The house plan, enforced: stage folders in dataflow order, imports only point down, families stand alone,
no import circles. Walks every import statement of the package (module level and inside functions) with ast.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parents[1] / "kaggle_kit"

# Stage of each top-level part of the package; an import may only go to a lower stage or stay inside its
# own part (a sub-package or module). Parts on one stage do not import each other.
STAGES = {
    "__init__": 0, "utils": 0, "_compat": 0, "resources": 0, "children": 0,
    "env": 0.5, "config": 0.5, "paths": 0.5, "registry": 0.5, "plan": 0.5,
    "data": 1,
    "io": 2,
    "metric": 3,
    "engine": 4, "post": 4, "losses": 4,
    "families": 5, "tune": 5,
    "deploy": 6,
    "pipeline": 6.5,  # the main job (kk run): stages over every part below it; commands is its front
    "cli": 7,  # the tools' error reporting: may catch the error types of every stage
    "commands": 8,  # kk and its subcommands (tools/*.py are shims of them): may use every stage
    "__main__": 9,  # python -m kaggle_kit = kk
}


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _imports(path: Path) -> list[tuple[str, int]]:
    """(imported kaggle_kit module, line) of every import in the file; ``from pkg import name`` counts as
    ``pkg.name`` when that is a module of the package, else as ``pkg``."""
    mod = _module_name(path)
    pkg = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] == "kaggle_kit"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "kaggle_kit":
                continue
            for a in node.names:
                sub = f"{target}.{a.name}"
                out.append((sub if _exists(sub) else target, node.lineno))
    return out


def _exists(mod: str) -> bool:
    p = PKG.parent / mod.replace(".", "/")
    return p.with_suffix(".py").is_file() or (p / "__init__.py").is_file()


def _part(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _family(mod: str) -> str | None:
    parts = mod.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "families" and parts[2] != "base" else None


def _graph() -> dict[str, list[tuple[str, int]]]:
    return {_module_name(p): _imports(p) for p in sorted(PKG.rglob("*.py"))}


def test_every_part_has_a_stage():
    parts = {_part(m) for m in _graph()}
    assert parts <= set(STAGES), f"parts without a stage: {sorted(parts - set(STAGES))}; add them to STAGES"


def test_imports_point_down():
    bad = []
    for mod, imps in _graph().items():
        src = _part(mod)
        if mod == "kaggle_kit":  # the package facade re-exports CLASSES (a pure-python constant)
            continue
        for target, line in imps:
            dst = _part(target)
            if dst == src or dst == "__init__":
                continue
            if STAGES[dst] >= STAGES[src]:
                bad.append(f"{mod}:{line} imports {target} (stage {dst}={STAGES[dst]} >= {src}={STAGES[src]})")
    assert not bad, "imports that do not point down:\n" + "\n".join(bad)


def test_families_do_not_import_siblings():
    bad = []
    for mod, imps in _graph().items():
        fam = _family(mod)
        if fam is None:
            continue
        for target, line in imps:
            other = _family(target)
            if other is not None and other != fam:
                bad.append(f"{mod}:{line} imports {target}")
    assert not bad, "family imports a sibling family:\n" + "\n".join(bad)


def test_no_import_cycles():
    graph = {m: sorted({t for t, _ in imps if t in _graph_names()} - {m}) for m, imps in _graph().items()}
    # Tarjan's strongly connected components, iteratively
    index, low, on, stack, comps, counter = {}, {}, set(), [], [], [0]

    def strong(v):
        work = [(v, iter(graph[v]))]
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        while work:
            node, it = work[-1]
            for w in it:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(graph[w])))
                    break
                if w in on:
                    low[node] = min(low[node], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == node:
                            break
                    if len(comp) > 1:
                        comps.append(sorted(comp))

    for v in graph:
        if v not in index:
            strong(v)
    # a package __init__ importing its own submodules is not a circle of behaviour
    comps = [c for c in comps if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert not comps, f"import circles: {comps}"


_NAMES: set = set()


def _graph_names() -> set:
    if not _NAMES:
        _NAMES.update(_module_name(p) for p in PKG.rglob("*.py"))
    return _NAMES


@pytest.mark.parametrize("src, target, ok", [
    ("kaggle_kit.post.ensemble", "kaggle_kit.metric.scorer", True),
    ("kaggle_kit.metric.scorer", "kaggle_kit.post.kernels", False),
    ("kaggle_kit.engine.model", "kaggle_kit.post.kernels", False),
    ("kaggle_kit.families.cls.train", "kaggle_kit.families.base", True),
])
def test_stage_rule_itself(src, target, ok):
    """The rule the walker applies, on hand-picked pairs (so a broken walker cannot pass silently)."""
    s, d = _part(src), _part(target)
    assert (d == s or STAGES[d] < STAGES[s]) == ok
    assert _family("kaggle_kit.families.seg25d.train") == "seg25d" and _family("kaggle_kit.families.base") is None

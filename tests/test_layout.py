"""The package layout is the architecture (DESIGN.md §4): each pipeline stage imports only
stages at or before its own, there are no import cycles, and nothing inside the package
imports the package's ``__init__`` (the public API, which imports everything).

Imports are read statically (``ast``) from every ``.py`` under ``splitimpera/``: module-level
and function-level ones alike (a lazy import is still a dependency), relative ones resolved.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "splitimpera"
TOP = "splitimpera"  # the package's own __init__, as a node

# Stages in pipeline order; a module belongs to the stage whose entry is its first dotted
# component (``config.scenario`` → config). A new top-level module or sub-package must be
# placed here on purpose.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("_version", "errors", "atomic", "cache", "plain", "stages")),
    ("config", ("config",)),
    ("data", ("data",)),
    ("model", ("model",)),
    ("accuracy", ("accuracy",)),
    ("latency", ("latency",)),
    ("qos", ("qos",)),
    ("results", ("results",)),
    ("report", ("report",)),
    ("pipeline", ("pipeline",)),
    ("front ends", ("whatif", "calibrate", "cli", "dashboard", "app", "sweep", "runtime")),
]

# Files run as scripts, never imported by the package: clients of the public API like any
# user's code, so they may `import splitimpera` (no cycle: nothing in the package reaches them).
SCRIPTS = {"dashboard.app": "run by `streamlit run`"}

PIPELINE_MAX_LINES = 200


@dataclass(frozen=True)
class Edge:
    src: str  # module, dotted under the package ("config.scenario"), or TOP for the package __init__
    dst: str
    where: str  # "file.py:line"
    code: str  # the import statement, for the message
    type_only: bool = False  # under `if TYPE_CHECKING:`: never executed

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst}  ({self.where}: {self.code})"


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts) or TOP


def _modules(root: Path) -> dict[str, Path]:
    return {_module_name(p, root): p for p in sorted(root.rglob("*.py"))}


def _is_package(name: str, modules: dict[str, Path]) -> bool:
    return modules[name].name == "__init__.py"


def _type_checking_imports(tree: ast.AST) -> set[int]:
    """ids of the import nodes in the body of an ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``)."""
    out: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING")
                or (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return out


def _join(*parts: str) -> str:
    return ".".join(p for p in parts if p and p != TOP) or TOP


def import_edges(root: Path, package: str = "splitimpera") -> tuple[dict[str, Path], list[Edge], list[Edge]]:
    """``(modules, edges, unresolved)`` of the package at ``root``.

    An edge goes to the module an import names: ``from .x import y`` goes to ``x.y`` when that
    is a module, else to ``x`` (``y`` is an attribute). Importing a submodule runs its parent
    packages' ``__init__`` too; those implicit edges are left out (they would make every
    package a cycle with its own submodules). ``unresolved``: imports of package modules
    that do not exist.
    """
    modules = _modules(root)
    edges: list[Edge] = []
    unresolved: list[Edge] = []

    for name, path in modules.items():
        text = path.read_text()
        tree = ast.parse(text, filename=str(path))
        type_only = _type_checking_imports(tree)
        here = name if _is_package(name, modules) else (name.rpartition(".")[0] or TOP)
        where_file = path.relative_to(root.parent).as_posix()
        for node in ast.walk(tree):
            found: list[str] = []
            missing: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        mod = _join(alias.name[len(package) + 1:])
                        (found if mod in modules else missing).append(mod)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base_parts = [] if here == TOP else here.split(".")
                    up = node.level - 1
                    if up > len(base_parts):
                        missing.append("." * node.level + (node.module or ""))
                        base = None
                    else:
                        base = _join(*base_parts[:len(base_parts) - up], node.module or "")
                elif node.module == package or (node.module or "").startswith(package + "."):
                    base = _join((node.module or "")[len(package) + 1:])
                else:
                    base = None  # a third-party or standard-library import
                if base is not None:
                    if base not in modules:
                        missing.append(base)
                    else:
                        for alias in node.names:
                            sub = _join(base, alias.name)
                            if alias.name != "*" and sub in modules and _is_package(base, modules):
                                found.append(sub)  # `from .pkg import submodule`
                            else:
                                found.append(base)
            if not (found or missing):
                continue
            code = ast.get_source_segment(text, node) or type(node).__name__
            code = " ".join(code.split())
            where = f"{where_file}:{node.lineno}"
            for dst in dict.fromkeys(found):
                edges.append(Edge(name, dst, where, code, id(node) in type_only))
            for dst in dict.fromkeys(missing):
                unresolved.append(Edge(name, dst, where, code, id(node) in type_only))
    return modules, edges, unresolved


def stage_of(module: str) -> int | None:
    head = module.split(".")[0]
    for i, (_, prefixes) in enumerate(STAGES):
        if head in prefixes:
            return i
    return None


def _own_submodule(src: str, dst: str, modules: dict[str, Path]) -> bool:
    """A package ``__init__`` importing one of its own submodules (fine: that is what it is for)."""
    if not _is_package(src, modules):
        return False
    return src == TOP or dst.startswith(src + ".")


def cycles(modules: dict[str, Path], edges: list[Edge]) -> list[list[str]]:
    """Import cycles; type-only imports run no code, so they make none."""
    g = nx.DiGraph()
    g.add_nodes_from(modules)
    g.add_edges_from((e.src, e.dst) for e in edges
                     if not e.type_only and not _own_submodule(e.src, e.dst, modules))
    return sorted(sorted_cycle(c) for c in nx.simple_cycles(g))


def sorted_cycle(cycle: list[str]) -> list[str]:
    """The cycle rotated to start at its smallest name (a stable message)."""
    i = cycle.index(min(cycle))
    return cycle[i:] + cycle[:i]


def layer_violations(modules: dict[str, Path], edges: list[Edge]) -> list[str]:
    """Imports of a later stage, of the package ``__init__``, and modules in no stage.

    Type-only imports count: an annotation naming a later stage's type is a dependency on it.
    """
    out = [f"{m}: in no stage of tests/test_layout.py STAGES ({modules[m].name})"
           for m in modules if m != TOP and stage_of(m) is None]
    for e in edges:
        if e.dst in SCRIPTS:
            out.append(f"{e}: imports {e.dst}, a script ({SCRIPTS[e.dst]}), not a module")
        if e.dst == TOP:
            if e.src not in SCRIPTS:
                out.append(f"{e}: imports splitimpera/__init__ (the public API) from inside the package")
            continue
        s, d = stage_of(e.src), stage_of(e.dst)
        if e.src == TOP or s is None or d is None:
            continue
        if d > s:
            out.append(f"{e}: stage {STAGES[s][0]!r} imports the later stage {STAGES[d][0]!r}")
    return out


# --------------------------------------------------------------------------------------------
# The walker itself, on a package made for the test


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "splitimpera" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "splitimpera"


def test_walker_finds_every_kind_of_import(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "from .pipeline import run\nfrom .model import zoo as z\n",
        "errors.py": "import os\n",
        "cache.py": "from .errors import UserError\n",
        "config/__init__.py": "",
        "config/scenario.py": ("from ..errors import UserError\nfrom .. import cache\n"
                               "def check():\n    from ..model.loading import load\n"
                               "from .checks import run_checks\n"),
        "config/checks.py": "import typing\nif typing.TYPE_CHECKING:\n    from .scenario import Scenario\n",
        "model/__init__.py": "",
        "model/loading.py": "import splitimpera.errors\nfrom splitimpera.config import scenario\n",
        "model/zoo/__init__.py": "from . import digits\n",
        "model/zoo/digits.py": "from . import ZooEntry\nfrom ...missing import x\n",
        "pipeline.py": "from . import __version__\nfrom .model.zoo import digits, ZooEntry\n",
        "dashboard/__init__.py": "",
        "dashboard/app.py": "import splitimpera as si\nfrom splitimpera.pipeline import run\n",
    })
    modules, edges, unresolved = import_edges(pkg)
    pairs = {(e.src, e.dst) for e in edges}
    assert pairs == {
        (TOP, "pipeline"), (TOP, "model.zoo"),
        ("cache", "errors"),
        ("config.scenario", "errors"), ("config.scenario", "cache"), ("config.scenario", "model.loading"),
        ("config.scenario", "config.checks"), ("config.checks", "config.scenario"),
        ("model.loading", "errors"), ("model.loading", "config.scenario"),
        ("model.zoo", "model.zoo.digits"), ("model.zoo.digits", "model.zoo"),
        ("pipeline", TOP), ("pipeline", "model.zoo.digits"), ("pipeline", "model.zoo"),
        ("dashboard.app", TOP), ("dashboard.app", "pipeline"),
    }
    assert [(e.src, e.dst) for e in unresolved] == [("model.zoo.digits", "missing")]
    lazy = next(e for e in edges if e.dst == "model.loading")
    assert lazy.where == "splitimpera/config/scenario.py:4" and lazy.code == "from ..model.loading import load"
    assert [(e.src, e.dst) for e in edges if e.type_only] == [("config.checks", "config.scenario")]
    # config.scenario -> model.loading -> config.scenario is a cycle; the zoo package importing
    # its own submodule (which reads the package back), __init__ -> pipeline -> __init__ and the
    # type-only config.checks -> config.scenario are not.
    assert cycles(modules, edges) == [["config.scenario", "model.loading"]]
    bad = layer_violations(modules, edges)
    assert len(bad) == 2
    assert any("config.scenario -> model.loading" in b and "later stage 'model'" in b for b in bad)
    assert any("pipeline -> splitimpera " in b and "public API" in b for b in bad)
    # The dashboard script may use the public API; nothing may import the script.
    edges.append(Edge("cli", "dashboard.app", "splitimpera/cli.py:1", "from .dashboard import app"))
    assert [b for b in layer_violations(modules, edges) if b not in bad] == [
        "cli -> dashboard.app  (splitimpera/cli.py:1: from .dashboard import app): imports dashboard.app, "
        "a script (run by `streamlit run`), not a module"]


# --------------------------------------------------------------------------------------------
# The real package

def test_no_import_cycles():
    modules, edges, _ = import_edges(PACKAGE_DIR)
    found = cycles(modules, edges)
    by_pair = {(e.src, e.dst): e for e in edges}
    lines = []
    for c in found:
        lines.append(" -> ".join(c + [c[0]]))
        lines += [f"    {by_pair[(a, b)]}" for a, b in zip(c, c[1:] + c[:1])]
    assert not found, f"{len(found)} import cycle(s) among splitimpera's modules:\n" + "\n".join(lines)


def test_imports_follow_the_stage_order():
    modules, edges, _ = import_edges(PACKAGE_DIR)
    bad = layer_violations(modules, edges)
    order = " < ".join(s for s, _ in STAGES)
    assert not bad, f"{len(bad)} import(s) against the stage order ({order}):\n" + "\n".join(bad)


def test_imports_of_package_modules_resolve():
    _, _, unresolved = import_edges(PACKAGE_DIR)
    assert not unresolved, "imports of splitimpera modules that do not exist:\n" + "\n".join(map(str, unresolved))


def test_pipeline_is_wiring_only():
    n = len((PACKAGE_DIR / "pipeline.py").read_text().splitlines())
    assert n <= PIPELINE_MAX_LINES, (f"splitimpera/pipeline.py has {n} lines (at most {PIPELINE_MAX_LINES}: "
                                     "prepare / evaluate / run wiring only)")

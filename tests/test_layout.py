"""The package layout is the architecture: each pipeline stage imports only stages at or
before its own, there are no import cycles, nothing inside the package imports the
package's ``__init__`` (the public API, which imports everything), front ends import one
another only where a command is built on another, and no module takes a private name
(leading underscore) from another module.

Imports are read statically (``ast``) from every ``.py`` under ``splitimpera/``: module-level
and function-level ones alike (a lazy import is still a dependency), relative ones resolved.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

PACKAGE_DIR = Path(__file__).resolve().parent.parent / "splitimpera"
TOP = "splitimpera"  # the package's own __init__, as a node

# Stages in pipeline order; a module belongs to the stage whose entry is its first dotted
# component (``config.scenario`` → config). A new top-level module or sub-package must be
# placed here on purpose. After ``pipeline`` come the front ends and side tools, one stage
# each, in the order of the commands built on one another.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("foundation", ("_version", "errors", "atomic", "cache", "plain", "stages")),
    ("config", ("config",)),
    ("data", ("data",)),
    ("model", ("model",)),
    ("accuracy", ("accuracy",)),
    ("latency", ("latency",)),
    ("qos", ("ranking", "qos")),
    ("results", ("results",)),
    ("report", ("report",)),
    ("pipeline", ("prepared", "batch", "pipeline")),
    ("whatif", ("whatif",)),
    ("calibrate", ("calibrate",)),
    ("runtime", ("runtime",)),
    ("sweep", ("sweep",)),
    ("dashboard", ("dashboard",)),
    ("cli", ("cli",)),
]

# A front end or side tool (a stage after ``pipeline``) imports another one only where it is
# built on it, as listed here; any other edge between two of them is reported, whatever the
# stage order says. The library stages up to ``pipeline`` are open to all of them.
FRONT_END_USES: dict[str, tuple[str, ...]] = {
    "whatif": (),
    "calibrate": (),
    "runtime": ("calibrate",),  # `measure --calibrate` profiles this machine, then predicts it
    "sweep": (),
    "dashboard": ("whatif",),  # the what-if view it draws
    "cli": ("calibrate", "runtime", "sweep"),  # one command each
}

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
    names: tuple[str, ...] = ()  # what the statement takes from ``dst`` that is not a module
    hidden: tuple[str, ...] = ()  # what it binds from ``dst`` under a private alias: ``y as _y``

    def __str__(self) -> str:
        return f"{self.src} -> {self.dst}  ({self.where}: {self.code})"


def is_private(name: str) -> bool:
    """``_x``, not ``__x__``: a module's own business, not for other modules."""
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


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
    is a module, else to ``x`` (``y`` is an attribute, kept in ``Edge.names``). Importing a
    submodule runs its parent packages' ``__init__`` too; those implicit edges are left out
    (they would make every package a cycle with its own submodules). A name bound to a package
    module (``from . import x``, ``import splitimpera.x as y``) and then read as ``x._z`` gives
    one more edge, to that module, with ``names == ("_z",)``: the same reach as importing it.
    ``unresolved``: imports of package modules that do not exist.
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
        bound: dict[str, tuple[str, bool]] = {}  # local name -> (package module it is bound to, type only)
        for node in ast.walk(tree):
            found: dict[str, list[str]] = {}  # module -> attribute names taken from it
            hidden: dict[str, list[str]] = {}  # module -> "y as _y" for private aliases
            missing: list[str] = []
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == package or alias.name.startswith(package + "."):
                        mod = _join(alias.name[len(package) + 1:])
                        if mod not in modules:
                            missing.append(mod)
                            continue
                        found.setdefault(mod, [])
                        if alias.asname:
                            bound[alias.asname] = mod, id(node) in type_only
                            if is_private(alias.asname):
                                hidden.setdefault(mod, []).append(f"{alias.name} as {alias.asname}")
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
                                dst = sub  # `from .pkg import submodule`
                                found.setdefault(sub, [])
                                bound[alias.asname or alias.name] = sub, id(node) in type_only
                            else:
                                dst = base
                                found.setdefault(base, []).append(alias.name)
                            if alias.asname and is_private(alias.asname) and not is_private(alias.name):
                                hidden.setdefault(dst, []).append(f"{alias.name} as {alias.asname}")
            if not (found or missing):
                continue
            code = ast.get_source_segment(text, node) or type(node).__name__
            code = " ".join(code.split())
            where = f"{where_file}:{node.lineno}"
            for dst, names in found.items():
                edges.append(Edge(name, dst, where, code, id(node) in type_only, tuple(names),
                                  tuple(hidden.get(dst, ()))))
            for dst in dict.fromkeys(missing):
                unresolved.append(Edge(name, dst, where, code, id(node) in type_only))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                    and node.value.id in bound and is_private(node.attr)):
                dst, only_typed = bound[node.value.id]
                edges.append(Edge(name, dst, f"{where_file}:{node.lineno}", f"{node.value.id}.{node.attr}",
                                  only_typed, names=(node.attr,)))
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
        elif d != s and STAGES[d][0] in FRONT_END_USES and STAGES[d][0] not in FRONT_END_USES[STAGES[s][0]]:
            out.append(f"{e}: front end {STAGES[s][0]!r} reaches sideways into {STAGES[d][0]!r} "
                       f"(FRONT_END_USES lets it import {list(FRONT_END_USES[STAGES[s][0]]) or 'none'})")
    return out


def private_imports(edges: list[Edge]) -> list[str]:
    """Every private name one package module takes from another: ``from .x import _y`` (under
    any alias), a package ``__init__`` re-exporting its own submodule's ``_y``, and ``x._y`` on
    a bound module; and a package module's public name bound under a private alias
    (``from .x import y as _y``), which hides a shared thing behind a private-looking name. What
    is shared gets a public name in the module that owns it. Standard-library and third-party
    modules are not package modules and never show up here (``import datetime as _dt`` is fine).
    """
    out = []
    for e in edges:
        private = [n for n in e.names if is_private(n)]
        if private and e.src != e.dst:
            out.append(f"{e}: takes the private name(s) {', '.join(private)} of {e.dst}")
        if e.hidden:
            out.append(f"{e}: binds {', '.join(e.hidden)}, a name of {e.dst} under a private alias")
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
    new = [b for b in layer_violations(modules, edges) if b not in bad]
    assert "cli -> dashboard.app  (splitimpera/cli.py:1: from .dashboard import app): imports dashboard.app, " \
        "a script (run by `streamlit run`), not a module" in new
    assert len(new) == 2 and all(b.startswith("cli -> dashboard.app ") for b in new)  # and a sideways one


def test_front_ends_import_one_another_only_as_listed(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "",
        "pipeline.py": "",
        "whatif.py": "from .pipeline import run\nfrom .sweep import grid\n",
        "calibrate.py": "",
        "runtime/__init__.py": "",
        "runtime/server.py": "from ..calibrate import fit\n",
        "sweep.py": "from .runtime import server\nfrom .whatif import prepare_key\n",
        "dashboard/__init__.py": "",
        "dashboard/charts.py": "from ..whatif import ranked\n",
        "cli.py": "from .sweep import run\nfrom .dashboard import charts\n",
    })
    modules, edges, _ = import_edges(pkg)
    bad = layer_violations(modules, edges)
    assert len(bad) == 4, bad
    assert any("whatif -> sweep " in b and "later stage 'sweep'" in b for b in bad)
    assert any("sweep -> runtime.server " in b and "sideways into 'runtime'" in b and "import none" in b
               for b in bad)
    assert any("sweep -> whatif " in b and "sideways into 'whatif'" in b for b in bad)
    assert any("cli -> dashboard.charts " in b and "sideways into 'dashboard'" in b
               and "['calibrate', 'runtime', 'sweep']" in b for b in bad)


def test_private_names_taken_across_modules_are_found(tmp_path):
    pkg = _write(tmp_path, {
        "__init__.py": "from ._version import __version__\n",
        "_version.py": "__version__ = '1'\n",
        "errors.py": "class UserError(Exception):\n    pass\ndef _hidden():\n    pass\n_hidden()\n",
        "cache.py": "from .errors import UserError, _hidden\n",
        "plain.py": "def f():\n    from .errors import _hidden as hidden\n",
        "atomic.py": "from . import errors as e\ndef f():\n    return e._hidden(), e.UserError, e.__name__\n",
        "stages.py": "import splitimpera.errors as _errors\n",
        "config/__init__.py": "from .scenario import Scenario, _Strict  # noqa: F401\n",
        "config/scenario.py": ("import datetime as _dt\nfrom torchvision.models import _api\n"
                               "from .._version import __version__\nfrom ..errors import UserError as _UserError\n"
                               "class _Strict:\n    pass\nclass Scenario(_Strict):\n    pass\n"),
        "model/__init__.py": "from .. import _version\n",
        "model/cost.py": "from ..config import scenario as sc\nx = sc._Strict\nimport splitimpera.errors\n",
    })
    _, edges, _ = import_edges(pkg)
    found = sorted((b.split(" -> ")[0], b.rpartition("): ")[2]) for b in private_imports(edges))
    assert found == [
        ("atomic", "takes the private name(s) _hidden of errors"),
        ("cache", "takes the private name(s) _hidden of errors"),
        ("config", "takes the private name(s) _Strict of config.scenario"),
        ("config.scenario", "binds UserError as _UserError, a name of errors under a private alias"),
        ("model.cost", "takes the private name(s) _Strict of config.scenario"),
        ("plain", "takes the private name(s) _hidden of errors"),
        ("stages", "binds splitimpera.errors as _errors, a name of errors under a private alias"),
    ]
    use = next(b for b in private_imports(edges) if b.startswith("atomic"))
    assert "(splitimpera/atomic.py:3: e._hidden)" in use


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


def test_no_module_takes_another_modules_private_names():
    _, edges, _ = import_edges(PACKAGE_DIR)
    bad = private_imports(edges)
    assert not bad, (f"{len(bad)} private name(s) taken across modules (give what is shared a public "
                     "name in the module that owns it):\n" + "\n".join(bad))


# --------------------------------------------------------------------------------------------
# The README's trace of two settings through the stages


def readme_traces(text: str) -> dict[str, list[tuple[str, list[str]]]]:
    """``{setting: [(stage, [file paths named on that line]), …]}`` from the numbered lists of
    the README's "How it works" section, each introduced by a line starting with the setting
    in backticks."""
    section = text.split("## How it works", 1)[1].split("\n## ", 1)[0]
    traces: dict[str, list[tuple[str, list[str]]]] = {}
    current = None
    item: list[str] | None = None
    for line in section.splitlines():
        m = re.match(r"^`([a-z_.]+)` \(", line)
        if m:
            current = traces.setdefault(m.group(1), [])
            continue
        m = re.match(r"^\d+\. \*\*([a-z ]+)\*\*:(.*)$", line)
        if m and current is not None:
            item = [m.group(1), m.group(2)]
            current.append(item)
        elif item is not None and line.startswith("   "):
            item[1] += " " + line.strip()
        else:
            item = None
    return {k: [(stage, re.findall(r"`([a-z_/]+\.py)`", body)) for stage, body in v] for k, v in traces.items()}


def test_readme_traces_follow_the_stages_once_each():
    traces = readme_traces((PACKAGE_DIR.parent / "README.md").read_text())
    assert set(traces) == {"network.uplink_mbps", "bottleneck.name"}
    names = [s for s, _ in STAGES]
    for setting, lines in traces.items():
        stages = [s for s, _ in lines]
        assert all(s in names for s in stages), f"{setting}: unknown stage in {stages}"
        idx = [names.index(s) for s in stages]
        assert idx == sorted(set(idx)), f"{setting}: stages out of order or visited twice: {stages}"
        for stage, files in lines:
            assert files, f"{setting}, {stage}: the line names no file"
            for f in files:
                assert (PACKAGE_DIR / f).is_file(), f"{setting}, {stage}: splitimpera/{f} does not exist"
                mod = _module_name(PACKAGE_DIR / f, PACKAGE_DIR)
                assert stage_of(mod) == names.index(stage) or f == "plain.py", (
                    f"{setting}: {f} is in stage {names[stage_of(mod)]!r}, not {stage!r}")


def test_readme_trace_reader_sees_a_stage_visited_twice():
    text = ("## How it works\n\n`network.uplink_mbps` (x):\n\n1. **config**: `config/scenario.py` a\n"
            "   and `config/hardware.py`.\n2. **qos**: `qos.py`.\n3. **config**: `config/checks.py`.\n\n## Next\n")
    traces = readme_traces(text)
    assert traces == {"network.uplink_mbps": [("config", ["config/scenario.py", "config/hardware.py"]),
                                              ("qos", ["qos.py"]), ("config", ["config/checks.py"])]}

"""The package's layout (docs/architecture.md): no import cycles, and the part the Snakefile
imports at parse time (bpaitac.workflow) loads neither torch nor matplotlib."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "bpaitac"
WORKFLOW_FILES = [
    ROOT / "workflow" / "Snakefile",
    *sorted((ROOT / "workflow" / "rules").glob("*.smk")),
]
HEAVY = ("torch", "matplotlib", "scipy", "numba", "pysam", "tangermeme", "memelite")


def _modules() -> dict[str, Path]:
    """Dotted name -> file of every module of the package."""
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (annotations only)."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            yield from (n for child in node.orelse for n in (child, *_runtime_nodes(child)))
            continue
        yield node
        yield from _runtime_nodes(node)


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Package modules ``path`` imports when it runs (top level or inside a function; imports
    for type annotations only are left out)."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in modules else node.module)
    return {m for m in found if m in modules}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first search meets (empty for a DAG)."""
    state: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                found.append([*stack[stack.index(nxt) :], nxt])
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def test_no_import_cycles():
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    assert _cycles(graph) == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def _workflow_imports() -> set[str]:
    """The bpaitac modules the Snakefile and its rule files import."""
    pattern = re.compile(r"^\s*(?:from\s+(bpaitac[\w.]*)\s+import|import\s+(bpaitac[\w.]*))", re.M)
    found = set()
    for path in WORKFLOW_FILES:
        for match in pattern.finditer(path.read_text()):
            found.add(match.group(1) or match.group(2))
    return found


def test_rules_import_only_the_workflow_subpackage():
    imported = _workflow_imports()
    assert imported, "the rule files import nothing from bpaitac?"
    assert sorted(m for m in imported if not m.startswith("bpaitac.workflow")) == []


def test_parse_time_imports_load_no_torch_or_matplotlib():
    """Importing every module of bpaitac.workflow (all the Snakefile imports) in a fresh
    interpreter leaves torch, matplotlib and the other heavy libraries unloaded."""
    names = sorted(m for m in _modules() if m.startswith("bpaitac.workflow"))
    code = (
        "import importlib, json, sys\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert json.loads(out.stdout) == []


def test_split_names_are_the_schemas():
    """The held-out split names are the keys the schema allows under `preprocess.splits`."""
    import yaml

    from bpaitac.workflow.splits import HELD_OUT, SPLITS, TRAIN

    schema = yaml.safe_load((ROOT / "workflow/schemas/preprocess.schema.yaml").read_text())
    allowed = schema["$defs"]["preprocess"]["properties"]["splits"]["properties"]
    assert set(HELD_OUT) == set(allowed)
    assert SPLITS == (TRAIN, *HELD_OUT)

"""The package layering: who may import whom (read from the source, lazy imports included)."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import ROOT

PACKAGES = ("model", "train", "export", "performer")


def _module(path) -> str:
    return ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")


def _imports() -> dict[str, set[str]]:
    """Project module -> the project modules it imports anywhere in its file (lazy imports too)."""
    files = {_module(p): p for pkg in PACKAGES for p in (ROOT / pkg).glob("*.py")}
    graph: dict[str, set[str]] = {}
    for mod, path in files.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            deps |= {n for n in names if n in files and n != mod}
        graph[mod] = deps
    return graph


def _reach(graph, start) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for d in graph.get(todo.pop(), ()):
            if d not in seen:
                seen.add(d)
                todo.append(d)
    return seen


def test_no_import_cycle_between_project_modules():
    graph = _imports()
    cycles = sorted(m for m in graph if m in _reach(graph, m))
    assert not cycles, f"modules on an import cycle: {cycles}"


def test_the_runtime_imports_nothing_from_training_or_export():
    graph = _imports()
    for mod in (m for m in graph if m.startswith("performer.")):
        bad = sorted(d for d in _reach(graph, mod) if d.split(".")[0] in ("train", "export"))
        assert not bad, f"{mod} reaches {bad}"


def test_model_is_the_bottom_layer():
    graph = _imports()
    for mod in (m for m in graph if m.startswith("model")):
        assert all(d.startswith("model") for d in graph[mod]), (mod, graph[mod])


def test_building_the_cli_loads_no_torch_and_no_runtime():
    """Each command imports its heavy parts when it runs, not when the parser is built."""
    code = (
        "import sys\n"
        "from performer.cli import build_parser\n"
        "build_parser().parse_args(['train', '--data', 'd', '--run', 'r'])\n"
        "heavy = ('torch', 'onnxruntime', 'train.trainer', 'export.exporter', 'performer.engine', 'performer.app')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy or m in heavy))\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "[]"

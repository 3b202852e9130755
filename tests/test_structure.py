"""The shape of app/: no import cycles, small modules, TensorFlow only in the serving core's loader and runtimes."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
APP = REPO / "app"
MAX_LINES = 200
TENSORFLOW_PACKAGES = {"tensorflow", "keras", "tf_keras"}
MAY_IMPORT_TENSORFLOW = ("app/serving/loader.py", "app/serving/runtime.py", "app/serving/tflite_runtime.py",
                         "app/serving/lifecycle.py", "app/serving/legacy/",
                         "app/serving/explain_runtime.py")  # explanations take gradients with tf.GradientTape


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(APP.rglob("*.py"))}


def imported_names(path: Path) -> set[str]:
    """Every module `path` imports, at module level or inside functions: `from X import y` names X.y when
    that is a module, else X; relative imports are resolved."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            names |= {f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base for alias in node.names}
    return names


def import_graph() -> dict[str, set[str]]:
    """Each module of app/ -> the modules of app/ it imports."""
    return {name: (imported_names(path) & MODULES.keys()) - {name} for name, path in MODULES.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph[node]):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_import_graph_sees_imports_inside_functions_and_relative_ones():
    assert "app.serving.lifecycle" in import_graph()["app.serving.lazy_loader"]
    assert "app.errors" in import_graph()["app.serving.registry"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_app_has_no_import_cycles():
    assert cycles(import_graph()) == []


def test_no_module_in_app_is_over_200_lines():
    too_long = {str(path.relative_to(REPO)): lines for path in MODULES.values()
                if (lines := len(path.read_text().splitlines())) > MAX_LINES}
    assert too_long == {}


def test_only_the_loader_and_the_runtimes_import_tensorflow_or_keras():
    importers = sorted(str(path.relative_to(REPO)) for path in MODULES.values()
                       if not str(path.relative_to(REPO)).startswith(MAY_IMPORT_TENSORFLOW)
                       and {name.split(".")[0] for name in imported_names(path)} & TENSORFLOW_PACKAGES)
    assert importers == []


def test_create_app_imports_no_tensorflow(tmp_path):
    code = ("import json, sys; from app import create_app; create_app({'MODEL_DIR': sys.argv[1]}); "
            "print(json.dumps(sorted(set(sys.modules) & {'tensorflow', 'keras', 'tf_keras', 'h5py'})))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []

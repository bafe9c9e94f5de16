"""The engine's shape, checked from its source (docs/architecture.md): one direction of
dependency, no circle, never `slicer` or `qt`, constants and private names kept where they
belong, heavy frameworks imported in one place only."""
import ast
import os
import re
import sys
from pathlib import Path

import pytest

ENGINE = Path(__file__).resolve().parent.parent / "CardiacQuan" / "cardiacquan"
#: what the engine must never import: the Slicer application, its GUI, its MRML layer
FORBIDDEN = {"slicer", "qt", "ctk", "vtk", "mrml", "CardiacQuanLib", "CardiacQuan"}
#: heavy and optional frameworks: imported lazily, inside a function, in one module each (Dask,
#: tqdm and pyarrow are the 'batch' extra: the engine and its CLI import without them)
LAZY = {"keras": "frameworks", "tensorflow": "frameworks", "onnxruntime": "frameworks", "tf2onnx": "frameworks",
        "dask": "frameworks", "distributed": "frameworks", "tqdm": "frameworks", "pyarrow": "frameworks"}
#: optional libraries of outputs the Slicer module never asks for (figures and the report's pictures,
#: DICOM SEG, NRRD files): imported inside a function of one module each, so `quantify` on an exchange
#: .npz runs on what Slicer 5.10/5.12 ship (numpy, scipy, SimpleITK, pydicom) plus ONNX Runtime
OPTIONAL = {"cardiacquan.io.figures": "io.results", "cardiacquan.io.bullseye": "io.results",
            "cardiacquan.io.dicom_seg": "io.results", "nrrd": "io.volume",
            # training data readers: the CLI imports io.datasets with the training/evaluation commands
            "h5py": "io.datasets", "skimage.draw": "io.datasets",
            # the border check of evaluate-seg (scikit-image contours)
            "cardiacquan.evaluation.edge_alignment": "evaluation.seg"}
#: what the engine's quantify path must not load at import (the Slicer module's requirements)
NOT_ON_THE_MODULE_PATH = ("matplotlib", "skimage", "nrrd", "highdicom", "h5py")
MAX_LINES = 500


def _modules():
    out = {}
    for path in sorted(ENGINE.rglob("*.py")):
        rel = path.relative_to(ENGINE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(path):
    """(module imported, names, line, inside a function) for every import statement of a file."""
    tree = ast.parse(path.read_text(), str(path))
    found = []

    def visit(node, in_function):
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            if isinstance(child, ast.Import):
                for alias in child.names:
                    found.append((alias.name, [], child.lineno, in_function))
            elif isinstance(child, ast.ImportFrom):
                assert child.level == 0, f"{path}:{child.lineno}: relative import (use cardiacquan.<stage>.<module>)"
                found.append((child.module, [a.name for a in child.names], child.lineno, in_function))
            visit(child, nested)

    visit(tree, False)
    return found


def _engine_edges(name, path):
    """Engine modules that `name` imports (a `from package import module` counts as the module)."""
    edges = set()
    for module, names, _, _ in _imports(path):
        if module == "cardiacquan" or module.startswith("cardiacquan."):
            for n in names:
                if f"{module}.{n}" in MODULES:
                    edges.add(f"{module}.{n}")
            if module in MODULES and not MODULES[module].name == "__init__.py":
                edges.add(module)
    edges.discard(name)
    return edges


def test_the_engine_has_no_import_circle():
    graph = {name: _engine_edges(name, path) for name, path in MODULES.items()}
    state, stack = {}, []

    def walk(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                circle = stack[stack.index(nxt):] + [nxt]
                pytest.fail("import circle: " + " -> ".join(circle))
            if nxt not in state:
                walk(nxt)
        stack.pop()
        state[node] = "done"

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10 * len(graph)))
    for node in sorted(graph):
        if node not in state:
            walk(node)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_engine_module_never_imports_slicer_or_qt(name):
    for module, _, line, _ in _imports(MODULES[name]):
        assert module.split(".")[0] not in FORBIDDEN, f"{MODULES[name]}:{line} imports {module}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_imports_are_at_the_top_except_the_heavy_frameworks(name):
    for module, _, line, in_function in _imports(MODULES[name]):
        top = module.split(".")[0]
        if module in OPTIONAL or top in OPTIONAL:
            home = OPTIONAL.get(module) or OPTIONAL[top]
            assert in_function and name == f"cardiacquan.{home}", \
                f"{MODULES[name]}:{line}: {module} is optional: imported in cardiacquan/{home}.py only, lazily"
        elif top in LAZY:
            assert in_function and name == f"cardiacquan.{LAZY[top]}", \
                f"{MODULES[name]}:{line}: {module} is imported in cardiacquan/{LAZY[top]}.py only, lazily"
        else:
            assert not in_function, f"{MODULES[name]}:{line}: import {module} inside a function"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_no_private_name_is_used_outside_its_module(name):
    for module, names, line, _ in _imports(MODULES[name]):
        if module.startswith("cardiacquan"):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            assert not private, f"{MODULES[name]}:{line} imports private {private} from {module}"


@pytest.mark.parametrize("name", sorted(MODULES))
def test_engine_modules_are_short(name):
    n = len(MODULES[name].read_text().splitlines())
    assert n <= MAX_LINES, f"{MODULES[name]} has {n} lines (at most {MAX_LINES}: split it by what it does)"


def test_the_contract_imports_numpy_only():
    """The Slicer module imports it inside Slicer's Python before the engine's requirements exist."""
    allowed = set(sys.stdlib_module_names) | {"numpy", "cardiacquan"}
    for module, names, line, _ in _imports(MODULES["cardiacquan.contract"]):
        assert module.split(".")[0] in allowed, f"contract.py:{line} imports {module}"
        if module == "cardiacquan":
            assert set(names) <= {"__version__", "CardiacQuanError"}, names
    init = [m for m, _, _, _ in _imports(MODULES["cardiacquan"])]
    assert init == [], f"cardiacquan/__init__.py must stay import-free (it runs before contract.py): {init}"


def test_constants_of_the_contract_are_defined_once():
    """Column names, labels and index names live in contract.py; no engine module redefines them."""
    owned = {"INDEX_NAMES", "SECTOR_NAMES", "LV_CAVITY", "MYOCARDIUM", "RV", "BACKGROUND", "OUTPUT_FILES",
             "FIGURE_FILES", "INDICES_COLUMNS", "PATCH", "WORK_SPACING_MM", "MODEL_FILE", "SEG_MODEL_FILE",
             "QUAN_MODEL_FILE", "CSV_COLUMNS"}
    home = {"PATCH": "cardiacquan.segmentation.network", "WORK_SPACING_MM": "cardiacquan.segmentation.network",
            "SEG_MODEL_FILE": "cardiacquan.models", "QUAN_MODEL_FILE": "cardiacquan.models"}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            targets = node.targets if isinstance(node, ast.Assign) else []
            for t in targets:
                for elt in (t.elts if isinstance(t, ast.Tuple) else [t]):
                    if isinstance(elt, ast.Name) and elt.id in owned:
                        assert name == home.get(elt.id, "cardiacquan.contract"), \
                            f"{path}: {elt.id} is defined in {home.get(elt.id, 'cardiacquan.contract')}"


def test_only_models_finds_the_weights():
    """One place decides where the weights are (CARDIACQUAN_MODEL_DIR or Resources/Models)."""
    for name, path in MODULES.items():
        text = path.read_text()
        if name != "cardiacquan.models":
            assert "CARDIACQUAN_MODEL_DIR" not in text and '"Resources"' not in text, \
                f"{path} decides where the weights are; ask cardiacquan.models"
            assert not re.search(r"[\"'](seg_model|quan_net)[._]\w*[\"']", text), f"{path} names a bundled weights file"


def test_the_engine_imports_without_slicer_or_a_framework():
    """Importing the whole runtime path loads neither Slicer nor TensorFlow."""
    import subprocess
    code = ("import sys, cardiacquan.cli, cardiacquan.pipeline; cardiacquan.cli.build_parser(); "
            "bad = [m for m in ('slicer', 'qt', 'vtk', 'tensorflow', 'keras', 'dask', 'distributed', "
            "'pyarrow') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    env = dict(os.environ, PYTHONPATH=str(ENGINE.parent))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_the_quantify_path_loads_no_optional_library():
    """The Slicer module runs `quantify` on an .npz with --no-figures: the figure, DICOM SEG and NRRD
    libraries are not loaded, so its requirements (Resources/requirements.txt) can leave them out.
    The parser is built as `cardiacquan quantify` builds it: in a clone it imports the training and
    evaluation commands too (the installed extension has neither)."""
    import subprocess
    code = ("import sys, cardiacquan.cli, cardiacquan.pipeline; cardiacquan.cli.build_parser(); "
            f"bad = [m for m in {NOT_ON_THE_MODULE_PATH!r} if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    env = dict(os.environ, PYTHONPATH=str(ENGINE.parent))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr

"""The package's shape: a leaf backend, no import circles, no side effects in `backend/`."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("keras_sparse", "keras_sparse_cli")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(p): p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))
    }


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    """Our modules that `path` imports anywhere (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {
        name: {other for other in _imports(path, modules) if other != name}
        for name, path in modules.items()
    }


def _parents(name: str) -> set[str]:
    """Importing `a.b.c` runs `a` and `a.b` first: those edges are Python's, not a circle."""
    parts = name.split(".")
    return {".".join(parts[:i]) for i in range(1, len(parts))}


def test_backend_imports_nothing_from_the_rest_of_the_package():
    graph = _graph()
    outside = {
        name: sorted(o for o in deps if not o.startswith("keras_sparse.backend"))
        for name, deps in graph.items()
        if name.startswith("keras_sparse.backend")
    }
    assert not {k: v for k, v in outside.items() if v}, outside


def test_there_are_no_import_circles():
    graph = {
        name: {d for d in deps if d not in _parents(name) and name not in _parents(d)}
        for name, deps in _graph().items()
    }
    # The public package modules re-export their submodules: `keras_sparse` -> everything.
    graph = {name: deps for name, deps in graph.items() if name not in PACKAGES}
    state: dict[str, int] = {}
    cycles = []

    def visit(name: str, path: list[str]) -> None:
        state[name] = 1
        for dep in sorted(graph.get(name, ())):
            if state.get(dep) == 1:
                cycles.append(path[path.index(dep) :] + [dep] if dep in path else [name, dep])
            elif dep not in state:
                visit(dep, path + [dep])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not cycles, cycles


def test_backend_modules_only_define_things_at_import():
    allowed = (
        ast.Import,
        ast.ImportFrom,
        ast.FunctionDef,
        ast.ClassDef,
        ast.Assign,
        ast.AnnAssign,
        ast.If,
        ast.Expr,
    )
    for path in sorted((ROOT / "keras_sparse" / "backend").glob("*.py")):
        for node in ast.parse(path.read_text()).body:
            assert isinstance(node, allowed), f"{path.name}:{node.lineno}"
            if isinstance(node, ast.Expr):  # a docstring, never a call
                assert isinstance(node.value, ast.Constant), f"{path.name}:{node.lineno} calls"
            if isinstance(node, ast.If):
                for inner in ast.walk(node):
                    assert not (
                        isinstance(inner, ast.Expr) and isinstance(inner.value, ast.Call)
                    ), f"{path.name}:{inner.lineno} calls at import"


#: The only places that shadow a Keras method on one model (never on a class), with why:
#: enable_sparse (asked for by the user, docs/distributed.md) and the compute_loss of a model
#: holding a SparseDenseOutput (docs/compatibility.md).
PER_MODEL_SHADOWS = {
    ("distribute/_tensorflow.py", "_maybe_symbolic_build"),
    ("distribute/_tensorflow.py", "train_step"),
    ("distribute/_tensorflow.py", "test_step"),
    ("_output_targets.py", "compute_loss"),
}


def test_setattr_of_a_keras_method_happens_only_in_the_listed_per_model_shadows():
    """`setattr` / `object.__setattr__` of a name Keras's Model defines: only where listed."""
    import keras

    keras_names = set(dir(keras.Model))
    found = set()
    for path in sorted((ROOT / "keras_sparse").rglob("*.py")):
        if path.name == "_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call) or len(node.args) < 2:
                continue
            name = ast.unparse(node.func)
            attribute = node.args[1]
            if name in ("setattr", "object.__setattr__") and isinstance(attribute, ast.Constant):
                if attribute.value in keras_names:
                    relative = path.relative_to(ROOT / "keras_sparse").as_posix()
                    found.add((relative, attribute.value))
    # `_maybe_symbolic_build` is a method of Keras's TensorFlow trainer only.
    assert found == {shadow for shadow in PER_MODEL_SHADOWS if shadow[1] in keras_names}


def test_no_module_replaces_keras_attributes_outside_compat():
    """Changing Keras goes through `_compat.replace`: no `setattr(keras..., ...)` elsewhere."""
    for path in sorted((ROOT / "keras_sparse").rglob("*.py")):
        if path.name == "_compat.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Assign):
                for target in node.targets:
                    text = ast.unparse(target)
                    assert not text.startswith(("keras.", "sys.excepthook", "threading.")) or (
                        path.name == "_jax.py" and "excepthook" in text
                    ), f"{path}:{node.lineno}: {text}"


def test_ci_runs_exactly_the_readme_test_command_then_keras_tests_and_the_lowest_versions():
    readme = (ROOT / "README.md").read_text()
    command = next(
        line for line in readme.splitlines() if line.startswith("python -m pip install -e ")
    )
    ci = [
        line
        for line in (ROOT / ".ci" / "run").read_text().splitlines()
        if line and not line.startswith(("#", "set ", "cd ", "export "))
    ]
    assert ci[:2] == [command, "python .ci/keras_suite.py"]
    assert "bash .ci/lowest" in ci and "wait" not in " ".join(ci[: ci.index("bash .ci/lowest")])
    # keras-nightly runs beside the lowest versions and can never fail CI.
    assert any(line.startswith("bash .ci/nightly") and line.endswith("&") for line in ci)
    assert (ROOT / ".ci" / "nightly").read_text().rstrip().endswith("exit 0")
    pins = (ROOT / ".ci" / "lowest.txt").read_text()
    pyproject = (ROOT / "pyproject.toml").read_text()
    for name in ("keras", "numpy", "scipy"):
        pinned = next(line for line in pins.splitlines() if line.startswith(f"{name}=="))
        low = pinned.split("==")[1].rsplit(".", 1)[0]  # 3.10.0 -> 3.10
        assert f'"{name}>={low}' in pyproject, (name, low)


def test_the_version_is_written_once_and_the_type_hints_ship():
    import importlib.metadata

    import keras_sparse

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert 'dynamic = ["version"]' in pyproject and '\nversion = "' not in pyproject
    assert importlib.metadata.version("keras-sparse") == keras_sparse.__version__
    assert (ROOT / "keras_sparse" / "py.typed").exists()
    assert '"py.typed"' in pyproject


def test_every_public_module_says_what_it_exports_and_each_name_has_one_home():
    import importlib

    import keras_sparse

    homes: dict[int, list[str]] = {}
    for name in keras_sparse.__all__:
        module = getattr(keras_sparse, name)
        if not isinstance(module, type(keras_sparse)):
            continue
        assert hasattr(module, "__all__"), f"keras_sparse.{name} has no __all__"
        for public in module.__all__:
            obj = getattr(module, public)
            if callable(obj) and getattr(obj, "__module__", "").startswith("keras_sparse"):
                homes.setdefault(id(obj), []).append(f"{name}.{public}")
    # The old paths of 0.1.0's development are gone (it was never released).
    for gone in ("cli", "streaming", "ops"):
        assert not (ROOT / "keras_sparse" / f"{gone}.py").exists()
        with pytest.raises(ImportError):
            importlib.import_module(f"keras_sparse.{gone}")
    assert not hasattr(keras_sparse, "predict_topk") and not hasattr(keras_sparse, "evaluate_topk")
    shared = {tuple(paths) for paths in homes.values() if len(paths) > 1}
    # One object under two public modules is allowed only for the top-k layer, which is a
    # layer (keras_sparse.layers) and part of keras_sparse.topk.
    assert shared <= {("layers.TopK", "topk.TopK")}, shared


#: Private names of other libraries than Keras that the package reads, with why.
NOT_KERAS_PRIVATE = {
    "_exit",  # os._exit: a failing process ends at once (distribute/_jax.py)
    "_reconstruct",  # numpy's, allowed when unpickling Planetoid files (_planetoid.py)
}


def _own_private_names() -> set[str]:
    """Every `_name` that keras_sparse itself defines: modules, defs, attributes it sets."""
    names = {path.stem for path in (ROOT / "keras_sparse").rglob("_*.py")}
    for path in (ROOT / "keras_sparse").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in (
                "setattr",
                "object.__setattr__",
            ):
                if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    names.add(node.args[1].value)
    return names


def test_private_keras_attributes_are_read_only_in_compat_and_backend():
    """Outside `_compat` and `backend/`, every `x._name` read is a name keras_sparse defines."""
    own = _own_private_names() | NOT_KERAS_PRIVATE
    found = []
    for path in sorted((ROOT / "keras_sparse").rglob("*.py")):
        relative = path.relative_to(ROOT / "keras_sparse").as_posix()
        if relative == "_compat.py" or relative.startswith("backend/"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            name = None
            if isinstance(node, ast.Attribute):
                name = node.attr
            elif isinstance(node, ast.Call) and ast.unparse(node.func) in ("getattr", "hasattr"):
                if len(node.args) > 1 and isinstance(node.args[1], ast.Constant):
                    name = node.args[1].value
            private = isinstance(name, str) and name.startswith("_") and not name.endswith("__")
            if private and name not in own:
                found.append(f"{relative}:{node.lineno}: {name}")
    assert not found, "read through keras_sparse._compat instead:\n" + "\n".join(found)

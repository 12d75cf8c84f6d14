"""Every change to Keras goes through `_compat`: installed here, once, or reported once."""

import os
import subprocess
import sys
import types
import warnings

import keras
import pytest

import keras_sparse as ks
from keras_sparse import _compat, _requirements
from keras_sparse import backend as B

# Written out by hand (not read from the registry): what `import keras_sparse` must change.
EVERY_BACKEND = [
    "keras.src.losses.ALL_OBJECTS_DICT",
    "keras.src.metrics.ALL_OBJECTS_DICT",
    "keras.Model.__call__",
    "keras.Model.train_on_batch",
    "keras.Model.test_on_batch",
    "keras.Model.predict_on_batch",
    "keras.src.trainers.compile_utils.CompileLoss.__call__",
    "keras.src.models.functional.Functional._convert_inputs_to_tensors",
    "keras.Model.train_step",
]
PER_BACKEND = {
    "tensorflow": [
        "keras.src.trainers.data_adapters.data_adapter_utils.scipy_sparse_to_tf_sparse",
        "keras.src.trainers.data_adapters.get_data_adapter",
    ],
    "jax": [
        "keras.src.trainers.data_adapters.data_adapter_utils.scipy_sparse_to_jax_sparse",
        "keras.src.backend.jax.trainer.JAXTrainer.make_train_function",
        "keras.src.backend.jax.trainer.JAXTrainer.make_test_function",
        "keras.src.backend.jax.trainer.JAXTrainer.make_predict_function",
        "keras.src.backend.jax.trainer._distribute_data",
        "keras.src.trainers.data_adapters.get_data_adapter",
    ],
    "torch": [
        "keras.src.layers.core.input_layer.InputLayer.__init__",
        "keras.src.backend.torch.core.convert_to_tensor",
        "keras.src.trainers.data_adapters.array_slicing.ScipySparseSliceable"
        ".convert_to_torch_compatible",
        "keras.src.trainers.data_adapters.data_adapter_utils.get_torch_dataloader",
        "keras.src.backend.torch.trainer.TorchTrainer._should_torch_compile",
    ],
}


def test_every_patch_installs_on_this_keras():
    listed = {p.target: p for p in ks.keras_patches()}
    expected = EVERY_BACKEND + PER_BACKEND[B.NAME]
    if _compat.keras_version() > (3, 15):
        # Keras 3.16 renames its JAX trainer class, and its optimizer strings come from
        # Keras's own table.
        expected = [t.replace(".JAXTrainer.", ".Trainer.") for t in expected]
        expected = [*expected, "keras.src.optimizers.ALL_OBJECTS_DICT"]
    assert sorted(listed) == sorted(expected)
    missing = {t: p.reason for t, p in listed.items() if not p.installed}
    assert not missing, f"Keras {keras.version()}: {missing}"
    for patch in listed.values():
        assert patch.feature and patch.keras_versions == _compat.TESTED


def test_this_keras_is_in_the_tested_range():
    # CI runs the lowest and the latest Keras; each must lie in the range we claim.
    assert _compat.in_tested_range(), keras.version()
    assert _compat.check_keras_version()


def test_installed_replacements_are_in_place_and_name_their_target():
    owner, name = _compat._resolve("keras.Model.train_on_batch")
    assert _compat.replaces(getattr(owner, name)) == "keras.Model.train_on_batch"
    assert _compat.replaces(keras.Model.train_step) == "keras.Model.train_step"


@pytest.fixture
def fake_keras(monkeypatch):
    """A stand-in module for Keras code, importable by a dotted path."""
    import sys

    module = types.ModuleType("fake_keras_module")

    class Owner:
        def method(self, x):
            return ("original", x)

    module.Owner = Owner
    module.function = lambda x: ("function", x)
    module.TABLE = {"taken": "keras"}
    monkeypatch.setitem(sys.modules, "fake_keras_module", module)
    yield module
    for target in [p.target for p in _compat.patches() if p.target.startswith("fake_keras")]:
        _compat.restore(target)


@pytest.mark.parametrize("loss", ["mse", "custom"])
@pytest.mark.parametrize("kind", ["functional", "sequential"])
def test_a_model_without_keras_sparse_objects_runs_only_keras_code_in_its_step(kind, loss):
    """No frame of keras_sparse between `fit` and the loss, and Keras's own methods bound.

    A compiled `"mse"` (a Keras loss with a masked twin) is checked at its first
    real call only: from the second step on it is Keras's own `__call__`. Every
    layer runs Keras's own `__call__`. On torch the model's own call is one
    plain function (`torch.compile` reads a torch module's `__call__` as one):
    that frame is the only one of ours.
    """
    import inspect
    import pathlib

    import numpy as np

    package = pathlib.Path(ks.__file__).parent
    steps = []  # per forward pass: the frames seen in it and in the loss after it

    def record():
        steps[-1].extend((frame.filename, frame.function) for frame in inspect.stack())

    class Probe(keras.layers.Layer):  # the stack of the forward pass, at its last layer
        def call(self, x):
            steps.append([])
            record()
            return x

    if kind == "functional":
        inp = keras.Input((3,))
        model = keras.Model(inp, Probe()(keras.layers.Dense(2)(inp)))
    else:
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2), Probe()])

    def custom(y_true, y_pred):  # not one of Keras's losses that have a masked twin
        record()
        return keras.ops.mean(keras.ops.abs(y_true - y_pred))

    model.compile(optimizer="sgd", loss=custom if loss == "custom" else loss, run_eagerly=True)
    model.fit(np.ones((4, 3), "float32"), np.zeros((4, 2), "float32"), batch_size=2, verbose=0)
    assert len(steps) >= 2
    ours = {
        (pathlib.Path(name).relative_to(package).as_posix(), function)
        for name, function in steps[-1]
        if pathlib.Path(name).is_relative_to(package)
    }
    assert ours == ({("_keras_hooks.py", "__call__")} if B.NAME == "torch" else set())
    assert model.layers[0].__call__.__func__ is vars(keras.layers.Layer)["__call__"]
    if B.NAME != "torch":
        assert model.__call__.__func__ is vars(keras.Model)["__call__"].original
    assert model.train_step.__func__ is vars(keras.Model)["train_step"].original
    compile_loss = model._compile_loss  # what Keras's step calls: its own `__call__`
    assert compile_loss.__call__.__func__ is vars(type(compile_loss))["__call__"].original
    for obj in [model, *model.layers, compile_loss]:  # nothing of ours is written on them
        assert not [name for name in vars(obj) if "keras_sparse" in name], obj


def _wrap_tag(original):
    def replacement(*args):
        return ("ours", original(*args))

    return replacement


def test_replace_wraps_once_records_and_restores(fake_keras):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _compat.replace("fake_keras_module.Owner.method", _wrap_tag, feature="tags")
        assert _compat.replace("fake_keras_module.Owner.method", _wrap_tag, feature="tags")
    assert fake_keras.Owner().method(1) == ("ours", ("original", 1))  # wrapped once, not twice
    record = {p.target: p for p in _compat.patches()}["fake_keras_module.Owner.method"]
    assert record.installed and record.feature == "tags" and record.reason == ""
    _compat.restore("fake_keras_module.Owner.method")
    assert fake_keras.Owner().method(1) == ("original", 1)
    assert "fake_keras_module.Owner.method" not in {p.target for p in _compat.patches()}


def test_an_inherited_method_is_restored_by_deleting_ours(fake_keras):
    class Child(fake_keras.Owner):
        pass

    fake_keras.Child = Child
    assert _compat.replace("fake_keras_module.Child.method", _wrap_tag, feature="tags")
    assert "method" in vars(Child) and Child().method(2) == ("ours", ("original", 2))
    _compat.restore("fake_keras_module.Child.method")
    assert "method" not in vars(Child) and Child().method(2) == ("original", 2)


def test_only_where_gives_other_instances_the_original_function_itself(fake_keras):
    def make(original):
        def method(self, x):
            return ("ours", original(self, x)) if self.ours else original(self, x)

        return method

    uses = lambda instance: instance.ours  # noqa: E731
    assert _compat.replace("fake_keras_module.Owner.method", make, feature="t", only_where=uses)
    plain, chosen = fake_keras.Owner(), fake_keras.Owner()
    plain.ours, chosen.ours = False, True
    assert plain.method.__func__ is vars(fake_keras.Owner)["method"].original
    assert _compat.replaces(plain.method.__func__) is None and plain.method(1) == ("original", 1)
    assert _compat.replaces(chosen.method.__func__) == "fake_keras_module.Owner.method"
    assert chosen.method(1) == ("ours", ("original", 1))
    # Looked up on the class, as `type(model).train_step(model, ...)`: the replacement, which
    # hands the plain instance to the original itself.
    assert fake_keras.Owner.method(plain, 2) == ("original", 2)
    assert fake_keras.Owner.method(chosen, 2) == ("ours", ("original", 2))

    class Child(fake_keras.Owner):
        def method(self, x):
            return ("child", super().method(x))

    child = Child()
    child.ours = True
    assert child.method(3) == ("child", ("ours", ("original", 3)))  # super() chooses too


@pytest.mark.parametrize(
    ("target", "check", "reason"),
    [
        ("fake_keras_module.Owner.gone", None, "not found"),
        ("fake_keras_module.Missing.method", None, "not found"),
        ("fake_keras_module.function", lambda f: "another signature", "another signature"),
    ],
)
def test_a_change_that_cannot_install_changes_nothing_and_names_the_lost_feature(
    fake_keras, target, check, reason
):
    before = fake_keras.function
    with pytest.warns(UserWarning) as caught:
        assert not _compat.replace(target, _wrap_tag, feature="the tagging feature", check=check)
    message = str(caught[0].message)
    assert "the tagging feature" in message and target in message and reason in message
    assert "pip install" in message and keras.version() in message
    assert fake_keras.function is before
    record = {p.target: p for p in _compat.patches()}[target]
    assert not record.installed and reason in record.reason


def test_a_renamed_keras_attribute_is_found_under_either_name(fake_keras):
    old, new = "fake_keras_module.OldName.method", "fake_keras_module.Owner.method"
    assert _compat.first_found(old, new) == new  # this "Keras" has the new name only
    assert _compat.first_found(new, old) == new
    # Neither: the first, so that the warning of `replace` names what was looked for.
    assert _compat.first_found(old, "fake_keras_module.Gone.method") == old


def test_takes_accepts_the_parameters_of_either_keras_version(fake_keras):
    def later(data, layouts=None, is_super_batch=False):
        return data

    def other(data, layout=None):
        return data

    check = _compat.takes("data", "layouts", or_also=("data", "layouts", "is_super_batch"))
    assert check(later) is None
    assert check(lambda data, layouts=None: data) is None
    assert "('data', 'layout')" in check(other)
    assert _compat.takes("data", "layouts")(later) is not None


def test_add_entries_keeps_the_names_keras_has(fake_keras):
    assert _compat.add_entries(
        "fake_keras_module.TABLE", {"taken": "ours", "new": "ours"}, feature="names"
    )
    assert fake_keras.TABLE == {"taken": "keras", "new": "ours"}
    _compat.restore("fake_keras_module.TABLE")
    assert fake_keras.TABLE == {"taken": "keras"}
    with pytest.warns(UserWarning, match="not a dict"):
        assert not _compat.add_entries("fake_keras_module.function", {"a": 1}, feature="names")


def test_a_keras_outside_the_tested_range_warns_once(monkeypatch):
    monkeypatch.setattr(keras, "version", lambda: "3.2.1")
    from keras_sparse.backend import _once

    monkeypatch.setattr(_once, "_PROCESS", set())  # as in a fresh process
    with pytest.warns(UserWarning, match=r"tested on Keras 3\.\d+-3\.\d+.*3\.2\.1") as caught:
        assert not _compat.check_keras_version()
        assert not _compat.check_keras_version()
    assert len(caught) == 1
    assert _compat.keras_version() == (3, 2)


@pytest.mark.parametrize("version", ["3.10.0", "3.15.1", "3.12.0.dev2025"])
def test_versions_inside_the_range_are_recognised(monkeypatch, version):
    monkeypatch.setattr(keras, "version", lambda: version)
    assert _compat.in_tested_range()


def test_a_missing_backend_names_the_extra_to_install(monkeypatch):
    monkeypatch.setenv("KERAS_BACKEND", "jax")
    real = _requirements.importlib.util.find_spec
    monkeypatch.setattr(
        _requirements.importlib.util,
        "find_spec",
        lambda name: None if name == "jax" else real(name),
    )
    with pytest.raises(ImportError, match=r'jax.*pip install "keras-sparse\[jax\]"') as err:
        _requirements.check_backend()
    assert "\n" not in str(err.value)


def test_the_backend_is_read_as_keras_reads_it(monkeypatch, tmp_path):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    assert _requirements.chosen_backend() == "tensorflow"  # Keras's default
    (tmp_path / "keras.json").write_text('{"backend": "jax"}')
    assert _requirements.chosen_backend() == "jax"
    monkeypatch.setenv("KERAS_BACKEND", "tensorflow")
    assert _requirements.chosen_backend() == "tensorflow"


def test_importing_without_the_backend_fails_in_one_line_naming_the_extra(tmp_path):
    """A fresh interpreter where neither TensorFlow nor JAX can be imported."""
    script = (
        "import importlib.abc, sys\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'jax'):\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        "try:\n"
        "    import keras_sparse\n"
        "except ImportError as err:\n"
        "    print('ERROR:', err)\n"
    )
    env = dict(os.environ, KERAS_BACKEND="tensorflow", KERAS_HOME=str(tmp_path))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=120
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("ERROR:")]
    assert len(lines) == 1, done.stdout + done.stderr
    assert 'pip install "keras-sparse[tensorflow]"' in lines[0]

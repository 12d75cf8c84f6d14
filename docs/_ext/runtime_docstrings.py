"""A griffe extension for the docs build: docstrings filled from one template at import.

`keras_sparse._docstrings.format_docstring` fills `{{name}}` placeholders when
the module is imported; griffe reads the source, where they are still
placeholders. For those classes only, this extension takes the docstring
from the imported class instead.
"""

import importlib
import inspect

import griffe


class RuntimeDocstrings(griffe.Extension):
    """Replace a docstring that holds `{{...}}` placeholders by the imported object's own."""

    def on_class_instance(self, *, cls: griffe.Class, **kwargs: object) -> None:
        if cls.docstring is None or "{{" not in cls.docstring.value:
            return
        module_path, _, name = cls.path.rpartition(".")
        filled = getattr(importlib.import_module(module_path), name).__doc__
        cls.docstring.value = inspect.cleandoc(filled)

"""Docstrings from one template: `format_docstring` fills `{{name}}` placeholders.

Shared paragraphs (the arguments every ranking metric takes, what they do
with NaN scores) are written once and placed into each class's docstring,
so the classes cannot drift apart. A placeholder alone on its line takes the
replacement with that line's indentation on every line.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def format_docstring(**fields: str) -> Callable[[T], T]:
    """Replace each `{{name}}` in the decorated object's docstring by `fields[name]`.

    Raises `KeyError` naming a placeholder left without a value, so a typo
    fails at import instead of reaching the docs.
    """

    def fill(match: re.Match) -> str:
        indent, name = match.group(1), match.group(2)
        if name not in fields:
            raise KeyError(f"docstring placeholder {{{{{name}}}}} has no value")
        lines = fields[name].strip("\n").splitlines()
        return "\n".join(indent + line if line else "" for line in lines)

    def decorate(obj: T) -> T:
        doc: Any = obj.__doc__
        obj.__doc__ = re.sub(r"(?m)^([ \t]*)\{\{(\w+)\}\}[ \t]*$", fill, doc)
        if "{{" in obj.__doc__:
            raise KeyError(f"{obj!r}: a placeholder must stand alone on its line")
        return obj

    return decorate

"""`_docstrings.format_docstring`: one template, placed with its line's indentation."""

import inspect

import pytest

from keras_sparse import metrics
from keras_sparse._docstrings import format_docstring


def test_a_placeholder_takes_its_lines_indentation():
    @format_docstring(args="a: One.\nb: Two,\n    continued.")
    def f():
        """Summary.

        Args:
            {{args}}
        """

    assert inspect.getdoc(f) == "Summary.\n\nArgs:\n    a: One.\n    b: Two,\n        continued."


def test_a_placeholder_without_a_value_fails_at_decoration():
    with pytest.raises(KeyError, match="missing"):

        @format_docstring(other="x")
        class C:
            """Summary.

            {{missing}}
            """


def test_every_ranking_metric_docstring_is_filled_and_names_its_default():
    for name in ("PrecisionAtK", "RecallAtK", "NDCGAtK", "MAPAtK", "HitRateAtK", "MRRAtK"):
        cls = getattr(metrics, name)
        doc = inspect.getdoc(cls)
        assert "{{" not in doc and "Scores that are NaN or -inf are never ranked" in doc
        assert f'default `"{cls.metric}_at_{{k}}"`' in doc
        assert ("denominator:" in doc) == (name in ("PrecisionAtK", "RecallAtK"))

"""Pytest plugin for `.ci/keras_suite.py`: each test's outcome, as JSON, in $KERAS_SUITE_OUT.

An outcome is passed, skipped (xfail included), failed or error (setup or teardown failed);
with `--collect-only` each selected test is listed as passed (collected).
"""

import json
import os

_OUTCOMES: dict[str, str] = {}
_PATH = os.environ["KERAS_SUITE_OUT"]  # read now: some of Keras's tests clear os.environ


def pytest_collection_finish(session):
    """Every selected test, before any runs (what `--collect-only` reports)."""
    for item in session.items:
        _OUTCOMES[item.nodeid] = "passed"


def pytest_runtest_logreport(report):
    """The worst outcome of a test's setup, call and teardown."""
    if report.failed:
        _OUTCOMES[report.nodeid] = "failed" if report.when == "call" else "error"
    elif report.skipped and _OUTCOMES.get(report.nodeid) not in ("failed", "error"):
        _OUTCOMES[report.nodeid] = "skipped"


def pytest_sessionfinish(session):
    """Write the outcomes where the suite runner asked."""
    with open(_PATH, "w") as out:
        json.dump(_OUTCOMES, out)

"""Docstring examples are executed, so they cannot rot."""

import doctest
import importlib
import pkgutil

import pytest

import coralord_dagster

MODULES = sorted(m.name for m in pkgutil.walk_packages(coralord_dagster.__path__, "coralord_dagster."))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_some_examples_exist():
    total = sum(doctest.testmod(importlib.import_module(n)).attempted for n in MODULES)
    assert total >= 4

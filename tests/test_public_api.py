"""The public surface: sorted __all__, every public name documented, public callables typed."""

from __future__ import annotations

import importlib.resources
import inspect
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import minibatcher
import minibatcher.samplers
import minibatcher.sizing

PACKAGES = [minibatcher, minibatcher.samplers, minibatcher.sizing]


def public_names(module: types.ModuleType) -> list[str]:
    return [name for name in module.__all__ if not name.startswith("__")]


def public_objects() -> Iterator[tuple[str, Any]]:
    for module in PACKAGES:
        for name in public_names(module):
            yield f"{module.__name__}.{name}", getattr(module, name)


def public_callables() -> Iterator[tuple[str, Callable[..., Any]]]:
    """Public functions, classes (their __init__) and the public methods of public classes."""
    for qualname, obj in public_objects():
        if isinstance(obj, type):
            for attr, member in vars(obj).items():
                ours = inspect.isfunction(member) and member.__module__.startswith("minibatcher")
                if ours and (attr == "__init__" or not attr.startswith("_")):
                    yield f"{qualname}.{attr}", member
        elif inspect.isfunction(obj):
            yield qualname, obj


@pytest.mark.parametrize("module", PACKAGES, ids=lambda m: m.__name__)
def test_all_is_sorted_and_resolves(module: types.ModuleType) -> None:
    assert module.__all__ == sorted(module.__all__)
    assert len(set(module.__all__)) == len(module.__all__)
    for name in module.__all__:
        assert hasattr(module, name), name


def test_core_names_are_exported() -> None:
    for name in ("DataLoader", "collate", "pad_collate", "Collator", "samplers", "ConfigError",
                 "CollateError", "MinibatcherError"):
        assert name in minibatcher.__all__
    for name in ("SequentialSampler", "RandomSampler", "WeightedRandomSampler", "SubsetSampler",
                 "SubsetRandomSampler", "BatchSampler"):
        assert name in minibatcher.samplers.__all__


OBJECTS = dict(public_objects())
CALLABLES = dict(public_callables())


@pytest.mark.parametrize("qualname", list(OBJECTS))
def test_every_public_name_has_a_docstring(qualname: str) -> None:
    obj = OBJECTS[qualname]
    if isinstance(obj, (str, int)):
        return  # __version__ and constants document themselves
    assert (inspect.getdoc(obj) or "").strip(), f"{qualname} has no docstring"


@pytest.mark.parametrize("qualname", list(CALLABLES))
def test_public_callables_are_type_hinted(qualname: str) -> None:
    signature = inspect.signature(CALLABLES[qualname])
    missing = [
        p.name
        for p in signature.parameters.values()
        if p.name not in ("self", "cls") and p.annotation is inspect.Parameter.empty
    ]
    assert not missing, f"{qualname}: parameters without a type hint: {missing}"
    assert signature.return_annotation is not inspect.Signature.empty, (
        f"{qualname}: no return type hint"
    )


def test_the_package_is_typed() -> None:
    assert importlib.resources.files("minibatcher").joinpath("py.typed").is_file()


def test_errors_derive_from_the_base_and_the_fitting_builtin() -> None:
    assert issubclass(minibatcher.ConfigError, (minibatcher.MinibatcherError, ValueError))
    assert issubclass(minibatcher.CollateError, minibatcher.MinibatcherError)
    assert issubclass(minibatcher.CollateError, TypeError)
    assert issubclass(minibatcher.StateError, ValueError)
    assert issubclass(minibatcher.WorkerError, RuntimeError)

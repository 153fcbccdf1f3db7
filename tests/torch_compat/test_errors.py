"""Bad arguments and combinations: torch's exception type and message, at construction; and the
signature itself (positional order, defaults)."""

from __future__ import annotations

import inspect

import pytest
import torch.utils.data as tud

from minibatcher.torch import DataLoader as MiniDataLoader

from .conftest import both, outcome

pytestmark = pytest.mark.timeout(60)


class Stream(tud.IterableDataset):
    def __iter__(self):
        return iter(range(4))


MAP = list(range(10))
BAD = {
    "negative_workers": (MAP, {"num_workers": -1}),
    "negative_timeout": (MAP, {"timeout": -1}),
    "prefetch_without_workers": (MAP, {"prefetch_factor": 2}),
    "negative_prefetch": (MAP, {"num_workers": 1, "prefetch_factor": -1}),
    "persistent_without_workers": (MAP, {"persistent_workers": True}),
    "sampler_and_shuffle": (MAP, {"sampler": [0, 1], "shuffle": True}),
    "batch_sampler_and_batch_size": (MAP, {"batch_sampler": [[0]], "batch_size": 2}),
    "batch_sampler_and_shuffle": (MAP, {"batch_sampler": [[0]], "shuffle": True}),
    "batch_sampler_and_sampler": (MAP, {"batch_sampler": [[0]], "sampler": [0]}),
    "batch_sampler_and_drop_last": (MAP, {"batch_sampler": [[0]], "drop_last": True}),
    "no_batch_size_and_drop_last": (MAP, {"batch_size": None, "drop_last": True}),
    "iterable_and_shuffle": (Stream(), {"shuffle": True}),
    "iterable_and_sampler": (Stream(), {"sampler": [0]}),
    "iterable_and_batch_sampler": (Stream(), {"batch_sampler": [[0]]}),
    "bad_start_method": (MAP, {"num_workers": 1, "multiprocessing_context": "nope"}),
    "start_method_without_workers": (MAP, {"multiprocessing_context": "fork"}),
    "start_method_not_a_context": (MAP, {"num_workers": 1, "multiprocessing_context": 3}),
}
OK = {
    "iterable_and_shuffle_false": (Stream(), {"shuffle": False}),
    "prefetch_zero": (MAP, {"num_workers": 1, "prefetch_factor": 0}),
}


@pytest.mark.parametrize("case", list(BAD) + list(OK))
def test_constructor_errors_are_torchs(case):
    data, kwargs = {**BAD, **OK}[case]
    result = both(lambda cls: outcome(lambda: cls(data, **kwargs)))
    assert (result[0] == "ok") is (case in OK)


def test_positional_arguments_in_torchs_order():
    def run(cls):
        dl = cls(MAP, 4, True, None, None, 0, None, False, True, 0, None, None, None)
        return dl.batch_size, dl.drop_last, type(dl.sampler).__name__, len(dl)

    both(run)


def test_same_signature_as_torch():
    ours = inspect.signature(MiniDataLoader.__init__).parameters
    theirs = inspect.signature(tud.DataLoader.__init__).parameters
    assert list(ours) == list(theirs)
    for name, param in theirs.items():
        assert ours[name].kind == param.kind, name
        assert ours[name].default == param.default, name

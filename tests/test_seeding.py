"""seed=None: drawn from the global generator the user seeds, and adopted from a loaded state.

``torch.manual_seed(0)`` (or ``np.random.seed(0)`` without torch, or Lightning's
``seed_everything``) before building a loader makes its order reproducible, as with torch's and
fastai's loaders; a loader built with ``seed=None`` resumes a state saved by another such loader
(only an explicitly different seed is a mismatch).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from minibatcher import DataLoader, StateError
from minibatcher.samplers import RandomSampler

torch = pytest.importorskip("torch")


def order(**kwargs: object) -> list[list[int]]:
    return [b.tolist() for b in DataLoader(range(15), batch_size=5, shuffle=True, **kwargs)]


def test_torch_manual_seed_fixes_the_order() -> None:
    torch.manual_seed(0)
    first = order()
    torch.manual_seed(0)
    assert order() == first
    torch.manual_seed(1)
    assert order() != first  # 1 in 15!/(5!)^3-ish chance of a false failure: none


def test_samplers_without_a_seed_follow_the_global_generator_too() -> None:
    torch.manual_seed(5)
    first = list(RandomSampler(50))
    torch.manual_seed(5)
    assert list(RandomSampler(50)) == first


def test_numpy_global_seed_fixes_the_order_when_torch_is_not_imported() -> None:
    code = """
        import sys
        import numpy as np
        from minibatcher import DataLoader
        runs = []
        for _ in range(2):
            np.random.seed(0)
            runs.append([b.tolist() for b in DataLoader(range(15), batch_size=5, shuffle=True)])
        np.random.seed(1)
        other = [b.tolist() for b in DataLoader(range(15), batch_size=5, shuffle=True)]
        print(runs[0] == runs[1], runs[0] != other, "torch" in sys.modules)
    """
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True", "False"]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shuffle": True},
        {"shuffle": True, "num_workers": 2, "persistent_workers": True},
        {"shuffle": False, "transform": "rng"},
    ],
    ids=["shuffle", "persistent-workers", "stream-rng-transform"],
)
def test_a_loader_without_a_seed_adopts_the_saved_seed(kwargs: dict[str, object]) -> None:
    def jitter(x: int, rng: np.random.Generator) -> float:
        return x + float(rng.random())

    def make() -> DataLoader:
        opts = dict(kwargs)
        data: object = range(40)
        if opts.pop("transform", None) == "rng":
            opts["transform"] = jitter
            data = iter(range(40))  # a generator: no len(), read once
        return DataLoader(data, batch_size=4, **opts)  # type: ignore[arg-type]

    with make() as first:
        it = iter(first)
        head = [b.tolist() for b in itertools.islice(it, 3)]
        state = json.loads(json.dumps(first.state_dict()))
        rest_expected = [b.tolist() for b in it]
    with make() as resumed:
        resumed.load_state_dict(state)  # used to raise "seed: saved X, this loader Y"
        assert resumed.seed == first.seed
        assert [b.tolist() for b in resumed] == rest_expected
    assert len(head) == 3


def test_an_explicitly_different_seed_is_still_refused() -> None:
    dl = DataLoader(range(40), batch_size=4, shuffle=True, seed=1)
    it = iter(dl)
    next(it)
    state = dl.state_dict()
    with pytest.raises(StateError, match="seed: saved 1, this loader 2"):
        DataLoader(range(40), batch_size=4, shuffle=True, seed=2).load_state_dict(state)

"""minibatcher.testing: check_resume passes good loaders and catches broken resumes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from minibatcher import DataLoader
from minibatcher.testing import ResumeReport, check_resume, same_batches


def test_report_counts_every_stop() -> None:
    report = check_resume(lambda: DataLoader(range(10), batch_size=3, shuffle=True, seed=0))
    assert isinstance(report, ResumeReport)
    assert report.batches_per_epoch == 4
    # before iter(), 5 boundaries (0..4), 3 second stops, after the epoch ended
    assert len(report.stops) == 1 + 5 + 3 + 1
    assert "inside the last batch" in " ".join(report.stops)
    assert 0 < report.largest_state_bytes < 1000
    assert "10 stops over an epoch of 4 batches" in str(report)


def test_every_skips_boundaries() -> None:
    report = check_resume(lambda: DataLoader(range(20), batch_size=2, seed=0), every=5)
    assert [s for s in report.stops if s.startswith("after") and "again" not in s] == [
        "after 0 of 10 batches",
        "after 5 of 10 batches",
        "after 10 of 10 batches (inside the last batch)",
        "after the epoch ended",
    ]


class ForgetfulLoader:
    """A loader whose load_state_dict does nothing: every restore starts from scratch."""

    def __init__(self) -> None:
        self.dl = DataLoader(range(8), batch_size=2, shuffle=True, seed=1)

    def __iter__(self) -> Any:
        return iter(self.dl)

    def __len__(self) -> int:
        return len(self.dl)

    def state_dict(self) -> dict[str, Any]:
        return self.dl.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def test_a_broken_resume_is_caught_naming_the_stop() -> None:
    with pytest.raises(AssertionError, match="resume after 1 of 4 batches"):
        check_resume(ForgetfulLoader)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="every must be a positive int"):
        check_resume(ForgetfulLoader, every=0)
    with pytest.raises(ValueError, match="epochs must be a positive int"):
        check_resume(ForgetfulLoader, epochs=0)


def test_same_batches_compares_structure_dtype_and_values() -> None:
    a = {"x": np.arange(3), "y": ["a", "b"], "z": (1.0, np.float32(2))}
    assert same_batches(a, {"x": np.arange(3), "y": ["a", "b"], "z": (1.0, np.float32(2))})
    assert not same_batches(a, {**a, "x": np.arange(3, dtype=np.int32)})
    assert not same_batches(a, {**a, "y": ["a", "c"]})
    assert not same_batches([1, 2], (1, 2))
    assert same_batches(np.array([np.nan]), np.array([np.nan]))


def jittery(item: int) -> int:
    """Takes 0-4 ms at random: with in_order=False, batches arrive in a new order each run."""
    import random
    import time

    time.sleep(random.random() * 0.004)
    return item


def test_in_order_false_compares_each_epoch_as_a_multiset() -> None:
    """Batches arrive in any order with in_order=False: check_resume used to report that as a
    difference."""
    report = check_resume(
        lambda: DataLoader(
            range(12), batch_size=3, seed=0, num_workers=2, worker_type="thread",
            in_order=False, transform=jittery,
        ),
        every=2,
    )
    assert report.batches_per_epoch == 4
    from minibatcher.testing import _compare_flat

    batches = [np.array([i]) for i in range(4)]
    _compare_flat("x", batches[::-1], batches, [4])
    with pytest.raises(AssertionError, match="missing"):
        _compare_flat("x", [batches[0], *batches[:3]], batches, [4])


def test_same_batches_compares_tensors_of_dtypes_numpy_lacks() -> None:
    torch = pytest.importorskip("torch")
    a = torch.arange(4).to(torch.bfloat16)
    assert same_batches(a, a.clone())
    assert not same_batches(a, a + 1)
    assert not same_batches(a, a.to(torch.float16))

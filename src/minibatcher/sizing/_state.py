"""``state=``: what a measuring ``step`` mutates, snapshotted before and restored after.

Measuring a step means running it, and a step trains. So that measuring never trains the user's
model, the sizing functions copy ``state`` first and put it back afterwards (also after an
exception or an out-of-memory error). ``state`` may be:

- a dict of NumPy arrays (restored in place, so references the user holds see the old values);
- anything with ``state_dict()`` / ``load_state_dict()``: a torch module (its gradients and
  train/eval flags too), an optimizer, a scheduler, a gradient scaler;
- a list or tuple of those.

Tensors are copied to host memory, so a snapshot costs no accelerator memory (it would distort
the memory ceiling). The global random generators (NumPy's, torch's when torch is imported) are
restored too, so a measured step with dropout leaves the user's random stream where it was.
"""

from __future__ import annotations

import contextlib
import copy
import sys
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any

import numpy as np


def _host_copy(obj: Any) -> Any:
    """A deep copy with every tensor copied to host memory."""
    if hasattr(obj, "detach") and hasattr(obj, "to"):  # a torch tensor
        return obj.detach().to("cpu", copy=True)
    if isinstance(obj, np.ndarray):
        return obj.copy()
    if isinstance(obj, Mapping):
        return type(obj)({k: _host_copy(v) for k, v in obj.items()})  # type: ignore[call-arg]
    if isinstance(obj, (list, tuple)) and not hasattr(obj, "_fields"):
        return type(obj)(_host_copy(v) for v in obj)
    return copy.deepcopy(obj)


def _snapshot_one(state: Any) -> Callable[[], None]:
    """Copy ``state`` now; return the function that puts the copy back."""
    if isinstance(state, MutableMapping) and all(
        isinstance(v, np.ndarray) for v in state.values()
    ):
        saved = {k: v.copy() for k, v in state.items()}
        objects = dict(state)

        def restore_arrays() -> None:
            for key in [k for k in state if k not in saved]:
                del state[key]
            for key, value in saved.items():
                original = objects[key]
                if original.shape == value.shape and original.flags.writeable:
                    original[...] = value
                    state[key] = original
                else:
                    state[key] = value.copy()

        return restore_arrays
    if hasattr(state, "state_dict") and hasattr(state, "load_state_dict"):
        saved_dict = _host_copy(state.state_dict())
        restore_extra = _module_extras(state)

        def restore_stateful() -> None:
            state.load_state_dict(copy.deepcopy(saved_dict))
            restore_extra()

        return restore_stateful
    if isinstance(state, (list, tuple)):
        restorers = [_snapshot_one(s) for s in state]

        def restore_all() -> None:
            for restore in restorers:
                restore()

        return restore_all
    raise TypeError(
        "state must be a dict of NumPy arrays, an object with state_dict() and "
        "load_state_dict() (a torch module or optimizer), or a list of them; got "
        f"{type(state).__name__}"
    )


def _module_extras(module: Any) -> Callable[[], None]:
    """A torch module's gradients and train/eval flags (not in its state_dict)."""
    if not (hasattr(module, "named_parameters") and hasattr(module, "modules")):
        return lambda: None
    grads = [(p, None if p.grad is None else p.grad.detach().to("cpu", copy=True))
             for _, p in module.named_parameters()]
    modes = [(m, m.training) for m in module.modules()]

    def restore() -> None:
        for param, grad in grads:
            param.grad = None if grad is None else grad.to(param.device)
        for m, training in modes:
            m.training = training

    return restore


def _random_state() -> Callable[[], None]:
    numpy_state = np.random.get_state()
    torch = sys.modules.get("torch")
    torch_state = torch.get_rng_state() if torch is not None else None
    cuda_state = (torch.cuda.get_rng_state_all()
                  if torch is not None and torch.cuda.is_initialized() else None)

    def restore() -> None:
        np.random.set_state(numpy_state)
        if torch is not None and torch_state is not None:
            torch.set_rng_state(torch_state)
            if cuda_state is not None:
                torch.cuda.set_rng_state_all(cuda_state)

    return restore


class Snapshot:
    """A copy of ``state`` (and the global random generators) that :meth:`restore` puts back."""

    def __init__(self, state: Any) -> None:
        self._restore_state = None if state is None else _snapshot_one(state)
        self._restore_random = _random_state()

    def restore(self) -> None:
        """Put the copied state back (any number of times)."""
        if self._restore_state is not None:
            self._restore_state()
        self._restore_random()


@contextlib.contextmanager
def preserved(state: Any) -> Iterator[Snapshot]:
    """Snapshot ``state`` on entry and restore it on exit, whatever happened inside."""
    snapshot = Snapshot(state)
    try:
        yield snapshot
    finally:
        snapshot.restore()

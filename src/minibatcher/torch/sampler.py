"""The facade's ``RandomSampler``: torch's, plus the ``set_epoch`` frameworks call.

In: what torch's ``DataLoader.__init__`` builds for ``shuffle=True`` (``RandomSampler(dataset,
generator=generator)``). Out: the same indices, from the same draws, as torch's sampler (it is a
subclass that adds no draw: a plain ``for`` loop is torch's, batch for batch). State: the epoch
last set (``epoch``), which the loader reads at ``iter()`` and before an iteration's first batch.

Why: Lightning keeps epochs in step only through ``sampler.set_epoch(epoch)``
(``_set_sampler_epoch`` in ``lightning.fabric.utilities.data``, on ``dataloader.sampler`` and
``dataloader.batch_sampler.sampler``) and restores no loader state when it restarts at an epoch
boundary, so a loader built anew would start over from the generator's initial state and repeat
epoch 0's order. Told the epoch, the loader replays the draws the missing epochs would have made
(``checkpoint.replay_epochs``: the workers' base seed, then the sampler run to its end, exactly as
an uninterrupted run draws them), so epoch ``e``'s order is the uninterrupted run's. Only where the
draws can be replayed: a ``generator=`` (under the global RNG, ``torch.manual_seed``, every other
user of that RNG draws between the epochs too, so the epoch is only noted).

Being a ``torch.utils.data.RandomSampler``, it passes the frameworks' ``isinstance`` checks
(Lightning's DDP injection of a ``DistributedSampler`` shuffles because of it).
"""

from __future__ import annotations

from typing import Any

import torch.utils.data as tud


class RandomSampler(tud.RandomSampler):
    """``torch.utils.data.RandomSampler`` with ``set_epoch`` (see the module docstring): the
    sampler a ``minibatcher.torch.DataLoader`` makes for ``shuffle=True``."""

    epoch: int = 0
    """The epoch last given to :meth:`set_epoch` (or restored by ``load_state_dict``)."""

    def set_epoch(self, epoch: int) -> None:
        """Note that the next (or the not yet started) iteration is epoch ``epoch``; the loader
        replays the draws of the epochs it has not run, up to it (never back)."""
        self.epoch = int(epoch)


def swap_in(loader: Any) -> None:
    """Replace the ``RandomSampler`` torch's ``__init__`` made for ``shuffle=True`` (in
    ``loader.sampler`` and its ``BatchSampler``) by a :class:`RandomSampler` built with the
    same arguments. Called only where the user passed no sampler (one they pass is theirs)."""
    made = loader.sampler
    if type(made) is not tud.RandomSampler:
        return
    ours = RandomSampler(made.data_source, made.replacement, made._num_samples,
                              generator=made.generator)  # fmt: skip
    object.__setattr__(loader, "sampler", ours)  # torch's __setattr__ forbids it after __init__
    if type(loader.batch_sampler) is tud.BatchSampler and loader.batch_sampler.sampler is made:
        loader.batch_sampler.sampler = ours


def epoch_sampler(loader: Any) -> RandomSampler | None:
    """The loader's :class:`RandomSampler` (as its sampler or its batch sampler's), where
    its draws can be replayed: it draws from the loader's own generator."""
    batch_sampler = getattr(loader, "batch_sampler", None)
    for sampler in (loader.sampler, getattr(batch_sampler, "sampler", None)):
        if isinstance(sampler, RandomSampler):
            generator = loader.generator
            return sampler if generator is not None and sampler.generator is generator else None
    return None

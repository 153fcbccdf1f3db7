"""A tiny Lightning run that records the items each training step saw (imported by
test_lightning.py; run as a script for the 2-process DDP job, where Lightning re-runs it once
per rank)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
import torch.utils.data as tud

import minibatcher
import minibatcher.torch

N, BATCH, EPOCHS = 24, 4, 3
KINDS = ("torch_facade", "core")
RANDOM = "torch_random"  # single process only: the facade as a torch script builds it


def make_loader(kind: str, distributed: bool = False) -> Any:
    ds = tud.TensorDataset(torch.arange(N))
    if kind in ("torch", "torch_facade") and distributed:
        # A torch script's loader as it is: under DDP Lightning injects a DistributedSampler
        # (it re-instantiates torch DataLoaders, the facade included, being a subclass).
        cls = tud.DataLoader if kind == "torch" else minibatcher.torch.DataLoader
        return cls(ds, BATCH, shuffle=True)
    if kind == RANDOM:
        # torch's DataLoader makes a RandomSampler for shuffle=True: the facade's has set_epoch
        # (sampler.py), so an epoch-end restart, where Lightning restores no loader state,
        # resumes the uninterrupted run's order
        return minibatcher.torch.DataLoader(
            ds, BATCH, shuffle=True, generator=torch.Generator().manual_seed(0)
        )
    if kind == "torch_facade":
        # As in any torch DDP script, a DistributedSampler (Lightning keeps its epoch in step).
        extra = {} if distributed else {"num_replicas": 1, "rank": 0}
        sampler = tud.DistributedSampler(ds, shuffle=True, seed=0, **extra)
        return minibatcher.torch.DataLoader(ds, BATCH, sampler=sampler)
    return minibatcher.DataLoader(ds, BATCH, shuffle=True, seed=0)  # shards by default in DDP


def loader_epoch(loader: Any) -> int:
    """The epoch the loader itself thinks it is in."""
    if isinstance(loader, minibatcher.DataLoader):
        return loader.epoch
    if not isinstance(loader.sampler, tud.DistributedSampler):
        return int(loader.stats.epoch)  # the number of the loader's iteration
    return int(getattr(loader.sampler, "epoch", -1))


def used_loader(module: pl.LightningModule, built: Any) -> Any:
    """The loader Lightning iterates: ``built``, or the one it re-instantiated from it."""
    used = module.trainer.train_dataloader
    if built is not None and type(used) is not type(built):
        raise AssertionError(f"Lightning iterates a {type(used)}, not a {type(built)}")
    return used


class Recorder(pl.LightningModule):
    def __init__(self, kind: str, distributed: bool) -> None:
        super().__init__()
        self.layer = torch.nn.Linear(1, 1)
        self.kind, self.distributed = kind, distributed
        self.loader: Any = None
        self.seen: list[list[Any]] = []

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        (x,) = batch
        loader = used_loader(self, self.loader)
        self.seen.append([self.current_epoch, batch_idx, x.tolist(), loader_epoch(loader)])
        return self.layer(x.float().view(-1, 1)).sum()

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.01)

    def train_dataloader(self) -> Any:
        """Built here, as Lightning advises: under DDP the process group exists by now."""
        self.loader = make_loader(self.kind, self.distributed)
        return self.loader


def fit(kind: str, root: Path, ckpt_path: str | None = None, *, save: bool = False,
        distributed: bool = False) -> list[list[Any]]:  # fmt: skip
    """Train EPOCHS epochs (from ``ckpt_path`` if given); checkpoints at every step and epoch end
    when ``save``; returns what each step saw."""
    callbacks: list[Any] = []
    if save:
        callbacks = [
            pl.callbacks.ModelCheckpoint(
                dirpath=root, filename="step-{step}", every_n_train_steps=1, save_top_k=-1
            ),
            pl.callbacks.ModelCheckpoint(
                dirpath=root, filename="end-{epoch}", save_on_train_epoch_end=True,
                every_n_epochs=1, save_top_k=-1,
            ),
        ]  # fmt: skip
    model = Recorder(kind, distributed)
    trainer = pl.Trainer(
        max_epochs=EPOCHS, accelerator="cpu", devices=2 if distributed else 1,
        strategy="ddp" if distributed else "auto", logger=False, enable_checkpointing=save,
        callbacks=callbacks, enable_progress_bar=False, enable_model_summary=False,
        num_sanity_val_steps=0, default_root_dir=root,
    )  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice (few workers, no val loop, ...)
        trainer.fit(model, ckpt_path=ckpt_path)
    return model.seen


if __name__ == "__main__":  # python lightning_app.py OUT_DIR KIND...  (2 ranks, ddp)
    out = Path(sys.argv[1])
    for kind in sys.argv[2:]:  # one launch for all kinds: starting ranks is the slow part
        seen = fit(kind, out / kind, distributed=True)
        rank = torch.distributed.get_rank() if torch.distributed.is_initialized() else 0
        (out / f"{kind}-rank{rank}.json").write_text(json.dumps(seen))

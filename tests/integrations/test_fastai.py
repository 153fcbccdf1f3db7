"""fastai: DataLoaders of minibatcher loaders in a Learner (fit, lr_find, fit_one_cycle,
get_preds, dls.to), and the new()/to() protocol fastai relies on, unit-tested without fastai."""

from __future__ import annotations

import warnings

import pytest

torch = pytest.importorskip("torch")
import torch.utils.data as tud  # noqa: E402

import minibatcher  # noqa: E402
import minibatcher.torch  # noqa: E402

pytestmark = pytest.mark.timeout(120)

N = 64


def dataset() -> tud.TensorDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(N, 4, generator=g)
    return tud.TensorDataset(x, (x[:, 0] > 0).long())


def loaders(kind: str, shuffle: bool) -> object:
    if kind == "torch_facade":
        return minibatcher.torch.DataLoader(dataset(), 16, shuffle, drop_last=shuffle)
    return minibatcher.DataLoader(dataset(), 16, shuffle=shuffle, drop_last=shuffle, seed=1)


@pytest.mark.parametrize("kind", ["torch_facade", "core"])
def test_new_and_to(kind: str) -> None:
    dl = loaders(kind, shuffle=True)
    plain = dl.new(shuffled=False, drop_last=False)
    assert type(plain) is type(dl)
    assert [b[1].tolist() for b in plain] == [dataset().tensors[1][i : i + 16].tolist()
                                              for i in range(0, N, 16)]  # fmt: skip
    assert dl.new(bs=5).batch_size == 5
    assert dl.to("cpu") is dl
    assert all(b[0].device.type == "cpu" for b in dl)
    with pytest.raises(ValueError, match="unknown argument"):
        dl.new(colour="red")


@pytest.mark.parametrize("kind", ["torch_facade", "core"])
def test_learner_workflow(kind: str, tmp_path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fastai's imports warn (pandas options, ...)
        fastai_data = pytest.importorskip("fastai.data.core")
        from fastai.callback.schedule import fit_one_cycle, lr_find  # noqa: F401  (patches)
        from fastai.learner import Learner
        from fastai.metrics import accuracy

    dls = fastai_data.DataLoaders(loaders(kind, True), loaders(kind, False), path=tmp_path)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))
    learn = Learner(dls, model, loss_func=torch.nn.CrossEntropyLoss(), metrics=accuracy)
    with warnings.catch_warnings(), learn.no_bar(), learn.no_logging():
        warnings.simplefilter("ignore")
        learn.fit(1)
        learn.lr_find(num_it=8, show_plot=False)
        learn.fit_one_cycle(1)
        preds, targets = learn.get_preds()
    assert preds.shape == (N, 2)
    assert targets.tolist() == dataset().tensors[1].tolist()  # in order, nothing dropped
    dls.to("cpu")
    dls.cpu()

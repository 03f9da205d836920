"""``criterion=``: the user's loss trains the network; target-changing regularizers say whether
they can apply; a loss that is not one number is refused."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_diabetes, make_blobs
from torch import nn

from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.exceptions import RegConfigError

FAST = dict(hidden_layer_sizes=(16,), max_epochs=4, lr=1e-2, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    return make_blobs(n_samples=200, centers=3, cluster_std=3.0, random_state=0)


class CountingLoss(nn.CrossEntropyLoss):
    calls = 0

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        type(self).calls += 1
        return super().forward(output, target)


class SoftKL(nn.Module):
    """A loss over class probabilities: it may be mixed and smoothed."""

    soft_targets = True

    def __init__(self) -> None:
        super().__init__()
        self.reduction = "mean"

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        loss = -(target * output.log_softmax(-1)).sum(-1)
        return loss.mean() if self.reduction == "mean" else loss


def test_the_criterion_trains_the_network(blobs) -> None:
    X, y = blobs
    CountingLoss.calls = 0
    est = RegularizedNetClassifier(criterion=CountingLoss, **FAST).fit(X, y)
    assert CountingLoss.calls >= est.n_iter_  # every batch, and the validation loss
    plain = RegularizedNetClassifier(**FAST).fit(X, y)
    np.testing.assert_allclose([h["train_loss"] for h in est.history_], [h["train_loss"] for h in plain.history_],
                               rtol=1e-5)  # CrossEntropyLoss is the default loss


def test_class_weights_of_cross_entropy_shift_the_predictions(blobs) -> None:
    X, y = blobs
    heavy = nn.CrossEntropyLoss(weight=torch.tensor([10.0, 1.0, 1.0]))
    est = RegularizedNetClassifier(criterion=heavy, **FAST).fit(X, y)
    plain = RegularizedNetClassifier(**FAST).fit(X, y)
    assert (est.predict(X) == 0).sum() > (plain.predict(X) == 0).sum()


def test_a_regressor_trains_with_huber_loss_and_sample_weights() -> None:
    X, y = load_diabetes(return_X_y=True)
    est = RegularizedNetRegressor(criterion=nn.HuberLoss(delta=0.5), mixup_alpha=0.2, **FAST).fit(
        X, y, sample_weight=np.linspace(0.5, 2, len(y)))
    assert np.isfinite(est.history_[-1]["train_loss"])
    assert est.score(X, y) > 0.2


def test_label_smoothing_goes_into_a_copy_of_cross_entropy(blobs) -> None:
    X, y = blobs
    mine = nn.CrossEntropyLoss()
    est = RegularizedNetClassifier(criterion=mine, label_smoothing=0.2, **FAST).fit(X, y)
    plain = RegularizedNetClassifier(label_smoothing=0.2, **FAST).fit(X, y)
    assert mine.label_smoothing == 0.0  # the user's object is never changed
    np.testing.assert_allclose(est.history_[-1]["train_loss"], plain.history_[-1]["train_loss"], rtol=1e-5)


def test_a_soft_target_loss_takes_mixup_and_label_smoothing(blobs) -> None:
    X, y = blobs
    est = RegularizedNetClassifier(criterion=SoftKL(), mixup_alpha=0.4, label_smoothing=0.1, **FAST).fit(X, y)
    assert np.isfinite(est.history_[-1]["train_loss"])
    RegularizedNetClassifier(criterion=SoftKL(), **FAST).fit(X, y, sample_weight=np.linspace(1, 2, len(y)))


@pytest.mark.parametrize("setting", [dict(label_smoothing=0.1), dict(mixup_alpha=0.2), dict(cutmix_alpha=0.2)])
def test_target_changing_regularizers_refuse_a_loss_of_class_indices(blobs, setting: dict) -> None:
    X, y = blobs
    name = next(iter(setting))
    with pytest.raises(RegConfigError, match=f"{name}=.*class probabilities.*criterion=NLLLoss") as info:
        RegularizedNetClassifier(criterion=nn.NLLLoss(), **setting, **FAST).fit(X, y)
    assert "\n" not in str(info.value)


def test_a_loss_that_is_not_one_number_is_refused(blobs) -> None:
    X, y = blobs
    with pytest.raises(RegConfigError, match=r"shape \(\d+,\), not one number.*reduction='mean'"):
        RegularizedNetClassifier(criterion=nn.CrossEntropyLoss(reduction="none"), **FAST).fit(X, y)


@pytest.mark.filterwarnings("ignore:Using a target size")
def test_a_loss_that_cannot_take_the_targets_says_what_it_got(blobs) -> None:
    X, y = blobs
    with pytest.raises(RegConfigError, match="criterion=L1Loss failed on outputs of shape"):
        RegularizedNetClassifier(criterion=nn.L1Loss(), **FAST).fit(X, y)


def test_sample_weights_need_a_loss_with_a_reduction(blobs) -> None:
    X, y = blobs

    def bare(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.cross_entropy(output, target)

    RegularizedNetClassifier(criterion=bare, **FAST).fit(X, y)  # a plain function works unweighted
    with pytest.raises(RegConfigError, match="no reduction argument"):
        RegularizedNetClassifier(criterion=bare, **FAST).fit(X, y, sample_weight=np.linspace(1, 2, len(y)))


def test_a_criterion_class_that_needs_arguments_is_refused(blobs) -> None:
    X, y = blobs

    class Needs(nn.Module):
        def __init__(self, scale: float) -> None:
            super().__init__()

    with pytest.raises(RegConfigError, match="pass an instance"):
        RegularizedNetClassifier(criterion=Needs, **FAST).fit(X, y)


def test_a_model_trained_with_a_criterion_and_class_weights_saves_and_loads(blobs, tmp_path) -> None:
    import pickle

    from regtune.estimators.persistence import load_model, save_model

    X, y = blobs
    est = RegularizedNetClassifier(criterion=nn.CrossEntropyLoss(weight=torch.tensor([2.0, 1.0, 1.0])),
                                   class_weight={0: 1.0, 1: 2.0, 2: 1.0}, precision="bf16-mixed", **FAST).fit(X, y)
    loaded = load_model(save_model(tmp_path / "model", est, None)).estimator
    np.testing.assert_allclose(loaded.predict_proba(X), est.predict_proba(X), rtol=1e-5, atol=1e-6)
    assert loaded.class_weight == {0: 1.0, 1: 2.0, 2: 1.0} and loaded.criterion is None  # the loss is not kept
    again = pickle.loads(pickle.dumps(est))
    assert isinstance(again.criterion, nn.CrossEntropyLoss)
    np.testing.assert_allclose(again.predict_proba(X), est.predict_proba(X), rtol=1e-5, atol=1e-6)

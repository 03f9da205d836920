"""``fit(X, y, sample_weight, *, X_val, y_val, sample_weight_val)`` and ``class_weight``:
weights enter the training loss and the validation loss and score; a given validation set
replaces the inner split."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_diabetes, make_blobs
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils.class_weight import compute_sample_weight

from regtune import RegConfig, RegularizedNetClassifier, RegularizedNetRegressor
from regtune.exceptions import DataError, RegConfigError
from regtune.nn.callbacks import Callback
from regtune.nn.losses import Loss

FAST = dict(hidden_layer_sizes=(16,), max_epochs=15, lr=1e-2, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    X, y = make_blobs(n_samples=300, centers=3, cluster_std=4.0, random_state=0)
    return X, y


class _Rows(Callback):
    """Records how many rows the trainer trains and validates on."""

    def on_train_begin(self, trainer) -> None:  # noqa: ANN001
        self.train_rows = trainer.X.shape[0]
        self.val_rows = None if trainer.X_val is None else trainer.X_val.shape[0]


def test_the_weighted_loss_is_the_mean_of_each_rows_loss_times_its_weight() -> None:
    torch.manual_seed(0)
    out, y, w = torch.randn(6, 3), torch.tensor([0, 1, 2, 0, 1, 2]), torch.tensor([0.0, 1, 2, 3, 0, 0])
    loss = Loss(None, RegConfig(), "classification")(out, y, w)
    torch.testing.assert_close(loss, (F.cross_entropy(out, y, reduction="none") * w).mean())
    reg = Loss(None, RegConfig(), "regression")(out, out.roll(1, 0), w)
    torch.testing.assert_close(reg, (((out - out.roll(1, 0)) ** 2).mean(1) * w).mean())


def test_upweighting_a_class_makes_the_network_predict_it_more(blobs) -> None:
    X, y = blobs
    plain = RegularizedNetClassifier(**FAST).fit(X, y)
    weighted = RegularizedNetClassifier(**FAST).fit(X, y, sample_weight=np.where(y == 0, 20.0, 1.0))
    assert (weighted.predict(X) == 0).mean() > (plain.predict(X) == 0).mean() + 0.05


def test_equal_weights_train_exactly_as_no_weights(blobs) -> None:
    X, y = blobs
    plain = RegularizedNetClassifier(**FAST).fit(X, y)
    threes = RegularizedNetClassifier(**FAST).fit(X, y, sample_weight=np.full(len(y), 3.0))
    np.testing.assert_allclose(threes.predict_proba(X), plain.predict_proba(X), rtol=1e-6, atol=1e-7)


def test_class_weight_balanced_is_sample_weight_from_the_class_counts(blobs) -> None:
    X, y = blobs
    keep = np.r_[np.flatnonzero(y != 2), np.flatnonzero(y == 2)[:20]]  # class 2 rare
    X, y = X[keep], y[keep]
    balanced = RegularizedNetClassifier(class_weight="balanced", **FAST).fit(X, y)
    by_hand = RegularizedNetClassifier(**FAST).fit(X, y, sample_weight=compute_sample_weight("balanced", y))
    np.testing.assert_allclose([h["val_loss"] for h in balanced.history_], [h["val_loss"] for h in by_hand.history_],
                               rtol=1e-4)
    as_dict = RegularizedNetClassifier(class_weight={0: 1.0, 1: 1.0, 2: 8.0}, **FAST).fit(X, y)
    plain = RegularizedNetClassifier(**FAST).fit(X, y)
    assert (as_dict.predict(X) == 2).sum() > (plain.predict(X) == 2).sum()


def test_a_given_validation_set_replaces_the_split_and_its_weights_enter_the_score(blobs) -> None:
    X, y = blobs
    X_tr, y_tr, X_val, y_val = X[:200], y[:200], X[200:], y[200:]
    w_val = np.where(y_val == 1, 5.0, 1.0)
    rows = _Rows()
    est = RegularizedNetClassifier(**{**FAST, "early_stopping": False}, callbacks=[rows]).fit(
        X_tr, y_tr, X_val=X_val, y_val=y_val, sample_weight_val=w_val)
    assert (rows.train_rows, rows.val_rows) == (200, 100)  # every row of X trains; X_val validates
    last = est.history_[-1]["val_score"]
    assert last == pytest.approx(accuracy_score(y_val, est.predict(X_val), sample_weight=w_val), abs=1e-6)
    unweighted = accuracy_score(y_val, est.predict(X_val))
    assert last != pytest.approx(unweighted, abs=1e-6)  # the weights count


def test_early_stopping_keeps_the_epoch_best_on_the_given_validation_set(blobs) -> None:
    X, y = blobs
    est = RegularizedNetClassifier(**{**FAST, "max_epochs": 30}, patience=3).fit(
        X[:200], y[:200], X_val=X[200:], y_val=y[200:])
    losses = [h["val_loss"] for h in est.history_]
    assert est.best_epoch_ == int(np.argmin(losses))


def test_regressor_weights_enter_the_validation_r2() -> None:
    X, y = load_diabetes(return_X_y=True)
    w = np.linspace(0.1, 3, len(y))
    est = RegularizedNetRegressor(**{**FAST, "early_stopping": False}).fit(
        X[:300], y[:300], w[:300], X_val=X[300:], y_val=y[300:], sample_weight_val=w[300:])
    expected = r2_score(y[300:], est.predict(X[300:]), sample_weight=w[300:])
    assert est.history_[-1]["val_score"] == pytest.approx(expected, abs=1e-4)


def test_weights_follow_their_rows_into_the_inner_validation_split(blobs) -> None:
    X, y = blobs
    w = np.where(y == 0, 0.0, 1.0)  # class 0 counts nowhere, validation included
    est = RegularizedNetClassifier(**{**FAST, "max_epochs": 3}).fit(X, y, sample_weight=w)
    assert np.isfinite(est.history_[-1]["val_loss"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(X_val=np.zeros((3, 2))), "both X_val and y_val"),
        (dict(sample_weight_val=np.ones(3)), "pass X_val and y_val"),
        (dict(sample_weight=-np.ones(300)), "(?i)negative"),
        (dict(sample_weight=np.zeros(300)), "zero"),
        (dict(sample_weight=np.ones(5)), "5"),
    ],
)
def test_bad_weights_and_validation_sets_are_refused(blobs, kwargs: dict, match: str) -> None:
    X, y = blobs
    with pytest.raises(ValueError, match=match):
        RegularizedNetClassifier(**FAST).fit(X, y, **kwargs)


def test_weights_that_leave_one_class_are_refused(blobs) -> None:
    X, y = blobs
    with pytest.raises(DataError, match="2 classes"):
        RegularizedNetClassifier(**FAST).fit(X, y, sample_weight=(y == 1).astype(float))


def test_class_weight_is_for_classifiers_only() -> None:
    X, y = load_diabetes(return_X_y=True)
    with pytest.raises(RegConfigError, match="class_weight.*classifiers only"):
        RegularizedNetRegressor(class_weight="balanced", **FAST).fit(X, y)


# ---- the search: RegTune estimators and tune() ----------------------------------------------

TINY_SEARCH = dict(space=str(__import__("pathlib").Path(__file__).parent / "spaces" / "tiny.yaml"), n_trials=2,
                   tracking_uri="off", device="cpu", random_state=0, ensemble=0)


def test_weights_follow_their_rows_through_the_test_split_into_the_folds() -> None:
    import pandas as pd

    from regtune.tuning.prepare import as_dataset, prepare
    from regtune.tuning.settings import TuneSettings

    X, y = make_blobs(n_samples=120, centers=2, random_state=0)
    X = np.c_[np.arange(120.0), X]  # column 0 names the row
    data = as_dataset(pd.DataFrame(X, columns=["row", "a", "b"]), y)
    folds, X_test, _, _ = prepare(data, TuneSettings(cv=3, test_size=0.25, seed=1), sample_weight=np.arange(120.0))
    assert len(folds.y) == 90 and len(X_test) == 30
    np.testing.assert_array_equal(np.argsort(folds.X[:, 0]), np.argsort(folds.sample_weight))  # same order
    assert len(folds.splits) == 3 and not folds.validation_given


def test_a_given_validation_set_is_the_one_split_of_the_search_and_the_refit_skips_it() -> None:
    from regtune.tuning.prepare import as_dataset, prepare
    from regtune.tuning.settings import TuneSettings

    X, y = make_blobs(n_samples=100, centers=2, random_state=0)
    data = as_dataset(X[:70], y[:70])
    folds, _, _, prep = prepare(data, TuneSettings(cv=5, test_size=0.0), validation=(X[70:], y[70:], None))
    assert folds.validation_given and folds.sample_weight is None
    assert [(len(tr), len(va)) for tr, va in folds.splits] == [(70, 30)]
    np.testing.assert_array_equal(folds.refit_rows(), np.arange(70))
    np.testing.assert_allclose(folds.X[70:], prep.transform(X[70:]))  # preprocessed as the training rows


def test_regtune_scores_every_trial_on_the_given_weighted_validation_set(blobs) -> None:
    from regtune import RegTuneClassifier

    X, y = blobs
    X_tr, y_tr, X_val, y_val = X[:200], y[:200], X[200:], y[200:]
    w_val = np.where(y_val == 2, 4.0, 1.0)
    est = RegTuneClassifier(**TINY_SEARCH).fit(X_tr, y_tr, np.where(y_tr == 0, 2.0, 1.0), X_val=X_val, y_val=y_val,
                                               sample_weight_val=w_val)
    assert all(len(t.user_attrs["fold_scores"]) == 1 for t in est.study_.trials if t.state.name == "COMPLETE")
    # The refit is the best trial's network (same rows, seed and epochs): its weighted
    # accuracy on X_val is the trial's score.
    model = est.best_estimator_
    expected = accuracy_score(y_val, model.predict(est.preprocessor_.transform(X_val)), sample_weight=w_val)
    assert est.best_score_ == pytest.approx(expected, abs=1e-4)


def test_regtune_passes_criterion_and_class_weight_to_every_trial(blobs) -> None:
    from torch import nn

    from regtune import RegTuneClassifier, RegTuneRegressor

    X, y = blobs
    est = RegTuneClassifier(criterion=nn.CrossEntropyLoss(weight=torch.tensor([1.0, 1.0, 3.0])),
                            class_weight="balanced", precision="bf16-mixed", cohort=4, **TINY_SEARCH).fit(X, y)
    assert isinstance(est.best_estimator_.criterion, nn.CrossEntropyLoss)
    assert est.best_estimator_.class_weight == "balanced" and est.best_estimator_.precision == "bf16-mixed"
    with pytest.raises(RegConfigError, match="classifiers only"):
        RegTuneRegressor(class_weight="balanced", **TINY_SEARCH).fit(*load_diabetes(return_X_y=True))

"""One trial: train a sampled configuration on every fold in lockstep, report, prune, log."""

from __future__ import annotations

import contextlib
import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import optuna
import torch

from regtune.config import RegConfig
from regtune.estimators.net import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.exceptions import ModuleError, RegtuneError
from regtune.metrics import Metric
from regtune.nn.models import ROUTED_ARGS, ModuleFactory
from regtune.nn.regularizers import decay_parameters, weight_layers
from regtune.space.space import SearchSpace
from regtune.tuning.budget import OutOfTime
from regtune.tuning.queue import AS_WRITTEN_ATTR
from regtune.tuning.selection import FOLD_SCORES_ATTR

__all__ = ["FoldScore", "Folds", "Network", "TrialPruned", "check_network", "common_epoch_score", "kept_network",
           "epoch_score_fn", "make_estimator", "out_of_fold_predictions", "prunable", "run_objective",
           "score_trial", "trial_seed", "weight_stats"]

_logger = logging.getLogger(__name__)


class TrialPruned(optuna.TrialPruned):
    """Pruned at ``epoch``; the MLflow run records the epoch."""

    def __init__(self, epoch: int) -> None:
        super().__init__(f"pruned at epoch {epoch}")
        self.epoch = epoch


@dataclass(frozen=True)
class Folds:
    """The search's data: the train part and the (train, validation) index pairs over it.

    ``sample_weight`` (one per row, or ``None``) weighs every fold's training loss and
    validation score. With ``validation_given``, the one split is the user's own validation
    set (its rows last in ``X``): the refit trains on the training rows only, as a network
    fitted with ``X_val`` does.
    """

    X: np.ndarray
    y: np.ndarray
    task: str
    splits: Sequence[tuple[np.ndarray, np.ndarray]]
    image_shape: tuple[int, int, int] | None = None
    repeats: int = 1  # R of R x K-fold: len(splits) is R * K
    sample_weight: np.ndarray | None = None
    validation_given: bool = False

    def weights(self, rows: np.ndarray) -> np.ndarray | None:
        return None if self.sample_weight is None else self.sample_weight[rows]

    def refit_rows(self) -> np.ndarray:
        """The rows the final model trains on: all of them, or the training rows of a given validation set."""
        return self.splits[0][0] if self.validation_given else np.arange(len(self.y))

    @property
    def plan(self) -> str:
        """How the splits were made, as ``cv`` names it: ``"1"`` one split, ``"K"``, ``"RxK"``."""
        k = len(self.splits) // max(1, self.repeats)
        return str(k) if self.repeats == 1 else f"{self.repeats}x{k}"


@dataclass(frozen=True)
class Network:
    """The user's module every trial trains (``module=None``: the built-in MLP or CNN).

    Plain and picklable, for spawned workers: ``module`` is a class or factory, or its
    ``"file.py:Name"`` / ``"package.module:Name"`` spec (which each worker imports); ``params``
    its fixed constructor arguments (without ``module__``); ``unsupported`` the settings it
    takes no argument for, which the search space leaves out, and ``written`` the regularization
    it sets itself (:meth:`ModuleFactory.written`; :func:`check_network` finds both).
    """

    module: Any = None
    params: Mapping[str, Any] = field(default_factory=dict)
    unsupported: tuple[str, ...] = ()
    # Fixed estimator parameters every trial, check and refit gets (criterion, class_weight,
    # precision, channels_last): set by the user, never searched.
    fixed: Mapping[str, Any] = field(default_factory=dict)
    written: Mapping[str, Any] = field(default_factory=dict)  # the regularization it sets itself

    @property
    def label(self) -> str:
        """The module's name, for study names and logs (``""`` for the built-in networks)."""
        if self.module is None:
            return ""
        if isinstance(self.module, str):
            return self.module.rpartition(":")[2]
        return getattr(self.module, "__qualname__", None) or type(self.module).__name__

    def estimator_params(self, trial_params: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``module`` and ``module__NAME`` estimator parameters: the fixed ones, then the module
        params a trial sampled (named ``module__NAME`` in the study, one to one); with the
        ``fixed`` estimator parameters."""
        if self.module is None:
            return dict(self.fixed)
        sampled = {k: v for k, v in (trial_params or {}).items() if k.startswith("module__")}
        return {**self.fixed, "module": self.module, **{f"module__{k}": v for k, v in self.params.items()}, **sampled}

    @property
    def reference(self) -> str:
        """How runs and study attributes name the module: its spec, or ``package.module:Name``."""
        if self.module is None or isinstance(self.module, str):
            return self.module or ""
        return f"{getattr(self.module, '__module__', '?')}:{getattr(self.module, '__qualname__', self.module)!s}"

    def run_params(self, config: Mapping[str, Any]) -> dict[str, Any]:
        """What a trial's MLflow run records of the network, from its resolved ``config``: for
        the user's module, ``module`` and its fixed ``module__NAME`` arguments in place of the
        built-in network's settings it does not take (architecture, hidden_layer_sizes, ...)."""
        if self.module is None:
            return dict(config)
        factory = ModuleFactory.of(self.module)
        kept = {k: v for k, v in config.items()
                if k != "architecture" and (k not in ROUTED_ARGS or factory.receives(k))}
        return {**kept, "module": self.reference, **{f"module__{k}": v for k, v in self.params.items()}}

    def space(self, space: SearchSpace) -> SearchSpace:
        """``space`` without what this module cannot take."""
        return space if self.module is None else space.for_module(self.unsupported)

    def as_written_params(self, space: SearchSpace) -> dict[str, Any] | None:
        """Params of the trial that trains the user's module as its user wrote it (their dropout
        rate, their batch norm), queued right after the baseline, which turns them off; ``None``
        for the built-in networks (as written, they are the baseline) or a module that sets no
        regularization the space can express."""
        if self.module is None or not self.written:
            return None
        return space.as_written_params({k: v for k, v in self.written.items() if k not in self.unsupported})


def check_network(network: Network, space: SearchSpace, folds: Folds, device: str) -> Network:
    """Check the user's module before any trial: its arguments, then one batch of training with
    the space's baseline configuration. Returns it with ``unsupported`` filled in.

    A module that cannot be imported or built, rejects an argument, fails its forward pass or
    returns the wrong width raises one :class:`~regtune.exceptions.ModuleError` here, instead
    of failing every trial of the study.
    """
    if network.module is None:
        return network
    factory = ModuleFactory.of(network.module)
    sampled = {k.removeprefix("module__"): v for k, v in space.module_params({}).items()}
    factory.check_params({**network.params, **sampled})
    unsupported = factory.missing_arguments()
    baseline, config = _module_baseline(space, unsupported)
    rows = _one_batch(folds.y, folds.task)
    config = config.replace(max_epochs=1, early_stopping=False, batch_size=len(rows))
    est = make_estimator(config, folds.task, image_shape=folds.image_shape, device=device, random_state=0,
                         module=replace(network, unsupported=()).estimator_params(baseline))
    try:
        est.fit(folds.X[rows], folds.y[rows])
    except RegtuneError:
        raise
    except Exception as exc:
        raise ModuleError(f"{factory.name}: training one batch of shape {(len(rows), *folds.X.shape[1:])} failed: "
                          f"{type(exc).__name__}: {exc}") from exc
    unsupported += factory.nothing_to_act_on(est.module_)  # e.g. no dropout layer, no hidden layer
    sizes = {"n_features": folds.X.shape[1], "image_shape": folds.image_shape,
             "n_outputs": len(est.classes_) if folds.task == "classification" else
             (folds.y.shape[1] if folds.y.ndim == 2 else 1),
             "n_classes": len(est.classes_) if folds.task == "classification" else None}
    try:
        written = factory.written(config, sizes, {**network.params, **sampled})
    except Exception as exc:  # it built with regtune's sizes a moment ago; without them, no as-written trial
        _logger.warning("%s: cannot read the regularization it sets itself (%s: %s); no as-written trial",
                        factory.name, type(exc).__name__, exc)
        written = {}
    return replace(network, unsupported=tuple(unsupported), written=written)


def baseline_config(space: SearchSpace, network: Network) -> RegConfig:
    """The space's baseline configuration as ``network`` trains it: for a user's module, without
    the settings it takes no argument for (the built-in ``architecture`` among them), as every
    trial will be."""
    if network.module is None:
        return space.to_config(space.baseline_params())
    return _module_baseline(space, ModuleFactory.of(network.module).missing_arguments())[1]


def _module_baseline(space: SearchSpace, unsupported: list[str]) -> tuple[dict[str, Any], RegConfig]:
    trimmed = space.for_module(unsupported)
    baseline = trimmed.baseline_params()
    return baseline, trimmed.to_config(baseline)


def _one_batch(y: np.ndarray, task: str, size: int = 32) -> np.ndarray:
    """Up to ``size`` rows, with every class among them (a classifier needs two at least)."""
    first = np.arange(min(size, len(y)))
    if task != "classification":
        return first
    _, one_per_class = np.unique(y, return_index=True)
    return np.union1d(one_per_class, first)


def trial_seed(study_seed: int, number: int) -> int:
    """Each trial's own seed, so a trial is reproducible from its logged parameters."""
    return (study_seed * 1_000_003 + number * 7919) % (2**31 - 1)


def make_estimator(
    config: RegConfig, task: str, *, image_shape: tuple[int, int, int] | None, device: str, random_state: int,
    module: Mapping[str, Any] | None = None,
) -> RegularizedNetClassifier | RegularizedNetRegressor:
    """The estimator a configuration describes: trial params map onto its parameters one to one.

    ``module`` holds the ``module`` and ``module__NAME`` parameters of a user's network
    (:meth:`Network.estimator_params`).
    """
    cls = RegularizedNetClassifier if task == "classification" else RegularizedNetRegressor
    return cls(**config.to_dict(), image_shape=image_shape, device=device, random_state=random_state,
               **(module or {}))


def weight_stats(model: torch.nn.Module) -> dict[str, float]:
    """Sparsity (share of |w| < 1e-3), L2 norm, parameter counts and the largest hidden-layer
    singular value: the figures reports tie to each regularizer."""
    weights = [p.detach() for p in decay_parameters(model)]
    flat = torch.cat([w.reshape(-1) for w in weights]) if weights else torch.full((1,), float("nan"))
    sigmas = []
    for layer in weight_layers(model, include_head=False):
        w = layer.weight.detach()
        sigmas.append(float(torch.linalg.matrix_norm(w.reshape(w.shape[0], -1), ord=2)))
    n_params = sum(p.numel() for p in model.parameters())
    n_zero = int((flat.abs() < 1e-3).sum())
    return {
        "sparsity": n_zero / flat.numel(),
        "weight_norm": float(flat.norm()),
        "top_singular_value": max(sigmas) if sigmas else float("nan"),
        "n_params": float(n_params),
        "n_effective_params": float(n_params - n_zero),
    }


def epoch_score_fn(metric: Metric, y_train: np.ndarray, task: str):  # noqa: ANN202
    """The per-epoch validation score of a fold (RMSE back in the target's units)."""
    if metric.name != "rmse":
        return metric.epoch_fn
    scale = float(np.std(np.asarray(y_train, dtype=float))) or 1.0
    return lambda out, y, weight=None: metric.epoch_fn(out, y, weight) * scale  # back to the target's units


def out_of_fold_predictions(estimators: Sequence[Any], folds: Folds) -> np.ndarray:
    """Each validation row predicted by the fold network that did not train on it: class
    probabilities (columns: the sorted classes of ``folds.y``) or predictions. Rows in no
    validation fold (one split) are NaN."""
    n = len(folds.y)
    out: np.ndarray | None = None
    classes = np.unique(folds.y) if folds.task == "classification" else None
    for est, (_, val) in zip(estimators, folds.splits, strict=True):
        if classes is not None:
            block = np.zeros((len(val), len(classes)))
            block[:, np.searchsorted(classes, est.classes_)] = est.predict_proba(folds.X[val])
        else:
            block = np.asarray(est.predict(folds.X[val]), dtype=np.float64)
        if out is None:
            out = np.full((n, *block.shape[1:]), np.nan)
        out[val] = block
    assert out is not None
    return out


@dataclass(frozen=True)
class FoldScore:
    """A trial's score: ``value`` (mean over folds) at ``epoch``, and each fold's score there."""

    value: float
    epoch: int
    fold_scores: tuple[float, ...]


def common_epoch_score(histories: Sequence[Sequence[Mapping[str, float]]], best_epochs: Sequence[int],
                       early_stopping: bool) -> FoldScore:
    """Score every fold at one epoch count: the one with the lowest fold-mean validation loss.

    Scoring each fold at its own best epoch picks k epochs on the very rows it then reports,
    and the refit cannot train k epoch counts at once: it trains one. Here the folds share the
    epoch the refit will train (the one early stopping would choose on the fold-mean curve), so
    the score is that of what is refit. Measured (benchmarks/selection_ab.py, 8 paired 30 s
    runs): the winner's optimism fell by 0.008 and its test score rose by 0.007 on average,
    both within seed noise. A fold that stopped before that epoch counts with its last record.
    Without early stopping every fold trains to the end, and that is where it is scored.
    """
    if not early_stopping:
        scores = tuple(float(h[best]["val_score"]) for h, best in zip(histories, best_epochs, strict=True))
        return FoldScore(float(np.mean(scores)), round(float(np.mean(best_epochs))), scores)
    length = max(len(h) for h in histories)

    def at(h: Sequence[Mapping[str, float]], epoch: int, key: str) -> float:
        return float(h[min(epoch, len(h) - 1)][key])

    losses = np.array([np.mean([at(h, e, "val_loss") for h in histories]) for e in range(length)])
    losses[~np.isfinite(losses)] = np.inf
    epoch = int(np.argmin(losses))
    scores = tuple(at(h, epoch, "val_score") for h in histories)
    return FoldScore(float(np.mean(scores)), epoch, scores)


def run_objective(
    trial: optuna.Trial,
    config: RegConfig,
    folds: Folds,
    metric: Metric,
    *,
    seed: int,
    device: str,
    warmup: int,
    on_epoch: Any = None,
    on_predictions: Callable[[float, np.ndarray], None] | None = None,
    module: Mapping[str, Any] | None = None,
) -> tuple[float, dict[str, float]]:
    """Train ``config`` on every fold in lockstep; report the fold-mean score each epoch.

    While training, a fold that stopped early keeps contributing the score of its best epoch.
    Returns the trial's score (:func:`common_epoch_score`: every fold at the one epoch count
    the refit trains) and the summary metrics logged for the trial. Sets the trial's user attrs
    ``fold_scores`` (each fold's score, for the standard error reports show) and
    ``fold_best_score`` (the mean of each fold's own best-epoch score, for comparison). Raises
    :class:`TrialPruned` when the pruner says so (never for the baseline or the user's network
    as written, never before ``warmup`` epochs).
    """
    can_prune = prunable(trial)
    start = time.perf_counter()
    estimators, runs = [], []
    for k, (tr, va) in enumerate(folds.splits):
        est = make_estimator(config, folds.task, image_shape=folds.image_shape, device=device, random_state=seed + k,
                             module=module)
        score_fn = epoch_score_fn(metric, folds.y[tr], folds.task)
        estimators.append(est)
        runs.append(est.fit_iter(folds.X[tr], folds.y[tr], validation_data=(folds.X[va], folds.y[va], folds.weights(va)),
                                 sample_weight=folds.weights(tr), score_fn=score_fn))
    latest: list[dict[str, Any] | None] = [None] * len(runs)
    active = set(range(len(runs)))
    epoch = 0
    while active:
        for i in sorted(active):
            try:
                latest[i] = next(runs[i])
            except StopIteration:
                active.discard(i)
                latest[i] = estimators[i].history_[estimators[i].best_epoch_]
        if not active:
            break
        record = {key: float(np.mean([r[key] for r in latest])) for key in ("train_loss", "val_loss", "val_score")}
        if on_epoch is not None:
            try:
                on_epoch(epoch, record)
            except OutOfTime:  # the search's time is up: scored on the epochs trained so far
                for i in active:
                    with contextlib.suppress(StopIteration):
                        runs[i].send(True)  # the fold's fit ends here, its best epoch restored
                break
        if math.isfinite(record["val_score"]):
            trial.report(record["val_score"], epoch)
        if can_prune and epoch + 1 >= warmup and trial.should_prune():
            raise TrialPruned(epoch)
        epoch += 1
    return score_trial(trial, config, estimators, folds, metric, start=start, on_predictions=on_predictions)


def prunable(trial: optuna.Trial) -> bool:
    """Whether the pruner may end ``trial``: not the baseline, nor the user's network as
    written (:data:`AS_WRITTEN_ATTR`); the report compares the search's best against both."""
    return not (trial.user_attrs.get("baseline", False) or trial.user_attrs.get(AS_WRITTEN_ATTR, False))


# Study name -> (trial number, value, fold networks) of this process's best trial so far: a final
# model that needs no refit when the time left holds none (regtune.tuning.final).
_KEPT: dict[str, tuple[int, float, list[Any]]] = {}


def _keep_networks(trial: optuna.Trial, value: float, estimators: Sequence[Any]) -> None:
    study = getattr(trial, "study", None)  # FixedTrial and test doubles have none
    if study is None:
        return
    kept = _KEPT.get(study.study_name)
    maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
    if kept is None or (value > kept[1] if maximize else value < kept[1]):
        _KEPT[study.study_name] = (trial.number, value, list(estimators))


def kept_network(study_name: str, number: int, *, forget: bool = False) -> Any:
    """The fitted network of trial ``number`` of ``study_name`` if this process trained it and it
    was the best so far (its fold network with the best validation score), else ``None``.
    ``forget`` drops what is kept for the study."""
    kept = _KEPT.pop(study_name, None) if forget else _KEPT.get(study_name)
    if kept is None or kept[0] != number:
        return None
    return max(kept[2], key=lambda est: est.history_[est.best_epoch_].get("val_score", -math.inf))


def score_trial(
    trial: optuna.Trial,
    config: RegConfig,
    estimators: Sequence[Any],
    folds: Folds,
    metric: Metric,
    *,
    start: float,
    on_predictions: Callable[[float, np.ndarray], None] | None = None,
) -> tuple[float, dict[str, float]]:
    """The score and summary metrics of a trial whose fold estimators are fitted: one function
    for a trial trained alone (:func:`run_objective`) and one trained in a cohort
    (:mod:`regtune.tuning.cohort`), so both are scored and logged alike."""
    own_best = float(np.mean([est.history_[est.best_epoch_]["val_score"] for est in estimators]))
    scored = common_epoch_score([est.history_ for est in estimators], [est.best_epoch_ for est in estimators],
                                bool(config.early_stopping))
    value = scored.value
    if not math.isfinite(value):  # Optuna would fail the trial without saying why
        raise FloatingPointError(f"validation {metric.name} is {value} (the network's outputs are not finite)")
    if on_predictions is not None:  # greedy ensemble selection reads them (regtune.tuning.ensemble)
        on_predictions(value, out_of_fold_predictions(estimators, folds))
    _keep_networks(trial, value, estimators)
    train_scores = [metric.final_fn(est, folds.X[tr], folds.y[tr]) for est, (tr, _) in zip(estimators, folds.splits, strict=True)]
    stats = [weight_stats(est.module_) for est in estimators]
    summary = {key: float(np.mean([s[key] for s in stats])) for key in stats[0]}
    summary.update(
        value=value,
        train_score=float(np.mean(train_scores)),
        epochs=float(np.mean([est.n_iter_ for est in estimators])),
        best_epoch=float(scored.epoch),
        seconds=time.perf_counter() - start,
    )
    if len(scored.fold_scores) > 1:
        summary["fold_sd"] = float(np.std(scored.fold_scores, ddof=1))
    trial.set_user_attr(FOLD_SCORES_ATTR, [float(s) for s in scored.fold_scores])
    trial.set_user_attr("fold_best_score", own_best if math.isfinite(own_best) else None)
    return value, summary


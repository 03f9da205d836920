"""Cohort trials: K Optuna trials of one structure trained as one batched network (``--cohort K``).

A worker samples the trial it claimed (the leader). If a cohort can train it
(:func:`regtune.nn.cohort.cohort_problem`; for a user's module, :func:`batching_problem`), it
claims up to K-1 more and samples them with the leader's structural parameters fixed
(:func:`fixed_params`, through Optuna's ``PartialFixedSampler``): widths, depth, activation,
optimizer, batch size, schedule, scaling, the module's own parameters and the regularizers the
table marks ``cohort="shared"`` (dropout, batch norm, spectral norm). What the members still
sample is what the table lets members vary (:func:`regtune.nn.cohort.member_fields`: learning
rate, penalties, decay, noise, mixing, augmentation, max-norm, label smoothing, patience, and
whether each is on). :func:`run_cohort_objective` then trains them on every fold in lockstep,
one :class:`~regtune.nn.cohort.CohortTrainer` per fold (members x folds), reports each
member's fold-mean score each epoch to its own trial, prunes members one by one (a pruned
member leaves the batch) and scores each finished one with :func:`regtune.tuning.trial.score_trial`,
as if it had trained alone. The worker (:mod:`regtune.tuning.worker`) owns what happens to
the trials' states and MLflow runs, the same code as for a trial trained alone. With
``--cohort auto`` it first sizes cohorts by measurement (:func:`choose_cohort_size`).
"""

from __future__ import annotations

import contextlib
import math
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import optuna

from regtune.config import RegConfig
from regtune.metrics import Metric
from regtune.nn.cohort import (
    CohortTrainer,
    cohort_problem,
    member_fields,
    member_regularizers,
    shared_fields,
)
from regtune.nn.trainer import Trainer
from regtune.space.space import SearchSpace
from regtune.tuning.budget import OutOfTime
from regtune.tuning.trial import (
    Folds,
    TrialPruned,
    epoch_score_fn,
    make_estimator,
    prunable,
    score_trial,
)

__all__ = ["AUTO", "AUTO_ATTR", "AUTO_SHARE", "AUTO_SIZES", "FALLBACK_ATTR", "batching_problem", "cohort_sampler", "choose_cohort_size", "fits_cohort", "fixed_params",
           "pick_cohort_size", "run_cohort_objective"]

AUTO = "auto"  # --cohort auto: the worker measures which K pays (choose_cohort_size)
AUTO_ATTR = "regtune.cohort_auto"  # study user attr and parent-run tag: the K chosen, and the rates measured
FALLBACK_ATTR = "regtune.cohort_fallback"  # study user attr: why a user's module trains alone
AUTO_SIZES = (1, 2, 4, 8, 16, 32, 64)
_AUTO_GAIN = 1.1  # a cohort must train 10% more trials per minute than alone to be worth forming
AUTO_SHARE = 0.1  # --cohort auto under a timeout: the measurement takes at most this share of the search's time left

Outcome = tuple[float, dict[str, float]] | BaseException


def fixed_params(space: SearchSpace, leader_params: Mapping[str, Any]) -> dict[str, Any]:
    """The leader's parameters its cohort's other members take as they are: all but those a
    cohort varies per member (:func:`regtune.nn.cohort.member_fields` and the switches of
    :func:`regtune.nn.cohort.member_regularizers`)."""
    names = member_regularizers()
    varying = set(member_fields()) | {f.switch_param for f in space.regularizers if f.name in names}
    return {name: value for name, value in leader_params.items() if name not in varying}


def choose_cohort_size(
    config: RegConfig, folds: Folds, *, device: str, seed: int, sizes: Sequence[int] = AUTO_SIZES,
    module: Mapping[str, Any] | None = None, epochs: int = 2, until: float | None = None,
) -> tuple[int, dict[int, float]]:
    """The cohort size that trains ``config``'s structure fastest on this device, and the rate
    measured at each size tried (member epochs per second, on the first fold).

    Each size trains ``epochs`` timed epochs after one untimed (K copies of ``config`` with
    their own seeds; K=1 is the Trainer alone, as ``--cohort 1`` trains). Sizes grow until one
    trains at less than half the best rate so far (a cohort of 2 may be slower than one trial
    alone while 16 is faster); 1 is kept unless a cohort beats it by 10%. With ``until`` (a
    ``time.time()``), a size whose epochs would end after it at the best rate so far is not
    tried, nor any larger one: the measurement trains copies, not trials, so a search with a
    timeout bounds what it may spend on them.
    """
    tr, va = folds.splits[0]
    probe = config.replace(max_epochs=epochs + 1, early_stopping=False)
    rates: dict[int, float] = {}
    for K in sizes:
        if rates and until is not None and time.time() + (epochs + 1) * K / max(rates.values()) > until:
            break
        args = [make_estimator(probe, folds.task, image_shape=folds.image_shape, device=device,
                               random_state=seed + k, module=module).trainer_arguments(
            folds.X[tr], folds.y[tr], validation_data=(folds.X[va], folds.y[va])) for k in range(K)]
        trainer = Trainer(**args[0]) if K == 1 else CohortTrainer(args)
        trainer.step()
        start = time.perf_counter()
        for _ in range(epochs):
            trainer.step()
        rates[K] = K * epochs / max(time.perf_counter() - start, 1e-9)
        if rates[K] < max(rates.values()) / 2:  # clearly past the best: larger ones will not pay
            break
    return pick_cohort_size(rates), rates


def batching_problem(
    config: RegConfig, folds: Folds, *, device: str, seed: int, module: Mapping[str, Any] | None = None,
) -> str | None:
    """Why a cohort cannot train ``config``'s network (a user's module above all), else ``None``.

    Two members train one epoch on a few rows in one cohort, and member 0 once alone: a
    forward pass ``vmap`` cannot batch (data-dependent Python control flow, ``.item()``, a
    random op other than the dropout modules) raises, and a member that does not reproduce its
    solo run is refused too.
    """
    tr, va = folds.splits[0]
    tr, va = tr[:min(len(tr), 32)], va[:min(len(va), 16)]
    probe = config.replace(max_epochs=1, early_stopping=False)

    def arguments(k: int) -> dict[str, Any]:
        est = make_estimator(probe, folds.task, image_shape=folds.image_shape, device=device, random_state=seed + k,
                             module=module)
        return est.trainer_arguments(folds.X[tr], folds.y[tr], validation_data=(folds.X[va], folds.y[va]))

    try:
        cohort = CohortTrainer([arguments(0), arguments(1)])
        batched = cohort.step()[0]
    except Exception as exc:
        return f"a cohort cannot batch it ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    alone = Trainer(**arguments(0)).step()
    for key in ("train_loss", "val_loss"):
        if batched is None or not math.isclose(batched[key], alone[key], rel_tol=1e-3, abs_tol=1e-5):
            return (f"a batched member does not train as alone ({key} {batched and batched[key]!r} vs "
                    f"{alone[key]!r})")
    return None


def pick_cohort_size(rates: Mapping[int, float]) -> int:
    """The size with the highest rate, if it beats training alone (size 1) by 10%; else 1."""
    best = max(rates, key=rates.__getitem__)
    return best if rates[best] >= _AUTO_GAIN * rates.get(1, 0.0) else 1


def fits_cohort(leader: RegConfig, config: RegConfig) -> bool:
    """Whether ``config`` can train in ``leader``'s cohort (an enqueued trial, a baseline or a
    prior, keeps its own parameters and may not)."""
    return cohort_problem(config) is None and all(getattr(config, f) == getattr(leader, f) for f in shared_fields())


@contextlib.contextmanager
def cohort_sampler(study: optuna.Study, fixed: Mapping[str, Any]) -> Iterator[None]:
    """While sampling a cohort's members: the study's sampler with ``fixed`` parameters fixed."""
    base = study.sampler
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.sampler = optuna.samplers.PartialFixedSampler(dict(fixed), base)
    try:
        yield
    finally:
        study.sampler = base


def run_cohort_objective(
    trials: Sequence[optuna.Trial],
    configs: Sequence[RegConfig],
    folds: Folds,
    metric: Metric,
    *,
    seeds: Sequence[int],
    device: str,
    warmup: int,
    on_epoch: Callable[[int, int, dict[str, float]], None],
    on_end: Callable[[int, Outcome], None],
    on_predictions: Sequence[Callable[[float, np.ndarray], None] | None] | None = None,
    module: Mapping[str, Any] | None = None,
) -> None:
    """Train member k (``trials[k]``, ``configs[k]``, ``seeds[k]``) on every fold, all members
    in one batched network per fold; each member as :func:`regtune.tuning.trial.run_objective`
    trains a trial alone: the same estimators, seeds, fold-mean record per epoch, reports,
    pruning and score.

    ``on_epoch(k, epoch, record)`` logs a member's epoch (raising ends that member: a
    :class:`TrialPruned` prunes it); ``on_end(k, outcome)`` receives ``(value, summary)`` or
    the exception that ended member k, as soon as it leaves the batch. A KeyboardInterrupt
    propagates: the members not ended yet are the caller's to close.
    """
    start = time.perf_counter()
    K = len(trials)
    estimators = [[make_estimator(config, folds.task, image_shape=folds.image_shape, device=device,
                                  random_state=seed + f, module=module) for config, seed in zip(configs, seeds,
                                                                                                strict=True)]
                  for f in range(len(folds.splits))]
    cohorts = []
    for f, (tr, va) in enumerate(folds.splits):
        score_fn = epoch_score_fn(metric, folds.y[tr], folds.task)
        cohorts.append(CohortTrainer([est.trainer_arguments(folds.X[tr], folds.y[tr], validation_data=(folds.X[va],
                                      folds.y[va]), score_fn=score_fn) for est in estimators[f]]))
    latest: list[list[dict[str, Any] | None]] = [[None] * len(cohorts) for _ in range(K)]
    running = [set(range(len(cohorts))) for _ in range(K)]  # each member's folds still training
    members = set(range(K))

    def end(k: int, outcome: Outcome) -> None:
        members.discard(k)
        for cohort in cohorts:
            cohort.drop(cohort.members[k])
        on_end(k, outcome)

    epoch = 0
    while members:
        records = [cohort.step() for cohort in cohorts]
        for k in sorted(members):
            try:
                for f in sorted(running[k]):
                    member = cohorts[f].members[k]
                    if member.error is not None:
                        raise member.error
                    if records[f][k] is not None:
                        latest[k][f] = records[f][k]
                    else:  # this fold stopped: its best epoch stands for it from now on
                        running[k].discard(f)
                        est = estimators[f][k].adopt_trainer(member)
                        latest[k][f] = est.history_[est.best_epoch_]
                if not running[k]:
                    keep = on_predictions[k] if on_predictions is not None else None
                    end(k, score_trial(trials[k], configs[k], [row[k] for row in estimators], folds, metric,
                                       start=start, on_predictions=keep))
                    continue
                record = {key: float(np.mean([r[key] for r in latest[k]]))
                          for key in ("train_loss", "val_loss", "val_score")}
                try:
                    on_epoch(k, epoch, record)
                except OutOfTime:  # the search's time is up: scored on the epochs trained so far
                    for f in sorted(running[k]):
                        estimators[f][k].adopt_trainer(cohorts[f].members[k])
                    keep = on_predictions[k] if on_predictions is not None else None
                    end(k, score_trial(trials[k], configs[k], [row[k] for row in estimators], folds, metric,
                                       start=start, on_predictions=keep))
                    continue
                if math.isfinite(record["val_score"]):
                    trials[k].report(record["val_score"], epoch)
                if prunable(trials[k]) and epoch + 1 >= warmup and trials[k].should_prune():
                    raise TrialPruned(epoch)
            except KeyboardInterrupt:
                raise
            except Exception as exc:  # this member ends; the others train on
                end(k, exc)
        epoch += 1

"""Priors and tabular-MLP options: choose the priors on the seen sets, measure the options elsewhere.

    python benchmarks/priors_ab.py candidates [--seeds 2]
    python benchmarks/priors_ab.py options [--datasets pima,oj,concrete] [--seeds 3]
    python benchmarks/priors_ab.py search [--datasets ...] [--seeds 2] [--budget 60] [--variants before,after]
    python benchmarks/priors_ab.py linear [--datasets ...] [--seeds 2]

``candidates``: every candidate prior configuration (``CANDIDATES``, trial params of the default
space) is cross-validated (3 folds, as the tuner scores a trial) on the training part of the
*seen* datasets only (digits, breast_cancer, diabetes: ``datasets.py`` marks them), then refit
and scored on their test part. The priors shipped in ``search_spaces/default.yaml`` are the
best by mean rank of the CV score there; the benchmark's unseen datasets play no part.

``options``: one configuration at a time, each option switched (``lr_schedule``,
``feature_scaling``), on unseen benchmark datasets: what an option does by itself.

``search``: ``RegTuneClassifier/Regressor(timeout=budget)`` with the default space as it was
before this change (``before``: no schedule, scaling or priors), with the new options but no
priors (``options``), as shipped (``after``) and as shipped with ``ensemble=5``
(``ensemble``, ``embedding_prior``; ``ensemble10``: ``ensemble=10``), as shipped without the
periodic-embedding prior and its param (``no_embedding_prior``), with ``n_layers`` reaching 0 (a linear model) and the linear prior first
(``linear``) or no new prior (``linear_space``), as shipped one trial at a time (``cohort1``) and
with ``cohort="auto"`` (``cohort_auto``): the same budget and seeds.

``linear``: linear configurations (``LINEAR_CANDIDATES``, ``n_layers=0``) cross-validated as a
trial is, next to ``LogisticRegression(C=1)`` / ``Ridge(alpha=1)`` on the same split.

Everything runs on one thread (like ``generalization.py``). Results:
``results/priors_ab/<output>.json`` (one section per mode, merged), tables on stdout.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from _common import load, machine_info, result_path, update  # noqa: E402
from datasets import DATASETS, split  # noqa: E402
from datasets import load as load_table  # noqa: E402
from sklearn.model_selection import KFold, StratifiedKFold  # noqa: E402

from regtune.data.preprocess import TabularPreprocessor  # noqa: E402
from regtune.exceptions import SearchSpaceError  # noqa: E402
from regtune.metrics import get_metric  # noqa: E402
from regtune.space.space import SPACES_DIR, SearchSpace  # noqa: E402
from regtune.tuning.final import refit  # noqa: E402
from regtune.tuning.settings import TuneSettings  # noqa: E402
from regtune.tuning.trial import Folds, run_objective  # noqa: E402

torch.set_num_threads(1)
optuna.logging.set_verbosity(optuna.logging.WARNING)
warnings.filterwarnings("ignore")

NAME = "priors_ab"
SEEN = [name for name, spec in DATASETS.items() if spec.seen]
OPTION_DATASETS = ("pima", "oj", "concrete")
ES = {"use_early_stopping": True, "patience": 10}

# Candidate priors, as changes to the default space's baseline params. Sources: RealMLP-TD
# (Holzmüller et al. 2024: 3x256, robust scaling + smooth clip, label smoothing 0.1, dropout
# 0.15, annealed rate), Kadra et al. 2021 (the cocktail: batch norm + dropout + decay + mixup),
# Srivastava et al. 2014 (dropout + max-norm), and plain well-known recipes.
CANDIDATES: dict[str, dict[str, Any]] = {
    "realmlp_like": dict(n_layers=3, width=256, activation="gelu", lr=2e-3, batch_size=128, lr_schedule="cosine",
                         feature_scaling="robust_clip", use_dropout=True, dropout=0.15, dropout_variant="standard",
                         use_label_smoothing=True, label_smoothing=0.1, use_weight_decay=True, weight_decay=1e-5,
                         **ES),
    "realmlp_flat": dict(n_layers=3, width=256, activation="gelu", lr=2e-3, batch_size=128, lr_schedule="flat_anneal",
                         feature_scaling="robust_clip", use_dropout=True, dropout=0.15, dropout_variant="standard",
                         use_label_smoothing=True, label_smoothing=0.1, **ES),
    "wide_decay_cosine": dict(n_layers=2, width=256, activation="relu", lr=1e-3, batch_size=64, lr_schedule="cosine",
                              feature_scaling="robust_clip", use_dropout=True, dropout=0.2, dropout_variant="standard",
                              use_weight_decay=True, weight_decay=1e-3, **ES),
    "small_decay_cosine": dict(n_layers=2, width=128, activation="relu", lr=1e-3, batch_size=64,
                               lr_schedule="cosine", use_dropout=True, dropout=0.1, dropout_variant="standard",
                               use_weight_decay=True, weight_decay=1e-4, **ES),
    "onecycle_bn": dict(n_layers=2, width=256, activation="relu", lr=3e-3, batch_size=128, lr_schedule="onecycle",
                        feature_scaling="robust_clip", use_batch_norm=True, batch_norm="before_activation",
                        use_dropout=True, dropout=0.1, dropout_variant="standard", **ES),
    "quantile_warmup": dict(n_layers=3, width=128, activation="gelu", lr=2e-3, batch_size=128, lr_schedule="cosine",
                            warmup_epochs=2, feature_scaling="quantile", use_dropout=True, dropout=0.2,
                            dropout_variant="standard", use_weight_decay=True, weight_decay=1e-3, **ES),
    "one_layer_dropout": dict(n_layers=1, width=256, activation="relu", lr=3e-3, batch_size=64, lr_schedule="cosine",
                              use_dropout=True, dropout=0.3, dropout_variant="standard", **ES),
    "mixup": dict(n_layers=3, width=256, activation="relu", lr=1e-3, batch_size=128, lr_schedule="cosine",
                  feature_scaling="robust_clip", use_mixup=True, mixup_alpha=0.2, use_dropout=True, dropout=0.1,
                  dropout_variant="standard", **ES),
    "input_noise": dict(n_layers=2, width=256, activation="gelu", lr=2e-3, batch_size=128, lr_schedule="flat_anneal",
                        feature_scaling="robust_clip", use_input_noise=True, input_noise=0.05, use_dropout=True,
                        dropout=0.1, dropout_variant="standard", **ES),
    "cocktail_lite": dict(n_layers=3, width=256, activation="relu", lr=1e-3, batch_size=128, lr_schedule="cosine",
                          feature_scaling="robust_clip", use_batch_norm=True, batch_norm="before_activation",
                          use_dropout=True, dropout=0.15, dropout_variant="standard", use_weight_decay=True,
                          weight_decay=1e-4, use_mixup=True, mixup_alpha=0.2, use_label_smoothing=True,
                          label_smoothing=0.1, **ES),
    "maxnorm_dropout": dict(n_layers=2, width=256, activation="relu", lr=2e-3, batch_size=128, lr_schedule="cosine",
                            use_dropout=True, dropout=0.3, dropout_variant="standard", use_max_norm=True,
                            max_norm=3.0, **ES),
}


# A linear model (no hidden layer) trained with Adam: what LogisticRegression does, with the
# space's regularizers. LINEAR_CANDIDATES are ranked by CV score on the seen sets (``linear``
# mode); LINEAR_PRIOR is the one the ``linear`` search variant puts first.
LINEAR_CANDIDATES: dict[str, dict[str, Any]] = {
    "lin_wd4_lr1e-2": dict(n_layers=0, lr=1e-2, batch_size=128, lr_schedule="cosine", use_weight_decay=True,
                          weight_decay=1e-4, **ES),
    "lin_wd3_lr1e-2": dict(n_layers=0, lr=1e-2, batch_size=128, lr_schedule="cosine", use_weight_decay=True,
                          weight_decay=1e-3, **ES),
    "lin_l2_3_lr1e-2": dict(n_layers=0, lr=1e-2, batch_size=128, lr_schedule="cosine", use_l2=True, l2=1e-3,
                           **ES),
    "lin_wd4_lr3e-3": dict(n_layers=0, lr=3e-3, batch_size=64, lr_schedule="cosine", use_weight_decay=True,
                          weight_decay=1e-4, **ES),
    "lin_plain_lr1e-2": dict(n_layers=0, lr=1e-2, batch_size=128, lr_schedule="cosine", **ES),
    # Trained to the end with LogisticRegression(C=1)'s penalty: C=1 on n rows is l2 = 1/n on
    # the mean loss (1e-3 for 1,000 rows); no early stopping, as the solver converges.
    "lin_l2_3_full": dict(n_layers=0, lr=1e-2, batch_size=128, lr_schedule="cosine", use_l2=True, l2=1e-3),
    "lin_l2_3_full_lr3e-2": dict(n_layers=0, lr=3e-2, batch_size=128, lr_schedule="cosine", use_l2=True, l2=1e-3),
    "lin_l2_2_full_lr3e-2": dict(n_layers=0, lr=3e-2, batch_size=128, lr_schedule="cosine", use_l2=True, l2=1e-2),
    # Within the default space's lr range (1e-4..1e-2): smaller batches for more steps.
    "lin_l2_2_full_bs64": dict(n_layers=0, lr=1e-2, batch_size=64, lr_schedule="cosine", use_l2=True, l2=1e-2),
    "lin_l2_3_full_bs64": dict(n_layers=0, lr=1e-2, batch_size=64, lr_schedule="cosine", use_l2=True, l2=1e-3),
}
# The best CV score on the seen sets (digits, breast_cancer, diabetes) of those within the
# default space (lr <= 1e-2); with early stopping a linear model stops short of its optimum
# (diabetes R^2 0.45 vs 0.52).
LINEAR_PRIOR: dict[str, Any] = LINEAR_CANDIDATES["lin_l2_3_full_bs64"]


def _prepared(name: str, seed: int, n_folds: int = 3) -> tuple[Folds, np.ndarray, np.ndarray, str]:
    """The benchmark's fixed split, preprocessed on its training part, with ``n_folds`` CV folds."""
    table = load_table(name)
    X_tr, X_te, y_tr, y_te, _ = split(table)
    prep = TabularPreprocessor().fit(X_tr)
    X, Xt = prep.transform(X_tr), prep.transform(X_te)
    task = table.spec.task
    y, yt = y_tr.to_numpy(), y_te.to_numpy()
    if task == "regression":
        y, yt = y.astype(np.float64), yt.astype(np.float64)
    splitter = (StratifiedKFold if task == "classification" else KFold)(n_folds, shuffle=True, random_state=seed)
    return Folds(X, y, task, list(splitter.split(X, y))), Xt, yt, task


def evaluate(params: dict[str, Any], space: SearchSpace, folds: Folds, X_test: np.ndarray, y_test: np.ndarray,
             seed: int) -> dict[str, float]:
    """CV score as the tuner computes a trial's value, then the refit's test score."""
    space = space.for_task(folds.task)  # a regression study skips label smoothing, as the tuner does
    config = space.to_config(params)
    metric = get_metric(None, folds.task)
    start = time.perf_counter()
    trial = optuna.trial.FixedTrial(params)
    value, summary = run_objective(trial, config, folds, metric, seed=seed, device="cpu", warmup=4)
    frozen = optuna.trial.create_trial(value=value, user_attrs={"best_epoch": summary["best_epoch"]})
    est = refit(config, frozen, folds, TuneSettings(seed=seed, device="cpu"))
    return {"val": float(value), "test": float(metric.final_fn(est, X_test, y_test)),
            "seconds": time.perf_counter() - start}


def _ranks(scores: dict[str, float]) -> dict[str, float]:
    ordered = pd.Series(scores).rank(ascending=False, method="average")
    return ordered.to_dict()


def _save_rows(args: argparse.Namespace, rows: list[dict[str, Any]]) -> None:
    """Every finished row at once: an interrupted run keeps what it measured."""
    update(result_path(NAME, args.output), lambda doc: doc.setdefault(f"{args.mode}_partial", {}).update(rows=rows))


def candidates(args: argparse.Namespace) -> dict[str, Any]:
    space = SearchSpace.from_yaml("default")
    base = space.baseline_params()
    rows = []
    for name in args.datasets or SEEN:
        for seed in range(args.seeds):
            folds, Xt, yt, _ = _prepared(name, seed)
            for label, changes in {"baseline": {}, **CANDIDATES}.items():
                result = evaluate({**base, **changes}, space, folds, Xt, yt, seed)
                rows.append({"dataset": name, "seed": seed, "candidate": label, **result})
                _save_rows(args, rows)
                print(f"{name} seed {seed} {label:20s} val {result['val']:.4f} test {result['test']:.4f} "
                      f"({result['seconds']:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    means = frame.groupby(["dataset", "candidate"])[["val", "test"]].mean()
    ranks = []
    for (name, seed), part in frame.groupby(["dataset", "seed"]):
        for candidate, rank in _ranks(dict(zip(part.candidate, part.val, strict=True))).items():
            ranks.append({"dataset": name, "seed": seed, "candidate": candidate, "val_rank": rank})
    rank = pd.DataFrame(ranks).groupby("candidate").val_rank.mean().sort_values()
    table = means.unstack(0)
    table[("rank", "mean val rank")] = rank
    print(table.sort_values(("rank", "mean val rank")).round(4).to_markdown())
    return {"rows": rows, "mean_val_rank": rank.to_dict()}


def options(args: argparse.Namespace) -> dict[str, Any]:
    space = SearchSpace.from_yaml("default")
    base = space.baseline_params()
    references = {"realmlp_like": CANDIDATES["realmlp_like"]} if not args.all_references else {
        "baseline+ES": dict(ES), "realmlp_like": CANDIDATES["realmlp_like"]}
    variants = {"lr_schedule": ["constant", "cosine", "onecycle", "flat_anneal"],
                "feature_scaling": ["standard", "robust_clip", "quantile"]}
    rows = []
    for name in args.datasets or OPTION_DATASETS:
        for seed in range(args.seeds):
            folds, Xt, yt, _ = _prepared(name, seed)
            for ref_name, ref in references.items():
                for option, values in variants.items():
                    for value in values:
                        params = {**base, **ref, option: value}
                        result = evaluate(params, space, folds, Xt, yt, seed)
                        rows.append({"dataset": name, "seed": seed, "reference": ref_name, "option": option,
                                     "value": value, **result})
                        _save_rows(args, rows)
                        print(f"{name} s{seed} {ref_name} {option}={value:12s} val {result['val']:.4f} "
                              f"test {result['test']:.4f}", flush=True)
    frame = pd.DataFrame(rows)
    print(frame.groupby(["reference", "option", "value", "dataset"]).test.mean().unstack().round(4).to_markdown())
    return {"rows": rows}


def linear(args: argparse.Namespace) -> dict[str, Any]:
    """Linear configurations (``n_layers=0``) next to ``LogisticRegression`` / ``Ridge`` on the
    same preprocessed split: the CV score picks the linear prior (on the seen sets), the test
    score is the sanity check against scikit-learn's linear model."""
    from sklearn.linear_model import LogisticRegression, Ridge

    space = linear_space(SearchSpace.from_yaml("default"))
    base = space.baseline_params()
    rows = []
    for name in args.datasets or SEEN:
        for seed in range(args.seeds):
            folds, Xt, yt, task = _prepared(name, seed)
            sk = LogisticRegression(C=1.0, max_iter=2000) if task == "classification" else Ridge(alpha=1.0)
            sk_test = float(get_metric(None, task).final_fn(sk.fit(folds.X, folds.y), Xt, yt))
            rows.append({"dataset": name, "seed": seed, "candidate": "sklearn", "val": float("nan"),
                         "test": sk_test, "seconds": 0.0})
            for label, changes in LINEAR_CANDIDATES.items():
                if args.in_space:  # only what a prior of the space may say
                    try:
                        dataclasses.replace(space, priors=(changes,)).prior_params()
                    except SearchSpaceError:
                        continue
                result = evaluate({**base, **changes}, space, folds, Xt, yt, seed)
                rows.append({"dataset": name, "seed": seed, "candidate": label, **result})
                _save_rows(args, rows)
                print(f"{name} s{seed} {label:16s} val {result['val']:.4f} test {result['test']:.4f} "
                      f"(sklearn {sk_test:.4f}, {result['seconds']:.0f} s)", flush=True)
    frame = pd.DataFrame(rows)
    print(frame.groupby(["candidate", "dataset"])[["val", "test"]].mean().unstack().round(4).to_markdown())
    return {"rows": rows}


def linear_space(space: SearchSpace) -> SearchSpace:
    """``space`` with ``n_layers`` reaching 0 (a linear model), for evaluating linear params."""
    data = yaml.safe_load(space.path.read_text())
    data["params"]["n_layers"]["low"] = 0
    return SearchSpace.from_yaml(_write_yaml(data, Path(tempfile.mkdtemp()) / "default_linear_space.yaml"))


def _write_yaml(data: dict[str, Any], path: Path) -> str:
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


# The ensemble size of each search variant (0: the best trial alone).
ENSEMBLE = {"ensemble": 5, "ensemble10": 10, "embedding_prior": 5, "no_embedding_prior": 5, "cohort1": 5, "cohort_auto": 5}
COHORT = {"cohort_auto": "auto"}  # the rest: one trial at a time (cohort=1)


def _space_variant(kind: str, directory: Path) -> str:
    """The default space as it was before this change (``before``), without priors (``options``),
    as shipped (``after``), with ``n_layers`` reaching 0 and the linear prior first (``linear``)
    or without a new prior (``linear_space``); ``embedding_prior`` is the shipped space,
    ``no_embedding_prior`` the same without ``numeric_embedding`` and the prior that names it."""
    if kind in ("after", "ensemble", "ensemble10", "embedding_prior", "cohort1", "cohort_auto"):
        return "default"
    data = yaml.safe_load((SPACES_DIR / "default.yaml").read_text())
    if kind in ("linear", "linear_space"):
        data["params"]["n_layers"]["low"] = 0
        if kind == "linear":
            data["priors"] = [dict(LINEAR_PRIOR), *[p for p in data.get("priors") or [] if p.get("n_layers") != 0]]
        return _write_yaml(data, directory / f"default_{kind}.yaml")
    if kind == "no_embedding_prior":  # the shipped space before its periodic-embedding prior
        data["params"].pop("numeric_embedding")
        data["priors"] = [p for p in data["priors"] if "numeric_embedding" not in p]
        return _write_yaml(data, directory / f"default_{kind}.yaml")
    data.pop("priors", None)
    data["params"].pop("numeric_embedding")
    if kind == "before":
        for new in ("lr_schedule", "warmup_epochs", "feature_scaling"):
            data["params"].pop(new, None)
    path = directory / f"default_{kind}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return str(path)


def search(args: argparse.Namespace) -> dict[str, Any]:
    from sklearn.pipeline import make_pipeline

    from regtune import RegTuneClassifier, RegTuneRegressor, make_preprocessor

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        spaces = {kind: _space_variant(kind, Path(tmp)) for kind in args.variants.split(",")}
        for name in args.datasets or OPTION_DATASETS:
            table = load_table(name)
            X_tr, X_te, y_tr, y_te, _ = split(table)
            clf = table.spec.task == "classification"
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                for kind, space in spaces.items():
                    cls = RegTuneClassifier if clf else RegTuneRegressor
                    est = cls(space=space, timeout=args.budget, n_trials=1000, tracking_uri="off", device="cpu",
                              random_state=seed, ensemble=ENSEMBLE.get(kind, 0), cohort=COHORT.get(kind, 1))
                    start = time.perf_counter()
                    model = make_pipeline(make_preprocessor(), est).fit(X_tr, y_tr)
                    wall = time.perf_counter() - start
                    test = float(model.score(X_te, y_te))
                    ran = int(sum(t.state.name in ("COMPLETE", "PRUNED", "FAIL") for t in est.study_.trials))
                    best = est.study_.best_trial
                    rows.append({"dataset": name, "seed": seed, "variant": kind, "test": test,
                                 "val": float(est.best_score_), "trials": ran, "wall": wall,
                                 "best_trial": best.number, "best_is_prior": "prior" in best.user_attrs,
                                 "best_prior": best.user_attrs.get("prior"), "best_params": best.params,
                                 "linear_trials": int(sum(t.params.get("n_layers") == 0 for t in est.study_.trials)),
                                 "in_cohorts": int(sum("regtune.cohort" in t.user_attrs for t in est.study_.trials)),
                                 "cohort_auto": est.study_.user_attrs.get("regtune.cohort_auto"),
                                 "load": load()[0]})
                    _save_rows(args, rows)
                    print(f"{name} s{seed} {kind:8s} test {test:.4f} val {est.best_score_:.4f} trials {ran} "
                          f"best #{best.number}{' (prior)' if 'prior' in best.user_attrs else ''} "
                          f"n_layers {best.params.get('n_layers')} "
                          f"wall {wall:.0f} s", flush=True)
    frame = pd.DataFrame(rows)
    print(frame.groupby(["dataset", "variant"])[["test", "val", "trials", "wall"]].mean().unstack().round(4)
          .to_markdown())
    return {"rows": rows, "budget": args.budget}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=["candidates", "options", "search", "linear"])
    parser.add_argument("--datasets", type=lambda s: s.split(","), default=None)
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--first-seed", type=int, default=0, help="search: seeds first..first+seeds-1")
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--variants", default="before,options,after,ensemble")
    parser.add_argument("--output", default="latest", help="results/priors_ab/<output>.json")
    parser.add_argument("--all-references", action="store_true", help="options: also on baseline + early stopping")
    parser.add_argument("--in-space", action="store_true", help="linear: only candidates the default space allows")
    args = parser.parse_args()
    started = time.time()
    result = {"candidates": candidates, "options": options, "search": search, "linear": linear}[args.mode](args)
    section = {**result, "args": vars(args), "machine": machine_info(), "load_after": load(),
               "minutes": (time.time() - started) / 60}
    update(result_path(NAME, args.output), lambda doc: doc.update({args.mode: section}))


if __name__ == "__main__":
    main()

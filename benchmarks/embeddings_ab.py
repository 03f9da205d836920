"""Numeric feature embeddings A/B: one fixed MLP with ``numeric_embedding`` none / periodic / PLE.

    PYTHONPATH=. python benchmarks/embeddings_ab.py [--datasets concrete,cells,pima,wage] [--seeds 3]
                                                    [--configs default,realmlp_like]
    PYTHONPATH=. python benchmarks/embeddings_ab.py --option tabm [--variants tabm1,tabm8] [--max-epochs 100] --output tabm
    PYTHONPATH=. python benchmarks/embeddings_ab.py --search [--budget 30] [--seeds 2]

Every variant is the same ``RegularizedNetClassifier/Regressor`` behind ``make_preprocessor()``
as in generalization.py's regtune column, on the benchmark's fixed split of datasets regtune's
defaults were not tuned on; only ``numeric_embedding`` (and for ``periodic_s1`` its
``frequency_sigma``) changes. Two fixed configurations (``CONFIGS``): the estimator's defaults
(2x128 ReLU, Adam 1e-3, early stopping on a 10 % validation split, patience 10, at most 100
epochs) and the default space's first prior (RealMLP-TD-like: 3x256 GELU, cosine schedule,
robust scaling with smooth clipping, dropout 0.15, label smoothing 0.1 for classifiers, decay
1e-5). Variants are interleaved per dataset and seed (repeat ``r`` starts with variant ``r``),
one thread.

``--search``: whole searches, ``RegTuneClassifier/Regressor(timeout=budget)``, with the default
space as shipped and with the default space plus ``numeric_embedding`` (none / periodic /
piecewise_linear) and ``frequency_sigma`` (0.01-3, log) as params (``EMBEDDING_PARAMS``): is
the option worth the wider search?

``--option tabm``: the same fixed networks with ``tabm`` (TabM-mini members) 1 / 8 / 32
instead of an embedding (``TABM_VARIANTS``; the ``_w128`` ones with 128-wide layers);
``--variants`` picks some of them.

Test score: accuracy (classification) or R^2 (regression). Results:
``results/embeddings_ab/<output>.json`` (``fixed`` and ``search`` sections), a table on stdout.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from _common import load, machine_info, markdown_table, result_path, update  # noqa: E402
from datasets import load as load_table  # noqa: E402
from datasets import split  # noqa: E402
from sklearn.metrics import accuracy_score, r2_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402

from regtune import (  # noqa: E402
    RegTuneClassifier,
    RegTuneRegressor,
    RegularizedNetClassifier,
    RegularizedNetRegressor,
    make_preprocessor,
)
from regtune.space.space import SPACES_DIR  # noqa: E402

torch.set_num_threads(1)
warnings.filterwarnings("ignore")

NAME = "embeddings_ab"
DATASETS = ("concrete", "cells", "pima", "wage")
VARIANTS: dict[str, dict[str, Any]] = {
    "none": {"numeric_embedding": "none"},
    "periodic": {"numeric_embedding": "periodic"},
    "periodic_s1": {"numeric_embedding": "periodic", "frequency_sigma": 1.0},
    "piecewise_linear": {"numeric_embedding": "piecewise_linear"},
}
TABM_VARIANTS: dict[str, dict[str, Any]] = {
    "tabm1": {"tabm": 1},
    "tabm8": {"tabm": 8},
    "tabm32": {"tabm": 32},
    "tabm1_w128": {"tabm": 1, "hidden_layer_sizes": (128, 128, 128)},
    "tabm8_w128": {"tabm": 8, "hidden_layer_sizes": (128, 128, 128)},
    "tabm32_w128": {"tabm": 32, "hidden_layer_sizes": (128, 128, 128)},
}
OPTIONS = {"embedding": VARIANTS, "tabm": TABM_VARIANTS}
CONFIGS: dict[str, dict[str, Any]] = {
    "default": {},
    "realmlp_like": {"hidden_layer_sizes": (256, 256, 256), "activation": "gelu", "lr": 2e-3,
                     "lr_schedule": "cosine", "feature_scaling": "robust_clip", "dropout": 0.15,
                     "weight_decay": 1e-5, "max_epochs": 40},
}


def run(name: str, seeds: int, config: str, variants: dict[str, dict[str, Any]] = VARIANTS,
        max_epochs: int | None = None) -> list[dict[str, Any]]:
    table = load_table(name)
    X_tr, X_te, y_tr, y_te, _ = split(table)
    clf = table.spec.task == "classification"
    cls = RegularizedNetClassifier if clf else RegularizedNetRegressor
    fixed = dict(CONFIGS[config])
    if clf and config == "realmlp_like":
        fixed["label_smoothing"] = 0.1
    if max_epochs is not None:
        fixed["max_epochs"] = max_epochs
    rows = []
    names = list(variants)
    for seed in range(seeds):
        for k in range(len(names)):
            variant = names[(seed + k) % len(names)]
            start = time.perf_counter()
            model = make_pipeline(make_preprocessor(), cls(device="cpu", random_state=seed,
                                                           **{**fixed, **variants[variant]}))
            model.fit(X_tr, y_tr)
            pred = model.predict(X_te)
            test = (accuracy_score(y_te.to_numpy(), np.asarray(pred).astype(str)) if clf
                    else r2_score(y_te.to_numpy(), np.asarray(pred, dtype=np.float64)))
            seconds = time.perf_counter() - start
            est = model[-1]
            rows.append({"config": config, "dataset": name, "seed": seed, "variant": variant, "test": float(test),
                         "seconds": seconds, "epochs": int(est.n_iter_),
                         "embedded_columns": None if est._x_numeric_ is None else len(est._x_numeric_),
                         "n_features": int(est.n_features_in_), "load1": round(os.getloadavg()[0], 2)})
            print(f"{config:12s} {name:9s} s{seed} {variant:17s} test {test:.4f}  {seconds:5.1f} s  {est.n_iter_} epochs",
                  flush=True)
    return rows


EMBEDDING_PARAMS = {
    "numeric_embedding": {"type": "categorical", "choices": ["none", "periodic", "piecewise_linear"],
                          "default": "none"},
    "frequency_sigma": {"type": "float", "low": 0.01, "high": 3.0, "log": True, "default": 0.1},
}


def search(names: list[str], seeds: int, budget: float) -> list[dict[str, Any]]:
    doc = yaml.safe_load((SPACES_DIR / "default.yaml").read_text())
    doc["params"].update(EMBEDDING_PARAMS)
    wider = Path(tempfile.mkdtemp(prefix="regtune-emb-")) / "default_embedding.yaml"
    wider.write_text(yaml.safe_dump(doc, sort_keys=False))
    spaces = {"default": "default", "default+embedding": str(wider)}
    rows = []
    for name in names:
        table = load_table(name)
        X_tr, X_te, y_tr, y_te, _ = split(table)
        clf = table.spec.task == "classification"
        cls = RegTuneClassifier if clf else RegTuneRegressor
        for seed in range(seeds):
            for k in range(len(spaces)):
                label = list(spaces)[(seed + k) % len(spaces)]
                start = time.perf_counter()
                est = cls(space=spaces[label], timeout=budget, n_trials=1000, tracking_uri="off", device="cpu",
                          random_state=seed)
                model = make_pipeline(make_preprocessor(), est).fit(X_tr, y_tr)
                pred = model.predict(X_te)
                test = (accuracy_score(y_te.to_numpy(), np.asarray(pred).astype(str)) if clf
                        else r2_score(y_te.to_numpy(), np.asarray(pred, dtype=np.float64)))
                done = [t for t in est.study_.trials if t.state.name in ("COMPLETE", "PRUNED", "FAIL")]
                embeddings = [t.params.get("numeric_embedding", "none") for t in done]
                rows.append({"space": label, "dataset": name, "seed": seed, "test": float(test),
                             "val": float(est.best_score_), "seconds": time.perf_counter() - start,
                             "n_trials": len(done), "best_embedding": est.best_params_.get("numeric_embedding", "none"),
                             "trials_by_embedding": {e: embeddings.count(e) for e in set(embeddings)},
                             "load1": round(os.getloadavg()[0], 2)})
                print(f"{label:18s} {name:9s} s{seed} test {test:.4f} val {est.best_score_:.4f} "
                      f"{len(done)} trials, best {rows[-1]['best_embedding']}", flush=True)
    return rows


def summarize(rows: list[dict[str, Any]], variants: dict[str, dict[str, Any]] = VARIANTS) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for config, name in dict.fromkeys((r["config"], r["dataset"]) for r in rows):
        key = f"{config}/{name}"
        out[key] = {}
        for variant in variants:
            part = [r for r in rows if r["config"] == config and r["dataset"] == name and r["variant"] == variant]
            tests = [r["test"] for r in part]
            out[key][variant] = {"test_mean": float(np.mean(tests)), "test_std": float(np.std(tests)),
                                  "seconds_median": float(np.median([r["seconds"] for r in part]))}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", default=",".join(DATASETS))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--option", choices=list(OPTIONS), default="embedding", help="what the variants change")
    parser.add_argument("--variants", default=None, help="comma-separated subset of the option's variants")
    parser.add_argument("--max-epochs", type=int, default=None, help="override the configurations' max_epochs")
    parser.add_argument("--search", action="store_true", help="whole searches, default space with/without")
    parser.add_argument("--budget", type=float, default=30.0)
    parser.add_argument("--output", default="latest", help="results/embeddings_ab/<output>.json")
    args = parser.parse_args()
    before = load()
    start = time.perf_counter()
    path = result_path(NAME, args.output)
    if args.search:
        rows = search(args.datasets.split(","), args.seeds, args.budget)
        summary = {}
        for name in dict.fromkeys(r["dataset"] for r in rows):
            summary[name] = {space: {"test_mean": float(np.mean([r["test"] for r in part])),
                                     "test_std": float(np.std([r["test"] for r in part])),
                                     "n_trials_mean": float(np.mean([r["n_trials"] for r in part]))}
                             for space in ("default", "default+embedding")
                             if (part := [r for r in rows if r["dataset"] == name and r["space"] == space])}
        print(json.dumps(summary, indent=1))
        section = {"machine": machine_info(), "load_before": before, "load_after": load(),
                         "wall_seconds": time.perf_counter() - start, "budget": args.budget, "seeds": args.seeds,
                         "embedding_params": EMBEDDING_PARAMS, "summary": summary, "rows": rows}
        update(path, lambda doc: doc.update(search=section))
        return
    variants = OPTIONS[args.option]
    if args.variants:
        variants = {v: variants[v] for v in args.variants.split(",")}
    rows = [row for config in args.configs.split(",") for name in args.datasets.split(",")
            for row in run(name, args.seeds, config, variants, args.max_epochs)]
    summary = summarize(rows, variants)
    header = ["config/dataset", *variants]
    table = [[name, *(f"{s[v]['test_mean']:.4f} ± {s[v]['test_std']:.4f} ({s[v]['seconds_median']:.1f} s)"
                      for v in variants)] for name, s in summary.items()]
    print(markdown_table(header, table))
    section = {"machine": machine_info(), "load_before": before, "load_after": load(),
                    "wall_seconds": time.perf_counter() - start, "option": args.option, "variants": variants,
                    "max_epochs": args.max_epochs,
                    "configs": CONFIGS,
                    "seeds": args.seeds, "summary": summary, "rows": rows}
    update(path, lambda doc: doc.update(fixed=section))


if __name__ == "__main__":
    main()

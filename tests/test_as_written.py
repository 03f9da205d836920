"""The user's network as written is a trial: right after the baseline (which turns the module's
own dropout off), the module trains with the regularization its user put in it, and the summary
says whether the search's best beat it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import optuna
import pandas as pd
import torch
from rich.console import Console
from torch import Tensor, nn

from regtune.analysis.report import as_written_line
from regtune.cli.tables import print_tune_summary
from regtune.space.space import SearchSpace
from regtune.tuning.queue import AS_WRITTEN_ATTR, open_study
from regtune.tuning.trial import Folds, Network, check_network, prunable
from regtune.tuning.tuner import tune

TINY = str(Path(__file__).parent / "spaces" / "tiny.yaml")


class WrittenDropout(nn.Module):
    """A user's network with its own ``nn.Dropout(0.25)``; records the rate each new instance
    trains with (one instance per trial with ``cv=1``)."""

    rates: list[float] = []

    def __init__(self, n_features: int, n_outputs: int) -> None:
        super().__init__()
        self.hidden = nn.Linear(n_features, 16)
        self.drop = nn.Dropout(0.25)
        self.out = nn.Linear(16, n_outputs)
        self._seen = False

    def forward(self, x: Tensor) -> Tensor:
        if self.training and not self._seen:
            self._seen = True
            WrittenDropout.rates.append(self.drop.p)
        return self.out(self.drop(torch.relu(self.hidden(x))))


class DropoutArgument(nn.Module):
    """A user's network that takes its rate as an argument, 0.2 unless told."""

    def __init__(self, n_features: int, n_outputs: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(n_features, 16), nn.ReLU(), nn.Dropout(dropout), nn.Linear(16, n_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


def _offline(**kw: object) -> dict:
    return dict(space=TINY, cv=1, pruner="none", storage=":memory:", tracking_uri="off", progress=False,
                log_model=False, device="cpu", ensemble=1, **kw)


def test_trial_one_trains_the_users_dropout_as_written_and_the_baseline_turns_it_off() -> None:
    WrittenDropout.rates.clear()
    result = tune("iris", n_trials=3, module=WrittenDropout, **_offline())
    trials = result.study.trials
    assert trials[0].user_attrs.get("baseline") and not trials[0].params["use_dropout"]
    assert trials[1].user_attrs.get(AS_WRITTEN_ATTR)
    assert trials[1].params["use_dropout"] and math.isclose(trials[1].params["dropout"], 0.25)
    assert trials[1].params["use_l2"] is False and trials[1].params["use_early_stopping"] is False
    # Instances that trained, in order: the tuner's one-batch check (baseline), trial 0, trial 1, ...
    assert WrittenDropout.rates[1] == 0.0 and math.isclose(WrittenDropout.rates[2], 0.25)
    assert "as_written" in result.scores.index and result.scores.loc["as_written", "trial"] == 1
    console = Console(record=True, width=200)
    print_tune_summary(result, console)
    assert "your network as written (trial 1" in console.export_text()


def test_a_dropout_argument_default_is_what_the_user_wrote() -> None:
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(60, 4)).astype(np.float32), np.arange(60) % 3
    folds = Folds(X, y, "classification", [(np.arange(48), np.arange(48, 60))])
    space = SearchSpace.from_yaml(TINY)
    network = check_network(Network(DropoutArgument), space, folds, "cpu")
    assert network.written == {"dropout": 0.2}
    params = network.as_written_params(network.space(space))
    assert params == {**space.baseline_params(), "use_dropout": True, "dropout": 0.2}
    written = check_network(Network(WrittenDropout), space, folds, "cpu")
    assert written.written == {"dropout": 0.25}


def test_the_built_in_network_as_written_is_the_baseline() -> None:
    space = SearchSpace.from_yaml(TINY)
    assert Network().as_written_params(space) is None
    assert space.as_written_params({}) is None and space.as_written_params({"dropout": 0.0}) is None
    result = tune("iris", n_trials=2, **_offline())
    assert not any(t.user_attrs.get(AS_WRITTEN_ATTR) for t in result.study.trials)
    assert "as_written" not in result.scores.index


def test_the_as_written_trial_follows_the_baseline_counts_and_is_queued_once() -> None:
    storage = optuna.storages.InMemoryStorage()

    def open_() -> optuna.Study:
        study, _ = open_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(0),
                              pruner=optuna.pruners.NopPruner(), direction="maximize", n_trials=3,
                              baseline_params={"use_dropout": False}, attrs={},
                              priors=[{"use_dropout": True, "dropout": 0.1}],
                              as_written={"use_dropout": True, "dropout": 0.25})
        return study

    trials = open_().trials
    assert [t.user_attrs for t in trials] == [{"baseline": True}, {AS_WRITTEN_ATTR: True}, {"prior": 0}]
    assert len(open_().trials) == 3  # a re-run adds nothing


def test_the_pruner_never_ends_the_as_written_trial() -> None:
    study = optuna.create_study()
    for attrs, expected in (({}, True), ({"baseline": True}, False), ({AS_WRITTEN_ATTR: True}, False)):
        trial = study.ask()
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        assert prunable(trial) is expected


def test_the_summary_line_says_whether_the_best_beat_it() -> None:
    scores = pd.DataFrame({"trial": [0, 5, 1], "val": [0.90, 0.95, 0.93], "test": [0.89, 0.92, 0.93]},
                          index=["baseline", "best", "as_written"])
    line = as_written_line(scores, "maximize")
    assert line is not None and "trial 1" in line
    assert "validation 0.9500 (best) vs 0.9300: beaten" in line and "test 0.9200 (best) vs 0.9300: not beaten" in line
    assert "not beaten" in as_written_line(scores.assign(val=[1.0, 0.5, 0.4]), "minimize").split(";")[0]
    assert as_written_line(scores.drop(index="as_written"), "maximize") is None
    same = scores.assign(trial=[0, 1, 1])
    assert as_written_line(same, "maximize").endswith("it is the search's best trial")

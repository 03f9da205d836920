"""What regtune relies on in Optuna, checked against real storages so an Optuna upgrade that
breaks it fails here, by name, instead of as lost or duplicated trials in a user's study.

Three parts: the private door (``regtune.tuning.optuna_internals``); the public pieces the trial
queue builds on, with the behaviour it assumes of them; and a check that no other regtune
module touches an Optuna private name.
"""

from __future__ import annotations

import ast
import time
from collections.abc import Callable
from pathlib import Path

import optuna
import pytest
from locations import ROOT
from optuna.trial import TrialState

from regtune.tuning.optuna_internals import INTERMEDIATE_VALUE_OP, SeededHyperbandPruner, storage_of
from regtune.tuning.queue import (
    claim_trials,
    has_heartbeats,
    heartbeat,
    pop_waiting_trial,
    reap_dead_trials,
)
from regtune.tuning.storage import make_storage

PACKAGE = ROOT / "regtune"
DOOR = PACKAGE / "tuning" / "optuna_internals.py"
UPGRADE = f"Optuna {optuna.__version__} changed"

KINDS: dict[str, Callable[[Path], optuna.storages.BaseStorage]] = {
    "memory": lambda tmp: make_storage(":memory:"),
    "journal": lambda tmp: make_storage(str(tmp / "study.journal")),
    "sqlite": lambda tmp: make_storage(f"sqlite:///{tmp}/study.db"),
}


@pytest.fixture(params=sorted(KINDS))
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> optuna.storages.BaseStorage:
    return KINDS[request.param](tmp_path)


def _queued(storage: optuna.storages.BaseStorage, n: int, name: str = "s") -> optuna.Study:
    study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(n):
        study.enqueue_trial({})
    return study


def _finish(study: optuna.Study, trial: optuna.Trial) -> None:
    trial.suggest_float("x", 0.0, 1.0)
    study.tell(trial, 0.5)


# The door: every function in regtune.tuning.optuna_internals.


def test_storage_of_is_the_storage_the_study_reads_and_writes(storage: optuna.storages.BaseStorage) -> None:
    study = _queued(storage, 1)
    inner = storage_of(study)
    assert isinstance(inner, optuna.storages.BaseStorage), (
        f"{UPGRADE} Study._storage: it is {type(inner).__name__}, not a BaseStorage; "
        "update regtune.tuning.optuna_internals.storage_of")
    study_id = inner.get_study_id_from_name(study.study_name)
    (waiting,) = study.get_trials()
    trial_id = inner.get_trial_id_from_study_id_trial_number(study_id, waiting.number)
    inner.set_trial_user_attr(trial_id, "written", "through storage_of")
    assert study.get_trials()[0].user_attrs.get("written") == "through storage_of", (
        f"{UPGRADE} Study._storage: writes through it no longer reach the study; "
        "update regtune.tuning.optuna_internals.storage_of")


def test_seeded_hyperband_brackets_do_not_depend_on_the_study_name() -> None:
    def brackets(study_name: str, pruner_class: type) -> list[int]:
        pruner = pruner_class(min_resource=1, max_resource=40, reduction_factor=3)
        study = optuna.create_study(study_name=study_name, pruner=pruner)
        ids = []
        for _ in range(30):
            trial = study.ask()
            trial.report(0.5, 0)
            trial.should_prune()  # sets up the brackets
            ids.append(pruner._get_bracket_id(study, study.trials[-1]))
            study.tell(trial, 0.5)
        return ids

    optuna_a, optuna_b = brackets("a", optuna.pruners.HyperbandPruner), brackets("b", optuna.pruners.HyperbandPruner)
    assert len(set(optuna_a)) > 1 and optuna_a != optuna_b, (
        f"{UPGRADE} HyperbandPruner._get_bracket_id no longer draws brackets from the study name; "
        "regtune.tuning.optuna_internals.SeededHyperbandPruner may be unnecessary")
    seeded = brackets("a", SeededHyperbandPruner)
    assert seeded == brackets("b", SeededHyperbandPruner) and len(set(seeded)) > 1


def test_intermediate_value_records_carry_the_op_code_regtune_skips_fsync_for(tmp_path: Path) -> None:
    import json

    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = tmp_path / "j.journal"
    study = optuna.create_study(storage=JournalStorage(JournalFileBackend(str(path))))
    study.ask().report(0.5, 0)
    ops = [json.loads(line)["op_code"] for line in path.read_text().splitlines()]
    assert ops[-1] == INTERMEDIATE_VALUE_OP, (
        f"{UPGRADE} the journal's intermediate-value op_code changed; update "
        "regtune.tuning.optuna_internals.INTERMEDIATE_VALUE_OP")


# The public pieces the queue builds on, and what it assumes of them.


def test_a_claim_moves_waiting_trials_to_running_once_and_never_creates_one(
    storage: optuna.storages.BaseStorage,
) -> None:
    study = _queued(storage, 2)
    inner = storage_of(study)
    study_id = inner.get_study_id_from_name(study.study_name)
    first, second = pop_waiting_trial(inner, study_id), pop_waiting_trial(inner, study_id)
    assert first is not None and second is not None and first != second
    assert pop_waiting_trial(inner, study_id) is None
    assert [t.state for t in study.get_trials()] == [TrialState.RUNNING] * 2, "a claim created a trial"
    # The atomicity every worker relies on: only one RUNNING transition wins.
    assert inner.set_trial_state_values(first, state=TrialState.RUNNING) is False, (
        f"{UPGRADE} BaseStorage.set_trial_state_values: moving a RUNNING trial to RUNNING no longer "
        "returns False, so two workers could claim the same trial (regtune.tuning.queue.pop_waiting_trial)")
    inner.set_trial_state_values(second, state=TrialState.COMPLETE, values=[0.0])
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        inner.set_trial_state_values(second, state=TrialState.RUNNING)


def test_claimed_trials_are_optuna_trials_of_the_study(storage: optuna.storages.BaseStorage) -> None:
    study = _queued(storage, 3)
    numbers = []
    for trial in claim_trials(study):
        assert isinstance(trial, optuna.Trial)
        assert trial.study is study and trial.storage is storage_of(study), (
            f"{UPGRADE} Trial.study / Trial.storage; regtune.tuning.queue.heartbeat reads them")
        numbers.append(trial.number)
        _finish(study, trial)
    assert numbers == [0, 1, 2]
    assert [t.state for t in study.get_trials()] == [TrialState.COMPLETE] * 3


class _Recorder(optuna.samplers.RandomSampler):
    """Records how many finished trials the sampler is shown when a trial starts sampling."""

    def __init__(self) -> None:
        super().__init__(seed=0)
        self.shown: list[int] = []

    def infer_relative_search_space(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> dict:
        trials = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
        self.shown.append(len(trials))
        return {}


def test_a_claimed_trial_samples_from_what_other_workers_finished_meanwhile(
    storage: optuna.storages.BaseStorage,
) -> None:
    """Samplers read a per-thread cache of the study's trials that ``Study.tell`` drops; the queue
    claims trials without ``Study.ask`` (which also drops it) and relies on ``tell`` alone."""
    _queued(storage, 4)
    recorder = _Recorder()
    a = optuna.load_study(study_name="s", storage=storage, sampler=recorder)
    b = optuna.load_study(study_name="s", storage=storage, sampler=optuna.samplers.RandomSampler(seed=1))
    mine = claim_trials(a)
    _finish(a, next(mine))
    for trial in claim_trials(b, stop=lambda: len(b.get_trials(states=(TrialState.COMPLETE,))) >= 3):
        _finish(b, trial)
    _finish(a, next(mine))
    assert recorder.shown == [0, 3], (
        f"{UPGRADE} the samplers' trial cache: a trial claimed after other workers finished theirs "
        f"was shown {recorder.shown[-1]} finished trials, not 3; regtune.tuning.queue.claim_trials "
        "must drop Study._thread_local.cached_all_trials itself (through optuna_internals)")


def test_only_database_storages_have_heartbeats(tmp_path: Path) -> None:
    kinds = {kind: has_heartbeats(_queued(make(tmp_path), 0, name=kind)) for kind, make in KINDS.items()}
    assert kinds == {"memory": False, "journal": False, "sqlite": True}, (
        f"{UPGRADE} get_heartbeat_interval on storages: {kinds}")


def test_stale_heartbeats_are_failed_and_reported_once(tmp_path: Path) -> None:
    """``fail_stale_trials`` with the storage's stale-trial callback (what ``make_storage`` sets)
    reports exactly the trials it failed; a live heartbeat keeps a trial running."""
    storage = make_storage(f"sqlite:///{tmp_path}/beat.db", heartbeat_interval=1, grace_period=2)
    study = _queued(storage, 2)
    dead, alive = claim_trials(study)
    with heartbeat(dead):
        pass  # one beat, then its worker is gone
    with heartbeat(alive):
        time.sleep(3.5)
        reaped = reap_dead_trials(study)
        again = reap_dead_trials(study)
    assert [t.number for t in reaped] == [dead.number], (
        f"{UPGRADE} optuna.storages.fail_stale_trials or its stale-trial callback "
        f"(RDBStorage argument, see regtune.tuning.storage.make_storage): reaped {reaped}")
    assert again == []
    assert [t.state for t in study.get_trials()] == [TrialState.FAIL, TrialState.RUNNING]


# No regtune module but the door touches an Optuna private name.


def _optuna_private_names() -> set[str]:
    """Private names Optuna defines: modules, functions, methods, attributes, class constants."""
    names: set[str] = set()
    for path in Path(optuna.__file__).parent.rglob("*.py"):
        names.update(p for p in path.relative_to(Path(optuna.__file__).parent).with_suffix("").parts
                     if _private(p))
        names.update(_defined(ast.parse(path.read_text(encoding="utf-8"))))
    return names


def _defined(tree: ast.AST) -> set[str]:
    """Private names a module defines (functions, classes, assignments, ``x._attr = ...``)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.add(node.name)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            out.add(node.id)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            out.add(node.attr)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
    return {n for n in out if _private(n)}


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def _violations(source: str, optuna_private: set[str], own: set[str]) -> list[str]:
    """``x._name`` where ``_name`` is Optuna's and not regtune's own, and private Optuna imports."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and (node.module or "").split(".")[0] == "optuna":
            private = [p for p in node.module.split(".") if _private(p)] + [a.name for a in node.names if _private(a.name)]
            if private:
                found.append(f"line {node.lineno}: from {node.module} import ... ({', '.join(private)})")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "optuna" and any(_private(p) for p in alias.name.split(".")):
                    found.append(f"line {node.lineno}: import {alias.name}")
        elif isinstance(node, ast.Attribute) and _private(node.attr):
            if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
                continue
            if node.attr in optuna_private and node.attr not in own:
                found.append(f"line {node.lineno}: .{node.attr}")
    return found


@pytest.fixture(scope="module")
def private_names() -> tuple[set[str], set[str]]:
    own: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        own |= _defined(ast.parse(path.read_text(encoding="utf-8")))
    return _optuna_private_names(), own


def test_the_private_name_check_catches_what_it_should(private_names: tuple[set[str], set[str]]) -> None:
    optuna_private, own = private_names
    caught = _violations(
        "from optuna.storages._heartbeat import is_heartbeat_enabled\n"
        "import optuna.storages._heartbeat\n"
        "study._storage.set_trial_state_values(trial._trial_id, state)\n"
        "study._pop_waiting_trial_id()\n"
        "study._thread_local.cached_all_trials = None\n"
        "storage._get_stale_trial_ids(study._study_id)\n",
        optuna_private, own,
    )
    assert len(caught) == 8, caught
    assert all(any(f".{name}" in c for c in caught) for name in ("_storage", "_trial_id", "_study_id")), caught
    ok = "self._storage = 1\nest._config()\nos._exit(0)\nfrom optuna.trial import TrialState\n"
    assert _violations(ok, optuna_private, own) == []


def test_no_module_but_the_door_touches_optuna_private_names(private_names: tuple[set[str], set[str]]) -> None:
    optuna_private, own = private_names
    offenders = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        if path == DOOR:
            continue
        found = _violations(path.read_text(encoding="utf-8"), optuna_private, own)
        if found:
            offenders[str(path.relative_to(PACKAGE.parent))] = found
    assert not offenders, (
        f"Optuna private names outside {DOOR.relative_to(PACKAGE.parent)}: {offenders}; "
        "move each use into that module behind a public function, with a test here")

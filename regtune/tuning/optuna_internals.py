"""The one door to Optuna's private API: what regtune needs that Optuna does not make public.

Nothing else in regtune touches an Optuna name that starts with an underscore
(tests/tuning/test_optuna_internals.py checks both that and that each function here still works
against Optuna's in-memory, journal-file and SQLite storages).

Everything else the trial queue needs is public: ``BaseStorage.set_trial_state_values`` claims
a WAITING trial atomically, ``BaseStorage.get_trial_id_from_study_id_trial_number`` finds a
trial's storage id, ``optuna.storages.fail_stale_trials`` with the storage's stale-trial
callback reaps dead workers' trials, ``record_heartbeat`` / ``get_heartbeat_interval`` keep a
trial alive, and ``Trial.storage`` is the storage of a trial in hand.
"""

from __future__ import annotations

import optuna

__all__ = ["INTERMEDIATE_VALUE_OP", "JOURNAL_OPS", "SeededHyperbandPruner", "storage_of"]


def _intermediate_value_op() -> int:
    from optuna.storages.journal._storage import JournalOperation

    return int(JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE)


# The ``op_code`` of a journal record that only holds one epoch's reported score (private
# ``JournalOperation``). Why: the journal file fsyncs each append (0.3 ms on a quiet disk, 5-18 ms
# under load), and ``trial.report`` appends once per epoch; those records need not wait for
# the disk (regtune.tuning.journal).
INTERMEDIATE_VALUE_OP = _intermediate_value_op()


def _journal_ops() -> frozenset[int]:
    from optuna.storages.journal._storage import JournalOperation

    return frozenset(int(op) for op in JournalOperation)


# Every ``op_code`` this Optuna's journal replay knows. Why: replaying any other record ends in
# a bare ``AssertionError: Should not reach.``; regtune.tuning.journal names the file and line.
JOURNAL_OPS = _journal_ops()


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes: private ``Study._storage``.

    Why: Optuna's only public way to claim a WAITING trial is ``Study.ask``, which creates a new
    trial when the queue is empty, so a study asked for N trials would get more than N; and
    failing a dead worker's trial without running this process's sampler hooks on it takes the
    storage too. For an RDB URL this is Optuna's caching wrapper around the ``RDBStorage``, so
    reads and writes stay coherent with the study's own.
    """
    return study._storage


class SeededHyperbandPruner(optuna.pruners.HyperbandPruner):
    """Optuna's Hyperband with each trial's bracket drawn from its number alone.

    Why: Optuna draws the bracket from ``crc32(f"{study_name}_{number}")`` (private
    ``_get_bracket_id``), so two studies that differ only in their name prune different
    trials: ``RegTuneClassifier`` names each fit's study anew, and two fits with the same
    ``random_state`` gave different models. Here every study draws as one named ``regtune``.
    """

    def _get_bracket_id(self, study: optuna.study.Study, trial: optuna.trial.FrozenTrial) -> int:
        return super()._get_bracket_id(_Named("regtune"), trial)  # type: ignore[arg-type]


class _Named:
    """What ``HyperbandPruner._get_bracket_id`` reads of a study: its name."""

    def __init__(self, study_name: str) -> None:
        self.study_name = study_name

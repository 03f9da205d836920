"""The one door to Optuna's private API: what regtune needs that Optuna does not make public.

Nothing else in regtune touches an Optuna name that starts with an underscore
(tests/test_optuna_contract.py checks both that and that each function here still works
against Optuna's in-memory, journal-file and SQLite storages).

Everything else the trial queue needs is public: ``BaseStorage.set_trial_state_values`` claims
a WAITING trial atomically, ``BaseStorage.get_trial_id_from_study_id_trial_number`` finds a
trial's storage id, ``optuna.storages.fail_stale_trials`` with the storage's stale-trial
callback reaps dead workers' trials, ``record_heartbeat`` / ``get_heartbeat_interval`` keep a
trial alive, and ``Trial.storage`` is the storage of a trial in hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import optuna

__all__ = ["INTERMEDIATE_VALUE_OP", "storage_of"]


def _intermediate_value_op() -> int:
    from optuna.storages.journal._storage import JournalOperation

    return int(JournalOperation.SET_TRIAL_INTERMEDIATE_VALUE)


# The ``op_code`` of a journal record that only holds one epoch's reported score (private
# ``JournalOperation``). Why: the journal file fsyncs each append (0.3 ms on a quiet disk, 5-18 ms
# under load), and ``trial.report`` appends once per epoch; those records need not wait for
# the disk (regtune.tuning.journal).
INTERMEDIATE_VALUE_OP = _intermediate_value_op()


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study reads and writes: private ``Study._storage``.

    Why: Optuna's only public way to claim a WAITING trial is ``Study.ask``, which creates a new
    trial when the queue is empty, so a study asked for N trials would get more than N; and
    failing a dead worker's trial without running this process's sampler hooks on it takes the
    storage too. For an RDB URL this is Optuna's caching wrapper around the ``RDBStorage``, so
    reads and writes stay coherent with the study's own.
    """
    return study._storage

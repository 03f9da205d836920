"""What a spawned worker runs in tests/tracking/test_relay.py.

A spawned child finds its target by module name. Here, a top-level module on the tests' path:
a test module's own name (``tests.tracking.test_relay``) would resolve against any installed
package called ``tests`` (some wheels ship one), and the child would fail to start.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
from multiprocessing.connection import Connection

from regtune.tracking.relay import RelayTracker


def spawned_worker(conn: Connection, parent: str, queue: mp.Queue) -> None:
    """A spawned worker's use of the tracker: one trial, three epochs, finished."""
    relay = RelayTracker(conn, "sqlite:///unused")
    run_id = relay.start_trial_run(parent, 0, {"lr": 0.01})
    for step in range(3):
        relay.log_epoch(run_id, step, {"val_score": step / 10})
    relay.finish_trial(run_id, "COMPLETE", {"value": 0.2})
    real = relay.resolve(run_id, wait=True)
    relay.close()
    queue.put((real, "mlflow" in sys.modules))

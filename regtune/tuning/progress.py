"""A live progress bar over a study: trials done of N, best so far, pruned and failed counts.

It polls the storage, so it sees trials finished by every worker process alike. Where the
output is not a terminal (a file, a pipe, a CI log) a bar cannot redraw and would show once,
at the end: there it prints one plain line per finished trial instead.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import optuna
from optuna.trial import TrialState

__all__ = ["StudyProgress"]


class StudyProgress:
    """Context manager drawing a rich progress bar while workers run."""

    def __init__(self, study: optuna.Study, n_trials: int, *, enabled: bool = True, console: Any = None,
                 interval: float = 0.5) -> None:
        self.study = study
        self.n_trials = n_trials
        self.enabled = enabled
        self.console = console
        self.interval = interval
        self._stop = threading.Event()

    def __enter__(self) -> StudyProgress:
        if not self.enabled:
            return self
        from rich.console import Console

        self.console = self.console or Console()
        self._lines = not self.console.is_terminal
        self._seen: set[int] = {t.number for t in self.study.get_trials(deepcopy=False) if t.state.is_finished()}
        self._start = time.monotonic()
        if self._lines:
            self._thread = threading.Thread(target=self._poll, daemon=True)
            self._thread.start()
            return self
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]trials"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeElapsedColumn(), console=self.console, transient=False,
        )
        self._task = self._progress.add_task("tune", total=self.n_trials, status="")
        self._progress.start()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            self._refresh()

    def _refresh(self) -> None:
        try:
            trials = self.study.get_trials(deepcopy=False)
        except Exception:  # a storage hiccup must not kill the bar
            return
        done = [t for t in trials if t.state.is_finished()]
        counts = {s: sum(t.state == s for t in done) for s in (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)}
        values = [t.value for t in done if t.state == TrialState.COMPLETE and t.value is not None]
        best = ""
        if values:
            pick = max if self.study.direction == optuna.study.StudyDirection.MAXIMIZE else min
            best = f"best {pick(values):.4f}"
        status = f"{best}  pruned {counts[TrialState.PRUNED]}  failed {counts[TrialState.FAIL]}"
        if self._lines:
            self._print_finished(done, status)
            return
        self._progress.update(self._task, completed=min(len(done), self.n_trials), status=status)

    def _print_finished(self, done: list, status: str) -> None:
        for t in sorted((t for t in done if t.number not in self._seen), key=lambda t: t.number):
            self._seen.add(t.number)
            value = f" {t.value:.4f}" if t.value is not None else ""
            self.console.print(f"trials {min(len(done), self.n_trials)}/{self.n_trials}: trial {t.number} "
                               f"{t.state.name.lower()}{value}; {' '.join(status.split())}; "
                               f"{time.monotonic() - self._start:.0f} s", highlight=False, soft_wrap=True)

    def __exit__(self, *exc: object) -> None:
        if not self.enabled:
            return
        self._stop.set()
        self._thread.join()
        self._refresh()
        if not self._lines:
            self._progress.stop()

"""The study's progress: a bar on a terminal, one plain line per finished trial elsewhere."""

from __future__ import annotations

import io
import time

import optuna
from rich.console import Console

from regtune.tuning.progress import StudyProgress


def test_output_to_a_file_gets_one_line_per_finished_trial() -> None:
    """Issue 17 item 11: a bar written to a file showed once, at the end."""
    study = optuna.create_study(direction="maximize")
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=120)
    with StudyProgress(study, 3, console=console, interval=0.02):
        for value in (0.5, 0.7):
            study.add_trial(optuna.trial.create_trial(value=value))
            time.sleep(0.2)
        seen = out.getvalue()
        study.add_trial(optuna.trial.create_trial(state=optuna.trial.TrialState.PRUNED))
    lines = out.getvalue().splitlines()
    assert "trial 0 complete 0.5000" in seen and "trial 1 complete 0.7000" in seen  # while it runs
    assert len(lines) == 3 and lines[2].startswith("trials 3/3: trial 2 pruned; best 0.7000 pruned 1 failed 0")
    assert "\x1b" not in out.getvalue() and "━" not in out.getvalue()  # no bar, no escape codes

"""The Optuna study: settings, storage, the trial queue, workers, one trial, progress."""

"""MLflow: parent run per study, child run per trial, and the pyfunc model."""

from regtune._legacy import old_names

# regtune 0.1 had one module here; its names stay reachable (pickles name regtune.tracking.X).
__getattr__ = old_names("regtune.tracking", "regtune.tracking.tracker")

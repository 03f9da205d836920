"""MLflow: parent run per study, child run per trial, and the pyfunc model."""

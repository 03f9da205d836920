"""MLflow "models from code" entry point: ``mlflow.pyfunc.load_model`` runs this file instead of
unpickling a Python object."""

from __future__ import annotations

from typing import Any

import mlflow
from mlflow.pyfunc import PythonModel


class RegtunePyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        from regtune.serving import load_model

        self._model = load_model(context.artifacts["regtune_model"])

    def predict(self, context, model_input, params=None):  # noqa: ANN001, ANN201 (MLflow reads type hints)
        return self._model.predict(model_input)


mlflow.models.set_model(RegtunePyfunc())

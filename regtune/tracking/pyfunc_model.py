"""MLflow "models from code" entry point: ``mlflow.pyfunc.load_model`` runs this file instead of
unpickling a Python object."""

from typing import Any

import mlflow
import pandas as pd
from mlflow.pyfunc import PythonModel


class RegtunePyfunc(PythonModel):
    def load_context(self, context: Any) -> None:
        from regtune.estimators.persistence import load_model

        self._model = load_model(context.artifacts["regtune_model"])

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict | None = None) -> Any:
        return self._model.predict(model_input)


mlflow.models.set_model(RegtunePyfunc())

"""How a study's data is described to MLflow: a dataset input (name, digest, source, schema,
shape) for the parent run, which fills the MLflow UI's Dataset column.

Built from the table's metadata and a few of its rows, never from a copy of the whole table:
MLflow's own dataset classes would hash, copy or profile every row. Images are described by
their tensor shape, not by one column per pixel (MLflow caps a dataset schema at 1 MB).
"""

from __future__ import annotations

import json
import warnings
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from mlflow.entities import DatasetInput

    from regtune.data.loading import Dataset

__all__ = ["DIGEST_LENGTH", "dataset_input"]

#: Characters of the study fingerprint's data hash used as the dataset digest (MLflow allows 36;
#: its own digests have 8): the parent run's ``data_hash`` param holds the whole hash.
DIGEST_LENGTH = 16
_SCHEMA_ROWS = 100  # rows the column types are inferred from


def dataset_input(dataset: Dataset, digest: str, context: str = "training") -> DatasetInput:
    """The MLflow dataset input of ``dataset``; ``digest`` is its content hash (shortened to
    :data:`DIGEST_LENGTH`), ``context`` the input's ``mlflow.data.context`` tag."""
    from mlflow.entities import Dataset as DatasetEntity
    from mlflow.entities import DatasetInput, InputTag
    from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

    rows = len(dataset.y)
    shape = [rows, *(dataset.image_shape or [dataset.X.shape[1]])]
    profile = {"num_rows": rows, "num_elements": int(np.prod(shape)), "shape": shape,
               "target": str(dataset.target), "task": dataset.task}
    source = _source(dataset)
    entity = DatasetEntity(name=dataset.name, digest=digest[:DIGEST_LENGTH], source_type=source._get_source_type(),
                           source=source.to_json(), schema=_schema(dataset), profile=json.dumps(profile))
    return DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def _source(dataset: Dataset):  # noqa: ANN202 - an mlflow DatasetSource
    """A file's path, or where a table without one came from (a built-in name, or code)."""
    from mlflow.data.sources import CodeDatasetSource, LocalArtifactDatasetSource

    from regtune.data.loading import BUILTIN_DATASETS

    if dataset.source is None:
        return CodeDatasetSource(tags={"regtune.data": "in memory (a DataFrame or arrays)"})
    if dataset.source in BUILTIN_DATASETS:
        return CodeDatasetSource(tags={"regtune.builtin_dataset": dataset.source})
    with warnings.catch_warnings():  # MLflow registers the local source twice and says so
        warnings.simplefilter("ignore")
        return LocalArtifactDatasetSource(dataset.source)


def _schema(dataset: Dataset) -> str:
    """The features' and target's types: columns for a table, a tensor shape for images."""
    from mlflow.data.schema import TensorDatasetSchema
    from mlflow.models import infer_signature
    from mlflow.types import Schema, TensorSpec

    y = dataset.y.head(_SCHEMA_ROWS)
    if dataset.image_shape is not None:
        target = np.asarray(y)
        schema = TensorDatasetSchema(
            features=Schema([TensorSpec(np.dtype(np.float32), (-1, *dataset.image_shape))]),
            targets=Schema([TensorSpec(target.dtype if target.dtype != object else np.dtype(str), (-1,))]),
        )
        return json.dumps(schema.to_dict())
    frame = pd.concat([dataset.X.head(_SCHEMA_ROWS), y.rename(str(dataset.target))], axis=1)
    with warnings.catch_warnings():  # MLflow's hint about integer columns is for model inputs
        warnings.simplefilter("ignore")
        return json.dumps({"mlflow_colspec": infer_signature(frame).inputs.to_dict()})

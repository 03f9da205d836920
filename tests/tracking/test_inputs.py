"""What a study leaves in MLflow besides its runs: the dataset input of the parent run (the UI's
Dataset column), the Model Registry version of the final model, the model's signature and input
example. Every test writes a real SQLite store under ``tmp_path``.
"""

from __future__ import annotations

import json
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from cli_helpers import run_cli
from locations import TINY_SPACE
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from regtune.data.loading import load_dataset
from regtune.estimators.net import RegularizedNetClassifier
from regtune.estimators.persistence import log_model
from regtune.exceptions import TuneError
from regtune.tracking.inputs import DIGEST_LENGTH, dataset_input
from regtune.tracking.tracker import MLflowTracker
from regtune.tuning.settings import TuneSettings

TINY = str(TINY_SPACE)


def _pyfunc(uri: str, model_uri: str) -> mlflow.pyfunc.PyFuncModel:
    mlflow.set_tracking_uri(uri)  # models:/ URIs resolve against MLflow's global store
    try:
        return mlflow.pyfunc.load_model(model_uri)
    finally:
        mlflow.set_tracking_uri(None)


def _model_info(uri: str, model_uri: str) -> mlflow.models.model.ModelInfo:
    mlflow.set_tracking_uri(uri)
    try:
        return mlflow.models.get_model_info(model_uri)
    finally:
        mlflow.set_tracking_uri(None)


def test_tune_records_the_dataset_registers_the_model_with_a_signature(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_LOGGING_LEVEL", "WARNING")
    iris = load_dataset("iris")
    csv = tmp_path / "flowers.csv"
    iris.X.assign(species=iris.y).to_csv(csv, index=False)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    argv = ["tune", str(csv), "--space", TINY, "--trials", "2", "--cv", "1", "--ensemble", "1", "-q",
            "--tracking-uri", uri, "--register-model", "flower-net"]
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "registered model: flower-net version 1 (models:/flower-net/1)" in out
    parent = out.split("parent run ")[1].split()[0]
    client = MlflowClient(uri)
    run = client.get_run(parent)

    [entry] = run.inputs.dataset_inputs  # the MLflow UI's Dataset column
    dataset = entry.dataset
    assert dataset.name == "flowers.csv"
    assert dataset.digest == run.data.params["data_hash"][:DIGEST_LENGTH]  # the study fingerprint's data hash
    assert dataset.source_type == "local" and json.loads(dataset.source) == {"uri": str(csv)}
    assert json.loads(dataset.profile)["shape"] == [150, 4]
    columns = [col["name"] for col in json.loads(dataset.schema)["mlflow_colspec"]]
    assert columns == [*iris.X.columns, "species"]
    assert {tag.key: tag.value for tag in entry.tags} == {"mlflow.data.context": "training"}

    version = client.get_model_version("flower-net", "1")
    assert version.run_id == parent
    model_uri = run.data.tags["regtune.model_uri"]
    info = _model_info(uri, model_uri)
    assert info.signature is not None
    assert info.signature.inputs.input_names() == list(iris.X.columns)
    assert info.saved_input_example_info is not None
    model = _pyfunc(uri, "models:/flower-net/1")  # the registered version loads and predicts
    assert np.isin(model.predict(iris.X.head(3)), iris.y.unique()).all()
    with pytest.raises(MlflowException, match="petal width"):  # the signature checks the input
        model.predict(iris.X.head(3).drop(columns=["petal width (cm)"]))

    # Again, with nothing left to do: the same model, version and dataset input, none added.
    code, out, err = run_cli(capsys, *argv)
    assert code == 0, err
    assert "registered model: flower-net version 1 " in out
    assert len(client.search_model_versions("name = 'flower-net'")) == 1
    assert len(client.get_run(parent).inputs.dataset_inputs) == 1


def test_the_estimator_registers_its_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from regtune import RegTuneRegressor

    monkeypatch.chdir(tmp_path)
    data = load_dataset("diabetes")
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    est = RegTuneRegressor(space=TINY, n_trials=2, cv=1, ensemble=1, tracking_uri=uri, register_model="sugar",
                           random_state=0).fit(data.X.to_numpy(), data.y.to_numpy())
    assert est.registered_model_version_ == 1
    version = MlflowClient(uri).get_model_version("sugar", "1")
    assert version.run_id == est.mlflow_run_id_
    [entry] = MlflowClient(uri).get_run(est.mlflow_run_id_).inputs.dataset_inputs
    assert json.loads(entry.dataset.profile)["shape"] == [len(data.y), data.X.shape[1]]


@pytest.mark.parametrize(("options", "says"), [
    ({"tracking_uri": "off"}, "tracking_uri='off' logs nothing"),
    ({"log_model": False}, "log_model=False"),
    ({"register_model": "a/b"}, "without '/' or ':'"),
    ({"register_model": " "}, "without '/' or ':'"),
])
def test_register_model_is_refused_where_it_cannot_work(options: dict, says: str) -> None:
    with pytest.raises(TuneError, match=says):
        TuneSettings(**{"register_model": "net", **options})


def test_cli_refuses_register_model_without_tracking(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, "tune", "iris", "--tracking-uri", "off", "--register-model", "net")
    assert code == 2 and out == "" and err.count("\n") == 1 and "register_model='net'" in err
    assert list(tmp_path.iterdir()) == []  # refused before anything was created


def test_images_are_described_by_their_shape(tmp_path: Path) -> None:
    """Images: the dataset schema and the model signature hold the (C, H, W) shape, not one
    column per pixel, and the pyfunc model takes arrays of images."""
    digits = load_dataset("digits")
    entry = dataset_input(digits, "0123456789abcdef0123")
    schema = json.loads(entry.dataset.schema)["mlflow_tensorspec"]
    assert json.loads(schema["features"])[0]["tensor-spec"]["shape"] == [-1, 1, 8, 8]
    assert entry.dataset.digest == "0123456789abcdef"
    assert json.loads(entry.dataset.source) == {"tags": {"regtune.builtin_dataset": "digits"}}

    rows = digits.X.head(200)
    net = RegularizedNetClassifier(architecture="cnn", conv_channels=(4,), hidden_layer_sizes=(8,), max_epochs=1,
                                   image_shape=(1, 8, 8), random_state=0, device="cpu")
    net.fit(rows.to_numpy(np.float32), digits.y.head(200).to_numpy())
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    tracker = MLflowTracker(uri, "images", artifact_root=tmp_path / "mlruns")
    run = tracker.start_study_run("digits", {})
    model_uri = log_model(tracker, run, net, None, input_example=rows, columns=list(rows.columns))
    signature = _model_info(uri, model_uri).signature
    assert signature.inputs.inputs[0].shape == (-1, 1, 8, 8)
    images = rows.head(4).to_numpy(np.float32).reshape(-1, 1, 8, 8)
    predicted = _pyfunc(uri, model_uri).predict(images)
    np.testing.assert_array_equal(np.asarray(predicted), net.predict(images))


def test_an_in_memory_table_names_its_source_as_code() -> None:
    frame = pd.DataFrame({"a": np.arange(12.0), "b": list("xyz") * 4, "t": [0, 1] * 6})
    from regtune.data.loading import dataset_from_frame

    entry = dataset_input(dataset_from_frame(frame, "t", task="classification"), "f" * 64)
    assert entry.dataset.source_type == "code"
    assert [c["type"] for c in json.loads(entry.dataset.schema)["mlflow_colspec"]] == ["double", "string", "long"]

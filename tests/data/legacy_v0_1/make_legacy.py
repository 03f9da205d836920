"""Artifacts saved by regtune 0.1.0's flat layout (commit f7cba72): a pickle and an MLflow pyfunc model."""
import os, pickle, shutil, tempfile
from pathlib import Path
import numpy as np
from sklearn.datasets import load_iris
from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.serving import log_model, save_model
from regtune.tracking import make_tracker

out = Path("tests/data/legacy_v0_1")
X, y = load_iris(return_X_y=True)
clf = RegularizedNetClassifier((8,), max_epochs=3, dropout=0.1, spectral_norm=True, random_state=0).fit(X, y)
(out / "classifier.pkl").write_bytes(pickle.dumps(clf))
reg = RegularizedNetRegressor((8,), max_epochs=3, batch_norm="before_activation", random_state=0).fit(X[:, :3], X[:, 3])
(out / "regressor.pkl").write_bytes(pickle.dumps(reg))
np.save(out / "X.npy", X.astype(np.float64))
np.save(out / "clf_proba.npy", clf.predict_proba(X))
np.save(out / "reg_pred.npy", reg.predict(X[:, :3]))
import pandas as pd
tmp = Path(tempfile.mkdtemp())
os.chdir(tmp)
tracker = make_tracker(f"sqlite:///{tmp}/mlflow.db", "legacy")
print(type(tracker), [m for m in dir(tracker) if not m.startswith('__')])
import mlflow, logging
code = Path(__import__("regtune.serving").serving.__file__).with_name("mlflow_model.py")
save_model(tmp / "regtune_model", clf, None, columns=None)
dest = Path("/work/main") / out / "pyfunc_model"
shutil.rmtree(dest, ignore_errors=True)
mlflow.pyfunc.save_model(path=str(dest), python_model=str(code), artifacts={"regtune_model": str(tmp / "regtune_model")}, pip_requirements=["regtune"])
m = mlflow.pyfunc.load_model(str(dest))
print(m.predict(pd.DataFrame(X))[:5])

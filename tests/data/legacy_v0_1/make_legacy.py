"""How these artifacts were made, with regtune 0.1.0's flat layout (commit f7cba72).

Run from the repository root at that commit: ``python tests/data/legacy_v0_1/make_legacy.py``.
``tests/test_legacy.py`` loads them with today's code.
"""

import pickle
import shutil
import tempfile
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import regtune.serving  # the 0.1 module path, on purpose
from regtune.serving import save_model
from sklearn.datasets import load_iris
from sklearn.pipeline import make_pipeline

from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.data import make_preprocessor

out = Path("tests/data/legacy_v0_1")
X, y = load_iris(return_X_y=True)
clf = RegularizedNetClassifier((8,), max_epochs=3, dropout=0.1, spectral_norm=True, random_state=0).fit(X, y)
(out / "classifier.pkl").write_bytes(pickle.dumps(clf))
reg = RegularizedNetRegressor((8,), max_epochs=3, batch_norm="before_activation", random_state=0)
reg.fit(X[:, :3], X[:, 3])
(out / "regressor.pkl").write_bytes(pickle.dumps(reg))
np.save(out / "X.npy", X.astype(np.float64))
np.save(out / "clf_proba.npy", clf.predict_proba(X))
np.save(out / "reg_pred.npy", reg.predict(X[:, :3]))

# The MLflow pyfunc model as regtune.serving.log_model logs it ("models from code").
tmp = Path(tempfile.mkdtemp())
save_model(tmp / "regtune_model", clf, None, columns=None)
code = Path(regtune.serving.__file__).with_name("mlflow_model.py")
dest = out / "pyfunc_model"
shutil.rmtree(dest, ignore_errors=True)
mlflow.pyfunc.save_model(path=str(dest), python_model=str(code),
                         artifacts={"regtune_model": str(tmp / "regtune_model")}, pip_requirements=["regtune"])

# A fitted make_preprocessor() pipeline: its pickle names regtune.data.TabularPreprocessor.

rng = np.random.default_rng(0)
rows = pd.DataFrame({"age": rng.integers(18, 90, 60).astype(float), "city": rng.choice(["paris", "lima", "oslo"], 60)})
rows.loc[3, "age"] = np.nan
labels = np.where((rows["city"] == "lima") | (rows["age"] > 60), "yes", "no")
pipe = make_pipeline(make_preprocessor(), RegularizedNetClassifier((8,), max_epochs=3, random_state=0, device="cpu"))
pipe.fit(rows, labels)
(out / "pipeline.pkl").write_bytes(pickle.dumps(pipe))
rows.to_csv(out / "pipeline_rows.csv", index=False)
np.save(out / "pipeline_proba.npy", pipe.predict_proba(rows))

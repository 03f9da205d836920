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
import regtune.serving  # the 0.1 module path, on purpose
from regtune.serving import save_model
from sklearn.datasets import load_iris

from regtune import RegularizedNetClassifier, RegularizedNetRegressor

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

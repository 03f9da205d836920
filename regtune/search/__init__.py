"""The search as a scikit-learn estimator: RegTuneClassifier and RegTuneRegressor run a study in
``fit`` and predict with its final model. The top layer beside the CLI."""

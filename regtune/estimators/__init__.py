"""scikit-learn estimators: one regularized network, the averaged ensemble, and persistence without pickle."""

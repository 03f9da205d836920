"""scikit-learn estimators: one regularized network, the tuned search over it, and persistence without pickle."""

"""Train one regularized network on scikit-learn's bundled digits and compare it with no regularization.

    python examples/digits_regularized_net.py

A 60/20/20 split: the network trains on 60%, early stopping watches 20%, and the last 20% is
touched once, at the end.
"""

from __future__ import annotations

import time

from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split

from regtune import RegularizedNetClassifier


def main() -> None:
    X, y = load_digits(return_X_y=True)
    X_train, X_rest, y_train, y_rest = train_test_split(X, y, test_size=0.4, stratify=y, random_state=0)
    X_val, X_test, y_val, y_test = train_test_split(X_rest, y_rest, test_size=0.5, stratify=y_rest, random_state=0)

    candidates = {
        "no regularization": RegularizedNetClassifier((256, 256), early_stopping=False, max_epochs=60, random_state=0),
        "dropout + weight decay + early stopping": RegularizedNetClassifier(
            (256, 256), dropout=0.3, weight_decay=1e-3, label_smoothing=0.05, patience=15, random_state=0
        ),
    }
    print(f"{'model':<42} {'train':>6} {'val':>6} {'test':>6} {'gap':>6} {'epochs':>6} {'sec':>5}")
    for name, net in candidates.items():
        start = time.perf_counter()
        for _ in net.fit_iter(X_train, y_train, validation_data=(X_val, y_val)):
            pass
        seconds = time.perf_counter() - start
        train, val, test = (net.score(a, b) for a, b in ((X_train, y_train), (X_val, y_val), (X_test, y_test)))
        print(f"{name:<42} {train:6.3f} {val:6.3f} {test:6.3f} {train - test:6.3f} {net.n_iter_:6d} {seconds:5.1f}")


if __name__ == "__main__":
    main()

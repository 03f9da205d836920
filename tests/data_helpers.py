"""Data the tests of several regtune.data modules share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def mixed_frame(n: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "age": rng.integers(18, 90, n).astype(float),
            "income": rng.normal(50_000, 10_000, n),
            "city": rng.choice(["paris", "lima", "oslo"], n),
            "label": rng.choice(["yes", "no"], n),
        }
    )


def digit_image_folder(root: Path, labels: tuple[int, ...] = (0, 1, 2), n_per_class: int = 12) -> Path:
    """A folder of 8x8 grey PNGs of scikit-learn's digits, one sub-folder ``digit<label>`` per class."""
    from PIL import Image
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    for label in labels:
        folder = root / f"digit{label}"
        folder.mkdir(parents=True)
        for i, row in enumerate(X[y == label][:n_per_class]):
            Image.fromarray((row.reshape(8, 8) / 16 * 255).astype(np.uint8)).save(folder / f"{i}.png")
    return root

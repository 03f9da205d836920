"""Data the tests of several regtune.data modules share."""

from __future__ import annotations

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

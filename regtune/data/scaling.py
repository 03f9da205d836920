"""Numeric feature scaling the network sees: standard, robust with smooth clipping, or quantile.

Standardization lets one outlier squash every other value of its column toward zero and feed
the network values far outside what it trained on. The two alternatives are what the
strongest tabular MLPs use:

- ``robust_clip`` (RealMLP, Holzmüller et al. 2024): centre on the median, divide by the
  interquartile range (half the range where the quartiles coincide), then bound smoothly with
  ``z / sqrt(1 + (z / 3)^2)``: values within a few IQRs barely move, an outlier ends below 3.
- ``quantile`` (TabM, Gorishniy et al. 2025, and scikit-learn's ``QuantileTransformer``):
  map each column through its training quantiles onto a standard normal; ties share the
  middle of their quantile range, so a binary column stays two values.

Everything is fitted on the rows given to ``fit`` only, and the fitted state is plain arrays,
so a saved model needs no pickle. A column constant in fit maps to 0, whatever it holds later.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtri

__all__ = ["MAX_QUANTILES", "fit_scaling", "scale_features", "smooth_clip"]

MAX_QUANTILES = 1000  # scikit-learn's QuantileTransformer default
_BOUND = 1e-7  # QuantileTransformer's clip: the output stays within about +-5.2


def smooth_clip(z: np.ndarray, limit: float = 3.0) -> np.ndarray:
    """``z / sqrt(1 + (z / limit)^2)``: near identity for small ``|z|``, bounded by ``limit``."""
    return z / np.sqrt(1.0 + (z / limit) ** 2)


def fit_scaling(X: np.ndarray, method: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """``(center, scale, quantiles)`` of ``X`` for ``method`` ``"robust_clip"`` or ``"quantile"``.

    ``scale`` is ``inf`` for columns constant in ``X``. ``quantiles`` (``n_quantiles x
    n_features``, ``None`` for ``robust_clip``) are the training quantiles at evenly spaced
    probabilities.
    """
    X = np.asarray(X, dtype=np.float64)
    lo, hi = X.min(0), X.max(0)
    constant = ~(hi > lo)
    if method == "robust_clip":
        q25, center, q75 = np.percentile(X, [25, 50, 75], axis=0)
        scale = q75 - q25
        scale = np.where(scale > 0, scale, 0.5 * (hi - lo))
        return center, np.where(constant, np.inf, scale), None
    if method == "quantile":
        n_q = max(2, min(MAX_QUANTILES, X.shape[0]))
        quantiles = np.percentile(X, np.linspace(0, 100, n_q), axis=0)
        quantiles = np.maximum.accumulate(quantiles, axis=0)  # round-off can break monotonicity
        return np.zeros(X.shape[1]), np.where(constant, np.inf, 1.0), quantiles
    raise ValueError(f"feature_scaling={method!r} has no fitted state; use 'robust_clip' or 'quantile'")


def scale_features(
    X: np.ndarray, method: str, center: np.ndarray | float, scale: np.ndarray | float,
    quantiles: np.ndarray | None = None,
) -> np.ndarray:
    """``X`` scaled as fitted: ``(X - center) / scale``, then smooth clipping or the quantile map."""
    X = np.asarray(X, dtype=np.float64)
    if method == "quantile":
        if quantiles is None:
            raise ValueError("feature_scaling='quantile' needs the fitted quantiles")
        quantiles = np.asarray(quantiles, dtype=np.float64)
        refs = np.linspace(0.0, 1.0, quantiles.shape[0])
        out = np.empty_like(X)
        for j in range(X.shape[1]):
            q = quantiles[:, j]
            # Forward and backward interpolation averaged: a value tied with many quantiles
            # lands in the middle of their probabilities (as QuantileTransformer does).
            up = np.interp(X[:, j], q, refs)
            down = -np.interp(-X[:, j], -q[::-1], -refs[::-1])
            out[:, j] = ndtri(np.clip(0.5 * (up + down), _BOUND, 1 - _BOUND))
        return np.where(np.isinf(scale), 0.0, out)
    Z = (X - center) / scale
    return smooth_clip(Z) if method == "robust_clip" else Z

"""Numeric feature embeddings: each numeric column becomes a small vector before the MLP.

An MLP over raw scalars learns smooth functions of each column first and high-frequency ones
last (the spectral bias); tree ensembles do not have that handicap, which is much of their
edge on tabular data. Gorishniy et al. (NeurIPS 2022, "On embeddings for numerical features
in tabular deep learning") close the gap by embedding each numeric column on its own:

- ``periodic`` (their PLR; RealMLP's PBLD is a variant): ``x -> [cos(2 pi c x), sin(2 pi c x)]``
  with ``n_frequencies`` learnable frequencies ``c ~ N(0, frequency_sigma)`` per column, then
  a per-column linear map to ``embedding_dim`` and a ReLU.
- ``piecewise_linear`` (their PLE, with the same linear + ReLU): ``x`` is encoded against
  quantile bin edges of its column (1 for every bin below ``x``, the fraction of its own bin,
  0 above; the outer bins extrapolate). The edges are computed from the training rows when
  the estimator fits (:func:`fit_numeric_columns`) and kept as a buffer of the module, so
  predictions, pickles and saved models reproduce them.

Only columns with more than two distinct training values are embedded: one-hot and binary
columns carry nothing a nonlinear encoding could add, and pass through unchanged.

The embedding's parameters live in this module, not in ``nn.Linear`` layers, so the
regularizers that find weights by layer type (L1, L2, elastic net, weight decay, weight noise,
max-norm, spectral norm) leave them alone; they act on every Linear layer after it as before.
This is deliberate and follows the reference code of Gorishniy et al. (TabM's
``make_parameter_groups`` exempts its embedding modules from weight decay): shrinking the
frequencies toward 0 would turn the periodic encoding back into a linear one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor, nn

from regtune.config import NUMERIC_EMBEDDINGS, RegConfig
from regtune.exceptions import RegConfigError

__all__ = ["NumericEmbedding", "fit_numeric_columns"]

_DEFAULT = RegConfig()


def fit_numeric_columns(X: np.ndarray, n_bins: int | None = None) -> tuple[tuple[int, ...], np.ndarray | None]:
    """The columns of ``X`` (the training rows, scaled) with more than two distinct values, and,
    with ``n_bins``, their quantile bin edges.

    Edges are ``(n_numeric, n_bins + 1)``: the distinct quantiles of each column at evenly spaced
    probabilities, padded on the right by repeating the last one (a column with few distinct
    values gets fewer, wider bins; the padding bins have zero width and encode to 0).
    """
    X = np.asarray(X, dtype=np.float64)
    if X.shape[0] == 0:
        return (), (np.zeros((0, (n_bins or 1) + 1)) if n_bins else None)
    low, high = X.min(axis=0), X.max(axis=0)
    columns = tuple(int(j) for j in np.flatnonzero(((X != low) & (X != high)).any(axis=0)))
    if not n_bins:
        return columns, None
    edges = np.empty((len(columns), n_bins + 1))
    probabilities = np.linspace(0.0, 1.0, n_bins + 1)
    for row, j in enumerate(columns):
        distinct = np.unique(np.quantile(X[:, j], probabilities))
        edges[row, :len(distinct)] = distinct
        edges[row, len(distinct):] = distinct[-1]
    return columns, edges


class NumericEmbedding(nn.Module):
    """Embeds the columns ``numeric_columns`` of ``(batch, n_features)`` rows; the others pass.

    The output is ``(batch, n_passed + len(numeric_columns) * embedding_dim)``: the untouched
    columns first, then each embedded column's vector. ``numeric_columns=None`` embeds every
    column (``periodic`` only: ``piecewise_linear`` needs the edges of the training rows).
    """

    def __init__(
        self,
        n_features: int,
        kind: str,
        numeric_columns: Sequence[int] | None = None,
        bin_edges: np.ndarray | Sequence[Sequence[float]] | None = None,
        embedding_dim: int = _DEFAULT.embedding_dim,
        n_frequencies: int = _DEFAULT.n_frequencies,
        frequency_sigma: float = _DEFAULT.frequency_sigma,
    ) -> None:
        super().__init__()
        if kind not in NUMERIC_EMBEDDINGS[1:]:
            raise RegConfigError(f"numeric_embedding={kind!r} must be one of "
                                 f"{', '.join(map(repr, NUMERIC_EMBEDDINGS[1:]))} to build an embedding")
        numeric = list(range(n_features)) if numeric_columns is None else sorted(int(j) for j in numeric_columns)
        passed = sorted(set(range(n_features)) - set(numeric))
        self.kind = kind
        self.register_buffer("numeric_index", torch.tensor(numeric, dtype=torch.long), persistent=False)
        self.register_buffer("passed_index", torch.tensor(passed, dtype=torch.long), persistent=False)
        n = len(numeric)
        if kind == "periodic":
            self.frequencies = nn.Parameter(torch.randn(n, n_frequencies) * frequency_sigma)
            width = 2 * n_frequencies
        else:
            if bin_edges is None:
                raise RegConfigError("numeric_embedding='piecewise_linear' needs the bin edges of the training "
                                 "rows; the estimators compute them in fit")
            edges = torch.as_tensor(np.asarray(bin_edges, dtype=np.float32).reshape(n, -1))
            if edges.shape[1] < 2:
                raise RegConfigError(f"bin_edges of shape {tuple(edges.shape)}: each column needs at least 2 edges")
            self.register_buffer("bin_edges", edges)
            width = edges.shape[1] - 1
        bound = 1.0 / math.sqrt(width)
        self.weight = nn.Parameter(torch.empty(n, width, embedding_dim).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(n, embedding_dim).uniform_(-bound, bound))
        self.n_out = len(passed) + n * embedding_dim

    def forward(self, x: Tensor) -> Tensor:
        numeric = x[:, self.numeric_index]
        if self.kind == "periodic":
            angles = (2 * math.pi) * numeric.unsqueeze(-1) * self.frequencies
            encoded = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        else:
            encoded = _piecewise_linear(numeric, self.bin_edges)
        embedded = torch.relu(torch.einsum("bni,nid->bnd", encoded, self.weight) + self.bias)
        return torch.cat([x[:, self.passed_index], embedded.flatten(1)], dim=1)

    def extra_repr(self) -> str:
        return f"kind={self.kind!r}, columns={self.numeric_index.numel()}, out={self.n_out}"


def _piecewise_linear(x: Tensor, edges: Tensor) -> Tensor:
    """``(batch, n)`` values against ``(n, T + 1)`` edges -> ``(batch, n, T)`` PLE codes.

    Bins of zero width (the right padding) encode to 0; the first real bin extrapolates below
    the training range and the last one above it, so unseen values keep an ordering.
    """
    left, width = edges[:, :-1], edges[:, 1:] - edges[:, :-1]
    real = width > 0
    ratio = (x.unsqueeze(-1) - left) / torch.where(real, width, torch.ones_like(width))
    position = torch.arange(width.shape[1], device=x.device)
    last = real.sum(dim=1, keepdim=True) - 1
    ratio = torch.where(position > 0, ratio.clamp_min(0.0), ratio)
    ratio = torch.where(position < last, ratio.clamp_max(1.0), ratio)
    return ratio * real

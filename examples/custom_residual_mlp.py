"""Tune the regularization of your own network on a table: a residual MLP with layer norm.

    python examples/custom_residual_mlp.py

``ResidualMLP`` is an ordinary ``torch.nn.Module``. regtune calls it with the sizes it knows
from the data (``n_features``, ``n_outputs``: its signature asks for them), searches its own
``width`` and ``depth`` (the ``module:`` section of ``custom_residual_mlp.yaml``) together
with the regularizers, sets the rate of its ``nn.Dropout`` layers, and leaves out of the search
what the module cannot take (batch-norm placement, dropout variants, layer sizes). The same
from the command line, on a CSV:

    regtune tune data.csv --model examples/custom_residual_mlp.py:ResidualMLP \\
        --space examples/custom_residual_mlp.yaml
"""

from __future__ import annotations  # noqa: I001 - regtune is imported before torch

import time
from pathlib import Path

import regtune  # before torch, so regtune sets up torch's threads for many small trials
from sklearn.datasets import make_classification
from torch import Tensor, nn


class ResidualMLP(nn.Module):
    """``x + Dropout(ReLU(Linear(LayerNorm(x))))`` blocks between an input and an output layer."""

    def __init__(self, n_features: int, n_outputs: int, width: int = 64, depth: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(n_features, width)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.LayerNorm(width), nn.Linear(width, width), nn.ReLU(), nn.Dropout(0.0))
            for _ in range(depth)
        )
        self.out = nn.Linear(width, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        h = self.inp(x)
        for block in self.blocks:
            h = h + block(h)
        return self.out(h)


def main() -> None:
    # Few rows, many noise features, 10% flipped labels: an unregularized net overfits.
    X, y = make_classification(n_samples=800, n_features=40, n_informative=8, n_redundant=4, flip_y=0.1,
                               random_state=0)
    start = time.perf_counter()
    result = regtune.tune(
        X, y, module=ResidualMLP, space=str(Path(__file__).with_suffix(".yaml")), n_trials=14, cv=1,
        tracking_uri="off", storage=":memory:", progress=False, seed=0,
    )
    print(f"tuned {ResidualMLP.__name__} in {time.perf_counter() - start:.0f} s; best trial params:")
    for key, value in result.best_params.items():
        print(f"  {key} = {value}")
    print(result.scores[["train", "val", "test", "gap", "epochs", "regularizers"]].round(3).to_string())


if __name__ == "__main__":
    main()

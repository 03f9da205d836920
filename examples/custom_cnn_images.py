"""Tune the regularization of your own CNN on 28x28 images.

    python examples/custom_cnn_images.py

The images are scikit-learn's bundled 8x8 digits upsampled to 28x28 (nothing is downloaded).
They go in as an ``(N, 1, 28, 28)`` array: regtune infers the image shape, hands ``SmallCNN``
its batches as images, and runs the image augmentation (shifts, small rotations, cutout) on
each batch on the training device. ``SmallCNN`` takes ``dropout`` and ``batch_norm`` itself,
so the search over them reaches it as constructor arguments; its ``channels`` are searched
too (``custom_cnn_images.yaml``). From the command line, on a ``.npz`` of ``X`` and ``y``:

    regtune tune images.npz --model examples/custom_cnn_images.py:SmallCNN \\
        --space examples/custom_cnn_images.yaml
"""

from __future__ import annotations  # noqa: I001 - regtune is imported before torch

import time
from pathlib import Path

import regtune  # before torch, so regtune sets up torch's threads for many small trials
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import Tensor, nn


class SmallCNN(nn.Module):
    """Two 3x3 conv blocks with 2x2 pooling (batch norm where regtune asks), then a linear head."""

    def __init__(self, image_shape: tuple[int, int, int], n_outputs: int, channels: int = 16,
                 dropout: float = 0.0, batch_norm: str = "none") -> None:
        super().__init__()
        c, h, w = image_shape
        layers: list[nn.Module] = []
        for out in (channels, 2 * channels):
            block = [nn.Conv2d(c, out, 3, padding=1), nn.ReLU()]
            if batch_norm != "none":
                block.insert(1 if batch_norm == "before_activation" else 2, nn.BatchNorm2d(out))
            layers += [*block, nn.MaxPool2d(2)]
            c, h, w = out, h // 2, w // 2
        self.features = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.head = nn.Linear(c * h * w, n_outputs)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.drop(self.features(x).flatten(1)))


def digits_28x28() -> tuple[Tensor, Tensor]:
    """The 1,797 bundled digits as ``(N, 1, 28, 28)`` images in [0, 1]."""
    X, y = load_digits(return_X_y=True)
    images = torch.as_tensor(X, dtype=torch.float32).reshape(-1, 1, 8, 8) / 16
    return F.interpolate(images, size=(28, 28), mode="bilinear", align_corners=False), torch.as_tensor(y)


def main() -> None:
    X, y = digits_28x28()
    X, y = X[:900], y[:900]  # a small training set, where regularization matters most
    start = time.perf_counter()
    result = regtune.tune(
        X.numpy(), y.numpy(), module=SmallCNN, space=str(Path(__file__).with_suffix(".yaml")), n_trials=6, cv=1,
        tracking_uri="off", storage=":memory:", progress=False, seed=0,
    )
    print(f"tuned {SmallCNN.__name__} on {tuple(X.shape)} images in {time.perf_counter() - start:.0f} s; "
          "best trial params:")
    for key, value in result.best_params.items():
        print(f"  {key} = {value}")
    print(result.scores[["train", "val", "test", "gap", "epochs", "regularizers"]].round(3).to_string())


if __name__ == "__main__":
    main()

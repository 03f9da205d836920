"""``precision="32" | "bf16-mixed" | "16-mixed"`` and ``channels_last``: autocast around the
forward pass and the loss, a gradient scaler for float16, refused where the device cannot."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.datasets import load_digits
from sklearn.utils._param_validation import InvalidParameterError
from torch import nn

from regtune import RegularizedNetClassifier
from regtune.exceptions import RegConfigError
from regtune.nn.callbacks import Callback

FAST = dict(hidden_layer_sizes=(32,), max_epochs=3, lr=1e-2, random_state=0)
no_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="float16 autocast, its gradient scaler and "
                             "channels_last run on CUDA only, and this machine has no CUDA device")


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:600], y[:600]


@pytest.fixture(scope="module")
def rgb_digits(digits) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3, 8, 8): with one channel, channels-first and channels-last are the same layout."""
    X, y = digits
    return np.repeat(X.reshape(-1, 1, 8, 8), 3, axis=1), y


class _Watch(Callback):
    """Hooks the first Linear layer (and the first conv layer) and records what the forward
    passes see during training: the activation dtypes, and whether the inputs are channels-last."""

    def __init__(self) -> None:
        self.dtypes: set[torch.dtype] = set()
        self.channels_last: set[bool] = set()

    def on_train_begin(self, trainer) -> None:  # noqa: ANN001
        self.trainer = trainer
        linear = next(m for m in trainer.model.modules() if isinstance(m, nn.Linear))
        linear.register_forward_hook(self._linear)
        conv = next((m for m in trainer.model.modules() if isinstance(m, nn.Conv2d)), None)
        if conv is not None:
            conv.register_forward_hook(self._conv)

    def _linear(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training:
            self.dtypes.add(output.dtype)

    def _conv(self, module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training:
            self.channels_last.add(inputs[0].is_contiguous(memory_format=torch.channels_last))


def test_bf16_mixed_on_cpu_runs_the_forward_pass_in_bfloat16(digits) -> None:
    X, y = digits
    watch = _Watch()
    est = RegularizedNetClassifier(precision="bf16-mixed", device="cpu", callbacks=[watch], **FAST).fit(X, y)
    assert watch.dtypes == {torch.bfloat16}
    assert watch.trainer._scaler is None  # bfloat16 has float32's range: no scaling
    assert all(p.dtype == torch.float32 for p in est.module_.parameters())  # weights stay float32
    assert est.history_[-1]["val_score"] > 0.6
    assert est.predict_proba(X).dtype == np.float64


def test_32_trains_in_float32(digits) -> None:
    X, y = digits
    watch = _Watch()
    RegularizedNetClassifier(device="cpu", callbacks=[watch], **FAST).fit(X, y)
    assert watch.dtypes == {torch.float32}


def test_16_mixed_is_refused_on_cpu_in_one_line(digits) -> None:
    X, y = digits
    with pytest.raises(RegConfigError, match="precision='16-mixed' needs a CUDA device.*'bf16-mixed'") as info:
        RegularizedNetClassifier(precision="16-mixed", device="cpu", **FAST).fit(X, y)
    assert "\n" not in str(info.value)


def test_an_unknown_precision_is_refused(digits) -> None:
    X, y = digits
    with pytest.raises(InvalidParameterError, match="precision"):
        RegularizedNetClassifier(precision="64", device="cpu", **FAST).fit(X, y)


@no_cuda
def test_16_mixed_on_cuda_trains_in_float16_with_a_gradient_scaler(digits) -> None:
    X, y = digits
    watch = _Watch()
    est = RegularizedNetClassifier(precision="16-mixed", device="cuda", callbacks=[watch], **FAST).fit(X, y)
    assert watch.dtypes == {torch.float16}
    scaler = watch.trainer._scaler
    assert isinstance(scaler, torch.amp.GradScaler) and scaler.get_scale() > 0
    assert est.history_[-1]["val_score"] > 0.6


@no_cuda
def test_channels_last_on_cuda_feeds_convolutions_channels_last_images(rgb_digits) -> None:
    X, y = rgb_digits
    watch = _Watch()
    est = RegularizedNetClassifier(architecture="cnn", channels_last=True, device="cuda",
                                   precision="bf16-mixed", callbacks=[watch], **FAST).fit(X, y)
    assert watch.channels_last == {True}
    conv = next(m for m in est.module_.modules() if isinstance(m, nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert est.history_[-1]["val_score"] > 0.3


def test_channels_last_is_ignored_off_cuda(rgb_digits) -> None:
    X, y = rgb_digits
    watch = _Watch()
    RegularizedNetClassifier(architecture="cnn", channels_last=True, device="cpu",
                             callbacks=[watch], **FAST).fit(X, y)
    assert watch.channels_last == {False}


def test_a_criterion_that_returns_bfloat16_trains_under_bf16_mixed() -> None:
    from sklearn.datasets import load_diabetes

    from regtune import RegularizedNetRegressor

    class HalfLoss(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.reduction = "mean"

        def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            loss = (output.bfloat16() - target.bfloat16()) ** 2
            return loss.mean() if self.reduction == "mean" else loss

    X, y = load_diabetes(return_X_y=True)
    for weights in (None, np.linspace(1, 2, len(y))):
        est = RegularizedNetRegressor(criterion=HalfLoss(), precision="bf16-mixed", device="cpu", **FAST).fit(
            X, y, sample_weight=weights)
        assert np.isfinite(est.history_[-1]["train_loss"])

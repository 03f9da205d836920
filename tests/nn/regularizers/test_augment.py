"""Augmentation changes training batches as promised and never touches evaluation: on rows of
pixels and on image batches ``(N, C, H, W)``, for the built-in networks and for a custom module."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from byo_modules import SmallConvNet
from sklearn.datasets import load_digits

from regtune import RegConfig, RegularizedNetClassifier
from regtune.nn.models import build_network
from regtune.nn.regularizers import CutMix, ImageAugment, Mixup, Regularizer, augment
from regtune.nn.trainer import Trainer

IMAGE = (1, 8, 8)


def _digits(n: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    X, y = load_digits(return_X_y=True)
    X = (X[:n] - X.mean()) / X.std()
    return torch.as_tensor(X, dtype=torch.float32), torch.as_tensor(y[:n])


def _still(**kwargs: object) -> ImageAugment:
    """No shift, no rotation, no cutout unless asked: isolates one transform."""
    return ImageAugment(IMAGE, **{"max_shift": 0.0, "max_degrees": 0.0, "cutout": 0.0, **kwargs})


def _mirror(X: torch.Tensor) -> torch.Tensor:
    return X.view(-1, 8, 8).flip(-1).reshape(X.shape[0], -1)


def test_image_augment_changes_each_image_and_keeps_shape_and_labels() -> None:
    torch.manual_seed(0)
    X, y = _digits()
    Xa, ya = ImageAugment(IMAGE).on_batch(X, y)
    assert Xa.shape == X.shape and Xa.dtype == X.dtype
    assert torch.equal(ya, y)
    changed = (Xa - X).abs().amax(1) > 1e-3
    assert changed.float().mean() > 0.95
    Xb, _ = ImageAugment(IMAGE).on_batch(X, y)
    assert not torch.allclose(Xa, Xb)  # a fresh draw for every batch


def test_image_augment_without_any_transform_is_the_identity() -> None:
    X, y = _digits()
    Xa, _ = _still().on_batch(X, y)
    torch.testing.assert_close(Xa, X, atol=1e-5, rtol=0)


def test_cutout_zeros_one_square_per_image() -> None:
    torch.manual_seed(0)
    X = torch.ones(64, 64)
    Xa, _ = _still(cutout=0.25).on_batch(X, torch.zeros(64, dtype=torch.long))
    holes = (Xa.view(64, 8, 8) == 0)
    assert torch.equal(holes.sum((1, 2)), torch.full((64,), 4))  # a 2x2 square: 25% of 8 pixels a side
    for hole in holes:
        rows, cols = hole.nonzero(as_tuple=True)
        assert rows.max() - rows.min() == 1 and cols.max() - cols.min() == 1
    assert torch.all(Xa[~holes.view(64, -1)] == 1)  # everything else untouched
    corners = {tuple(h.nonzero()[0].tolist()) for h in holes}
    assert len(corners) > 10  # the square moves from image to image


def test_flips_happen_only_when_asked() -> None:
    torch.manual_seed(0)
    X, y = _digits()
    asymmetric = (X - _mirror(X)).abs().amax(1) > 1e-3
    assert asymmetric.sum() > 200
    plain, _ = _still().on_batch(X, y)
    assert not torch.any(((plain - _mirror(X)).abs().amax(1) < 1e-4) & asymmetric)

    flipped, _ = _still(flip=True).on_batch(X, y)
    as_is = (flipped - X).abs().amax(1) < 1e-4
    mirrored = (flipped - _mirror(X)).abs().amax(1) < 1e-4
    assert torch.all(as_is | mirrored)  # a flip is an exact mirror image, nothing else
    share = mirrored[asymmetric].float().mean()
    assert 0.35 < share < 0.65


def test_image_augment_transforms_the_whole_batch_in_one_call(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = F.grid_sample

    def counting(images: torch.Tensor, *args: object, **kwargs: object) -> torch.Tensor:
        calls.append(images.shape[0])
        return real(images, *args, **kwargs)

    monkeypatch.setattr(augment.F, "grid_sample", counting)
    torch.manual_seed(0)
    X, y = _digits()
    Xa, _ = _still(max_shift=0.25).on_batch(X, y)
    assert calls == [X.shape[0]]
    # ...and yet every image got its own shift.
    distinct = {tuple((Xa[i] - X[i]).round(decimals=3).tolist()) for i in range(32)}
    assert len(distinct) == 32


def test_image_augment_transforms_image_batches_as_it_does_rows() -> None:
    X, y = _digits(64)
    torch.manual_seed(0)
    rows, _ = ImageAugment(IMAGE).on_batch(X, y)
    torch.manual_seed(0)
    images, _ = ImageAugment(IMAGE).on_batch(X.reshape(-1, *IMAGE), y)
    assert images.shape == (64, *IMAGE)
    torch.testing.assert_close(images.reshape(64, -1), rows)


def test_cutmix_on_images_pastes_one_box_of_the_partner_and_weights_targets_by_its_area() -> None:
    torch.manual_seed(0)
    X, y = torch.randn(16, 3, 8, 8), torch.randint(0, 4, (16,))
    Xc, t = CutMix(1.0, 4).on_batch(X, y)
    onehot = F.one_hot(y, 4).float()
    boxes = 0
    for i in range(16):
        j = _partner(Xc[i].flatten(), X.flatten(1), i)
        pasted = (Xc[i] != X[i]).any(0)  # pixels (all channels) taken from the partner
        if j != i:
            rows, cols = pasted.nonzero(as_tuple=True)
            assert int(pasted.sum()) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # a box
            assert torch.equal(Xc[i][:, pasted], X[j][:, pasted])
            boxes += 1
        own = 1 - float(pasted.float().mean())
        torch.testing.assert_close(t[i], own * onehot[i] + (1 - own) * onehot[j], atol=1e-6, rtol=0)
    assert boxes > 8


class _Spy(Regularizer):
    def __init__(self) -> None:
        self.rows = 0
        self.shapes: set[tuple[int, ...]] = set()

    def on_batch(self, X: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.rows += X.shape[0]
        self.shapes.add(tuple(X.shape[1:]))
        return X, y


@pytest.mark.parametrize("kind", ["mlp", "custom-conv"])
def test_augmentation_is_applied_to_training_batches_only(kind: str) -> None:
    X, y = _digits(200)
    module = {}
    if kind == "custom-conv":
        X, module = X.reshape(-1, *IMAGE), {"module": SmallConvNet, "module_params": {"channels": 4}}
    config = RegConfig(batch_size=64, max_epochs=3, early_stopping=False)
    spy = _Spy()
    regs = [ImageAugment(IMAGE), spy]
    trainer = Trainer(
        lambda: build_network(config, 64, 10, IMAGE, regs, **module), config, X, y, X[:50], y[:50],
        task="classification", regularizers=regs, seed=0,
    )
    while not trainer.done:
        trainer.step()
    trainer.finish()
    assert spy.rows == 3 * 200  # every training row, every epoch; never the 50 validation rows
    assert spy.shapes == {tuple(X.shape[1:])}  # as the module takes them: rows, or images
    before = trainer.history[-1]["val_loss"]
    assert trainer.evaluate(X[:50], y[:50])["val_loss"] == before
    assert spy.rows == 600


@pytest.mark.parametrize("kind", ["mlp", "custom-conv"])
def test_fitted_estimator_with_augmentation_predicts_deterministically(kind: str) -> None:
    X, y = load_digits(return_X_y=True)
    if kind == "mlp":
        net = RegularizedNetClassifier((32,), image_shape=IMAGE)
    else:  # images as images: the shape is inferred
        X, net = X.reshape(-1, 8, 8), RegularizedNetClassifier(module=SmallConvNet, module__channels=16)
    net.set_params(augment="image", max_epochs=5, early_stopping=False, lr=1e-2,
                   random_state=0, device="cpu").fit(X[:300], y[:300])
    assert net.image_shape_ == IMAGE
    first, second = net.predict_proba(X[300:400]), net.predict_proba(X[300:400])
    assert (first == second).all()
    assert net.score(X[:300], y[:300]) > 0.8  # still learns through the augmentation


def _partner(row: torch.Tensor, X: torch.Tensor, i: int) -> int:
    """The other row ``row`` was built from (``i`` itself when nothing was mixed in)."""
    for j in range(X.shape[0]):
        if j != i and torch.all(torch.isclose(row, X[i]) | torch.isclose(row, X[j])) \
                and not torch.allclose(row, X[i]):
            return j
    return i


def test_mixup_mixes_inputs_and_targets_with_one_convex_weight() -> None:
    torch.manual_seed(0)
    X, y = torch.randn(24, 6), torch.randint(0, 4, (24,))
    Xm, t = Mixup(0.4, 4).on_batch(X, y)
    assert t.shape == (24, 4)
    assert torch.all(t >= 0) and torch.all(t <= 1)
    torch.testing.assert_close(t.sum(1), torch.ones(24))
    onehot = F.one_hot(y, 4).float()
    mixed = 0
    for i in range(24):
        # Xm[i] = lam * X[i] + (1 - lam) * X[j]: find j and lam, then the target must match.
        fits = []
        for j in range(24):
            d = X[i] - X[j]
            lam = float((Xm[i] - X[j]) @ d / d.dot(d)) if j != i else 1.0
            fits.append((float((lam * X[i] + (1 - lam) * X[j] - Xm[i]).norm()), j, lam))
        err, j, lam = min(fits)
        assert err < 1e-4 and -1e-6 <= lam <= 1 + 1e-6
        torch.testing.assert_close(t[i], lam * onehot[i] + (1 - lam) * onehot[j], atol=1e-5, rtol=0)
        mixed += j != i
    assert mixed > 12


def test_mixup_mixes_regression_targets_too() -> None:
    torch.manual_seed(0)
    X = torch.randn(16, 3)
    y = X.sum(1, keepdim=True)  # a linear target: mixing X mixes y the same way
    Xm, ym = Mixup(0.4, None).on_batch(X, y)
    torch.testing.assert_close(ym, Xm.sum(1, keepdim=True), atol=1e-5, rtol=0)


def test_cutmix_takes_each_feature_from_the_row_or_its_partner_and_weights_targets_by_the_share() -> None:
    swapped_rows = 0
    for seed in range(4):
        torch.manual_seed(seed)
        X, y = torch.randn(16, 40), torch.randint(0, 3, (16,))
        Xc, t = CutMix(1.0, 3).on_batch(X, y)
        onehot = F.one_hot(y, 3).float()
        torch.testing.assert_close(t.sum(1), torch.ones(16))
        for i in range(16):
            j = _partner(Xc[i], X, i)
            own = (Xc[i] == X[i]).float().mean()
            assert torch.all((Xc[i] == X[i]) | (Xc[i] == X[j]))
            torch.testing.assert_close(t[i], own * onehot[i] + (1 - own) * onehot[j], atol=1e-6, rtol=0)
            swapped_rows += j != i
    assert swapped_rows > 20

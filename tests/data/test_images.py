"""Images as images: ``(N, C, H, W)`` and ``(N, H, W)`` arrays and tensors in the estimators,
``.npz`` files and folders of image files in the data layer."""

from __future__ import annotations

import builtins
from pathlib import Path

import numpy as np
import pytest
import torch
from byo_modules import SmallConvNet
from data_helpers import digit_image_folder
from sklearn.datasets import load_digits

from regtune import RegTuneClassifier, RegularizedNetClassifier
from regtune.data.images import as_rows
from regtune.data.loading import load_dataset
from regtune.exceptions import DataError

FAST = dict(lr=1e-2, max_epochs=4, early_stopping=False, random_state=0, device="cpu")


def _digits(n: int = 300) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:n], y[:n]


@pytest.mark.parametrize("form", ["NCHW", "NHW", "tensor"])
def test_estimators_take_images_and_infer_their_shape(form: str) -> None:
    X, y = _digits()
    images = {"NCHW": X.reshape(-1, 1, 8, 8), "NHW": X.reshape(-1, 8, 8),
              "tensor": torch.as_tensor(X.reshape(-1, 1, 8, 8), dtype=torch.float32)}[form]
    net = RegularizedNetClassifier(module=SmallConvNet, module__channels=4, **FAST).fit(images, torch.as_tensor(y)
                                                                                         if form == "tensor" else y)
    assert net.image_shape_ == (1, 8, 8) and net.n_features_in_ == 64
    proba = net.predict_proba(images)
    np.testing.assert_allclose(net.predict_proba(X), proba, atol=1e-6)  # rows of pixels predict the same
    assert net.score(images, y) > 0.8


def test_the_built_in_networks_take_images_too() -> None:
    X, y = _digits()
    images = X.reshape(-1, 1, 8, 8)
    cnn = RegularizedNetClassifier(architecture="cnn", conv_channels=(4,), hidden_layer_sizes=(32,), **FAST)
    rows = RegularizedNetClassifier(architecture="cnn", conv_channels=(4,), hidden_layer_sizes=(32,),
                                    image_shape=(1, 8, 8), **FAST)
    np.testing.assert_allclose(cnn.fit(images, y).predict_proba(images), rows.fit(X, y).predict_proba(X), atol=1e-6)
    mlp = RegularizedNetClassifier(hidden_layer_sizes=(32,), augment="image", **FAST).fit(images, y)
    assert mlp.image_shape_ == (1, 8, 8) and mlp.score(images, y) > 0.8


def test_image_shapes_that_do_not_fit_are_clear_errors() -> None:
    X, y = _digits(60)
    with pytest.raises(DataError, match=r"X holds images of shape \(1, 8, 8\) but image_shape=\(3, 8, 8\)"):
        RegularizedNetClassifier(image_shape=(3, 8, 8), **FAST).fit(X.reshape(-1, 1, 8, 8), y)
    with pytest.raises(DataError, match=r"image_shape=\(1, 4, 4\) holds 16 values but X has 64 features"):
        RegularizedNetClassifier(image_shape=(1, 4, 4), **FAST).fit(X, y)
    net = RegularizedNetClassifier(**FAST).fit(X.reshape(-1, 8, 8), y)
    with pytest.raises(DataError, match=r"X holds images of shape \(1, 4, 16\), but the network was fitted on "
                                        r"images of shape \(1, 8, 8\)"):
        net.predict(X.reshape(-1, 4, 16))
    with pytest.raises(DataError, match="X has 5 dimensions"):
        net.predict(X.reshape(-1, 1, 1, 8, 8))


def test_the_tuner_takes_images_with_a_custom_module() -> None:
    X, y = _digits(200)
    search = RegTuneClassifier(module=SmallConvNet, module__channels=4, space="image", n_trials=2, cv=1,
                               tracking_uri="off", random_state=0).fit(X.reshape(-1, 1, 8, 8), y)
    assert search.best_estimator_.image_shape_ == (1, 8, 8)
    assert "use_batch_norm" not in search.trials_.columns.str.removeprefix("params_")  # SmallConvNet takes none
    assert search.predict(X.reshape(-1, 1, 8, 8)).shape == (200,)


def test_as_rows_leaves_tables_alone() -> None:
    table = np.zeros((5, 3))
    assert as_rows(table) == (table, None)
    rows, shape = as_rows(np.zeros((5, 3, 4, 2)))
    assert rows.shape == (5, 24) and shape == (3, 4, 2)


# --- .npz files and image folders --------------------------------------------------------------


def test_npz_files_load_as_tables_or_images(tmp_path: Path) -> None:
    X, y = _digits(100)
    np.savez(tmp_path / "images.npz", X=X.reshape(-1, 8, 8), y=y)
    np.savez(tmp_path / "table.npz", X=X[:, :5], y=y)
    images = load_dataset(tmp_path / "images.npz")
    assert images.image_shape == (1, 8, 8) and images.X.shape == (100, 64) and images.task == "classification"
    table = load_dataset(tmp_path / "table.npz")
    assert table.image_shape is None and list(table.X.columns) == [f"x{i}" for i in range(5)]
    np.savez(tmp_path / "no_y.npz", X=X)
    with pytest.raises(DataError, match=r"holds the arrays \['X'\]; it needs 'X' .* and 'y'"):
        load_dataset(tmp_path / "no_y.npz")
    np.savez(tmp_path / "short.npz", X=X, y=y[:10])
    with pytest.raises(DataError, match=r"y has shape \(10,\), but X holds 100 rows"):
        load_dataset(tmp_path / "short.npz")
    np.savez(tmp_path / "objects.npz", X=np.array([{"a": 1}] * 3, dtype=object), y=np.arange(3))
    with pytest.raises(DataError, match="cannot be read without pickle"):
        load_dataset(tmp_path / "objects.npz")
    with pytest.raises(DataError, match="takes its target from the array y"):
        load_dataset(tmp_path / "images.npz", "label")


def test_an_image_folder_loads_one_class_per_sub_folder(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    root = digit_image_folder(tmp_path / "digits")
    Image.new("L", (16, 16), 255).save(root / "digit2" / "big.png")  # another size: resized to 8x8
    data = load_dataset(root)
    assert data.image_shape == (1, 8, 8) and data.task == "classification"
    assert sorted(data.y.unique()) == ["digit0", "digit1", "digit2"] and len(data.y) == 37
    assert 0 <= data.X.to_numpy().min() and data.X.to_numpy().max() <= 1
    (root / "empty").mkdir()
    with pytest.raises(DataError, match=r"the class sub-folder\(s\) \['empty'\] hold no images"):
        load_dataset(root)


def test_reading_images_without_pillow_says_how_to_install_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "imgs" / "a").mkdir(parents=True)
    (tmp_path / "imgs" / "a" / "x.png").write_bytes(b"not read")
    real_import = builtins.__import__

    def no_pil(name: str, *args: object, **kwargs: object) -> object:
        if name == "PIL" or name.startswith("PIL."):
            raise ImportError("No module named 'PIL'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_pil)
    with pytest.raises(DataError, match=r'needs Pillow: pip install "regtune\[images\]"'):
        load_dataset(tmp_path / "imgs")


def test_a_16_bit_image_keeps_its_values(tmp_path: Path) -> None:
    """Issue 17 item 2: 16-bit PNGs (Pillow mode I;16) were read as all 255, i.e. all 1.0."""
    pytest.importorskip("PIL")
    from PIL import Image

    from regtune.data.images import read_images

    gradient = np.linspace(0, 65535, 8 * 16).reshape(8, 16).astype(np.uint16)
    Image.fromarray(gradient).save(tmp_path / "g16.png")
    assert Image.open(tmp_path / "g16.png").mode == "I;16"
    Image.fromarray((gradient >> 8).astype(np.uint8)).save(tmp_path / "g8.png")
    rows, shape = read_images([tmp_path / "g16.png", tmp_path / "g8.png"])
    assert shape == (1, 8, 16)
    np.testing.assert_allclose(rows[0], gradient.ravel() / 65535, atol=1e-6)
    np.testing.assert_allclose(rows[1], rows[0], atol=1 / 255)  # the same picture at 8 bits
    Image.fromarray(gradient.astype(np.int32)).save(tmp_path / "g32.tif")  # mode I holding 16-bit values
    Image.new("RGB", (16, 8), (255, 0, 0)).save(tmp_path / "red.png")  # a colour image: gray ones get 3 channels
    rows, shape = read_images([tmp_path / "g32.tif", tmp_path / "red.png"])
    assert shape == (3, 8, 16)
    np.testing.assert_allclose(rows[0].reshape(3, -1), np.tile(gradient.ravel() / 65535, (3, 1)), atol=1e-6)


def test_pixels_that_cannot_be_scaled_are_refused_naming_the_mode(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    from PIL import Image

    from regtune.data.images import read_images

    Image.fromarray(np.full((4, 4), 0.25, dtype=np.float32)).save(tmp_path / "unit.tif")
    rows, _ = read_images([tmp_path / "unit.tif"])
    np.testing.assert_allclose(rows, 0.25)  # floating-point pixels in [0, 1] are kept as they are
    Image.fromarray(np.full((4, 4), 300.0, dtype=np.float32)).save(tmp_path / "big.tif")
    with pytest.raises(DataError, match=r"'.*big.tif' holds floating-point pixels \(Pillow mode 'F'\) from 300.0 "
                                        r"to 300.0, outside \[0, 1\]"):
        read_images([tmp_path / "big.tif"])
    Image.fromarray(np.full((4, 4), -5, dtype=np.int32)).save(tmp_path / "neg.tif")
    with pytest.raises(DataError, match=r"holds 32-bit integer pixels \(Pillow mode 'I'\) from -5 to -5"):
        read_images([tmp_path / "neg.tif"])


def test_a_folder_of_16_bit_images_is_learnable(tmp_path: Path) -> None:
    """Two classes of 16-bit images that differ in brightness: before, every pixel read 1.0."""
    pytest.importorskip("PIL")
    from PIL import Image
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score

    rng = np.random.default_rng(0)
    for label, level in (("dark", 8_000), ("bright", 40_000)):
        (tmp_path / "imgs" / label).mkdir(parents=True)
        for i in range(15):
            noise = rng.normal(0, 6_000, (8, 8))
            Image.fromarray(np.clip(level + noise, 0, 65535).astype(np.uint16)).save(tmp_path / "imgs" / label / f"{i}.png")
    data = load_dataset(tmp_path / "imgs")
    X, y = data.X.to_numpy(), data.y.to_numpy()
    assert data.image_shape == (1, 8, 8) and 0 <= X.min() and X.max() <= 1 and X.std() > 0.05
    assert X[y == "dark"].mean() < 0.2 < 0.5 < X[y == "bright"].mean()
    assert cross_val_score(LogisticRegression(), X, y, cv=3).mean() > 0.9

"""A map-style torch Dataset as data: fit and predict read it batch by batch, never whole."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from data_helpers import digit_image_folder
from sklearn.datasets import load_digits
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from regtune import RegularizedNetClassifier, RegularizedNetRegressor
from regtune.data.images import read_image_folder
from regtune.data.torch_data import (
    FINGERPRINT_SAMPLE,
    DatasetRows,
    DatasetSource,
    ImageFolderDataset,
    dataset_fingerprint,
    dataset_labels,
    dataset_statistics,
    fold_indices,
    split_indices,
)
from regtune.exceptions import DataError
from regtune.nn.trainer import Trainer, predict_batches


class _Images(Dataset):
    """Digits as ``(1, 8, 8)`` items; counts the reads, with or without a ``targets`` attribute."""

    def __init__(self, X: np.ndarray, y: np.ndarray, targets: bool = True) -> None:
        self.X, self.y, self.reads = X.astype(np.float32).reshape(-1, 1, 8, 8), y, 0
        if targets:
            self.targets = y

    def __len__(self) -> int:
        return len(self.X)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        self.reads += 1
        return torch.from_numpy(self.X[i]), int(self.y[i])


def _digits(n: int = 400) -> tuple[np.ndarray, np.ndarray]:
    X, y = load_digits(return_X_y=True)
    return X[:n] / 16.0, y[:n]


def test_a_classifier_fits_and_predicts_a_dataset_as_it_predicts_the_arrays() -> None:
    X, y = _digits()
    est = RegularizedNetClassifier(architecture="cnn", max_epochs=4, random_state=0).fit(_Images(X, y))
    assert est.image_shape_ == (1, 8, 8) and est.n_features_in_ == 64
    assert list(est.classes_) == list(range(10))
    assert len(est.history_) == 4 and "val_score" in est.history_[-1]  # early stopping's split, by index
    np.testing.assert_allclose(est.predict_proba(_Images(X, y)), est.predict_proba(X.reshape(-1, 1, 8, 8)), atol=1e-5)
    assert est.score(X.reshape(-1, 1, 8, 8), y) > 0.5


def test_labels_come_from_targets_or_from_one_pass_over_the_items() -> None:
    X, y = _digits(100)
    with_targets, without = _Images(X, y), _Images(X, y, targets=False)
    np.testing.assert_array_equal(dataset_labels(with_targets), y)
    assert with_targets.reads == 0
    np.testing.assert_array_equal(dataset_labels(without), y)
    assert without.reads == len(y)
    np.testing.assert_array_equal(dataset_labels(Subset(with_targets, [3, 1, 4])), y[[3, 1, 4]])
    est = RegularizedNetClassifier(max_epochs=1, random_state=0).fit(without)
    assert list(est.classes_) == sorted(set(y))


def test_a_dataloader_reads_with_its_workers_and_a_validation_dataset_replaces_the_split() -> None:
    X, y = _digits(300)
    train, val = _Images(X[:200], y[:200]), _Images(X[200:], y[200:])
    est = RegularizedNetClassifier(max_epochs=2, random_state=0)
    est.fit(DataLoader(train, num_workers=1), X_val=val)
    assert len(est.history_) == 2 and np.isfinite(est.history_[-1]["val_loss"])
    assert est.predict(DataLoader(val)).shape == (100,)


def test_workers_read_the_same_batches_in_the_same_order() -> None:
    X, y = _digits(300)
    alone = RegularizedNetClassifier(max_epochs=3, random_state=0).fit(_Images(X, y))
    workers = RegularizedNetClassifier(max_epochs=3, random_state=0).fit(DataLoader(_Images(X, y), num_workers=2))
    for a, b in zip(alone.history_, workers.history_, strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-5)
        assert a["val_loss"] == pytest.approx(b["val_loss"], rel=1e-5)


def test_a_dataset_trains_under_bf16_autocast_too() -> None:
    X, y = _digits(200)
    est = RegularizedNetClassifier(architecture="cnn", max_epochs=2, precision="bf16-mixed", random_state=0)
    est.fit(_Images(X, y))
    assert all(np.isfinite(r["train_loss"]) for r in est.history_)
    assert est.predict_proba(_Images(X, y)).shape == (200, 10)


def test_a_regressor_fits_a_dataset_of_feature_rows() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 5)).astype(np.float32)
    y = X @ np.arange(1, 6) + 0.1 * rng.normal(size=300)
    data = torch.utils.data.TensorDataset(torch.from_numpy(X), torch.from_numpy(y))
    est = RegularizedNetRegressor(max_epochs=30, random_state=0).fit(data)
    assert est.image_shape_ is None and est.n_features_in_ == 5
    np.testing.assert_allclose(est.predict(data), est.predict(X), atol=1e-4)
    assert est.score(X, y) > 0.8


def test_what_a_dataset_cannot_be_is_said() -> None:
    X, y = _digits(50)

    class Stream(IterableDataset):
        def __iter__(self):  # noqa: ANN204
            return iter([])

    with pytest.raises(DataError, match="map-style"):
        RegularizedNetClassifier(max_epochs=1).fit(Stream())
    with pytest.raises(DataError, match="y holds 49 labels for a dataset of 50 items"):
        RegularizedNetClassifier(max_epochs=1).fit(_Images(X, y), y[1:])
    with pytest.raises(DataError, match="requires y to be passed"):
        RegularizedNetClassifier(max_epochs=1).fit(X)
    with pytest.raises(DataError, match="X is a torch dataset but X_val is arrays"):
        RegularizedNetClassifier(max_epochs=1).fit(_Images(X, y), X_val=X, y_val=y)
    with pytest.raises(DataError, match="X is arrays but X_val is a torch dataset"):
        RegularizedNetClassifier(max_epochs=1).fit(X, y, X_val=_Images(X, y))
    with pytest.raises(DataError, match="y_val holds 10 labels for a dataset of 50 items"):
        RegularizedNetClassifier(max_epochs=1).fit(_Images(X, y), X_val=_Images(X, y), y_val=y[:10])
    with pytest.raises(DataError, match=r"shape \(2, 8, 8, 1\)"):
        RegularizedNetClassifier(max_epochs=1).fit(torch.utils.data.TensorDataset(torch.zeros(4, 2, 8, 8, 1), torch.arange(4)))


def test_the_trainer_draws_the_same_batches_from_a_dataset_as_from_tensors() -> None:
    X, y = _digits(300)
    Xt, yt = torch.tensor(X, dtype=torch.float32), torch.tensor(y)
    data = torch.utils.data.TensorDataset(Xt, yt)
    source = DatasetSource(data, np.arange(300), mean=np.zeros(64), scale=np.ones(64), shape=(64,), device="cpu")
    est = RegularizedNetClassifier(max_epochs=3, random_state=0, early_stopping=False)
    config = est._config()
    build = lambda: torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))  # noqa: E731
    runs = []
    for X_in, X_val in ((Xt, Xt[:50]), (source, source.subset(slice(0, 50)))):
        trainer = Trainer(build, config, X_in, yt, X_val, yt[:50], task="classification", seed=3)
        while not trainer.done:
            trainer.step()
        runs.append((trainer.history, predict_batches(trainer.model, X_val)))
    for a, b in zip(runs[0][0], runs[1][0], strict=True):
        assert a["train_loss"] == pytest.approx(b["train_loss"], rel=1e-4)
        assert a["val_score"] == pytest.approx(b["val_score"], abs=1e-6)
    torch.testing.assert_close(runs[0][1], runs[1][1], atol=1e-4, rtol=1e-4)


def test_folds_of_a_dataset_train_as_subsets_the_way_the_tuner_would_call_them() -> None:
    X, y = _digits(300)
    data = _Images(X, y, targets=False)
    labels = dataset_labels(data)  # one pass, once: the folds get their labels passed as y
    search, test = split_indices(labels, 0.2, seed=0, stratify=True)  # the held-out test part, by index
    rows, y_search = DatasetRows(data)[search], labels[search]  # what Folds would hold as X and y
    rows = DatasetRows(rows)
    data.reads = 0
    for train, val in fold_indices(y_search, 2, seed=0, stratify=True):
        est = RegularizedNetClassifier(max_epochs=2, random_state=0)
        weights = np.where(y_search[train] == 0, 2.0, 1.0)
        records = list(est.fit_iter(rows[train], y_search[train], (rows[val], y_search[val], None),
                                    sample_weight=weights))
        assert len(records) == 2 and np.isfinite(records[-1]["val_score"])
    # per fold: 2 epochs of training and validation items, the statistics' sample, a shape and a check batch
    assert data.reads <= 2 * (2 * len(search) + len(search) // 2 + 8)
    assert est.predict(Subset(data, test)).shape == (len(test),)


def test_splits_are_by_index_stratified_and_repeatable() -> None:
    labels = np.repeat(np.arange(4), 25)
    train, val = split_indices(labels, 0.2, seed=1, stratify=True)
    assert len(val) == 20 and sorted(np.concatenate([train, val])) == list(range(100))
    assert np.bincount(labels[val]).tolist() == [5, 5, 5, 5]
    np.testing.assert_array_equal(split_indices(labels, 0.2, seed=1, stratify=True)[1], val)
    folds = fold_indices(labels, 5, seed=0, stratify=True)
    assert sorted(np.concatenate([v for _, v in folds])) == list(range(100))


def test_statistics_are_per_channel_over_the_items() -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(loc=[[[2.0]], [[-1.0]], [[0.5]]], scale=[[[1.0]], [[3.0]], [[0.0]]], size=(40, 3, 4, 5))
    data = torch.utils.data.TensorDataset(torch.tensor(X, dtype=torch.float32), torch.zeros(40))
    mean, scale = dataset_statistics(data, np.arange(40))
    assert mean.shape == scale.shape == (60,)
    channels = X.astype(np.float32).astype(np.float64).transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(mean[::20], channels.mean(1), atol=1e-6)
    np.testing.assert_allclose(scale[::20][:2], channels.std(1)[:2], rtol=1e-6)
    assert scale[40] == 1.0  # a constant channel keeps scale 1


def test_the_fingerprint_reads_a_sample_and_sees_its_content() -> None:
    X, y = _digits(400)
    data = _Images(X, y)
    first = dataset_fingerprint(data)
    assert data.reads <= FINGERPRINT_SAMPLE + 1  # the sample and the item shape, never the whole set
    assert dataset_fingerprint(_Images(X, y)) == first
    assert dataset_fingerprint(_Images(X[:399], y[:399])) != first  # the length counts
    changed = X.copy()
    changed[:, 0] += 1
    assert dataset_fingerprint(_Images(changed, y)) != first


def test_an_image_folder_is_a_dataset_decoded_as_the_folder_reader_decodes_it(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    root = digit_image_folder(tmp_path / "imgs", labels=(0, 1), n_per_class=10)
    data = ImageFolderDataset(root)
    frame, shape = read_image_folder(root)
    assert len(data) == 20 and data.image_shape == shape == (1, 8, 8) and data.classes == ["digit0", "digit1"]
    x, label = data[3]
    np.testing.assert_array_equal(x.reshape(-1), frame.drop(columns="target").to_numpy()[3])
    assert label == frame["target"][3]
    est = RegularizedNetClassifier(architecture="cnn", max_epochs=2, random_state=0, early_stopping=False).fit(data)
    assert list(est.classes_) == ["digit0", "digit1"]
    assert set(est.predict(data)) <= {"digit0", "digit1"}


_MEMORY_SCRIPT = """
import json, resource, sys, time
import numpy as np, torch
from torch.utils.data import Dataset
from regtune import RegularizedNetClassifier

torch.set_num_threads(1)
N, SHAPE = int(sys.argv[1]), (3, 64, 64)  # 8192 * 48 KiB = 403 MB of float32 images

class Generated(Dataset):
    '''Each image made from its index on demand; two classes told apart by the mean of channel 0.'''
    targets = np.arange(N) % 2

    def __len__(self):
        return N

    def __getitem__(self, i):
        g = torch.Generator().manual_seed(int(i))
        x = torch.rand(SHAPE, generator=g)
        x[0] += 0.5 * int(self.targets[i])
        return x, int(self.targets[i])

def peak():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB

data = Generated()
est = RegularizedNetClassifier(hidden_layer_sizes=(32,), batch_size=128, max_epochs=1, random_state=0)
cold = peak()
est.fit(torch.utils.data.Subset(data, range(512)))  # warm-up: torch's kernels and allocator pools, 25 MB of data
before = peak()
start = time.perf_counter()
est.fit(data)
proba = est.predict_proba(torch.utils.data.Subset(data, range(512)))
print(json.dumps({"dataset_bytes": N * 4 * int(np.prod(SHAPE)), "peak_growth": peak() - before,
                  "peak_growth_with_warm_up": peak() - cold,
                  "seconds": time.perf_counter() - start, "val_score": est.history_[-1]["val_score"]}))
"""


def _train_generated(n_items: int) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(_MEMORY_SCRIPT), str(n_items)], capture_output=True,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_a_400_mb_dataset_trains_in_a_small_fraction_of_its_size() -> None:
    small, large = _train_generated(1024), _train_generated(8192)
    print(small, large)
    assert large["dataset_bytes"] > 400e6
    assert large["val_score"] > 0.6  # it did learn from the streamed batches
    # After a warm-up (torch's kernels and allocator pools), the growth is a fixed overhead: eight
    # times the data (50 MB -> 403 MB) costs almost nothing more.
    assert large["peak_growth"] < 0.15 * large["dataset_bytes"]
    assert large["peak_growth"] - small["peak_growth"] < 0.05 * (large["dataset_bytes"] - small["dataset_bytes"])
    assert large["peak_growth_with_warm_up"] < 0.5 * large["dataset_bytes"]

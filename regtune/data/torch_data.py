"""A map-style ``torch.utils.data.Dataset`` as data: read batch by batch, never materialized whole.

A dataset yields ``(x, y)`` per index: ``x`` a tensor or array of features ``(F,)`` or an image
``(C, H, W)`` / ``(H, W)``, ``y`` a label or target. What regtune needs from it, and how:

- **labels** (:func:`dataset_labels`): ``y`` if passed beside the dataset (one per item), else
  the dataset's ``targets`` attribute if it has one (as
  torchvision's datasets and :class:`ImageFolderDataset` do; a ``Subset`` of such a dataset
  too), else one pass over every item through a DataLoader, keeping ``y`` only (memory stays
  bounded, but each ``x`` is read once: give the dataset ``targets`` to skip that pass). The
  labels are one value per item, held in memory; classes are the distinct labels.
- **splitting** (:func:`split_indices`, :func:`fold_indices`): by index, stratified on the
  labels for a classifier; the items stay where they are.
- **standardization** (:func:`dataset_statistics`): per channel for images, per feature for
  rows, from a deterministic sample of at most :data:`STATISTICS_SAMPLE` training items;
  images in [0, 1] are standardized too. A constant channel or feature keeps scale 1.
- **fingerprint** (:func:`dataset_fingerprint`): the length, the item shape and a hash of the
  bytes of a deterministic sample of :data:`FINGERPRINT_SAMPLE` items.
- **reading** (:class:`DatasetSource`): the rows of one split, gathered by a DataLoader one
  batch of indices at a time (``num_workers`` of a DataLoader passed in its place, pinned
  memory on CUDA), moved to the device and standardized there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, IterableDataset, Subset

from regtune.data.images import decode_image, image_folder_files, image_layout, to_numpy
from regtune.exceptions import DataError

__all__ = ["FINGERPRINT_SAMPLE", "STATISTICS_SAMPLE", "DatasetRows", "DatasetSource", "ImageFolderDataset", "as_map_dataset",
           "dataset_fingerprint", "dataset_labels", "dataset_statistics", "fold_indices", "input_shape",
           "is_dataset", "item_shape", "sample_indices", "split_indices"]

STATISTICS_SAMPLE = 1024  # items read for the standardization statistics
FINGERPRINT_SAMPLE = 64  # items hashed into the fingerprint
_LABEL_BATCH = 256
_BATCH_BYTES = 4 * 2**20  # inputs read at once for statistics and predictions


def is_dataset(X: Any) -> bool:
    """Whether ``X`` is read as a torch dataset (a map-style Dataset, an IterableDataset to
    refuse, or a DataLoader) rather than converted to an array."""
    return isinstance(X, Dataset | DataLoader)


def as_map_dataset(X: Any) -> tuple[Dataset, int]:
    """The map-style dataset to read and how many DataLoader workers read it.

    A DataLoader counts as its ``dataset`` with its ``num_workers``; its batch size, sampler
    and collate function are not used (batches are drawn by index, ``batch_size`` of the
    estimator). An IterableDataset is refused: it can be neither split nor shuffled by index.
    """
    workers = 0
    if isinstance(X, DataLoader):
        X, workers = X.dataset, X.num_workers
    if isinstance(X, IterableDataset) or not hasattr(X, "__len__"):
        raise DataError(f"{type(X).__name__} is an iterable dataset without len(); regtune reads a map-style "
                        "torch Dataset (__len__ and __getitem__ yielding (x, y)) so it can split and shuffle "
                        "by index: wrap the items in one, or pass arrays")
    return X, workers


def _x(item: Any) -> Tensor:
    """The input of an item: ``x`` of ``(x, y)``, or the item itself when it is one tensor/array."""
    x = item[0] if isinstance(item, tuple | list) else item
    return torch.as_tensor(to_numpy(x), dtype=torch.float32)


def _y(item: Any, index: int) -> Any:
    if not isinstance(item, tuple | list) or len(item) < 2:
        raise DataError(f"dataset item {index} is a {type(item).__name__}; to fit, each item must be (x, y), "
                        "or the dataset must have a targets attribute (one label per item)")
    y = to_numpy(item[1])
    return y.item() if getattr(y, "ndim", None) == 0 else y



def item_shape(dataset: Dataset) -> tuple[int, ...]:
    """The shape of ``x`` of the first item: ``(F,)``, ``(H, W)`` or ``(C, H, W)``."""
    shape = tuple(_x(dataset[0]).shape)
    if not 1 <= len(shape) <= 3:
        raise DataError(f"dataset items hold x of shape {shape}; regtune takes features (F,), grayscale images "
                        "(H, W) or images (C, H, W)")
    return shape


def input_shape(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """The ``(C, H, W)`` image shape of items of ``shape`` (None for rows of features)."""
    if len(shape) == 1:
        return None
    return (1, *shape) if len(shape) == 2 else shape  # type: ignore[return-value]


def dataset_labels(dataset: Dataset, num_workers: int = 0, given: Any = None, name: str = "y") -> np.ndarray:
    """One label (or target row) per item: ``given`` (the ``y`` passed beside the dataset) if
    not None, else the dataset's ``targets``, else one pass over the items (module docstring)."""
    if given is not None:
        labels = np.asarray(to_numpy(given))
        if len(labels) != len(dataset):
            raise DataError(f"{name} holds {len(labels)} labels for a dataset of {len(dataset)} items; pass one "
                            f"label per item, or leave {name} None to read them from the items")
        return labels
    targets = _targets(dataset)
    if targets is None:
        loader = DataLoader(_Labels(dataset), batch_size=_LABEL_BATCH, num_workers=num_workers,
                            collate_fn=list)
        targets = [label for batch in loader for label in batch]
    labels = np.asarray(targets)
    if len(labels) != len(dataset):
        raise DataError(f"the dataset's targets hold {len(labels)} labels for {len(dataset)} items; "
                        "it needs one label per item")
    return labels


def _targets(dataset: Dataset) -> Any:
    if isinstance(dataset, Subset):
        parent = _targets(dataset.dataset)
        return None if parent is None else np.asarray(to_numpy(parent))[np.asarray(dataset.indices)]
    targets = getattr(dataset, "targets", None)
    return None if targets is None else to_numpy(targets)


class _Labels(Dataset):
    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        return _y(self.dataset[index], index)


def sample_indices(n: int, k: int, seed: int = 0) -> np.ndarray:
    """``min(n, k)`` distinct indices of ``range(n)``, sorted; the same for the same arguments."""
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=k, replace=False))


def split_indices(labels: np.ndarray, fraction: float, seed: int, stratify: bool) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices: ``ceil(fraction * n)`` items for validation, stratified on
    ``labels`` when ``stratify`` and every class has two items."""
    n = len(labels)
    n_val = int(np.ceil(fraction * n))
    strata = None
    if stratify:
        _, codes = np.unique(labels, return_inverse=True)
        counts = np.bincount(codes)
        strata = codes if counts.min() >= 2 and n_val >= len(counts) else None
    train, val = train_test_split(np.arange(n), test_size=n_val, random_state=seed, stratify=strata)
    return train, val


def fold_indices(labels: np.ndarray, n_folds: int, seed: int, stratify: bool) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(train, validation)`` indices of ``n_folds`` shuffled folds (stratified for a classifier)."""
    splitter = (StratifiedKFold if stratify else KFold)(n_splits=n_folds, shuffle=True, random_state=seed)
    return list(splitter.split(np.zeros(len(labels)), labels))


def dataset_statistics(dataset: Dataset, indices: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Mean and scale of ``x`` over a sample of the items at ``indices``, per channel for images
    (then repeated over each channel's pixels), per feature for rows; both flat ``(C*H*W,)``.
    A constant channel or feature gets scale 1. Reads a few items at a time (4 MiB)."""
    chosen = indices[sample_indices(len(indices), STATISTICS_SAMPLE, seed)]
    step = max(1, _BATCH_BYTES // (8 * int(np.prod(item_shape(dataset)))))
    count, mean, m2 = 0, None, None
    for start in range(0, len(chosen), step):
        xs = torch.stack([_x(dataset[int(i)]) for i in chosen[start : start + step]]).double()
        shape = xs.shape[1:]
        # (items, channels, pixels): one channel per feature of a row, or per channel of an image
        values = xs.unsqueeze(-1) if len(shape) == 1 else xs.reshape(len(xs), -1, shape[-2] * shape[-1])
        n = values.shape[0] * values.shape[2]
        b_mean = values.mean(dim=(0, 2))
        b_m2 = values.sub_(b_mean[:, None]).square_().sum(dim=(0, 2))
        if mean is None:
            count, mean, m2 = n, b_mean, b_m2
            continue
        total = count + n  # Chan et al.: merge the batch's mean and squared deviations
        delta = b_mean - mean
        mean = mean + delta * n / total
        m2 = m2 + b_m2 + delta**2 * count * n / total
        count = total
    std = (m2 / count).sqrt()
    std = torch.where(std > 1e-12 * (1 + mean.abs()), std, torch.ones_like(std))
    if len(shape) > 1:
        pixels = shape[-2] * shape[-1]
        mean, std = mean.repeat_interleave(pixels), std.repeat_interleave(pixels)
    return mean.numpy(), std.numpy()


def dataset_fingerprint(dataset: Dataset) -> str:
    """A content hash of a dataset without reading it whole: its length, its item shape and
    the bytes of ``x`` and ``y`` of :data:`FINGERPRINT_SAMPLE` items at fixed indices."""
    digest = hashlib.sha256(f"{len(dataset)} {item_shape(dataset)}".encode())
    for i in sample_indices(len(dataset), FINGERPRINT_SAMPLE):
        item = dataset[int(i)]
        digest.update(_x(item).numpy().tobytes())
        if isinstance(item, tuple | list) and len(item) > 1:
            y = to_numpy(item[1])
            digest.update(repr(y.tolist() if hasattr(y, "tolist") else y).encode())
    return digest.hexdigest()[:16]


class _Inputs(Dataset):
    """The ``x`` of each item as float32 (a module-level class, so DataLoader workers can pickle it)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Tensor:
        return _x(self.dataset[index])


class DatasetRows:
    """A dataset sliced like an array: ``rows[indices]`` is a ``Subset`` of those items, so code
    that indexes its data by row (the tuner's folds) can hold a dataset in place of an array."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, indices: Sequence[int] | np.ndarray) -> Subset:
        return Subset(self.dataset, np.asarray(indices, dtype=np.int64).tolist())


class _Batches:
    """A batch sampler whose batches are set before each pass, so one DataLoader (and its
    persistent workers) serves every epoch."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class DatasetSource:
    """The rows ``indices`` of a dataset, as the trainer's ``X``: it has a length and a
    dimension like a tensor, and yields batches of inputs on ``device``, standardized with
    ``mean`` and ``scale`` (flat, one per input value) and shaped ``shape``.

    Only the indices, the statistics and one batch in flight (``2 * num_workers`` with
    workers) are in memory at a time; labels and weights stay with the trainer, by position.
    With workers, one DataLoader with persistent workers serves every pass: they start once,
    not once per epoch, and their random state runs on from epoch to epoch.
    """

    def __init__(self, dataset: Dataset, indices: Sequence[int] | np.ndarray, *, mean: np.ndarray,
                 scale: np.ndarray, shape: tuple[int, ...], device: torch.device | str,
                 num_workers: int = 0, dtype: torch.dtype = torch.float32) -> None:
        self.dataset = dataset
        self.indices = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        self.device = torch.device(device)
        self.shape = tuple(shape)
        self.num_workers = num_workers
        self.dtype = dtype
        self._mean = torch.tensor(np.asarray(mean), dtype=dtype, device=self.device).reshape(self.shape)
        self._scale = torch.tensor(np.asarray(scale), dtype=dtype, device=self.device).reshape(self.shape)
        self._sampler = _Batches()
        self._loader: DataLoader | None = None

    def __len__(self) -> int:
        return len(self.indices)

    def dim(self) -> int:
        return 1 + len(self.shape)

    def subset(self, positions: Sequence[int] | np.ndarray | slice) -> DatasetSource:
        """The source of some of these rows (positions into this source)."""
        return self._copy(indices=self.indices[positions])

    def as_dtype(self, dtype: torch.dtype) -> DatasetSource:
        return self._copy(dtype=dtype)

    def _copy(self, **changes: Any) -> DatasetSource:
        args = {"indices": self.indices, "dtype": self.dtype, **changes}
        return DatasetSource(self.dataset, args["indices"], mean=self._mean.cpu().numpy().ravel(),
                             scale=self._scale.cpu().numpy().ravel(), shape=self.shape, device=self.device,
                             num_workers=self.num_workers, dtype=args["dtype"])

    def batches(self, order: Tensor, bounds: Sequence[tuple[int, int]]) -> Iterator[Tensor]:
        """The inputs of the rows ``order[start:stop]`` for each ``(start, stop)`` in ``bounds``."""
        rows = self.indices[order.cpu()]
        # The loader's base seed (its workers' seeds) comes from this epoch's permutation, not
        # from torch's global stream, which the trainer's shuffling and dropout draw from.
        seed = hash(tuple(rows[:16].tolist())) & (2**63 - 1)  # ints hash the same in every process
        return self._load([rows[start:stop].tolist() for start, stop in bounds], seed)

    def inputs(self, batch_size: int | None = None) -> Iterator[Tensor]:
        """Every row's inputs, in order, ``batch_size`` rows at a time (default: 16 MiB of them)."""
        if batch_size is None:
            item_bytes = int(np.prod(self.shape)) * torch.finfo(self.dtype).bits // 8
            batch_size = max(1, min(1024, _BATCH_BYTES // item_bytes))
        rows = self.indices.tolist()
        return self._load([rows[i : i + batch_size] for i in range(0, len(rows), batch_size)], 0)

    def _load(self, batches: list[list[int]], seed: int) -> Iterator[Tensor]:
        cuda = self.device.type == "cuda"
        if self._loader is None:
            self._loader = DataLoader(_Inputs(self.dataset), batch_sampler=self._sampler, num_workers=self.num_workers,
                                      pin_memory=cuda, persistent_workers=self.num_workers > 0,
                                      generator=torch.Generator().manual_seed(seed))
        self._sampler.batches = batches
        for xb in self._loader:
            xb = xb.to(self.device, dtype=self.dtype, non_blocking=cuda).reshape(len(xb), *self.shape)
            yield xb.sub_(self._mean).div_(self._scale)  # xb is this batch's own copy


class ImageFolderDataset(Dataset):
    """A folder with one sub-folder of images per class, decoded one image per item.

    Decoded as :func:`regtune.data.images.read_image_folder` decodes the whole folder: pixels
    in [0, 1], grayscale if every image is, else RGB, resized to the most common size (read
    from the file headers when the dataset is made). ``targets`` holds each image's label
    (its sub-folder's name) and ``classes`` the sorted names; an item is ``(x, label)`` with
    ``x`` a float32 ``(C, H, W)`` array. Needs Pillow.
    """

    def __init__(self, path: str | Path) -> None:
        self.root = Path(path)
        files, labels = image_folder_files(self.root)
        self.files = files
        self.targets = np.asarray(labels)
        self.classes = sorted(set(labels))
        self._gray, self._size = image_layout(files)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[np.ndarray, str]:
        return decode_image(self.files[index], self._gray, self._size), str(self.targets[index])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        width, height = self._size
        return (1 if self._gray else 3, height, width)

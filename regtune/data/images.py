"""Images in: ``(N, C, H, W)`` arrays and tensors, ``.npz`` files and folders of image files.

Inside regtune an image is a row of ``C*H*W`` pixel values plus the dataset's ``image_shape``:
rows are what the checks, the splits and the MLflow model take, and the estimators hand the
network its batches back as ``(batch, C, H, W)``. Reading image files needs Pillow, an optional
extra (``pip install "regtune[images]"``); arrays and ``.npz`` files need nothing more.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from regtune.exceptions import DataError

__all__ = ["IMAGE_SUFFIXES", "as_rows", "decode_image", "image_files", "image_folder_files", "image_layout",
           "read_image_folder", "read_images", "read_npz", "read_npz_features", "to_numpy"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
_PILLOW_HINT = 'reading image files needs Pillow: pip install "regtune[images]" (or pip install pillow)'


def to_numpy(value: Any) -> Any:
    """A torch tensor as a NumPy array (copied to the CPU); anything else unchanged.

    Duck-typed, so this module does not import torch.
    """
    if hasattr(value, "detach") and hasattr(value, "cpu") and hasattr(value, "numpy"):
        return value.detach().cpu().numpy()
    return value


def as_rows(X: Any) -> tuple[Any, tuple[int, int, int] | None]:
    """Images ``(N, C, H, W)``, or grayscale ``(N, H, W)``, as rows of ``C*H*W`` values, and
    their ``(C, H, W)``; anything else (tables, lists) is returned as it is, with ``None``."""
    X = to_numpy(X)
    ndim = getattr(X, "ndim", None)
    if ndim is None or ndim <= 2:
        return X, None
    if ndim > 4:
        raise DataError(f"X has {ndim} dimensions; pass rows (N, features), images (N, C, H, W), or "
                        "grayscale images (N, H, W)")
    shape = tuple(int(d) for d in (X.shape[1:] if ndim == 4 else (1, *X.shape[1:])))
    return np.asarray(X).reshape(X.shape[0], -1), shape  # type: ignore[return-value]


def _frame(rows: np.ndarray, shape: tuple[int, int, int] | None) -> pd.DataFrame:
    prefix = "px" if shape is not None else "x"
    return pd.DataFrame(rows, columns=[f"{prefix}{i}" for i in range(rows.shape[1])])


def read_npz(path: str | Path) -> tuple[pd.DataFrame, tuple[int, int, int] | None]:
    """The rows of a ``.npz`` file holding ``X`` and ``y`` as a frame with a ``target`` column,
    and the image shape (None for a table); :func:`regtune.data.loading.load_dataset` wraps it.

    ``X`` is a table ``(N, features)`` or images ``(N, C, H, W)`` / ``(N, H, W)``; ``y`` has
    one label or target per row. Read without pickle (``allow_pickle=False``).
    """
    path = Path(path)
    arrays = _read_npz(path)
    missing = [key for key in ("X", "y") if key not in arrays]
    if missing:
        raise DataError(f"'{path}' holds the arrays {sorted(arrays) or '(none)'}; it needs 'X' (rows or images) "
                        f"and 'y' (one target per row): np.savez(path, X=X, y=y)")
    rows, shape = _npz_rows(path, arrays["X"])
    y = np.asarray(arrays["y"])
    if y.ndim != 1 or len(y) != len(rows):
        raise DataError(f"'{path}': y has shape {y.shape}, but X holds {len(rows)} rows; y needs one value per row")
    return _frame(rows, shape).assign(target=y), shape


def read_npz_features(path: str | Path) -> tuple[pd.DataFrame, tuple[int, int, int] | None]:
    """The ``X`` of a ``.npz`` file as rows (``y`` not needed), for predicting."""
    path = Path(path)
    arrays = _read_npz(path)
    if "X" not in arrays:
        raise DataError(f"'{path}' holds no array 'X'; save the rows or images to predict as np.savez(path, X=X)")
    rows, shape = _npz_rows(path, arrays["X"])
    return _frame(rows, shape), shape


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    if not path.is_file():
        raise DataError(f"data file '{path}' does not exist; check the path")
    try:
        with np.load(path, allow_pickle=False) as data:
            return {key: data[key] for key in data.files}
    except ValueError as exc:  # object arrays need pickle, which is refused
        raise DataError(f"'{path}' cannot be read without pickle ({exc}); save numeric arrays") from None
    except (OSError, EOFError) as exc:
        raise DataError(f"'{path}' is not a readable .npz file ({exc}); save it with np.savez") from None


def _npz_rows(path: Path, X: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int] | None]:
    if X.ndim < 2:
        raise DataError(f"'{path}': X has shape {X.shape}; it needs rows (N, features) or images (N, C, H, W)")
    if not np.issubdtype(X.dtype, np.number) or np.issubdtype(X.dtype, np.complexfloating):
        raise DataError(f"'{path}': X holds {X.dtype} values; it needs numbers")
    rows, shape = as_rows(X)
    rows = np.asarray(rows, dtype=np.float32 if np.issubdtype(rows.dtype, np.integer) else rows.dtype)
    if not np.isfinite(rows).all():
        bad = int(np.argwhere(~np.isfinite(rows))[0][0])
        raise DataError(f"'{path}': X row {bad} holds a NaN or infinite value; fix or drop it")
    return rows, shape


def read_image_folder(path: str | Path) -> tuple[pd.DataFrame, tuple[int, int, int]]:
    """The images of a folder with one sub-folder per class (the sub-folder's name is the
    label) as a frame of pixels with a ``target`` column, and their shape.

    Images are grayscale if all of them are, else RGB; images of another size than the most
    common one are resized to it. Pixels are scaled to [0, 1]. Needs Pillow. The whole folder
    is decoded into memory; :class:`regtune.data.torch_data.ImageFolderDataset` reads the same
    folder, decoded the same way, one image at a time.
    """
    files, labels = image_folder_files(path)
    rows, shape = read_images(files)
    return _frame(rows, shape).assign(target=labels), shape


def image_folder_files(path: str | Path) -> tuple[list[Path], list[str]]:
    """The image files of a folder of class sub-folders, in a stable order, and their labels
    (the sub-folder names)."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"image folder '{path}' does not exist or is not a folder; check the path")
    classes = sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = [(f, c.name) for c in classes for f in _image_files(c)]
    if not files:
        raise DataError(f"folder '{path}' holds no images in class sub-folders; lay it out as "
                        f"{path.name}/<label>/<image>.png (one sub-folder per class)")
    empty = [c.name for c in classes if not _image_files(c)]
    if empty:
        raise DataError(f"folder '{path}': the class sub-folder(s) {empty} hold no images "
                        f"({', '.join(IMAGE_SUFFIXES)}); add images or remove them")
    return [f for f, _ in files], [label for _, label in files]


def _image_files(folder: Path) -> list[Path]:
    return sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)


def image_files(path: str | Path) -> list[Path]:
    """The images in ``path`` or in its sub-folders, in a stable order (to predict a folder)."""
    path = Path(path)
    found = _image_files(path) + [f for c in sorted(p for p in path.iterdir() if p.is_dir()) for f in _image_files(c)]
    if not found:
        raise DataError(f"folder '{path}' holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return found


def read_images(files: list[Path]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """Image files as rows of pixels in [0, 1], and their common ``(C, H, W)``.

    Each image is scaled by the range of its own pixel type: 8-bit by 255, 16-bit (Pillow
    modes ``I;16*``, and ``I`` where it holds 16-bit values) by 65535; floating-point pixels
    (mode ``F``) must already lie in [0, 1]. Anything else is refused, naming the file and mode.
    """
    gray, size = image_layout(files)
    stack = np.stack([decode_image(f, gray, size) for f in files])
    return stack.reshape(len(stack), -1), tuple(int(d) for d in stack.shape[1:])  # type: ignore[return-value]


def image_layout(files: list[Path]) -> tuple[bool, tuple[int, int]]:
    """Whether every image is grayscale, and the most common ``(width, height)``: what
    :func:`decode_image` turns each image into. Reads the file headers only."""
    Image = _pillow()
    modes, sizes = [], Counter()
    for f in files:
        try:
            with Image.open(f) as image:  # lazy: the header, not the pixels
                modes.append(image.mode)
                sizes[image.size] += 1
        except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds; each means "not an image"
            raise DataError(f"'{f}' cannot be read as an image ({type(exc).__name__}: {exc}); remove it") from None
    return all(_is_gray_mode(mode) for mode in modes), sizes.most_common(1)[0][0]


def decode_image(f: Path, gray: bool, size: tuple[int, int]) -> np.ndarray:
    """One image file as float32 ``(C, H, W)`` in [0, 1]: one channel if ``gray``, else RGB
    (a grayscale image repeated three times), resized to ``size`` (bilinear) if it differs."""
    Image = _pillow()
    try:
        with Image.open(f) as opened:
            opened.load()
            image = opened.copy()
    except Exception as exc:  # noqa: BLE001 - Pillow raises many kinds; each means "not an image"
        raise DataError(f"'{f}' cannot be read as an image ({type(exc).__name__}: {exc}); remove it") from None
    if _is_gray_mode(image.mode):
        array = _gray_pixels(image, f)
        if image.size != size:
            array = np.asarray(Image.fromarray(array, mode="F").resize(size, Image.Resampling.BILINEAR))
        return array[None] if gray else np.repeat(array[None], 3, axis=0)
    image = image.convert("RGB")
    if image.size != size:
        image = image.resize(size, Image.Resampling.BILINEAR)
    return (np.asarray(image, dtype=np.float32) / 255.0).transpose(2, 0, 1)


def _pillow() -> Any:
    try:
        from PIL import Image
    except ImportError:
        raise DataError(_PILLOW_HINT) from None
    return Image


_UINT16_MAX = 65535


def _is_gray_mode(mode: str) -> bool:
    return mode in ("1", "L", "F") or mode.startswith("I")


def _gray_pixels(image: Any, path: Path) -> np.ndarray:
    """One grayscale image as float32 in [0, 1], scaled by the range of its pixel type."""
    array = np.asarray(image)
    if array.dtype == np.bool_ or array.dtype == np.uint8:
        return array.astype(np.float32) / (1.0 if array.dtype == np.bool_ else 255.0)
    if array.dtype.kind == "u":  # I;16, I;16B, I;16L, I;16N
        return (array.astype(np.float64) / np.iinfo(array.dtype).max).astype(np.float32)
    low, high = (array.min(), array.max()) if array.size else (0, 0)
    if array.dtype.kind == "i" and 0 <= low and high <= _UINT16_MAX:  # 16-bit values held as 32-bit (mode I)
        return (array.astype(np.float64) / _UINT16_MAX).astype(np.float32)
    if array.dtype.kind == "f" and np.isfinite(array).all() and 0 <= low and high <= 1:
        return array.astype(np.float32)
    what = "floating-point" if array.dtype.kind == "f" else f"{array.dtype.itemsize * 8}-bit integer"
    expected = "[0, 1]" if array.dtype.kind == "f" else f"0..{_UINT16_MAX}"
    raise DataError(f"'{path}' holds {what} pixels (Pillow mode '{image.mode}') from {low} to {high}, outside "
                    f"{expected}, so they cannot be scaled to [0, 1]; save it as an 8- or 16-bit image")

"""Clustering datasets from their original release files (no download): STL10 binaries (incl.
unlabelled), CIFAR10 and CIFAR100-20 python pickles, MNIST idx files (gz or not).

Every dataset is an ``ArrayDataset``: ``images`` uint8 (N, C, H, W) (numpy, memory-mapped for
STL10), ``labels`` int64 (N,) with -1 for unlabelled; ``ds[i]`` = (uint8 (C,H,W) tensor, int label).
Augmentation happens batched on the device (``transforms.ClusteringPairs``)."""
from __future__ import annotations

import gzip
import os
import pickle
import numpy as np
import torch
from torch.utils.data import ConcatDataset, Dataset

from ._common import DatasetError, corrupt, guarded, missing

#: CIFAR-100 fine label -> the 20 superclasses (the original's ``_cifar100_to_cifar20``).
CIFAR100_TO_20 = np.zeros(100, dtype=np.int64)
for _sup, _fines in enumerate(
    [(4, 30, 55, 72, 95), (1, 32, 67, 73, 91), (54, 62, 70, 82, 92), (9, 10, 16, 28, 61),
     (0, 51, 53, 57, 83), (22, 39, 40, 86, 87), (5, 20, 25, 84, 94), (6, 7, 14, 18, 24),
     (3, 42, 43, 88, 97), (12, 17, 37, 68, 76), (23, 33, 49, 60, 71), (15, 19, 21, 31, 38),
     (34, 63, 64, 66, 75), (26, 45, 77, 79, 99), (2, 11, 35, 46, 98), (27, 29, 44, 78, 93),
     (36, 50, 65, 74, 80), (47, 52, 56, 59, 96), (8, 13, 48, 58, 90), (41, 69, 81, 85, 89)]
):
    CIFAR100_TO_20[list(_fines)] = _sup


class ArrayDataset(Dataset):
    """Images (N, C, H, W) uint8 and labels (N,) int64 held as (possibly memory-mapped) arrays."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, gt_k: int) -> None:
        assert images.ndim == 4 and len(images) == len(labels)
        self.images, self.labels, self.gt_k = images, labels.astype(np.int64), gt_k

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(np.ascontiguousarray(self.images[index])), int(self.labels[index])


def _find_dir(root: str, subdir: str, probe: str) -> str:
    """``root/subdir`` if it holds ``probe``, else ``root`` (users may point at either)."""
    cand = os.path.join(root, subdir)
    return cand if os.path.exists(os.path.join(cand, probe)) else root


# ---------------------------------------------------------------- STL10
STL_LAYOUT = """  <root>/stl10_binary/ (or <root> itself) with
    train_X.bin, train_y.bin       5,000 labelled images, labels 1..10 (uint8)
    test_X.bin, test_y.bin         8,000 labelled images
    unlabeled_X.bin                100,000 unlabelled images
  each image is 3x96x96 uint8 stored column-major (as in the official release)"""


def _stl_images(path: str) -> np.ndarray:
    n_bytes = 3 * 96 * 96

    def read() -> np.ndarray:
        size = os.path.getsize(path)
        if size == 0 or size % n_bytes:
            raise ValueError(f"size {size} bytes is not a multiple of {n_bytes} (3x96x96)")
        mm = np.memmap(path, dtype=np.uint8, mode="r", shape=(size // n_bytes, 3, 96, 96))
        return mm.transpose(0, 1, 3, 2)  # column-major images -> (N, C, H, W) view

    return guarded("STL10", path, STL_LAYOUT, read)


def _stl_labels(path: str, n: int) -> np.ndarray:
    y = guarded("STL10", path, STL_LAYOUT, lambda: np.fromfile(path, dtype=np.uint8))
    if len(y) != n:
        raise corrupt("STL10", path, f"{len(y)} labels for {n} images", STL_LAYOUT)
    if len(y) and (y.min() < 1 or y.max() > 10):
        raise corrupt("STL10", path, f"labels in [{y.min()}, {y.max()}], expected 1..10", STL_LAYOUT)
    return y.astype(np.int64) - 1


def stl10(root: str, split: str = "train") -> Dataset:
    """STL10 split: "train" (5k), "test" (8k), "unlabeled" (100k, labels -1) or "train+unlabeled".

    Images (N, 3, 96, 96) uint8 memory-mapped; labels 0..9. "train+unlabeled" is a ConcatDataset."""
    d = _find_dir(root, "stl10_binary", "train_X.bin")
    if split == "train+unlabeled":
        # memory-mapped parts are not copied: a ConcatDataset indexes them lazily
        return ConcatDataset([stl10(root, "train"), stl10(root, "unlabeled")])
    if split not in ("train", "test", "unlabeled"):
        raise ValueError(f"STL10 split must be train/test/unlabeled/train+unlabeled, got {split!r}")
    x = _stl_images(os.path.join(d, f"{split}_X.bin"))
    if split == "unlabeled":
        y = np.full(len(x), -1, dtype=np.int64)
    else:
        y = _stl_labels(os.path.join(d, f"{split}_y.bin"), len(x))
    return ArrayDataset(x, y, 10)


# ---------------------------------------------------------------- CIFAR
CIFAR10_LAYOUT = """  <root>/cifar-10-batches-py/ (or <root> itself) with python pickles
    data_batch_1 .. data_batch_5, test_batch: dict b'data' uint8 (10000, 3072), b'labels' list"""
CIFAR100_LAYOUT = """  <root>/cifar-100-python/ (or <root> itself) with python pickles
    train, test: dict b'data' uint8 (N, 3072), b'fine_labels' list (0..99)"""


def _cifar_pickle(path: str, label_key: str, name: str, layout: str) -> tuple[np.ndarray, np.ndarray]:
    def read() -> tuple[np.ndarray, np.ndarray]:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="bytes")
        d = {(k.decode() if isinstance(k, bytes) else k): v for k, v in d.items()}
        if "data" not in d or label_key not in d:
            raise KeyError(f"expected keys 'data' and '{label_key}', found {sorted(d)}")
        x = np.asarray(d["data"], dtype=np.uint8)
        y = np.asarray(d[label_key], dtype=np.int64)
        if x.ndim != 2 or x.shape[1] != 3072 or len(x) != len(y):
            raise ValueError(f"data shape {x.shape} / {len(y)} labels, expected (N, 3072) / N")
        return x.reshape(-1, 3, 32, 32), y

    return guarded(name, path, layout, read)


def cifar10(root: str, split: str = "train") -> ArrayDataset:
    """CIFAR10 "train" (50k) or "test" (10k): images (N, 3, 32, 32) uint8, labels 0..9."""
    d = _find_dir(root, "cifar-10-batches-py", "test_batch")
    names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
    if split not in ("train", "test"):
        raise ValueError(f"CIFAR10 split must be train/test, got {split!r}")
    parts = [_cifar_pickle(os.path.join(d, n), "labels", "CIFAR10", CIFAR10_LAYOUT) for n in names]
    x, y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    if y.min() < 0 or y.max() > 9:
        raise corrupt("CIFAR10", d, f"labels in [{y.min()}, {y.max()}]", CIFAR10_LAYOUT)
    return ArrayDataset(x, y, 10)


def cifar100_20(root: str, split: str = "train") -> ArrayDataset:
    """CIFAR100-20 "train" or "test": fine labels mapped to the 20 superclasses (``CIFAR100_TO_20``)."""
    if split not in ("train", "test"):
        raise ValueError(f"CIFAR100 split must be train/test, got {split!r}")
    d = _find_dir(root, "cifar-100-python", "test")
    path = os.path.join(d, split)
    x, fine = _cifar_pickle(path, "fine_labels", "CIFAR100", CIFAR100_LAYOUT)
    if fine.min() < 0 or fine.max() > 99:
        raise corrupt("CIFAR100", path, f"fine labels in [{fine.min()}, {fine.max()}]", CIFAR100_LAYOUT)
    return ArrayDataset(x, CIFAR100_TO_20[fine], 20)


# ---------------------------------------------------------------- MNIST
MNIST_LAYOUT = """  <root>/ (or <root>/MNIST/raw/ or <root>/raw/) with idx files, optionally .gz:
    train-images-idx3-ubyte, train-labels-idx1-ubyte    60,000 images 28x28
    t10k-images-idx3-ubyte,  t10k-labels-idx1-ubyte     10,000 images"""


def _read_idx(path: str) -> np.ndarray:
    def read() -> np.ndarray:
        opener = gzip.open if path.endswith(".gz") else open
        with opener(path, "rb") as f:
            raw = f.read()
        if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
            raise ValueError("bad idx magic (expected 0x0000 08 <ndim> for uint8 data)")
        ndim = raw[3]
        dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
        off = 4 + 4 * ndim
        if len(raw) - off != int(np.prod(dims)):
            raise ValueError(f"{len(raw) - off} data bytes for dims {dims}")
        return np.frombuffer(raw, dtype=np.uint8, offset=off).reshape(dims).copy()  # writable

    return guarded("MNIST", path, MNIST_LAYOUT, read)


def _mnist_file(root: str, stem: str) -> str:
    for d in (root, os.path.join(root, "MNIST", "raw"), os.path.join(root, "raw")):
        for ext in ("", ".gz"):
            p = os.path.join(d, stem + ext)
            if os.path.exists(p):
                return p
    raise missing("MNIST", os.path.join(root, stem + "[.gz]"), MNIST_LAYOUT)


def mnist(root: str, split: str = "train") -> ArrayDataset:
    """MNIST "train" (60k) or "test" (10k): images (N, 1, 28, 28) uint8, labels 0..9."""
    if split not in ("train", "test"):
        raise ValueError(f"MNIST split must be train/test, got {split!r}")
    pre = "train" if split == "train" else "t10k"
    xp, yp = _mnist_file(root, f"{pre}-images-idx3-ubyte"), _mnist_file(root, f"{pre}-labels-idx1-ubyte")
    x, y = _read_idx(xp), _read_idx(yp)
    if x.ndim != 3:
        raise corrupt("MNIST", xp, f"images have {x.ndim} dims, expected 3 (N, 28, 28)", MNIST_LAYOUT)
    if y.ndim != 1 or len(y) != len(x):
        raise corrupt("MNIST", yp, f"{len(y)} labels for {len(x)} images", MNIST_LAYOUT)
    if len(y) and y.max() > 9:
        raise corrupt("MNIST", yp, f"label {y.max()} > 9", MNIST_LAYOUT)
    return ArrayDataset(x[:, None], y.astype(np.int64), 10)


# ---------------------------------------------------------------- partitions
_READERS = {"stl10": stl10, "cifar10": cifar10, "cifar100_20": cifar100_20, "mnist": mnist}


def clustering_partitions(
    name: str, root: str, mode: str = "iid", *, leave_out_unlabelled: bool = False
) -> dict[str, Dataset]:
    """The paper's partitions as ``{"train_a", "train_b", "assign", "test"}`` datasets.

    name: "stl10" | "cifar10" | "cifar100_20" | "mnist". mode "iid": train, assign and test on
    train + test (STL10 head A additionally on the 100k unlabelled unless
    ``leave_out_unlabelled``); mode "iid+": train on train (STL10: train+unlabeled), assign on
    train, test on test. train_a feeds the overclustering head A, train_b the main head B."""
    if name not in _READERS:
        raise ValueError(f"unknown clustering dataset {name!r}; choose from {sorted(_READERS)}")
    read = _READERS[name]
    train, test = read(root, "train"), read(root, "test")
    if mode == "iid":
        both = ConcatDataset([train, test])
        a = both
        if name == "stl10" and not leave_out_unlabelled:
            a = ConcatDataset([train, read(root, "unlabeled"), test])
        return {"train_a": a, "train_b": both, "assign": both, "test": both}
    if mode in ("iid+", "iid_plus"):
        tr: Dataset = train
        if name == "stl10":
            tr = ConcatDataset([train, read(root, "unlabeled")])
        return {"train_a": tr, "train_b": tr, "assign": train, "test": test}
    raise ValueError(f"mode must be 'iid' or 'iid+', got {mode!r}")


__all__ = [
    "ArrayDataset", "CIFAR100_TO_20", "DatasetError", "cifar10", "cifar100_20", "clustering_partitions",
    "mnist", "stl10",
]

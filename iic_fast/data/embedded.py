"""Embedded real data that needs no files: Textures-3 (segmentation) and Digits (clustering).

* **Textures-3**: grey mosaics with per-pixel ground truth, cut from the real brick (0), grass (1)
  and gravel (2) photographs bundled in scikit-image (512x512 each). Train mosaics take texture
  from rows [0, 384) of each photograph, test mosaics from the disjoint rows [384, 512). Each
  photograph is normalised to the same mean and standard deviation, so grey level alone separates
  the classes poorly and a network must use texture (e.g. via the Sobel channels).
* **Digits**: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes), with a
  seeded, stratified train/test split.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np
import torch

TEXTURE_NAMES = ("brick", "grass", "gravel")
_PHOTO_SIDE = 512
_TRAIN_ROWS = 384  # rows [0, 384) train, [384, 512) test: disjoint texture sources
_MEAN, _STD = 0.5, 0.16  # common grey statistics of every photograph after normalisation


@lru_cache(maxsize=1)
def _photographs() -> np.ndarray:
    """(3, 512, 512) float32 photographs, each normalised to mean 0.5 / std 0.16, clipped to [0, 1]."""
    import skimage.data  # lazy: only Textures-3 needs scikit-image

    out = []
    for name in TEXTURE_NAMES:
        img = np.asarray(getattr(skimage.data, name)(), dtype=np.float64)
        if img.ndim == 3:  # defensive: future releases might ship RGB
            img = img[..., :3] @ np.array([0.299, 0.587, 0.114])
        img = (img - img.mean()) / (img.std() + 1e-8) * _STD + _MEAN
        out.append(np.clip(img, 0.0, 1.0).astype(np.float32))
    return np.stack(out)


def _voronoi_labels(rng: np.random.Generator, size: int, cells: tuple[int, int]) -> np.ndarray:
    """(size, size) int64 class map: Voronoi cells of random seeds, each cell one random class.

    The first three cells get a permutation of the three classes so every mosaic has all three
    whenever it has >= 3 cells."""
    n = int(rng.integers(cells[0], cells[1] + 1))
    seeds = rng.uniform(0, size, size=(n, 2))
    cls = rng.integers(0, 3, size=n)
    k = min(n, 3)
    cls[:k] = rng.permutation(3)[:k]
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
    d2 = (yy[None] - seeds[:, 0, None, None]) ** 2 + (xx[None] - seeds[:, 1, None, None]) ** 2
    return cls[np.argmin(d2, axis=0)].astype(np.int64)


def textures3(
    split: str = "train",
    n_images: int = 512,
    size: int = 64,
    seed: int = 0,
    cells: tuple[int, int] = (3, 7),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Textures-3 mosaics.

    Args:
        split: "train" (texture from rows [0, 384) of each photograph) or "test" (rows [384, 512)).
        n_images: number of mosaics N.
        size: mosaic side H = W (at most 128, the height of the test part).
        seed: the same (split, n_images, size, seed, cells) always gives the same mosaics; train and
            test draw from different streams even with the same seed.
        cells: inclusive range of the number of Voronoi cells per mosaic.

    Returns:
        images float32 (N, 1, H, W) in [0, 1]; labels int64 (N, H, W) in {0 brick, 1 grass, 2 gravel}.
    """
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    r0, r1 = (0, _TRAIN_ROWS) if split == "train" else (_TRAIN_ROWS, _PHOTO_SIDE)
    if not 1 <= size <= r1 - r0:
        raise ValueError(f"size must be in [1, {r1 - r0}] for split {split!r}, got {size}")
    if not 1 <= cells[0] <= cells[1]:
        raise ValueError(f"cells must be a range (lo, hi) with 1 <= lo <= hi, got {cells}")
    photos = _photographs()[:, r0:r1]
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0 if split == "train" else 1, 0x7E57])
    images = np.empty((n_images, 1, size, size), dtype=np.float32)
    labels = np.empty((n_images, size, size), dtype=np.int64)
    ph, pw = photos.shape[1:]
    for i in range(n_images):
        lab = _voronoi_labels(rng, size, cells)
        img = np.empty((size, size), dtype=np.float32)
        for c in range(3):
            y0, x0 = int(rng.integers(0, ph - size + 1)), int(rng.integers(0, pw - size + 1))
            patch = photos[c, y0 : y0 + size, x0 : x0 + size]
            if rng.random() < 0.5:  # mirror flips keep each texture's orientation statistics
                patch = patch[:, ::-1]
            if rng.random() < 0.5:
                patch = patch[::-1, :]
            sel = lab == c
            img[sel] = patch[sel]
        images[i, 0], labels[i] = img, lab
    return torch.from_numpy(images), torch.from_numpy(labels)


@lru_cache(maxsize=1)
def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    d = load_digits()
    return d.images, d.target


def digits(split: str = "train", seed: int = 0, test_fraction: float = 0.25) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits with a seeded, stratified split.

    Args:
        split: "train", "test" or "all" (all 1797 images in the original order).
        seed: split seed; the same seed always gives the same split.
        test_fraction: fraction of images in the test split.

    Returns:
        images float32 (N, 1, 8, 8) in [0, 1] (pixel values / 16); labels int64 (N,) in 0..9.
    """
    from sklearn.model_selection import train_test_split  # lazy: only Digits needs scikit-learn

    images, target = _digits_arrays()
    x = torch.from_numpy((images / 16.0).astype(np.float32))[:, None]
    y = torch.from_numpy(target.astype(np.int64))
    if split == "all":
        return x, y
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    idx_tr, idx_te = train_test_split(
        np.arange(len(y)), test_size=test_fraction, random_state=seed, stratify=target
    )
    idx = torch.from_numpy(np.sort(idx_tr if split == "train" else idx_te))
    return x[idx], y[idx]

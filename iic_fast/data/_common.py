"""Shared helpers for the dataset readers: errors that name the file and the expected layout,
list files, per-sample seeded RNG and pad-and-crop on numpy arrays (CPU, worker side)."""
from __future__ import annotations

import os
from typing import Callable, Sequence, TypeVar

import numpy as np

T = TypeVar("T")


class DatasetError(ValueError):
    """A dataset root is missing, incomplete or holds a corrupt file.

    The message names the offending file and describes the expected on-disk layout."""


class DatasetFileNotFoundError(DatasetError, FileNotFoundError):
    """A required file or folder is missing (catchable as DatasetError or FileNotFoundError)."""


def missing(dataset: str, path: str, layout: str) -> DatasetFileNotFoundError:
    """Build the error for a missing file ``path`` of ``dataset``."""
    return DatasetFileNotFoundError(
        f"{dataset}: missing file or folder '{path}'.\nExpected layout:\n{layout}"
    )


def corrupt(dataset: str, path: str, reason: str, layout: str) -> DatasetError:
    """Build the error for an unreadable or malformed file ``path`` of ``dataset``."""
    return DatasetError(
        f"{dataset}: corrupt or unexpected file '{path}': {reason}.\nExpected layout:\n{layout}"
    )


def require(dataset: str, path: str, layout: str) -> str:
    """Return ``path`` if it exists, else raise the named missing-file error."""
    if not os.path.exists(path):
        raise missing(dataset, path, layout)
    return path


def read_list(dataset: str, path: str, layout: str) -> list[str]:
    """Read a list file with one id per line (blank lines ignored)."""
    require(dataset, path, layout)
    try:
        with open(path, "r", encoding="utf-8") as f:
            ids = [line.strip() for line in f]
    except (OSError, UnicodeDecodeError) as e:
        raise corrupt(dataset, path, f"cannot read list ({e})", layout) from e
    return [i for i in ids if i]


def guarded(dataset: str, path: str, layout: str, fn: Callable[[], T]) -> T:
    """Run a file reader ``fn``, turning any failure into a DatasetError naming ``path``."""
    if not os.path.exists(path):
        raise missing(dataset, path, layout)
    try:
        return fn()
    except DatasetError:
        raise
    except Exception as e:  # readers raise many types (ValueError, OSError, struct.error, ...)
        raise corrupt(dataset, path, f"{type(e).__name__}: {e}", layout) from e


def sample_rng(seed: int, epoch: int, index: int) -> np.random.Generator:
    """Per-sample RNG: the same crop for (seed, epoch, index) whatever the worker count."""
    return np.random.default_rng([int(seed) & 0xFFFFFFFF, int(epoch), int(index)])


def pad_and_crop(
    arrays: Sequence[np.ndarray],
    fills: Sequence[float | int],
    size: int,
    mode: str,
    rng: np.random.Generator | None = None,
) -> list[np.ndarray]:
    """Crop (and zero/fill-pad when too small) several (H, W, ...) arrays at the same place.

    Args:
        arrays: arrays sharing H, W in their first two dims.
        fills: padding value per array (e.g. 0 for images, -1 for labels).
        size: output side S; outputs are (S, S, ...).
        mode: "random" (uniform window, needs ``rng``) or "center".
    """
    h, w = arrays[0].shape[:2]
    ph, pw = max(size - h, 0), max(size - w, 0)
    if ph or pw:
        # pad symmetrically so a centre crop stays centred
        out = []
        for a, f in zip(arrays, fills):
            pad = [(ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2)] + [(0, 0)] * (a.ndim - 2)
            out.append(np.pad(a, pad, mode="constant", constant_values=f))
        arrays = out
        h, w = arrays[0].shape[:2]
    if mode == "random":
        assert rng is not None, "random crop needs an rng"
        y0 = int(rng.integers(0, h - size + 1))
        x0 = int(rng.integers(0, w - size + 1))
    elif mode == "center":
        y0, x0 = (h - size) // 2, (w - size) // 2
    else:
        raise ValueError(f"crop mode must be 'random' or 'center', got {mode!r}")
    return [np.ascontiguousarray(a[y0 : y0 + size, x0 : x0 + size]) for a in arrays]


class EpochMixin:
    """Datasets whose worker-side crops depend on (seed, epoch, index).

    Call ``set_epoch(e)`` before each epoch (``loaders.set_epoch`` does it for a loader); workers
    are re-created per epoch (non-persistent), so they see the new value."""

    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


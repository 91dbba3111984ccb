"""Potsdam / Potsdam-3 from the authors' released ``.mat`` patches (no download).

Samples are ``(img, label, mask)``: img uint8 (4, S, S) channels R, G, B, IR; label int64 (S, S)
(0..5, or 0..2 with the 6 -> 3 merge, -1 where unlabelled or padded); mask bool (S, S), True on
real pixels (the original's mask is all ones; padding only occurs when S > 200)."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import scipy.io
import torch
from torch.utils.data import Dataset

from ._common import EpochMixin, corrupt, guarded, missing, pad_and_crop, read_list, require, sample_rng

NAME = "Potsdam"
LAYOUT = """  <root>/imgs/<id>.mat          key 'img': uint8 (200, 200, 4), channels R, G, B, IR
  <root>/gt/<id>.mat            key 'gt' : int (200, 200), values 0..5 (labelled patches only)
  <root>/unlabelled_train.txt   one integer id per line (3150 ids in the release)
  <root>/labelled_train.txt     (4545 ids)
  <root>/labelled_test.txt      (855 ids)
(the authors' Potsdam.tar.gz; 'debugged.out' is not needed here)"""

LIST_NAMES = ("unlabelled_train", "labelled_train", "labelled_test")

#: 6 ISPRS classes: roads, building, low vegetation, tree, car, clutter.
POTSDAM6_NAMES = ("roads", "buildings", "low_vegetation", "trees", "cars", "clutter")
#: Potsdam-3 merge {0,4}->0 roads+cars, {1,5}->1 buildings+clutter, {2,3}->2 vegetation+trees.
POTSDAM_6_TO_3 = np.array([0, 1, 2, 2, 0, 1], dtype=np.int64)
POTSDAM3_NAMES = ("roads_and_cars", "buildings_and_clutter", "vegetation_and_trees")

#: The label colours of the ISPRS ``*_label.tif`` tiles (RGB -> index), for reference/rendering.
POTSDAM_COLOURS = ((255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0))


def map_potsdam_labels(gt: np.ndarray, coarse: bool) -> np.ndarray:
    """Map raw 0..5 labels (any shape) to int64, merged to 0..2 when ``coarse``; -1 stays -1."""
    gt = gt.astype(np.int64)
    if not coarse:
        return gt
    out = np.full(gt.shape, -1, dtype=np.int64)
    valid = gt >= 0
    out[valid] = POTSDAM_6_TO_3[gt[valid]]
    return out


def _load_mat(path: str, key: str) -> np.ndarray:
    def read() -> np.ndarray:
        d = scipy.io.loadmat(path)
        if key not in d:
            raise KeyError(f"no key '{key}' (keys: {sorted(k for k in d if not k.startswith('__'))})")
        return np.asarray(d[key])

    return guarded(NAME, path, LAYOUT, read)


class Potsdam(EpochMixin, Dataset):
    """Potsdam patches listed in one or more of the release's split lists.

    Args:
        root: folder with ``imgs/``, ``gt/`` and the three list files (see ``LAYOUT``).
        lists: list names among ``LIST_NAMES`` whose ids are concatenated in order.
        coarse: True for Potsdam-3 (gt_k 3), False for Potsdam-6.
        size: output side S (200 = whole patch, as in the paper).
        crop: "random" (training) or "center" (evaluation).
        seed: seeds the per-sample random crops (with the epoch and index).
        require_labels: raise if a listed patch has no ``gt/<id>.mat`` (for assign/test sets).

    ``__getitem__`` returns ``(img uint8 (4,S,S), label int64 (S,S), mask bool (S,S))``.
    """

    def __init__(
        self,
        root: str,
        lists: Sequence[str] = LIST_NAMES,
        *,
        coarse: bool = True,
        size: int = 200,
        crop: str = "random",
        seed: int = 0,
        require_labels: bool = False,
    ) -> None:
        self.root, self.coarse, self.size, self.crop, self.seed = root, coarse, int(size), crop, seed
        self.gt_k = 3 if coarse else 6
        require(NAME, root, LAYOUT)
        for sub in ("imgs", "gt"):
            require(NAME, os.path.join(root, sub), LAYOUT)
        self.ids: list[str] = []
        for name in lists:
            if name not in LIST_NAMES:
                raise ValueError(f"unknown Potsdam list {name!r}; choose from {LIST_NAMES}")
            self.ids += read_list(NAME, os.path.join(root, name + ".txt"), LAYOUT)
        if not self.ids:
            raise corrupt(NAME, os.path.join(root, lists[0] + ".txt"), "the lists are empty", LAYOUT)
        self.has_gt = []
        for i in self.ids:
            require(NAME, self._img_path(i), LAYOUT)
            has = os.path.exists(self._gt_path(i))
            if require_labels and not has:
                raise missing(NAME, self._gt_path(i), LAYOUT)
            self.has_gt.append(has)
        # read one sample now so a wrong format fails at construction, not in a worker
        self._read(0)

    def _img_path(self, i: str) -> str:
        return os.path.join(self.root, "imgs", i + ".mat")

    def _gt_path(self, i: str) -> str:
        return os.path.join(self.root, "gt", i + ".mat")

    def __len__(self) -> int:
        return len(self.ids)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        pid = self.ids[index]
        path = self._img_path(pid)
        img = _load_mat(path, "img")
        if img.ndim != 3 or img.shape[2] != 4:
            raise corrupt(NAME, path, f"'img' has shape {img.shape}, expected (H, W, 4)", LAYOUT)
        if img.dtype != np.uint8:
            img = np.clip(img, 0, 255).astype(np.uint8)
        if self.has_gt[index]:
            gpath = self._gt_path(pid)
            gt = _load_mat(gpath, "gt")
            if gt.shape != img.shape[:2]:
                raise corrupt(NAME, gpath, f"'gt' has shape {gt.shape}, expected {img.shape[:2]}", LAYOUT)
            if gt.min() < 0 or gt.max() > 5:
                raise corrupt(NAME, gpath, f"'gt' values in [{gt.min()}, {gt.max()}], expected 0..5", LAYOUT)
            label = map_potsdam_labels(gt, self.coarse)
        else:
            label = np.full(img.shape[:2], -1, dtype=np.int64)
        return img, label

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img, label = self._read(index)
        valid = np.ones(img.shape[:2], dtype=bool)
        rng = sample_rng(self.seed, self.epoch, index) if self.crop == "random" else None
        img, label, valid = pad_and_crop([img, label, valid], [0, -1, False], self.size, self.crop, rng)
        return (
            torch.from_numpy(img).permute(2, 0, 1).contiguous(),
            torch.from_numpy(label),
            torch.from_numpy(valid),
        )


def potsdam_partitions(
    root: str, mode: str = "iid", *, coarse: bool = True, size: int = 200, seed: int = 0
) -> dict[str, Potsdam]:
    """The paper's partitions: ``{"train", "assign", "test"}`` datasets.

    mode "iid" (fully unsupervised, transductive): train on all 8550 patches, assign and test on
    labelled_train + labelled_test. mode "iid+" (semi-supervised overclustering): train on
    unlabelled_train + labelled_train, assign on labelled_train, test on labelled_test.
    Train uses random crops, assign/test centre crops."""
    kw = dict(coarse=coarse, size=size, seed=seed)
    if mode == "iid":
        train = LIST_NAMES
        assign = test = ("labelled_train", "labelled_test")
    elif mode in ("iid+", "iid_plus"):
        train, assign, test = ("unlabelled_train", "labelled_train"), ("labelled_train",), ("labelled_test",)
    else:
        raise ValueError(f"mode must be 'iid' or 'iid+', got {mode!r}")
    return {
        "train": Potsdam(root, train, crop="random", **kw),
        "assign": Potsdam(root, assign, crop="center", require_labels=True, **kw),
        "test": Potsdam(root, test, crop="center", require_labels=True, **kw),
    }

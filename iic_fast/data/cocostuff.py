"""COCO-Stuff-3 / COCO-Stuff-15 from COCO 2017 images, COCO-Stuff 164k annotation PNGs and the
authors' curated lists (no download).

Samples are ``(img, label, mask)``: img uint8 (3, S, S); label int64 (S, S) in 0..k-1, -1 on
masked pixels (things, other stuff, unlabelled, padding); mask bool (S, S) = label >= 0 (the
original also uses this mask in the training loss)."""
from __future__ import annotations

import os
import pickle
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ._common import EpochMixin, corrupt, guarded, pad_and_crop, read_list, require, sample_rng
from .cocostuff_labels import FINE_TO_COARSE, STUFF3_NAMES, STUFF15_NAMES, fine_to_target_table

NAME = "COCO-Stuff"
LAYOUT = """  <root>/images/{train2017,val2017}/<id>.jpg        COCO 2017 images
  <root>/annotations/{train2017,val2017}/<id>.png   COCO-Stuff 164k stuffthingmaps: one channel,
                                                    fine labels 0..181, 255 = unlabelled
  <root>/curated/{train2017,val2017}/<list>.txt     curated ids, one per line, e.g. 000000000139
     COCO-Stuff-3 : Coco164kFew_Stuff_6.txt   (v6: 35,228 train + 1,432 val)
     COCO-Stuff-15: Coco164kFull_Stuff_Coarse_7.txt   (v7: 49,629 train + 2,175 val)"""

SPLITS = ("train2017", "val2017")


def curated_list_name(classes: int, version: int | None = None) -> str:
    """File stem of the curated list: 3 -> Coco164kFew_Stuff_<v=6>, 15 -> Coco164kFull_Stuff_Coarse_<v=7>."""
    if classes == 3:
        return f"Coco164kFew_Stuff_{6 if version is None else version}"
    if classes == 15:
        return f"Coco164kFull_Stuff_Coarse_{7 if version is None else version}"
    raise ValueError(f"COCO-Stuff classes must be 3 or 15, got {classes}")


def load_fine_to_coarse_pickle(path: str) -> np.ndarray:
    """Read the original ``fine_to_coarse_dict.pickle`` (key ``fine_index_to_coarse_index``) as (182,) int64.

    Optional: the built-in ``FINE_TO_COARSE`` equals it; use this to check or override."""

    def read() -> np.ndarray:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")  # written by Python 2
        m = d["fine_index_to_coarse_index"] if "fine_index_to_coarse_index" in d else d
        return np.array([int(m[i]) for i in range(182)], dtype=np.int64)

    return guarded(NAME, path, "  fine_to_coarse_dict.pickle from the original repo", read)


class CocoStuff(EpochMixin, Dataset):
    """Curated COCO-Stuff-3 (``classes=3``) or COCO-Stuff-15 (``classes=15``).

    Args:
        root: folder with ``images/``, ``annotations/``, ``curated/`` (see ``LAYOUT``).
        splits: any of "train2017", "val2017" (IID uses both, IID+ trains/assigns on train2017
            and tests on val2017).
        classes: 3 or 15.
        version: curated list version (default 6 for 3 classes, 7 for 15).
        prescale: resize factor applied first (0.33 in the paper; 1.0 = none). Bilinear without
            antialias for the image (like cv2 INTER_LINEAR), nearest for the label.
        size: crop side S (128 in the paper); too-small images are padded (masked).
        crop: "random" (training) or "center" (evaluation).
        channel_order: "rgb", or "bgr" to reproduce the original's cv2 channel order.
        seed: seeds the per-sample random crops (with the epoch and index).
        fine_to_coarse: optional (182,) table overriding the built-in mapping.

    ``__getitem__`` returns ``(img uint8 (3,S,S), label int64 (S,S), mask bool (S,S))``.
    """

    def __init__(
        self,
        root: str,
        splits: Sequence[str] = SPLITS,
        *,
        classes: int = 3,
        version: int | None = None,
        prescale: float = 0.33,
        size: int = 128,
        crop: str = "random",
        channel_order: str = "rgb",
        seed: int = 0,
        fine_to_coarse: np.ndarray | None = None,
    ) -> None:
        if channel_order not in ("rgb", "bgr"):
            raise ValueError("channel_order must be 'rgb' or 'bgr'")
        self.root, self.classes, self.prescale, self.size = root, int(classes), float(prescale), int(size)
        self.crop, self.channel_order, self.seed = crop, channel_order, seed
        self.gt_k = self.classes
        self.class_names = STUFF3_NAMES if self.classes == 3 else STUFF15_NAMES
        table = FINE_TO_COARSE if fine_to_coarse is None else np.asarray(fine_to_coarse)
        self.lut = fine_to_target_table(self.classes, table)
        self.list_name = curated_list_name(self.classes, version)
        require(NAME, root, LAYOUT)
        self.items: list[tuple[str, str]] = []
        for split in splits:
            if split not in SPLITS:
                raise ValueError(f"unknown COCO split {split!r}; choose from {SPLITS}")
            for sub in ("images", "annotations"):
                require(NAME, os.path.join(root, sub, split), LAYOUT)
            ids = read_list(NAME, os.path.join(root, "curated", split, self.list_name + ".txt"), LAYOUT)
            self.items += [(split, i) for i in ids]
        if not self.items:
            raise corrupt(NAME, os.path.join(root, "curated"), f"no ids in {self.list_name}.txt", LAYOUT)
        for split, i in self.items:
            require(NAME, self._img_path(split, i), LAYOUT)
            require(NAME, self._label_path(split, i), LAYOUT)
        self._read(0)  # fail early on a wrong format

    def _img_path(self, split: str, i: str) -> str:
        return os.path.join(self.root, "images", split, i + ".jpg")

    def _label_path(self, split: str, i: str) -> str:
        return os.path.join(self.root, "annotations", split, i + ".png")

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        split, iid = self.items[index]
        ipath, lpath = self._img_path(split, iid), self._label_path(split, iid)

        def read_img() -> np.ndarray:
            with Image.open(ipath) as im:
                return np.array(im.convert("RGB"))  # writable copy for torch

        def read_label() -> np.ndarray:
            with Image.open(lpath) as im:
                if im.mode not in ("L", "P", "I", "I;16"):
                    raise ValueError(f"label PNG has mode {im.mode}, expected one channel (L)")
                return np.asarray(im).astype(np.int64)

        img = guarded(NAME, ipath, LAYOUT, read_img)
        fine = guarded(NAME, lpath, LAYOUT, read_label)
        if fine.shape != img.shape[:2]:
            raise corrupt(NAME, lpath, f"label {fine.shape} does not match image {img.shape[:2]}", LAYOUT)
        if fine.min() < 0 or fine.max() > 255:
            raise corrupt(NAME, lpath, "label values outside 0..255", LAYOUT)
        if self.channel_order == "bgr":
            img = img[:, :, ::-1]
        return img, fine

    def _prescale(self, img: np.ndarray, fine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = fine.shape
        oh, ow = max(1, int(round(h * self.prescale))), max(1, int(round(w * self.prescale)))
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(oh, ow), mode="bilinear", align_corners=False, antialias=False)
        # truncation to uint8 as in the original (float -> astype(uint8))
        img = t[0].permute(1, 2, 0).clamp_(0, 255).to(torch.uint8).numpy()
        lab = torch.from_numpy(fine)[None, None].float()
        fine = F.interpolate(lab, size=(oh, ow), mode="nearest")[0, 0].long().numpy()
        return img, fine

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img, fine = self._read(index)
        if self.prescale != 1.0:
            img, fine = self._prescale(img, fine)
        label = self.lut[fine]  # fine/255 -> target, masked -> -1
        rng = sample_rng(self.seed, self.epoch, index) if self.crop == "random" else None
        img, label = pad_and_crop([img, label], [0, -1], self.size, self.crop, rng)
        return (
            torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous(),
            torch.from_numpy(label),
            torch.from_numpy(label >= 0),
        )


def cocostuff_partitions(
    root: str, classes: int = 3, mode: str = "iid", *, seed: int = 0, **kwargs
) -> dict[str, CocoStuff]:
    """The paper's partitions: ``{"train", "assign", "test"}`` datasets.

    mode "iid": train, assign and test all on train2017 + val2017 curated lists (transductive).
    mode "iid+": train and assign on train2017, test on val2017. Extra kwargs go to CocoStuff."""
    if mode == "iid":
        tr = ass = te = SPLITS
    elif mode in ("iid+", "iid_plus"):
        tr, ass, te = ("train2017",), ("train2017",), ("val2017",)
    else:
        raise ValueError(f"mode must be 'iid' or 'iid+', got {mode!r}")
    kw = dict(classes=classes, seed=seed, **kwargs)
    return {
        "train": CocoStuff(root, tr, crop="random", **kw),
        "assign": CocoStuff(root, ass, crop="center", **kw),
        "test": CocoStuff(root, te, crop="center", **kw),
    }

"""COCO-Stuff-3 / -15 (IIC) and COCO-Stuff-27 (PiCIE, STEGO) from COCO 2017 images, COCO-Stuff 164k
annotation PNGs and the authors' curated lists (no download).

Samples are ``(img, label, mask)``: img uint8 (3, S, S); label int64 (S, S) in 0..k-1, -1 on
masked pixels (things or other stuff for 3 / 15 classes, unlabelled, padding); mask bool (S, S) =
label >= 0 (the original also uses this mask in the training loss). COCO-Stuff-3 can reproduce the
original's unlabelled-as-sky labels (``unlabelled_as_sky``, see ``fine_to_target_table``).

COCO-Stuff-27 follows github.com/mhamilton723/STEGO ``src/data.py`` (``Coco`` with
``coarse_labels=False, exclude_things=False``: the 27 coarse categories of ``fine_to_coarse``, equal
to our ``FINE_TO_COARSE``; 255 -> ignored) and github.com/janghyuncho/PiCIE
``data/coco_eval_dataset.py``: training images from ``curated/train2017/Coco164kFull_Stuff_Coarse.txt``,
evaluation on ``curated/val2017/Coco164kFull_Stuff_Coarse_7.txt`` (IIC's curated lists, which PiCIE
re-hosts under ``curated/``)."""
from __future__ import annotations

import os
import pickle
from typing import Sequence

import numpy as np

from ._common import corrupt, guarded, read_list, require
from ._segfiles import LabelPngDataset
from .cocostuff_labels import CLASS_NAMES, FINE_TO_COARSE, fine_to_target_table

NAME = "COCO-Stuff"
LAYOUT = """  <root>/images/{train2017,val2017}/<id>.jpg        COCO 2017 images
  <root>/annotations/{train2017,val2017}/<id>.png   COCO-Stuff 164k stuffthingmaps: one channel,
                                                    fine labels 0..181, 255 = unlabelled
  <root>/curated/{train2017,val2017}/<list>.txt     curated ids, one per line, e.g. 000000000139
     COCO-Stuff-3 : Coco164kFew_Stuff_6.txt   (v6: 35,228 train + 1,432 val)
     COCO-Stuff-15: Coco164kFull_Stuff_Coarse_7.txt   (v7: 49,629 train + 2,175 val)
     COCO-Stuff-27: Coco164kFull_Stuff_Coarse.txt (train2017) and Coco164kFull_Stuff_Coarse_7.txt (val2017)"""

SPLITS = ("train2017", "val2017")
#: Keyword arguments of ``cocostuff_partitions`` that a training config may set (``dataset_options``).
OPTIONS = ("version", "prescale", "short_side", "channel_order", "unlabelled_as_sky", "fine_to_coarse", "eval_size")


def curated_list_name(classes: int, version: int | None = None) -> str:
    """File stem of the curated list: 3 -> Coco164kFew_Stuff_<v=6>, 15 -> Coco164kFull_Stuff_Coarse_<v=7>,
    27 -> Coco164kFull_Stuff_Coarse_<v=7> (the evaluation list of PiCIE / STEGO; version 0 gives the
    unsuffixed Coco164kFull_Stuff_Coarse, their training list)."""
    if classes == 3:
        return f"Coco164kFew_Stuff_{6 if version is None else version}"
    if classes in (15, 27):
        v = 7 if version is None else version
        return "Coco164kFull_Stuff_Coarse" + (f"_{v}" if v else "")
    raise ValueError(f"COCO-Stuff classes must be 3, 15 or 27, got {classes}")


def load_fine_to_coarse_pickle(path: str) -> np.ndarray:
    """Read the original ``fine_to_coarse_dict.pickle`` (key ``fine_index_to_coarse_index``) as (182,) int64.

    Optional: the built-in ``FINE_TO_COARSE`` equals it; use this to check or override."""

    def read() -> np.ndarray:
        with open(path, "rb") as f:
            d = pickle.load(f, encoding="latin1")  # written by Python 2
        m = d["fine_index_to_coarse_index"] if "fine_index_to_coarse_index" in d else d
        return np.array([int(m[i]) for i in range(182)], dtype=np.int64)

    return guarded(NAME, path, "  fine_to_coarse_dict.pickle from the original repo", read)


class CocoStuff(LabelPngDataset):
    """Curated COCO-Stuff-3, -15 or -27 (``classes`` 3, 15 or 27).

    Args:
        root: folder with ``images/``, ``annotations/``, ``curated/`` (see ``LAYOUT``).
        splits: any of "train2017", "val2017" (IID uses both, IID+ trains/assigns on train2017
            and tests on val2017).
        classes: 3, 15 or 27.
        version: curated list version (default 6 for 3 classes, 7 for 15 and 27; see
            ``curated_list_name``).
        prescale: resize factor applied first (0.33 in the paper; 1.0 = none). Bilinear without
            antialias for the image (like cv2 INTER_LINEAR), nearest for the label.
        short_side: instead of ``prescale``, resize to this shorter side (320 in PiCIE / STEGO).
        size: crop side S (128 in the paper); too-small images are padded (masked).
        crop: "random" (training) or "center" (evaluation).
        channel_order: "rgb", or "bgr" to reproduce the original's cv2 channel order (its grey
            channel, hence Sobel, weights B and R the other way round).
        unlabelled_as_sky: COCO-Stuff-3 only: unlabelled pixels count as sky, as in the original
            (see ``fine_to_target_table``); default False masks them out.
        seed: seeds the per-sample random crops (with the epoch and index).
        fine_to_coarse: optional (182,) table overriding the built-in mapping.

    ``__getitem__`` returns ``(img uint8 (3,S,S), label int64 (S,S), mask bool (S,S))``.
    """

    def __init__(self, root: str, splits: Sequence[str] = SPLITS, *, classes: int = 3, version: int | None = None,
                 prescale: float = 0.33, short_side: int | None = None, size: int = 128, crop: str = "random",
                 channel_order: str = "rgb", unlabelled_as_sky: bool = False, seed: int = 0,
                 fine_to_coarse: np.ndarray | None = None) -> None:
        self.root, self.classes = root, int(classes)
        self.gt_k, self.class_names = self.classes, CLASS_NAMES.get(self.classes)
        table = FINE_TO_COARSE if fine_to_coarse is None else np.asarray(fine_to_coarse)
        lut = fine_to_target_table(self.classes, table, unlabelled_as_sky=unlabelled_as_sky)
        self.list_name = curated_list_name(self.classes, version)
        require(NAME, root, LAYOUT)
        items: list[tuple[str, str]] = []
        for split in splits:
            if split not in SPLITS:
                raise ValueError(f"unknown COCO split {split!r}; choose from {SPLITS}")
            for sub in ("images", "annotations"):
                require(NAME, os.path.join(root, sub, split), LAYOUT)
            lst = os.path.join(root, "curated", split, self.list_name + ".txt")
            items += [(os.path.join(root, "images", split, i + ".jpg"),
                       os.path.join(root, "annotations", split, i + ".png")) for i in read_list(NAME, lst, LAYOUT)]
        if not items:
            raise corrupt(NAME, os.path.join(root, "curated"), f"no ids in {self.list_name}.txt", LAYOUT)
        super().__init__(NAME, LAYOUT, items, lut, prescale=prescale, short_side=short_side, size=size,
                         crop=crop, channel_order=channel_order, seed=seed)


def cocostuff_partitions(root: str, classes: int = 3, mode: str = "iid", *, seed: int = 0,
                         eval_size: int | None = None, **kwargs) -> dict[str, CocoStuff]:
    """Partitions ``{"train", "assign", "test"}``: random crops for training, centre crops (of side
    ``eval_size``, default the training ``size``) for the others. Extra kwargs go to CocoStuff.

    3 / 15 classes (IIC): mode "iid" trains, assigns and tests on the train2017 + val2017 curated lists
    (transductive); "iid+" trains and assigns on train2017 and tests on val2017.
    27 classes (PiCIE / STEGO): training on train2017's Coco164kFull_Stuff_Coarse list, test on
    val2017's Coco164kFull_Stuff_Coarse_7; "iid" matches on the test images, "iid+" on the training
    images. In "iid" mode assign and test are one object (its confusion matrices are computed once)."""
    if mode not in ("iid", "iid+", "iid_plus"):
        raise ValueError(f"mode must be 'iid' or 'iid+', got {mode!r}")
    iid = mode == "iid"
    kw = dict(classes=classes, seed=seed, **kwargs)
    ev = dict(kw, size=eval_size or kwargs.get("size", 128), crop="center")
    if classes == 27:
        train = CocoStuff(root, ("train2017",), crop="random", **dict(kw, version=0))
        test = CocoStuff(root, ("val2017",), **ev)
        assign = test if iid else CocoStuff(root, ("train2017",), **dict(ev, version=0))
        return {"train": train, "assign": assign, "test": test}
    tr, te = (SPLITS, SPLITS) if iid else (("train2017",), ("val2017",))
    test = CocoStuff(root, te, **ev)
    return {"train": CocoStuff(root, tr, crop="random", **kw),
            "assign": test if iid else CocoStuff(root, tr, **ev), "test": test}

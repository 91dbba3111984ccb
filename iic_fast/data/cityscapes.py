"""Cityscapes-27 from the official release folders (no download): ``leftImg8bit`` images and
``gtFine`` ``*_gtFine_labelIds.png`` label maps.

The 27 classes are the label ids 7..33 (road ... bicycle) shifted to 0..26; ids 0..6 (unlabeled,
ego vehicle, rectification border, out of roi, static, dynamic, ground) are ignored (-1). This is the
benchmark of the unsupervised segmentation papers that report IIC as a baseline:
github.com/mhamilton723/STEGO ``src/data.py`` (``CityscapesSeg``: ``first_nonvoid = 7``, ids below it
-> -1, 27 classes; trains on ``train`` and evaluates on ``val``, gtFine) and github.com/janghyuncho/PiCIE
``data/cityscapes_eval_dataset.py`` (``FINE_DICT``: 7..33 -> 0..26, else -1).

Samples are ``(img uint8 (3, S, S), label int64 (S, S), mask bool (S, S))``; without labels (the
training images) label is -1 and mask True except on padding."""
from __future__ import annotations

import os
from typing import Sequence

import numpy as np

from ._common import corrupt, require
from ._segfiles import LabelPngDataset

NAME = "Cityscapes"
LAYOUT = """  <root>/leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png   images (split: train,
                                                                         val, test, train_extra)
  <root>/gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png  label ids 0..33, one channel
                                                                         (needed for scored splits)"""

#: The 27 classes: Cityscapes label ids 7..33 in order.
CLASS_NAMES: tuple[str, ...] = (
    "road", "sidewalk", "parking", "rail track", "building", "wall", "fence", "guard rail", "bridge",
    "tunnel", "pole", "polegroup", "traffic light", "traffic sign", "vegetation", "terrain", "sky",
    "person", "rider", "car", "truck", "bus", "caravan", "trailer", "train", "motorcycle", "bicycle",
)
FIRST_CLASS_ID = 7
_IMG_SUFFIX, _LABEL_SUFFIX = "_leftImg8bit.png", "_gtFine_labelIds.png"
#: Keyword arguments of ``cityscapes_partitions`` that a training config may set (``dataset_options``).
OPTIONS = ("short_side", "prescale", "channel_order", "eval_size", "train_splits")


def label_table() -> np.ndarray:
    """(256,) int64 lookup table from label id to class: 7..33 -> 0..26, everything else -1."""
    lut = np.full(256, -1, dtype=np.int64)
    lut[FIRST_CLASS_ID:FIRST_CLASS_ID + len(CLASS_NAMES)] = np.arange(len(CLASS_NAMES))
    return lut


def _items(root: str, split: str, labels: bool) -> list[tuple[str, str | None]]:
    """(image, label or None) paths of one split, cities and files in sorted order."""
    folder = require(NAME, os.path.join(root, "leftImg8bit", split), LAYOUT)
    items = []
    for city in sorted(os.listdir(folder)):
        for fname in sorted(os.listdir(os.path.join(folder, city))):
            if not fname.endswith(_IMG_SUFFIX):
                continue
            label = None
            if labels:
                label = os.path.join(root, "gtFine", split, city, fname[:-len(_IMG_SUFFIX)] + _LABEL_SUFFIX)
            items.append((os.path.join(folder, city, fname), label))
    if not items:
        raise corrupt(NAME, folder, f"no <city>/*{_IMG_SUFFIX} images", LAYOUT)
    return items


class Cityscapes(LabelPngDataset):
    """Cityscapes-27 images of ``splits`` (any of train, val, test, train_extra).

    Args:
        root: folder with ``leftImg8bit/`` and ``gtFine/`` (see ``LAYOUT``).
        splits: sub-folders of ``leftImg8bit`` to read.
        labels: read the gtFine label ids (False: the images alone, e.g. for training).
        short_side: resize to this shorter side first (default 320, the resolution of PiCIE /
            STEGO: 2048x1024 -> 640x320); None keeps ``prescale``.
        prescale, size, crop, channel_order, seed: as in ``LabelPngDataset``.
    """

    def __init__(self, root: str, splits: Sequence[str] = ("val",), *, labels: bool = True,
                 short_side: int | None = 320, prescale: float = 1.0, size: int = 128, crop: str = "random",
                 channel_order: str = "rgb", seed: int = 0) -> None:
        require(NAME, root, LAYOUT)
        self.root, self.gt_k, self.class_names = root, len(CLASS_NAMES), CLASS_NAMES
        items = [it for split in splits for it in _items(root, split, labels)]
        super().__init__(NAME, LAYOUT, items, label_table(), prescale=prescale, short_side=short_side,
                         size=size, crop=crop, channel_order=channel_order, seed=seed)


def cityscapes_partitions(root: str, mode: str = "iid", *, seed: int = 0, size: int = 128,
                          eval_size: int | None = None, train_splits: Sequence[str] = ("train",),
                          **kwargs) -> dict[str, Cityscapes]:
    """Partitions ``{"train", "assign", "test"}`` of Cityscapes-27, as STEGO: training images of
    ``train_splits`` without labels (random crops of ``size``), test on ``val`` with gtFine (centre
    crops of ``eval_size``, default ``size``). Mode "iid" matches clusters to classes on the test
    images (assign is test: one object, evaluated once); "iid+" on the training images (their gtFine
    is then needed). Extra kwargs go to ``Cityscapes``."""
    if mode not in ("iid", "iid+", "iid_plus"):
        raise ValueError(f"mode must be 'iid' or 'iid+', got {mode!r}")
    ev = dict(kwargs, seed=seed, size=eval_size or size, crop="center")
    test = Cityscapes(root, ("val",), **ev)
    return {"train": Cityscapes(root, train_splits, labels=False, seed=seed, size=size, crop="random", **kwargs),
            "assign": test if mode == "iid" else Cityscapes(root, train_splits, **ev), "test": test}

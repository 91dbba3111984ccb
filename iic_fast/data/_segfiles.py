"""Shared reader for segmentation datasets stored as image files plus one-channel label PNGs
(COCO-Stuff, Cityscapes): read, optional rescale, label lookup table, pad and crop.

Samples are ``(img uint8 (3, S, S), label int64 (S, S), mask bool (S, S))`` with label -1 and mask
False on ignored pixels (the lookup table's -1 entries and the padding of too-small images)."""
from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from ._common import DatasetError, EpochMixin, corrupt, guarded, pad_and_crop, require, sample_rng

CHANNEL_ORDERS = ("rgb", "bgr")
CROPS = ("random", "center")


class LabelPngDataset(EpochMixin, Dataset):
    """Image files with label PNGs (values 0..255 mapped by ``lut``), cropped to ``size``.

    Args:
        name, layout: dataset name and expected layout, for the error messages.
        items: ``(image path, label path or None)`` per sample; None: no labels (label -1 and
            mask True except on padding: the loss uses every pixel, evaluation scores none).
        lut: (256,) int64 table from PNG value to target class, -1 = ignored.
        prescale: resize factor applied first (1.0 = none); ignored when ``short_side`` is set.
        short_side: resize so that the shorter side has this length (the 320 of PiCIE / STEGO).
            Images: bilinear without antialias (as cv2 INTER_LINEAR), truncated to uint8 as the
            original; labels: nearest.
        size: crop side S; smaller images are padded (image 0, label -1).
        crop: "random" (training; per-sample RNG from seed, epoch, index) or "center".
        channel_order: "rgb", or "bgr" to reproduce the original IIC's cv2 channel order.
    """

    def __init__(self, name: str, layout: str, items: Sequence[tuple[str, str | None]], lut: np.ndarray, *,
                 prescale: float = 1.0, short_side: int | None = None, size: int = 128, crop: str = "random",
                 channel_order: str = "rgb", seed: int = 0) -> None:
        if channel_order not in CHANNEL_ORDERS:
            raise ValueError(f"channel_order must be one of {CHANNEL_ORDERS}, got {channel_order!r}")
        if crop not in CROPS:
            raise ValueError(f"crop must be one of {CROPS}, got {crop!r}")
        if short_side is not None and short_side < 1:
            raise ValueError(f"short_side must be >= 1, got {short_side}")
        if size < 1 or prescale <= 0:
            raise ValueError(f"size must be >= 1 and prescale > 0, got {size} and {prescale}")
        self.name, self.layout, self.items, self.lut = name, layout, list(items), np.asarray(lut, np.int64)
        self.prescale, self.short_side, self.size = float(prescale), short_side, int(size)
        self.crop, self.channel_order, self.seed = crop, channel_order, seed
        if not self.items:
            raise DatasetError(f"{name}: no samples.\nExpected layout:\n{layout}")
        for img, lab in self.items:
            require(name, img, layout)
            if lab is not None:
                require(name, lab, layout)
        self._read(0)  # fail early on a wrong format

    def __len__(self) -> int:
        return len(self.items)

    def _read(self, index: int) -> tuple[np.ndarray, np.ndarray | None]:
        ipath, lpath = self.items[index]

        def read_img() -> np.ndarray:
            with Image.open(ipath) as im:
                return np.array(im.convert("RGB"))  # writable copy for torch

        def read_label() -> np.ndarray:
            with Image.open(lpath) as im:
                if im.mode not in ("L", "P", "I", "I;16"):
                    raise ValueError(f"label PNG has mode {im.mode}, expected one channel (L)")
                return np.asarray(im).astype(np.int64)

        img = guarded(self.name, ipath, self.layout, read_img)
        if self.channel_order == "bgr":
            img = img[:, :, ::-1]
        if lpath is None:
            return img, None
        raw = guarded(self.name, lpath, self.layout, read_label)
        if raw.shape != img.shape[:2]:
            raise corrupt(self.name, lpath, f"label {raw.shape} does not match image {img.shape[:2]}", self.layout)
        if raw.min() < 0 or raw.max() > 255:
            raise corrupt(self.name, lpath, "label values outside 0..255", self.layout)
        return img, raw

    def _rescale(self, img: np.ndarray, raw: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        h, w = img.shape[:2]
        f = self.short_side / min(h, w) if self.short_side is not None else self.prescale
        if f == 1.0:
            return img, raw
        oh, ow = max(1, int(round(h * f))), max(1, int(round(w * f)))
        t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float()
        t = F.interpolate(t, size=(oh, ow), mode="bilinear", align_corners=False, antialias=False)
        img = t[0].permute(1, 2, 0).clamp_(0, 255).to(torch.uint8).numpy()  # truncation, as the original
        if raw is not None:
            lab = torch.from_numpy(raw)[None, None].float()
            raw = F.interpolate(lab, size=(oh, ow), mode="nearest")[0, 0].long().numpy()
        return img, raw

    def __getitem__(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        img, raw = self._rescale(*self._read(index))
        # no labels: class 0 everywhere until the crop, so that only the padding gets masked
        label = np.zeros(img.shape[:2], np.int64) if raw is None else self.lut[raw]
        rng = sample_rng(self.seed, self.epoch, index) if self.crop == "random" else None
        img, label = pad_and_crop([img, label], [0, -1], self.size, self.crop, rng)
        mask = label >= 0
        if raw is None:
            label = np.full(label.shape, -1, np.int64)
        return (torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).contiguous(),
                torch.from_numpy(label), torch.from_numpy(mask))

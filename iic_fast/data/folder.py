"""Folder datasets: train on your own images (``iic-fast train --data DIR --task ...``).

Files: every image Pillow reads (PNG, JPEG, TIFF, BMP, WebP, GIF, PPM/PGM), found recursively; hidden
files and folders are skipped, and so are folders named ``labels`` (they hold ground truth). EXIF
orientation is applied. Images are decoded once, when the dataset is built, and held in memory as
uint8 tensors (a folder of a few thousand photographs). Channels: the pair maker's colour channels
(``pairs.colour_channels``): 1 converts every image to grey (Pillow's ITU-R 601 luma), 3 to RGB (grey
images repeated); alpha is dropped. A folder of mixed modes is thus read with one channel count, set
by the configuration rather than by the files, so a run's network input is known from its config.
16-bit images are scaled to 8 bits by rounding v / 257 (65535 -> 255).

Splits: ``train/`` and ``test/`` (or ``val/``) sub-folders when both are present, otherwise a seeded
split (seed 0, ``TEST_FRACTION`` of the images, at least one, for testing; one image: it is both).

Segmentation (``folder_segmentation``): training samples are random crops of ``input_size`` (per-sample
RNG of (seed, epoch, index)); test samples are the tiles of a grid covering every image (the last row
and column aligned to the border). Images smaller than the crop are an error naming the file, unless
``dataset_options.upscale_small`` resizes them (shorter side to ``input_size``; labels nearest).
Optional labels, one PNG per image with the image's stem (value = class id, 255 = ignore): in a
``labels/`` folder beside the images (``DIR/train/x.jpg`` -> ``DIR/train/labels/x.png``) or in a parallel
tree (STEGO's layout ``DIR/imgs/train/x.jpg`` -> ``DIR/labels/train/x.png``). In a split, every image
has a label or none does. Samples: (img uint8 (C, S, S), label int64 (S, S) [-1 = ignore or unknown],
mask bool (S, S)); the mask is all True for training (labels never reach the loss).

Clustering (``folder_clustering``): every image resized (shorter side to ``input_size``, bilinear with
antialiasing) and centre-cropped to ``input_size``. When a split's folder holds only sub-folders, each is
one class (sorted by name; labels for evaluation); images directly in it mean no labels. Samples:
(img uint8 (C, S, S), label int64 [-1 = none]).

Bad files raise ``DatasetError`` naming the file; ``dataset_options.skip_bad_images`` skips
unreadable images instead, with one line per file on stderr.
"""
from __future__ import annotations

import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from PIL import Image, ImageOps
from torch.utils.data import Dataset, TensorDataset

from ._common import DatasetError, EpochMixin, sample_rng

IMAGE_EXTENSIONS = frozenset((".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".gif", ".ppm", ".pgm"))
TEST_FRACTION = 0.2
IGNORE = 255  # label value of pixels without a class
_HIGH_DEPTH = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")
Item = Tuple[str, Optional[str]]  # (image path, label path or class name)


def read_image(path: str, channels: int) -> np.ndarray:
    """The image at ``path`` as uint8 (H, W, channels), EXIF orientation applied (1 grey or 3 RGB).
    Raises DatasetError naming the file when Pillow cannot decode it."""
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels}")
    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode in _HIGH_DEPTH:  # 16-bit (or 32-bit) grey: to 8 bits by rounding v / 257
                grey = np.rint(np.clip(np.asarray(im, dtype=np.float64), 0, 65535) / 257.0).astype(np.uint8)
                arr = grey[..., None].repeat(channels, 2)
            else:
                arr = np.asarray(im.convert("L" if channels == 1 else "RGB")).reshape(*im.size[::-1], channels)
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError, DecompressionBombError, ...
        raise DatasetError(f"cannot read image '{path}': {type(e).__name__}: {e}") from e
    return np.array(arr)  # a writable, contiguous copy (torch.from_numpy needs writable memory)


def read_label(path: str, image_path: str, shape: Optional[Tuple[int, int]], classes: int) -> np.ndarray:
    """Label PNG ``path`` of ``image_path`` as int64 (H, W), ``IGNORE`` -> -1. Raises DatasetError when
    it is unreadable, not of ``shape`` (H, W; None: any; naming both files) or holds ids >= ``classes``
    other than 255."""
    try:
        with Image.open(path) as im:
            if im.mode not in ("L", "P", "I", "I;16", "1"):
                raise ValueError(f"mode {im.mode}, expected one channel of class ids")
            lab = np.asarray(im).astype(np.int64)
    except Exception as e:
        raise DatasetError(f"cannot read label '{path}': {type(e).__name__}: {e}") from e
    if shape is not None and lab.shape != tuple(shape):
        raise DatasetError(f"label '{path}' is {lab.shape[1]}x{lab.shape[0]} (WxH) but its image "
                           f"'{image_path}' is {shape[1]}x{shape[0]}")
    bad = (lab < 0) | ((lab >= classes) & (lab != IGNORE))
    if bad.any():
        raise DatasetError(f"label '{path}' holds class id {int(lab[bad][0])}: ids must be below {classes} "
                           f"(the number of classes), or {IGNORE} (ignore)")
    return np.where(lab == IGNORE, -1, lab)


def find_images(folder: str) -> List[str]:
    """Image files under ``folder`` (recursive, sorted), skipping hidden entries and ``labels`` folders."""
    out = []
    for here, dirs, files in os.walk(folder):
        dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d != "labels")
        out += [os.path.join(here, f) for f in sorted(files)
                if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS]
    return out


def _split_dirs(root: str) -> Dict[str, str]:
    """{"train": dir, "test": dir} from train/ + test/ (or val/) sub-folders, else {"all": root}."""
    test = next((d for d in ("test", "val") if os.path.isdir(os.path.join(root, d))), None)
    if os.path.isdir(os.path.join(root, "train")) and test:
        return {"train": os.path.join(root, "train"), "test": os.path.join(root, test)}
    return {"all": root}


def _check_folder(root: str) -> None:
    if not os.path.isdir(root):
        raise DatasetError(f"--data '{root}' is not a folder")


def _label_path(image: str, image_root: str, label_root: Optional[str]) -> str:
    stem = os.path.splitext(os.path.basename(image))[0] + ".png"
    if label_root is not None:  # STEGO: DIR/imgs/<rel>/x.jpg -> DIR/labels/<rel>/x.png
        return os.path.join(label_root, os.path.dirname(os.path.relpath(image, image_root)), stem)
    return os.path.join(os.path.dirname(image), "labels", stem)


def segmentation_files(root: str) -> Dict[str, List[Item]]:
    """Per split ("train"/"test" or "all"), (image, label or None) pairs; see the module docstring."""
    _check_folder(root)
    image_root, label_root = root, None
    if os.path.isdir(os.path.join(root, "imgs")):
        image_root, label_root = os.path.join(root, "imgs"), os.path.join(root, "labels")
    out = {}
    for split, folder in _split_dirs(image_root).items():
        items = [(p, _label_path(p, image_root, label_root)) for p in find_images(folder)]
        have = [os.path.isfile(lab) for _, lab in items]
        if any(have) and not all(have):
            raise DatasetError(f"label '{items[have.index(False)][1]}' is missing: in '{folder}' some images "
                               "have a label PNG, so every image needs one")
        out[split] = [(p, lab if any(have) else None) for p, lab in items]
    return out


def clustering_files(root: str) -> Dict[str, List[Item]]:
    """Per split ("train"/"test" or "all"), (image, class folder name or None) pairs."""
    _check_folder(root)
    out = {}
    for split, folder in _split_dirs(root).items():
        entries = sorted(e for e in os.listdir(folder) if not e.startswith("."))
        subdirs = [e for e in entries if os.path.isdir(os.path.join(folder, e))]
        direct = [e for e in entries if os.path.splitext(e)[1].lower() in IMAGE_EXTENSIONS]
        if subdirs and not direct:
            out[split] = [(p, c) for c in subdirs for p in find_images(os.path.join(folder, c))]
        else:
            out[split] = [(p, None) for p in find_images(folder)]
    return out


def _split(files: Dict[str, List[Item]]) -> Tuple[List[Item], List[Item]]:
    """(train, test) items: the folder's own split, or a seeded one (seed 0) of "all"."""
    if "all" not in files:
        return files["train"], files["test"]
    items = files["all"]
    if len(items) < 2:
        return items, items
    n_test = max(1, int(round(TEST_FRACTION * len(items))))
    test = set(np.random.default_rng(0).permutation(len(items))[:n_test].tolist())
    return ([it for i, it in enumerate(items) if i not in test], [it for i, it in enumerate(items) if i in test])


def count_classes(root: str, task: str) -> Optional[int]:
    """Ground-truth classes of the folder ``root`` (None without labels): the number of class folders
    (clustering), or the largest label id + 1 over every label PNG (segmentation; 255 = ignore, ids
    above 255 are an error naming the file). Used to set ``gt_k``."""
    if task == "clustering":
        names = {c for items in clustering_files(root).values() for _, c in items if c is not None}
        return len(names) or None
    top = -1
    for items in segmentation_files(root).values():
        for image, lab in items:
            if lab is not None:
                top = max(top, int(read_label(lab, image, None, IGNORE).max()))
    return top + 1 if top >= 0 else None


def load_images(items: Sequence[Item], channels: int, skip_bad: bool, folder: str) -> List[Tuple[np.ndarray, Item]]:
    """Decodes every image of ``items``: [(uint8 (H, W, C), item)]. Unreadable ones raise DatasetError,
    or with ``skip_bad`` are left out with one stderr line each; none readable raises DatasetError
    naming ``folder``."""
    out = []
    for item in items:
        try:
            out.append((read_image(item[0], channels), item))
        except DatasetError as e:
            if not skip_bad:
                raise DatasetError(f"{e} (dataset_options.skip_bad_images=true / --skip-bad-images skips "
                                   "unreadable images)") from e
            print(f"iic-fast: skipping {e}", file=sys.stderr)
    if not out:
        raise DatasetError(f"no readable image in '{folder}' (formats: {', '.join(sorted(IMAGE_EXTENSIONS))})")
    return out


def _resize(arr: np.ndarray, size: Tuple[int, int], resample: int) -> np.ndarray:
    """(H, W[, C]) uint8 or int64 array resized to (h, w) with Pillow."""
    if arr.dtype == np.int64:  # labels: nearest, through int32 ("I")
        return np.asarray(Image.fromarray(arr.astype(np.int32)).resize(size[::-1], Image.NEAREST)).astype(np.int64)
    squeeze = arr.shape[2] == 1
    im = Image.fromarray(arr[..., 0] if squeeze else arr).resize(size[::-1], resample, reducing_gap=None)
    out = np.array(im)  # writable, for torch.from_numpy
    return out[..., None] if squeeze else out


def _short_side(arr: np.ndarray, side: int) -> Tuple[int, int]:
    h, w = arr.shape[:2]
    f = side / min(h, w)
    return max(side, int(round(h * f))), max(side, int(round(w * f)))


def _fit(arr: np.ndarray, lab: Optional[np.ndarray], size: int, upscale: bool,
         path: str) -> Tuple[np.ndarray, Optional[np.ndarray]]:
    """Image (and label) of at least ``size`` on both sides: as they are, upscaled, or an error."""
    h, w = arr.shape[:2]
    if min(h, w) >= size:
        return arr, lab
    if not upscale:
        raise DatasetError(f"image '{path}' is {w}x{h}, smaller than the {size}x{size} crop: use a smaller "
                           "--input-size or --set dataset_options.upscale_small=true")
    shape = _short_side(arr, size)
    return _resize(arr, shape, Image.BILINEAR), None if lab is None else _resize(lab, shape, Image.NEAREST)


class FolderSegmentation(EpochMixin, Dataset):
    """In-memory images (uint8 (C, H, W) each, sides >= ``size``) and optional labels (uint8 (H, W),
    255 = ignore), sampled as ``size`` crops: ``crop="random"`` gives one random crop per grid tile
    (bigger images give more samples per epoch), ``crop="tiles"`` the grid tiles themselves."""

    def __init__(self, images: List[torch.Tensor], labels: Optional[List[torch.Tensor]], size: int,
                 crop: str, seed: int = 0) -> None:
        self.images, self.labels, self.size, self.crop, self.seed = images, labels, size, crop, seed
        self.windows = [(i, y, x) for i, img in enumerate(images)
                        for y in _starts(img.shape[1], size) for x in _starts(img.shape[2], size)]

    def __len__(self) -> int:
        return len(self.windows)

    def __getitem__(self, index: int) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        i, y, x = self.windows[index]
        s, img = self.size, self.images[i]
        if self.crop == "random":
            rng = sample_rng(self.seed, self.epoch, index)
            y, x = int(rng.integers(0, img.shape[1] - s + 1)), int(rng.integers(0, img.shape[2] - s + 1))
        mask = torch.ones((s, s), dtype=torch.bool)  # training crops: every pixel feeds the loss
        if self.labels is None:
            label = torch.full((s, s), -1, dtype=torch.int64)
        else:
            label = self.labels[i][y:y + s, x:x + s].long()
            label[label == IGNORE] = -1
            if self.crop == "tiles":
                mask = label >= 0
        return img[:, y:y + s, x:x + s].contiguous(), label, mask


def _starts(length: int, size: int) -> List[int]:
    """Window starts covering [0, length) with windows of ``size`` (the last one at the border)."""
    starts = list(range(0, length - size + 1, size))
    return starts + ([length - size] if starts[-1] + size < length else [])


def _segmentation_arrays(items: Sequence[Item], channels: int, size: int, classes: Optional[int], upscale: bool,
                         skip_bad: bool, root: str) -> Tuple[List[torch.Tensor], Optional[List[torch.Tensor]]]:
    images, labels = [], []
    for arr, (path, lab_path) in load_images(items, channels, skip_bad, root):
        lab = read_label(lab_path, path, arr.shape[:2], classes) if lab_path and classes else None
        arr, lab = _fit(arr, lab, size, upscale, path)
        images.append(torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous())
        if lab is not None:
            labels.append(torch.from_numpy(np.where(lab < 0, IGNORE, lab).astype(np.uint8)))
    return images, labels if labels else None


def segmentation_partitions(root: str, mode: str, *, channels: int, size: int, classes: Optional[int],
                            seed: int = 0, upscale_small: bool = False,
                            skip_bad_images: bool = False) -> Dict[str, Dataset]:
    """{"train_a", "train_b", "assign", "test"} of a segmentation folder (see the module docstring);
    ``classes`` None ignores any labels. IID+ (``mode="iid+"``) fits the mapping on the training
    images' tiles, which then need labels."""
    train_items, test_items = _split(segmentation_files(root))
    opts = dict(channels=channels, size=size, classes=classes, upscale=upscale_small, skip_bad=skip_bad_images,
                root=root)
    train_imgs, train_labs = _segmentation_arrays(train_items, **opts)
    test = FolderSegmentation(*_segmentation_arrays(test_items, **opts), size, "tiles")
    train = FolderSegmentation(train_imgs, train_labs, size, "random", seed)
    assign = test
    if mode != "iid":
        if classes and train_labs is None:
            raise DatasetError(f"mode iid+ fits the cluster-to-class mapping on the training images of '{root}', "
                               "which have no labels")
        assign = FolderSegmentation(train_imgs, train_labs, size, "tiles")
    return {"train_a": train, "train_b": train, "assign": assign, "test": test}


def _clustering_tensors(items: Sequence[Item], names: List[str], channels: int, size: int,
                        skip_bad: bool, root: str) -> TensorDataset:
    images, labels = [], []
    for arr, (_, name) in load_images(items, channels, skip_bad, root):
        h, w = _short_side(arr, size)
        y0, x0 = (h - size) // 2, (w - size) // 2
        images.append(_resize(arr, (h, w), Image.BILINEAR)[y0:y0 + size, x0:x0 + size])
        labels.append(names.index(name) if name in names else -1)
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return TensorDataset(x, torch.tensor(labels, dtype=torch.int64))


def clustering_partitions(root: str, mode: str, *, channels: int, size: int, classes: Optional[int],
                          skip_bad_images: bool = False) -> Dict[str, Dataset]:
    """{"train_a", "train_b", "assign", "test"} of a clustering folder: uint8 (N, C, size, size) images
    and int64 (N,) labels (class folders in name order; -1 without, or when ``classes`` is None)."""
    train_items, test_items = _split(clustering_files(root))
    names = sorted({c for _, c in train_items + test_items if c is not None}) if classes else []
    train = _clustering_tensors(train_items, names, channels, size, skip_bad_images, root)
    test = _clustering_tensors(test_items, names, channels, size, skip_bad_images, root)
    return {"train_a": train, "train_b": train, "assign": test if mode == "iid" else train, "test": test}


def partitions(task: str, config: Any, channels: int) -> Dict[str, Dataset]:
    """The partitions of the folder ``config.data_root`` for a training config (``task``: "segmentation"
    or "clustering"; ``channels``: raw channels to read); ``config.dataset_options`` may hold
    ``skip_bad_images`` and (segmentation) ``upscale_small``."""
    allowed = ("skip_bad_images", "upscale_small") if task == "segmentation" else ("skip_bad_images",)
    unknown = sorted(set(config.dataset_options) - set(allowed))
    if unknown:
        raise ValueError(f"dataset_options {unknown} are not options of folder {task} data; options: {list(allowed)}")
    kwargs = dict(channels=channels, size=config.input_size, classes=config.gt_k, **config.dataset_options)
    if task == "segmentation":
        return segmentation_partitions(config.data_root, config.mode, seed=config.seed, **kwargs)
    return clustering_partitions(config.data_root, config.mode, **kwargs)

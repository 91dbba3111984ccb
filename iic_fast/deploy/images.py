"""Images in and out for inference: reading files (the folder datasets' reader), turning user inputs
(tensors, arrays, PIL images) into float tensors, and writing label maps, overlays and probabilities."""
from __future__ import annotations

import os
from typing import Any, List, Sequence, Tuple, Union

import numpy as np
import torch

from ..data import folder
from ..data.transforms import as_float, rgb_to_grey

__all__ = ["read_image", "as_image_list", "fit_channels", "palette", "save_labels",
           "save_overlay", "save_probs"]

Image = Union[torch.Tensor, np.ndarray, Any]  # Any: a PIL.Image.Image


def read_image(path: str, channels: int) -> torch.Tensor:
    """The image file ``path`` as uint8 (C, H, W) with C = ``channels`` (1 grey or 3 RGB), read as folder
    datasets read training images (``iic_fast.data.folder.read_image``: EXIF orientation, alpha dropped,
    16-bit scaled to 8). Raises DatasetError (a ValueError) naming the file when it cannot be decoded."""
    return _chw(folder.read_image(path, channels))


def _chw(arr: np.ndarray) -> torch.Tensor:
    """(H, W, C) array -> a (C, H, W) tensor that owns a copy of the data."""
    return torch.from_numpy(np.moveaxis(arr, -1, 0).copy())


def _pil(image: Any) -> torch.Tensor:
    """A PIL image -> float32 (C, H, W) in [0, 1]: 16-bit grey / 65535, grey, else RGB (alpha dropped)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        return torch.from_numpy(np.asarray(image, dtype=np.float32) / 65535.0)[None]
    return as_float(_chw(np.asarray(image.convert("L" if image.mode in ("1", "L", "LA") else "RGB")).reshape(
        image.size[1], image.size[0], -1)))


def _one(image: Image) -> torch.Tensor:
    """One image -> float32 (C, H, W) in [0, 1] (uint8 / 255, uint16 / 65535, floats as given)."""
    if isinstance(image, torch.Tensor):
        if image.dim() == 2:
            image = image[None]
        if image.dim() != 3:
            raise ValueError(f"an image tensor must be (C, H, W) or (H, W), got shape {tuple(image.shape)}")
        return as_float(image)
    if isinstance(image, np.ndarray):
        if image.ndim not in (2, 3):
            raise ValueError(f"an image array must be (H, W) or (H, W, C), got shape {image.shape}")
        arr = image[..., None] if image.ndim == 2 else image
        if arr.dtype == np.uint16:
            arr = arr.astype(np.float32) / 65535.0
        return as_float(_chw(arr))
    if type(image).__module__.startswith("PIL."):
        return _pil(image)
    raise TypeError(f"images must be tensors, numpy arrays or PIL images, got {type(image).__name__}")


def as_image_list(images: Union[Image, Sequence[Image]]) -> Tuple[List[torch.Tensor], str]:
    """Normalises ``images`` to a list of float32 (C, H, W) tensors in [0, 1] and says how to shape
    the results: "batch" (a 4-d tensor (n, C, H, W)), "single" (one image) or "list".

    Tensors are channels-first, (C, H, W) / (H, W) / (n, C, H, W); numpy arrays are channels-last,
    (H, W) / (H, W, C); uint8 is scaled by 1/255, uint16 by 1/65535, floats are taken as [0, 1]."""
    if isinstance(images, torch.Tensor) and images.dim() == 4:
        return list(as_float(images)), "batch"
    if isinstance(images, (list, tuple)):
        if not images:
            raise ValueError("images is an empty list")
        return [_one(im) for im in images], "list"
    return [_one(images)], "single"


def fit_channels(x: torch.Tensor, channels: int) -> torch.Tensor:
    """(n, C, H, W) -> (n, channels, H, W): RGB -> grey (luma) for grey runs, grey -> RGB by copying,
    RGBA -> RGB (alpha dropped); anything else is a ValueError."""
    c = x.shape[1]
    if c == channels:
        return x
    if c == 4 and channels == 3:
        return x[:, :3]
    if c in (3, 4) and channels == 1:
        return rgb_to_grey(x[:, :3])
    if c == 1 and channels == 3:
        return x.expand(-1, 3, -1, -1)
    raise ValueError(f"the run takes images with {channels} channel(s); got {c} channels")


def palette(k: int) -> np.ndarray:
    """(k, 3) uint8 distinct colours: matplotlib's tab20 for k <= 20, evenly spaced hues beyond."""
    import matplotlib

    if k <= 20:
        colours = matplotlib.colormaps["tab20"](np.arange(k))[:, :3]
    else:
        colours = matplotlib.colormaps["hsv"](np.linspace(0, 1, k, endpoint=False))[:, :3]
    return np.rint(colours * 255).astype(np.uint8)


def _atomic(path: str, write: Any) -> None:
    """Writes through ``write(tmp_path)`` then renames, so a killed run never leaves a truncated file."""
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp{os.getpid()}{ext}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_labels(labels: np.ndarray, k: int, path: str) -> None:
    """(H, W) cluster ids -> a palette PNG (pixel value = cluster id; 16-bit grey PNG when k > 256)."""
    from PIL import Image as PILImage

    if k > 256:
        im = PILImage.fromarray(labels.astype(np.uint16))
    else:
        im = PILImage.fromarray(labels.astype(np.uint8), mode="P")
        im.putpalette(palette(k).reshape(-1).tolist())
    _atomic(path, lambda p: im.save(p, format="PNG"))


def save_overlay(image: torch.Tensor, labels: np.ndarray, k: int, path: str, alpha: float = 0.5) -> None:
    """The image (C, H, W) float in [0, 1] (grey or RGB) blended with the cluster colours -> RGB PNG."""
    from PIL import Image as PILImage

    rgb = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    base = rgb.permute(1, 2, 0).clamp(0, 1).cpu().numpy() * 255.0
    pal = palette(min(k, 256))  # beyond 256 clusters colours repeat (the label PNG keeps the ids)
    colours = pal[labels % len(pal)]
    blend = np.rint((1 - alpha) * base + alpha * colours).astype(np.uint8)
    _atomic(path, lambda p: PILImage.fromarray(blend).save(p, format="PNG"))


def save_probs(probs: np.ndarray, path: str) -> None:
    """(k, H, W) float32 probabilities -> .npy."""
    _atomic(path, lambda p: np.save(p, probs))

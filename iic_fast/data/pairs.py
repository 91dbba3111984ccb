"""IIC pair generation, batched on the device of the input batch.

* ``SegmentationPairs``: ``img1, img2, affine2_to_1, mask`` like the original's datasets
  (jitter -> [random affine] -> flip applied to img2 only, then Sobel on both).
* ``ClusteringPairs``: ``(x, [tf(x) x r])`` like the original's tf1 / tf2 loaders
  (independent crops, resize, flip and jitter on tf2, rotation for MNIST, then Sobel).
Presets for the paper's runs and the embedded sets are ``segmentation_preset(name)`` and
``clustering_preset(name)``."""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

import torch
import torch.nn.functional as F

from .transforms import (
    as_float, color_jitter, crop_resize_theta, identity_affine, rand, random_affine, random_crop,
    sample_crops, sobel_process, warp,
)

Tensor = torch.Tensor


@dataclass(frozen=True)
class SegmentationPairs:
    """Segmentation pair maker (call it on a batch already on the training device).

    jitter: (brightness, contrast, saturation, hue) for img2's colour channels only (0 = off).
    flip_p: probability of mirroring img2 horizontally. The original segmentation datasets flip when
        ``np.random.rand() > flip_p``, i.e. with probability 1 - flip_p: the two agree at the paper's
        0.5; to reproduce an original run with another ``--flip_p`` pass 1 minus its value.
    sobel / include_rgb: input channels (see ``transforms.sobel_process``).
    colour_channels: leading channels that are colour (3 RGB or 1 grey); the rest (Potsdam IR)
        are copied unjittered into both images, after the Sobel channels.
    random_affine: also warp img2 by a random rotation/shear/scale (ranges below) and return the
        exact inverse. Off in every paper run.
    crop_size: optional random crop (same window in img and mask) done on the device.
    repeats: r copies of each image with independent img2 transforms (n -> n r pairs).
    """

    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.125)
    flip_p: float = 0.5
    sobel: bool = True
    include_rgb: bool = True
    colour_channels: int = 3
    random_affine: bool = False
    rot_deg: tuple[float, float] = (-30.0, 30.0)
    shear_deg: tuple[float, float] = (-10.0, 10.0)
    scale: tuple[float, float] = (0.8, 1.2)
    crop_size: int | None = None
    repeats: int = 1

    def in_channels(self, channels: int) -> int:
        """Network input channels for a dataset with ``channels`` raw channels."""
        extra = channels - self.colour_channels
        return (self.colour_channels if self.include_rgb or not self.sobel else 0) + 2 * self.sobel + extra

    def _channels(self, x: Tensor) -> Tensor:
        return sobel_process(x, self.colour_channels, self.include_rgb) if self.sobel else x

    def __call__(
        self, img: Tensor, mask: Tensor | None = None, generator: torch.Generator | None = None
    ) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """Make pairs from a batch.

        Args:
            img: (n, C, H, W) uint8 (0..255) or float in [0, 1], on the training device.
            mask: (n, H, W) bool/0-1 pixels to use in the loss (None = all ones).
            generator: torch.Generator (CPU recommended) for reproducible pairs.

        Returns:
            img1 (n r, C', h, w) float32, img2 (n r, C', h, w) float32,
            affine2_to_1 (n r, 2, 3) float32 such that
            ``F.grid_sample(x2_out, F.affine_grid(A, size, align_corners=True), align_corners=True)``
            brings img2's outputs into img1's frame, mask (n r, h, w) float32 in {0, 1} (img1 frame).
        """
        n, dev = img.shape[0], img.device
        mask = torch.ones(img.shape[0], *img.shape[-2:], device=dev) if mask is None else mask
        if self.crop_size is not None:
            img, mask = random_crop([img, mask], self.crop_size, generator)
        if self.repeats > 1:
            img, mask = img.repeat(self.repeats, 1, 1, 1), mask.repeat(self.repeats, 1, 1)
            n *= self.repeats
        x1 = as_float(img)
        cc = self.colour_channels
        colour2 = x1[:, :cc]
        if any(v > 0 for v in self.jitter):
            colour2 = color_jitter(colour2, *self.jitter, generator=generator)
        x2 = torch.cat((colour2, x1[:, cc:]), 1)
        if self.random_affine:
            a12, a21 = random_affine(n, self.rot_deg, self.shear_deg, self.scale, generator, dev)
            x2 = warp(x2, a12)
        else:
            a21 = identity_affine(n, dev)
        flip = rand(n, generator, dev) < self.flip_p
        # exact mirror (no interpolation); the 2->1 map gets its first row negated (F . A2to1)
        x2 = torch.where(flip.view(-1, 1, 1, 1), x2.flip(-1), x2)
        row_sign = torch.ones(n, 2, 1, device=dev)
        row_sign[:, 0, 0] = torch.where(flip, -1.0, 1.0)
        a21 = a21 * row_sign
        return self._channels(x1), self._channels(x2), a21, mask.to(torch.float32)

    def eval_transform(self, img: Tensor) -> Tensor:
        """(n, C, H, W) uint8/float -> float network input (no augmentation)."""
        return self._channels(as_float(img))


@dataclass(frozen=True)
class ClusteringPairs:
    """Clustering pair maker: tf1 and r independent tf2 views of the same raw images.

    crop1 / crop2: crop side(s); a sequence means a per-sample random choice (MNIST tf2: 16/20/24).
    tf1_mode: "random", "center" or "random_or_center" (per-sample choice, MNIST tf1).
    input_size: output side after resizing the crop (bilinear, half-pixel centres).
    flip_p, jitter: tf2 only. rot_deg / rot_p: tf2 rotation of the whole image before cropping.
    shift / shift_p: with probability shift_p, tf2 first translates the image by a uniform integer
        (dy, dx) in [-shift, shift]^2 (exact copy, zero fill); 0 = off.
    sobel / include_rgb / colour_channels: as in ``SegmentationPairs``. repeats: r tf2 views.
    """

    crop1: int | Sequence[int] = 64
    crop2: int | Sequence[int] = 64
    input_size: int = 64
    tf1_mode: str = "random"
    flip_p: float = 0.5
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.125)
    rot_deg: float = 0.0
    rot_p: float = 0.5
    shift: int = 0
    shift_p: float = 0.5
    sobel: bool = True
    include_rgb: bool = False
    colour_channels: int = 3
    repeats: int = 5

    def __post_init__(self) -> None:
        if self.shift < 0:
            raise ValueError(f"shift must be >= 0, got {self.shift}")
        if not 0.0 <= self.shift_p <= 1.0:
            raise ValueError(f"shift_p must be in [0, 1], got {self.shift_p}")

    def _channels(self, x: Tensor) -> Tensor:
        return sobel_process(x, self.colour_channels, self.include_rgb) if self.sobel else x

    def _boxes(self, n: int, hw: tuple[int, int], crops, mode: str, gen) -> Tensor:
        sizes = torch.tensor([crops] if isinstance(crops, int) else list(crops), dtype=torch.float64)
        s = sizes[(rand(n, gen, "cpu") * len(sizes)).long().clamp_(max=len(sizes) - 1)]
        h, w = hw
        ry, rx = rand(n, gen, "cpu").double(), rand(n, gen, "cpu").double()
        # integer offsets, uniform like RandomCrop; centre crop like torchvision (round)
        y_r, x_r = torch.floor(ry * (h - s + 1)), torch.floor(rx * (w - s + 1))
        y_c, x_c = torch.round((h - s) / 2), torch.round((w - s) / 2)
        if mode == "random":
            use_c = torch.zeros(n, dtype=torch.bool)
        elif mode == "center":
            use_c = torch.ones(n, dtype=torch.bool)
        elif mode == "random_or_center":
            use_c = rand(n, gen, "cpu") < 0.5
        else:
            raise ValueError(f"tf1_mode must be random/center/random_or_center, got {mode!r}")
        return torch.stack((torch.where(use_c, y_c, y_r), torch.where(use_c, x_c, x_r), s, s), 1)

    def tf1(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(n, C, H, W) uint8/float -> (n, C', s, s) tf1 view (crop + resize, no jitter/flip)."""
        x = as_float(x)
        boxes = self._boxes(x.shape[0], x.shape[-2:], self.crop1, self.tf1_mode, generator)
        return self._channels(sample_crops(x, crop_resize_theta(x.shape[-2:], self.input_size, boxes), self.input_size))

    def tf2(self, x: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """(n, C, H, W) uint8/float -> (n, C', s, s): [shift], [rotation], crop, resize, flip, jitter."""
        x = as_float(x)
        n = x.shape[0]
        if self.shift > 0:
            if x.shape[-2] != x.shape[-1]:
                raise ValueError(f"shift needs square images, got {tuple(x.shape[-2:])}")
            shifted = random_crop([F.pad(x, (self.shift,) * 4)], x.shape[-1], generator)[0]
            x = torch.where((rand(n, generator, x.device) < self.shift_p).view(-1, 1, 1, 1), shifted, x)
        boxes = self._boxes(n, x.shape[-2:], self.crop2, "random", generator)
        flip = rand(n, generator, "cpu") < self.flip_p
        rot = None
        if self.rot_deg > 0:
            ang = (rand(n, generator, "cpu") * 2 - 1) * self.rot_deg
            rot = torch.deg2rad(torch.where(rand(n, generator, "cpu") < self.rot_p, ang, torch.zeros_like(ang)))
        theta = crop_resize_theta(x.shape[-2:], self.input_size, boxes, flip, rot)
        y = sample_crops(x, theta, self.input_size)
        cc = self.colour_channels
        if any(v > 0 for v in self.jitter):
            y = torch.cat((color_jitter(y[:, :cc], *self.jitter, generator=generator), y[:, cc:]), 1)
        return self._channels(y)

    def __call__(self, x: Tensor, generator: torch.Generator | None = None) -> tuple[Tensor, list[Tensor]]:
        """Returns (tf1(x) (n, C', s, s), [tf2(x) (n, C', s, s)] * repeats), all float32.

        The training batch is ``cat([x1] * r)`` against ``cat(x2s)`` (n r pairs). The r tf2 views are
        drawn in one call on the repeated batch: on small images the per-call cost dominates."""
        x1 = self.tf1(x, generator)
        return x1, list(self.tf2(x.repeat(self.repeats, 1, 1, 1), generator).split(x.shape[0]))

    def eval_transform(self, x: Tensor) -> Tensor:
        """tf3: centre crop (first crop1 size), resize, channels -> (n, C', s, s)."""
        x = as_float(x)
        c = self.crop1 if isinstance(self.crop1, int) else list(self.crop1)[0]
        boxes = self._boxes(x.shape[0], x.shape[-2:], c, "center", None)
        return self._channels(sample_crops(x, crop_resize_theta(x.shape[-2:], self.input_size, boxes), self.input_size))


_SEG_PRESETS = {
    # Potsdam-3/6 (model 545): RGBIR, no Sobel, jitter 0.1 on RGB of img2, flip 0.5 -> [R,G,B,IR]
    "potsdam": SegmentationPairs(jitter=(0.1, 0.1, 0.1, 0.1), sobel=False),
    # COCO-Stuff-3/15 (models 555, 512): RGB + Sobel -> 5 channels, default jitter, flip 0.5
    "cocostuff": SegmentationPairs(),
    # Textures-3: grey + Sobel -> [g, dx, dy], flip + mild jitter (brightness/contrast)
    "textures3": SegmentationPairs(jitter=(0.1, 0.1, 0.0, 0.0), colour_channels=1),
}
_CLU_PRESETS = {
    # STL10: crop 64 -> 64, Sobel only (2 channels), r = 5 tf2 views (num_dataloaders)
    "stl10": ClusteringPairs(crop1=64, crop2=64, input_size=64),
    # CIFAR10 (640, D 3) / CIFAR100-20 (579, D 5): crop 20 resized back up to 32
    "cifar10": ClusteringPairs(crop1=20, crop2=20, input_size=32, repeats=3),
    "cifar100_20": ClusteringPairs(crop1=20, crop2=20, input_size=32),
    # MNIST: tf1 random-or-centre crop 20 -> 24; tf2 rotation +-25 (p .5), crop 16/20/24 -> 24, no flip
    "mnist": ClusteringPairs(crop1=20, crop2=(16, 20, 24), input_size=24, tf1_mode="random_or_center",
                             flip_p=0.0, rot_deg=25.0, sobel=False, colour_channels=1),
    # Digits (8x8): mild crops 7 -> 8, small rotation, no flip, grey only
    "digits": ClusteringPairs(crop1=8, crop2=(6, 7, 8), input_size=8, flip_p=0.0, rot_deg=15.0,
                              jitter=(0.2, 0.2, 0.0, 0.0), sobel=False, colour_channels=1),
}


def segmentation_preset(name: str, **overrides) -> SegmentationPairs:
    """Pair maker of a paper run / embedded set: "potsdam", "cocostuff" or "textures3"."""
    return replace(_SEG_PRESETS[name], **overrides)


def clustering_preset(name: str, **overrides) -> ClusteringPairs:
    """Pair maker of a paper run / embedded set: "stl10", "cifar10", "cifar100_20", "mnist", "digits"."""
    return replace(_CLU_PRESETS[name], **overrides)

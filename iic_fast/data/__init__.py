"""Datasets, embedded data and batched device-side IIC pair generation.

Nothing is downloaded: file-backed datasets read the original release formats under a root you
give, and raise ``DatasetError`` (a ValueError; ``DatasetFileNotFoundError`` is also a
FileNotFoundError) naming the missing/corrupt file and the expected layout.

Segmentation datasets (map-style; samples are CPU uint8, cropped by the workers)
------------------------------------------------------------------------------
``Potsdam(root, lists, *, coarse=True, size=200, crop="random"|"center", seed=0)``
``CocoStuff(root, splits, *, classes=3|15|27, prescale=0.33, short_side=None, size=128, crop=...,
channel_order="rgb", unlabelled_as_sky=False)``
``Cityscapes(root, splits=("val",), *, labels=True, short_side=320, size=128, crop=...)`` (Cityscapes-27)
    sample = (img uint8 (C, S, S), label int64 (S, S) [-1 = ignore], mask bool (S, S))
    Potsdam C = 4 (R, G, B, IR), gt_k 3 (coarse) or 6; COCO C = 3, gt_k 3, 15 or 27; Cityscapes C = 3, gt_k 27.
``potsdam_partitions(root, mode="iid"|"iid+")`` / ``cocostuff_partitions(root, classes, mode)`` /
``cityscapes_partitions(root, mode)``
    -> {"train", "assign", "test"} datasets (train: random crops, others: centre crops).

Clustering datasets (``ArrayDataset``: ``.images`` uint8 (N, C, H, W), ``.labels`` int64 (N,))
--------------------------------------------------------------------------------------------
``stl10(root, split)`` (train/test/unlabeled/train+unlabeled), ``cifar10(root, split)``,
``cifar100_20(root, split)``, ``mnist(root, split)``; sample = (uint8 (C, H, W), int label).
``clustering_partitions(name, root, mode)`` -> {"train_a", "train_b", "assign", "test"}.

Embedded data (no files; tensors)
---------------------------------
``textures3(split="train"|"test", n_images=512, size=64, seed=0)``
    -> images float32 (N, 1, H, W) in [0, 1], labels int64 (N, H, W) in {0 brick, 1 grass, 2 gravel}
``digits(split="train"|"test"|"all", seed=0)`` -> images float32 (N, 1, 8, 8), labels int64 (N,)

Pairs (batched on the device of the input; pass a CPU ``torch.Generator`` for reproducibility)
-------------------------------------------------------------------------------------------
``seg = segmentation_preset("potsdam"|"cocostuff"|"textures3")`` (a ``SegmentationPairs``)
    ``img1, img2, affine2_to_1, mask = seg(img, mask, generator)``
    img (n, C, H, W) uint8 or float [0, 1]; outputs (n r, C', h, w) float32, (n r, 2, 3), (n r, h, w);
    ``F.grid_sample(x2_out, F.affine_grid(affine2_to_1, x2_out.shape, align_corners=True),
    align_corners=True)`` brings img2's outputs into img1's frame (identity or x-flip unless
    ``random_affine``). ``seg.eval_transform(img)`` -> network input; ``seg.in_channels(C)``.
``clu = clustering_preset("stl10"|"cifar10"|"cifar100_20"|"mnist"|"digits")`` (``ClusteringPairs``)
    ``x1, x2s = clu(x, generator)``: x1 (n, C', s, s), x2s = r tensors (n, C', s, s);
    train on ``cat([x1] * r)`` vs ``cat(x2s)``. ``clu.eval_transform(x)`` = tf3.
Low-level ops in ``transforms``: ``sobel``, ``sobel_process``, ``color_jitter``, ``warp``,
``random_affine``, ``random_crop``, ``rgb_to_grey``, ``as_float``.

Dataset registry (``registry``)
------------------------------
``DATASETS[name]`` is a ``DatasetSpec`` (task, partitions builder, pair preset, raw channels, classes)
for every dataset the trainer knows; ``registry.get(name)``, ``registry.register(spec)``;
``spec.in_channels(config)`` is a run's network input channels, from its config alone.

Your own images (``folder``; registry entries ``folder_segmentation`` / ``folder_clustering``)
--------------------------------------------------------------------------------------------
``folder.segmentation_partitions(root, mode, channels=, size=, classes=)`` and
``folder.clustering_partitions(...)``: any images Pillow reads, optional label PNGs / class folders;
``folder.count_classes(root, task)``; ``folder.read_image(path, channels)`` -> uint8 (H, W, C).
See ``iic_fast/data/folder.py`` for the layouts and rules.

Loaders
-------
``loader = make_loader(dataset, batch_size, shuffle=True, seed=0, num_workers=None)``
``for img, label, mask in device_batches(loader, device, epoch=e): pairs = seg(img, mask, gen)``
``set_epoch(loader, e)`` makes shuffling and worker crops a function of (seed, epoch).

Typical segmentation step::

    parts = potsdam_partitions(root, "iid")
    loader = make_loader(parts["train"], 75, seed=0, drop_last=True)
    seg, gen = segmentation_preset("potsdam"), torch.Generator().manual_seed(0)
    for epoch in range(E):
        for img, _, mask in device_batches(loader, "cuda", epoch=epoch):
            img1, img2, a21, m = seg(img, mask, gen)
"""
from ._common import DatasetError, DatasetFileNotFoundError
from .classification import (
    CIFAR100_TO_20, ArrayDataset, cifar10, cifar100_20, clustering_partitions, mnist, stl10,
)
from .cityscapes import Cityscapes, cityscapes_partitions
from .cocostuff import CocoStuff, cocostuff_partitions, curated_list_name, load_fine_to_coarse_pickle
from .cocostuff_labels import COARSE_NAMES, FINE_NAMES, FINE_TO_COARSE, fine_to_target_table
from .embedded import TEXTURE_NAMES, digits, textures3
from .loaders import EpochSampler, device_batches, make_loader, set_epoch, to_device
from .pairs import ClusteringPairs, SegmentationPairs, clustering_preset, segmentation_preset
from .potsdam import POTSDAM_6_TO_3, Potsdam, map_potsdam_labels, potsdam_partitions
from .registry import DATASETS, DatasetSpec
from . import folder, registry, transforms

__all__ = [
    "ArrayDataset", "CIFAR100_TO_20", "COARSE_NAMES", "Cityscapes", "ClusteringPairs", "CocoStuff", "DATASETS",
    "DatasetError", "DatasetFileNotFoundError", "DatasetSpec", "EpochSampler", "FINE_NAMES", "FINE_TO_COARSE",
    "POTSDAM_6_TO_3", "Potsdam", "SegmentationPairs", "TEXTURE_NAMES", "cifar10", "cifar100_20",
    "cityscapes_partitions", "clustering_partitions", "clustering_preset", "cocostuff_partitions",
    "curated_list_name", "device_batches", "digits", "fine_to_target_table", "folder", "load_fine_to_coarse_pickle",
    "make_loader", "map_potsdam_labels", "mnist", "potsdam_partitions", "registry", "segmentation_preset",
    "set_epoch", "stl10", "textures3", "to_device", "transforms",
]

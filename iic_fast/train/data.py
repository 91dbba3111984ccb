"""Data wiring for the trainer: datasets per preset, loaders, pair makers and endless batch streams.

``build_data(config, device, rank, world)`` returns a ``RunData`` with one ``BatchStream`` per head
(head A and head B may train on different sets, e.g. STL10's unlabelled images for head A), the
assignment and test datasets of the evaluation protocol, and the pair maker.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .. import data as D
from ..data import folder, registry
from ..models import build
from .config import TrainConfig
from .presets import preset

Pairs = Union[D.SegmentationPairs, D.ClusteringPairs]

class BatchStream:
    """Endless batches from one loader, on ``device``; ``state()`` / ``load_state()`` give the position
    (loader epoch, batch index) so a resumed run gets the very same batches (shuffling is a function of
    (seed, epoch)). ``world`` > 1 keeps this rank's slice ``rank::world`` of every batch."""

    def __init__(self, loader: DataLoader, device: torch.device, rank: int = 0, world: int = 1) -> None:
        self.loader, self.device, self.rank, self.world = loader, device, rank, world
        self.epoch, self.index = 0, 0
        self._it: Optional[Iterator[Any]] = None

    def __len__(self) -> int:
        return len(self.loader)

    def next(self) -> Tuple[torch.Tensor, ...]:
        """The next batch (a tuple of tensors); starts a new loader epoch when one runs out."""
        if self._it is None:
            self._it = D.device_batches(self.loader, self.device, epoch=self.epoch)
            for _ in range(self.index):  # resume mid-epoch: replay the order, skip what was used
                next(self._it)
        batch = next(self._it, None)
        if batch is None:
            self.epoch, self.index, self._it = self.epoch + 1, 0, None
            return self.next()
        self.index += 1
        return tuple(t[self.rank::self.world] for t in batch)

    def state(self) -> Dict[str, int]:
        return {"epoch": self.epoch, "index": self.index}

    def load_state(self, state: Dict[str, int]) -> None:
        self.epoch, self.index, self._it = int(state["epoch"]), int(state["index"]), None


@dataclass
class RunData:
    """What the trainer needs from the data side."""

    streams: Dict[str, BatchStream]  # "A" and/or "B"
    assign: Dataset  # assignment data (mapping fit); the test set itself in IID mode
    test: Dataset
    pairs: Pairs
    in_channels: int
    input_sz: int
    segmentation: bool

    @property
    def train_main(self) -> Dataset:
        """The main head's training images (head B's, or the single head's)."""
        return self.streams["B"].loader.dataset

    def pair_batch(self, raw: Tuple[torch.Tensor, ...], generator: torch.Generator) -> Tuple[Optional[torch.Tensor], ...]:
        """A training batch (images, labels[, mask]) -> (x1, x2, affine or None, mask or None): clustering
        pairs every tf1 view with each of its ``repeats`` tf2 views."""
        if self.segmentation:
            return self.pairs(raw[0], raw[2], generator)
        x1, x2s = self.pairs(raw[0], generator)
        return torch.cat([x1] * len(x2s)), torch.cat(x2s), None, None


#: folder data: (base preset, overclustering head's multiple of k) per task; arch per task on (CPU, CUDA)
FOLDER_BASE = {"segmentation": ("textures3", 4), "clustering": ("digits", 7)}
#: folder segmentation's schedule (the cosine's length; max_minutes still plans it on a slower machine)
FOLDER_SEG_STEPS = 550
FOLDER_ARCH = {"segmentation": ("SmallSegNetTwoHead", "SegmentationNet10aTwoHead"),
               "clustering": ("SmallClusterNetTwoHead", "ClusterNet5gTwoHead")}


def folder_config(root: str, task: str, k: Optional[int] = None, *, input_size: Optional[int] = None,
                  rgb: bool = False, cuda: bool = False, skip_bad_images: bool = False) -> TrainConfig:
    """The training config for your own images in the folder ``root`` (``iic-fast train --data``).

    Base preset textures3 (segmentation, 550 steps) or digits (clustering), one start (not their two
    candidates), with: the folder dataset; head B of ``k`` clusters (default: the number of label classes) and
    head A of 4 k (segmentation, as Textures-3's 12 / 3) or 7 k (clustering, as the paper's STL10 / CIFAR10 70 /
    10); gt_k from the labels (None without); grey + Sobel input ([grey, dx, dy] for segmentation, [dx, dy] for
    clustering) or with ``rgb`` the colour channels too; the small networks on the CPU, the paper's
    (SegmentationNet10aTwoHead at lr 1e-4, crops of 128, d 10, batch 32, no time budget; ClusterNet5gTwoHead at
    lr 1e-4) on CUDA. ``input_size`` (default 64 on the CPU, 128 for segmentation on CUDA): crop side
    (segmentation) or the side clustering images are resized to (tf2 crops 3/4, 7/8 and all of it), a multiple
    of 4 of at least 16. Raises ValueError naming the bad argument."""
    if task not in registry.TASKS:
        raise ValueError(f"--task must be one of {registry.TASKS}, got {task!r}")
    gt_k = folder.count_classes(root, task)
    k = gt_k if k is None else k
    if k is None:
        raise ValueError(f"--k (the number of clusters) is needed: '{root}' has no labels to count classes from")
    if k < 2:
        raise ValueError(f"--k must be at least 2, got {k}")
    size = input_size or (128 if cuda and task == "segmentation" else 64)
    if size < 16 or size % 4:
        raise ValueError(f"--input-size must be a multiple of 4 and at least 16 (the networks pool the input "
                         f"twice at most), got {size}")
    base, multiple = FOLDER_BASE[task]
    colour = {"colour_channels": 3, "include_rgb": True} if rgb else {"colour_channels": 1}
    if task == "segmentation":
        pairs = colour if rgb else {}  # Sobel on: the textures3 preset's grey input and 300 steps are its set's
        steps = {"max_steps": FOLDER_SEG_STEPS}
        gpu = dict(lr=1e-4, d=10, batch_size=32, max_minutes=0.0)
    else:
        crops = sorted({round(size * 3 / 4), round(size * 7 / 8), size})
        pairs = {"input_size": size, "crop1": size, "crop2": crops, "rot_deg": 0.0, "shift": 0, **colour,
                 "jitter": [0.4, 0.4, 0.4, 0.125] if rgb else [0.4, 0.4, 0.0, 0.0]}
        steps, gpu = {}, dict(lr=1e-4)
    return preset(base, preset="folder", dataset=f"folder_{task}", data_root=os.path.abspath(root), gt_k=gt_k,
                  output_k_B=k, output_k_A=multiple * k, input_size=size, arch=FOLDER_ARCH[task][cuda], pairs=pairs,
                  num_sub_heads=1 if task == "segmentation" else 5, candidates=1, candidate_jobs=1,
                  dataset_options={"skip_bad_images": True} if skip_bad_images else {}, **steps,
                  **(gpu if cuda else {}))


def make_pairs(config: TrainConfig) -> Pairs:
    """The pair maker of the config's dataset (its registry entry), with ``repeats`` and ``pairs``."""
    return registry.get(config.dataset).pairs(config)


def images_per_step(config: TrainConfig) -> int:
    """Images loaded per step: batch_size pairs = images x repeats."""
    return config.batch_size // config.repeats


def eval_loader(config: TrainConfig, dataset: Dataset) -> DataLoader:
    """Unshuffled loader over ``dataset`` for evaluation."""
    bs = config.eval_batch_size or images_per_step(config)
    return D.make_loader(dataset, bs, shuffle=False, num_workers=_workers(config, dataset))


def _workers(config: TrainConfig, dataset: Dataset) -> Optional[int]:
    if isinstance(dataset, (TensorDataset, folder.FolderSegmentation)):
        return 0  # in memory: workers would only add start-up cost
    return None if config.num_workers < 0 else config.num_workers


def build_data(config: TrainConfig, device: torch.device, rank: int = 0, world: int = 1) -> RunData:
    """Datasets, loaders and pair maker for ``config`` (see the module docstring)."""
    spec = registry.get(config.dataset)
    parts = spec.build(config)
    n = images_per_step(config)
    if n % world:
        raise ValueError(f"images per step ({n} = batch_size / repeats) must divide by the {world} processes")
    streams = {}
    heads = ("A", "B") if config.two_head else ("B",)
    for head in heads:
        ds = parts["train_a" if head == "A" else "train_b"]
        if len(ds) < n:
            raise ValueError(f"the training set has {len(ds)} images, fewer than one step's {n}: lower "
                             "--batch-size")
        loader = D.make_loader(ds, n, shuffle=True, seed=config.seed, drop_last=True,
                               num_workers=_workers(config, ds))
        streams[head] = BatchStream(loader, device, rank, world)
    pairs = make_pairs(config)
    probe = pairs.eval_transform(parts["test"][0][0][None])
    if probe.shape[1] != spec.in_channels(config):  # the registry entry's raw_channels must be right
        raise ValueError(f"dataset {spec.name!r}: its images give {probe.shape[1]} network input channels, "
                         f"its registry entry {spec.in_channels(config)}")
    return RunData(streams=streams, assign=parts["assign"], test=parts["test"], pairs=pairs,
                   in_channels=int(probe.shape[1]), input_sz=int(probe.shape[-1]),
                   segmentation=config.task == "segmentation")


def build_net(config: TrainConfig, data: RunData) -> torch.nn.Module:
    """The preset's network, sized for the data's input channels and size (``border_ring``: the
    original segmentation head, rejected by clustering nets)."""
    ks = ({"output_k_A": config.output_k_A, "output_k_B": config.output_k_B,
           "num_sub_heads_A": config.num_sub_heads_A} if config.two_head else {"output_k": config.output_k_B})
    ring = {"border_ring": True} if config.border_ring else {}
    return build(config.arch, in_channels=data.in_channels, input_sz=data.input_sz,
                 num_sub_heads=config.num_sub_heads, batchnorm_track=config.batchnorm_track, **ks, **ring)

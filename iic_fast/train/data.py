"""Data wiring for the trainer: datasets per preset, loaders, pair makers and endless batch streams.

``build_data(config, device, rank, world)`` returns a ``RunData`` with one ``BatchStream`` per head
(head A and head B may train on different sets, e.g. STL10's unlabelled images for head A), the
assignment and test datasets of the evaluation protocol, and the pair maker.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterator, Optional, Tuple, Union

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset

from .. import data as D
from ..data import registry
from ..models import build
from .config import TrainConfig

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
    if isinstance(dataset, TensorDataset):
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
            raise ValueError(f"the training set has {len(ds)} images, fewer than one step's {n}")
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
    ks = ({"output_k_A": config.output_k_A, "output_k_B": config.output_k_B} if config.two_head
          else {"output_k": config.output_k_B})
    ring = {"border_ring": True} if config.border_ring else {}
    return build(config.arch, in_channels=data.in_channels, input_sz=data.input_sz,
                 num_sub_heads=config.num_sub_heads, batchnorm_track=config.batchnorm_track, **ks, **ring)

"""One table of every dataset the trainer knows: ``DATASETS[name]`` is a ``DatasetSpec``.

A spec says what the trainer needs, all from a training config (``iic_fast.train.TrainConfig`` or any
object with its fields) and without reading image files except in ``partitions``:

- ``task``: "segmentation" or "clustering";
- ``partitions(config)`` -> {"train_a", "train_b", "assign", "test"} datasets (head A's and head B's
  training sets, the mapping-fit set of the evaluation protocol, the test set);
- ``pair_preset``: the name given to ``segmentation_preset`` / ``clustering_preset``;
- ``raw_channels``: channels of the dataset's images (an int, or a function of the config);
  ``in_channels(config)`` is the network's input channels after the pair maker's channel processing;
- ``classes``: ground-truth classes (``gt_k``), None when unknown, or a function of the config;
- ``needs_root``: reads files under ``config.data_root``.

Adding a dataset is one ``register(DatasetSpec(...))`` call; ``get(name)`` looks one up.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any, Callable, Dict, Optional, Tuple, Union

import torch
from torch.utils.data import Dataset, TensorDataset

from .classification import clustering_partitions
from .cityscapes import OPTIONS as CITYSCAPES_OPTIONS, cityscapes_partitions
from .cocostuff import OPTIONS as COCO_OPTIONS, cocostuff_partitions
from . import folder
from .embedded import digits, textures3
from .pairs import ClusteringPairs, SegmentationPairs, clustering_preset, segmentation_preset
from .potsdam import potsdam_partitions

TASKS = ("segmentation", "clustering")
Partitions = Dict[str, Dataset]
Pairs = Union[SegmentationPairs, ClusteringPairs]


@dataclass(frozen=True)
class DatasetSpec:
    """What the trainer needs to know about one dataset (see the module docstring)."""

    name: str
    task: str
    partitions: Callable[[Any], Partitions]
    pair_preset: str
    raw_channels: Union[int, Callable[[Any], int]]
    classes: Union[int, None, Callable[[Any], Optional[int]]]
    needs_root: bool = False

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise ValueError(f"dataset {self.name!r}: task must be one of {TASKS}, got {self.task!r}")

    def channels(self, config: Any) -> int:
        """Raw image channels C of the dataset under ``config``."""
        return self.raw_channels(config) if callable(self.raw_channels) else self.raw_channels

    def num_classes(self, config: Any) -> Optional[int]:
        """Ground-truth classes (gt_k) under ``config``; None when the dataset has no labels."""
        return self.classes(config) if callable(self.classes) else self.classes

    def pairs(self, config: Any) -> Pairs:
        """The pair maker: the preset ``pair_preset`` with ``config.repeats`` and ``config.pairs``."""
        make = segmentation_preset if self.task == "segmentation" else clustering_preset
        return make(self.pair_preset, repeats=config.repeats, **config.pairs)

    def in_channels(self, config: Any) -> int:
        """Network input channels: the pair maker's evaluation transform applied to a blank image
        of the dataset's raw channels (no file is read)."""
        probe = torch.zeros(1, self.channels(config), 8, 8)
        return int(self.pairs(config).eval_transform(probe).shape[1])

    def build(self, config: Any) -> Partitions:
        """``partitions(config)``, after checking that a root is given when the dataset needs one."""
        if self.needs_root and not config.data_root:
            raise ValueError(f"preset {config.preset!r} reads the {self.name} files: pass --data-root DIR "
                             "(see iic_fast.data for the expected layout)")
        return self.partitions(config)


DATASETS: Dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Adds ``spec`` to ``DATASETS`` (a name already taken raises ValueError); returns it."""
    if not isinstance(spec, DatasetSpec):
        raise TypeError(f"register takes a DatasetSpec, got {type(spec).__name__}")
    if spec.name in DATASETS:
        raise ValueError(f"dataset {spec.name!r} is already registered")
    DATASETS[spec.name] = spec
    return spec


def get(name: str) -> DatasetSpec:
    """The spec of dataset ``name``; an unknown name raises ValueError listing the choices."""
    spec = DATASETS.get(name)
    if spec is None:
        raise ValueError(f"unknown dataset {name!r}; choices: {', '.join(DATASETS)}")
    return spec


def protocol(train: Dataset, test: Dataset, mode: str, train_b: Optional[Dataset] = None) -> Partitions:
    """The evaluation protocol's partitions: IID scores (and matches) on ``test``; IID+ fits the
    many-to-one mapping on ``train`` and scores on ``test``."""
    return {"train_a": train, "train_b": train if train_b is None else train_b,
            "assign": test if mode == "iid" else train, "test": test}


def _textures3(config: Any) -> Partitions:
    """Embedded Textures-3; data seed fixed (0), so every run sees the same mosaics."""
    parts = {}
    for split, n, size in (("train", config.n_train, config.input_size), ("test", config.n_test, config.test_size)):
        x, y = textures3(split, n_images=n, size=size, seed=0)
        parts[split] = TensorDataset(x, y, torch.ones(y.shape, dtype=torch.bool))
    return protocol(parts["train"], parts["test"], config.mode)


def _digits(config: Any) -> Partitions:
    """Embedded Digits with its fixed seeded split."""
    return protocol(TensorDataset(*digits("train")), TensorDataset(*digits("test")), config.mode)


def _options(config: Any, allowed: Tuple[str, ...]) -> Dict[str, Any]:
    """``config.dataset_options`` once every key is one the dataset's reader takes (ValueError naming it)."""
    unknown = sorted(set(config.dataset_options) - set(allowed))
    if unknown:
        raise ValueError(f"dataset_options {unknown} do not apply to {config.dataset}; "
                         f"it takes {list(allowed) if allowed else 'none'}")
    return config.dataset_options


def _segmentation(partitions: Callable[..., Dict[str, Dataset]], *args: Any,
                  options: Tuple[str, ...] = ()) -> Callable[[Any], Partitions]:
    """Builder from a reader's ``partitions(root, *args, mode, seed=, size=, **config.dataset_options)``
    returning {"train", "assign", "test"} (one training set for both heads); ``options``: the keys
    ``dataset_options`` may hold."""
    def build(config: Any) -> Partitions:
        p = partitions(config.data_root, *args, config.mode, seed=config.seed, size=config.input_size,
                       **_options(config, options))
        return {"train_a": p["train"], "train_b": p["train"], "assign": p["assign"], "test": p["test"]}
    return build


def _clustering(name: str) -> Callable[[Any], Partitions]:
    options = ("leave_out_unlabelled",) if name == "stl10" else ()  # the STL10 ablation (model 695)
    return lambda config: clustering_partitions(name, config.data_root, config.mode, **_options(config, options))


def _paper_specs() -> None:
    seg = dict(task="segmentation", needs_root=True)
    for k, coarse in ((3, True), (6, False)):
        register(DatasetSpec(f"potsdam{k}", partitions=_segmentation(partial(potsdam_partitions, coarse=coarse)),
                             pair_preset="potsdam", raw_channels=4, classes=k, **seg))
    for k in (3, 15, 27):  # 27: the benchmark of PiCIE / STEGO (iic_fast.data.cocostuff)
        register(DatasetSpec(f"cocostuff{k}", partitions=_segmentation(cocostuff_partitions, k, options=COCO_OPTIONS),
                             pair_preset="cocostuff", raw_channels=3, classes=k, **seg))
    register(DatasetSpec("cityscapes27", partitions=_segmentation(cityscapes_partitions, options=CITYSCAPES_OPTIONS),
                         pair_preset="cocostuff", raw_channels=3, classes=27, **seg))
    for name, channels, k in (("stl10", 3, 10), ("cifar10", 3, 10), ("cifar100_20", 3, 20), ("mnist", 1, 10)):
        register(DatasetSpec(name, "clustering", _clustering(name), pair_preset=name, raw_channels=channels,
                             classes=k, needs_root=True))


register(DatasetSpec("textures3", "segmentation", _textures3, pair_preset="textures3", raw_channels=1, classes=3))
register(DatasetSpec("digits", "clustering", _digits, pair_preset="digits", raw_channels=1, classes=10))
_paper_specs()


def _colour_channels(config: Any) -> int:
    """Folder data is read with as many channels as its pair maker treats as colour (1 grey, 3 RGB)."""
    return get(config.dataset).pairs(config).colour_channels


def _folder(task: str) -> Callable[[Any], Partitions]:
    return lambda config: folder.partitions(task, config, _colour_channels(config))


# your own images (iic_fast.data.folder): gt_k comes from the labels (None without them)
for _task, _pairs in (("segmentation", "textures3"), ("clustering", "stl10")):
    register(DatasetSpec(f"folder_{_task}", _task, _folder(_task), pair_preset=_pairs, raw_channels=_colour_channels,
                         classes=lambda config: config.gt_k, needs_root=True))


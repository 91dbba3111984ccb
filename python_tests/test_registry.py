"""The dataset registry: lookups, what each entry tells the trainer without reading data, and that a new
dataset is one ``register`` call."""
from __future__ import annotations

import pytest
import torch
from torch.utils.data import TensorDataset

from iic_fast import data as D
from iic_fast.data import registry
from iic_fast.train import PRESETS, TrainConfig, preset
from iic_fast.train.data import build_data, build_net, make_pairs

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast. no compiled kernels")

PAPER = ("textures3", "digits", "potsdam3", "potsdam6", "cocostuff3", "cocostuff15", "stl10", "cifar10",
         "cifar100_20", "mnist")


def test_every_dataset_is_registered_with_its_task():
    for name in PAPER:
        spec = registry.get(name)
        assert spec.name == name and D.DATASETS[name] is spec
    tasks = {name: registry.get(name).task for name in PAPER}
    assert {n for n, t in tasks.items() if t == "segmentation"} == {
        "textures3", "potsdam3", "potsdam6", "cocostuff3", "cocostuff15"}
    assert registry.get("folder_segmentation").task == "segmentation"
    assert registry.get("folder_clustering").task == "clustering"


def test_unknown_dataset_lists_the_choices():
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*textures3.*mnist"):
        registry.get("nope")
    with pytest.raises(ValueError, match="unknown dataset 'nope'"):
        preset("textures3", dataset="nope")


def test_config_task_and_classes_come_from_the_registry():
    for name in PRESETS:
        c = preset(name)
        assert c.task == registry.get(c.dataset).task
        assert c.gt_k == registry.get(c.dataset).num_classes(c)
    with pytest.raises(ValueError, match="gt_k must be the textures3 classes"):
        preset("textures3", gt_k=4)


@pytest.mark.parametrize("name, channels", [("textures3", 1), ("digits", 1), ("potsdam3", 4), ("cocostuff15", 5),
                                            ("stl10", 2), ("cifar10", 2), ("mnist", 1)])
def test_input_channels_without_reading_data(name, channels):
    config = next(preset(p) for p in PRESETS if PRESETS[p].get("dataset", "textures3") == name)
    assert registry.get(name).in_channels(config) == channels


def test_pair_maker_is_the_entry_preset():
    config = preset("cocostuff3", pairs={"flip_p": 0.25}, repeats=1, batch_size=8)
    pairs = make_pairs(config)
    assert pairs == D.segmentation_preset("cocostuff", flip_p=0.25, repeats=1)
    assert make_pairs(preset("digits")) == D.clustering_preset("digits", repeats=5, **PRESETS["digits"]["pairs"])


def test_register_rejects_duplicates_wrong_kinds_and_tasks():
    spec = registry.get("textures3")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(spec)
    with pytest.raises(TypeError, match="DatasetSpec"):
        registry.register({"name": "x"})
    with pytest.raises(ValueError, match="task must be one of"):
        registry.DatasetSpec("x", "detection", spec.partitions, "textures3", 1, 3)


def test_paper_dataset_without_root_names_the_flag():
    with pytest.raises(ValueError, match="--data-root"):
        build_data(preset("potsdam3"), torch.device("cpu"))


@pytest.fixture
def toy_dataset():
    """A new segmentation dataset, registered by one call and removed afterwards."""
    def partitions(config):
        x = torch.rand(8, 3, 16, 16)
        ds = TensorDataset(x, torch.zeros(8, 16, 16, dtype=torch.int64), torch.ones(8, 16, 16, dtype=torch.bool))
        return registry.protocol(ds, ds, config.mode)

    spec = registry.register(registry.DatasetSpec("toy_rgb", "segmentation", partitions, pair_preset="cocostuff",
                                                  raw_channels=3, classes=2))
    yield spec
    del registry.DATASETS["toy_rgb"]


def test_a_new_dataset_is_one_entry(toy_dataset):
    config = TrainConfig(dataset="toy_rgb", gt_k=2, output_k_A=4, output_k_B=2, input_size=16, batch_size=4)
    assert config.validate().task == "segmentation"
    data = build_data(config, torch.device("cpu"))
    assert data.segmentation and data.in_channels == 5 == toy_dataset.in_channels(config)
    assert build_net(config, data)(torch.rand(2, 5, 16, 16), head="B")[0].shape == (2, 2, 16, 16)


def test_wrong_raw_channels_in_an_entry_is_caught(toy_dataset):
    bad = registry.DatasetSpec("toy_grey", "segmentation", toy_dataset.partitions, pair_preset="cocostuff",
                               raw_channels=1, classes=2)
    registry.register(bad)
    try:
        config = TrainConfig(dataset="toy_grey", gt_k=2, output_k_A=4, output_k_B=2, input_size=16, batch_size=4)
        with pytest.raises(ValueError, match="registry entry"):
            build_data(config, torch.device("cpu"))
    finally:
        del registry.DATASETS["toy_grey"]

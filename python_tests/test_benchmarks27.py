"""COCO-Stuff-27 and Cityscapes-27 (the benchmarks of PiCIE and STEGO): readers on tiny fixtures in
the release formats, their partitions, and two training steps of each preset from the CLI."""
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

from iic_fast.data import DatasetError
from iic_fast.data.cityscapes import CLASS_NAMES, Cityscapes, cityscapes_partitions
from iic_fast.data.cocostuff import CocoStuff, cocostuff_partitions
from iic_fast.data.cocostuff_labels import FINE_TO_COARSE

COCO_IDS = {("train2017", "Coco164kFull_Stuff_Coarse"): ["000000000011", "000000000012", "000000000013"],
            ("val2017", "Coco164kFull_Stuff_Coarse_7"): ["000000000021", "000000000022"]}
CITY = {"train": ["aachen_000000_000019", "aachen_000001_000019", "bochum_000000_000313"],
        "val": ["frankfurt_000000_000294", "lindau_000000_000019"]}


def make_coco27(root, h=40, w=48):
    """COCO-Stuff 164k layout: jpg images, one-channel PNG fine labels (things, stuff, 255), curated lists."""
    rng = np.random.default_rng(2)
    fine = np.array([0, 2, 17, 105, 123, 148, 171, 181, 255])  # person, car, cat, sky, grass, road, wall, wood
    for (split, lst), ids in COCO_IDS.items():
        for sub in ("images", "annotations", "curated"):
            os.makedirs(root / sub / split, exist_ok=True)
        (root / "curated" / split / f"{lst}.txt").write_text("\n".join(ids) + "\n")
        for i in ids:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(root / "images" / split / f"{i}.jpg")
            Image.fromarray(fine[rng.integers(0, len(fine), (h, w))].astype(np.uint8), mode="L").save(
                root / "annotations" / split / f"{i}.png")
    return root


def make_cityscapes(root, h=32, w=64, gt_splits=("val",)):
    """Cityscapes layout: leftImg8bit/<split>/<city>/*_leftImg8bit.png, gtFine/.../*_gtFine_labelIds.png."""
    rng = np.random.default_rng(3)
    for split, stems in CITY.items():
        for stem in stems:
            city = stem.split("_")[0]
            for sub in ("leftImg8bit", "gtFine"):
                os.makedirs(root / sub / split / city, exist_ok=True)
            img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png")
            if split in gt_splits:
                ids = rng.integers(0, 34, (h, w)).astype(np.uint8)  # label ids 0..33
                Image.fromarray(ids, mode="L").save(root / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
    return root


def _png(path) -> np.ndarray:
    return np.asarray(Image.open(path)).astype(np.int64)


def test_coco27_labels_are_the_27_coarse_categories(tmp_path):
    root = make_coco27(tmp_path / "coco")
    ds = CocoStuff(str(root), ["val2017"], classes=27, prescale=1.0, size=40, crop="center")
    assert ds.list_name == "Coco164kFull_Stuff_Coarse_7" and len(ds) == 2 and ds.gt_k == 27
    _, label, mask = ds[0]
    fine = _png(root / "annotations" / "val2017" / "000000000021.png")[:, 4:44]
    expected = np.where(fine == 255, -1, FINE_TO_COARSE[np.minimum(fine, 181)])
    assert torch.equal(label, torch.from_numpy(expected)) and torch.equal(mask, label >= 0)
    assert (label[torch.from_numpy(fine == 0)] == 9).all()  # things count: person -> coarse 9
    assert (label[torch.from_numpy(fine == 105)] == 23).all()  # clouds -> sky


def test_coco27_partitions_use_the_benchmark_lists(tmp_path):
    root = make_coco27(tmp_path / "coco")
    parts = cocostuff_partitions(str(root), 27, "iid", size=16, eval_size=24, prescale=1.0)
    assert [p for p, _ in parts["train"].items] == [
        str(root / "images" / "train2017" / f"{i}.jpg") for i in COCO_IDS[("train2017", "Coco164kFull_Stuff_Coarse")]]
    assert parts["assign"] is parts["test"] and len(parts["test"]) == 2
    assert parts["train"][0][0].shape == (3, 16, 16) and parts["test"][0][0].shape == (3, 24, 24)
    plus = cocostuff_partitions(str(root), 27, "iid+", size=16, prescale=1.0)
    assert plus["assign"] is not plus["test"] and len(plus["assign"]) == 3


def test_cityscapes_label_ids_7_to_33_are_the_27_classes(tmp_path):
    root = make_cityscapes(tmp_path / "city")
    ds = Cityscapes(str(root), ["val"], short_side=None, size=32, crop="center")
    assert len(ds) == 2 and ds.gt_k == len(CLASS_NAMES) == 27
    _, label, mask = ds[0]
    ids = _png(root / "gtFine" / "val" / "frankfurt" / "frankfurt_000000_000294_gtFine_labelIds.png")[:, 16:48]
    assert torch.equal(label, torch.from_numpy(np.where(ids >= 7, ids - 7, -1))) and torch.equal(mask, label >= 0)
    assert CLASS_NAMES[0] == "road" and CLASS_NAMES[-1] == "bicycle"


def test_cityscapes_resize_and_partitions(tmp_path):
    root = make_cityscapes(tmp_path / "city")
    ds = Cityscapes(str(root), ["val"], short_side=16, size=40, crop="center")  # 32x64 -> 16x32, padded
    img, label, mask = ds[0]
    assert img.shape == (3, 40, 40) and int(mask.sum()) <= 16 * 32 and (label[~mask] == -1).all()
    parts = cityscapes_partitions(str(root), "iid", size=8, short_side=None)
    assert len(parts["train"]) == 3 and parts["assign"] is parts["test"] and len(parts["test"]) == 2
    img, label, mask = parts["train"][0]  # training images: no labels read, every pixel in the loss
    assert (label == -1).all() and mask.all() and img.shape == (3, 8, 8)
    with pytest.raises(DatasetError, match=r"gtFine/train/aachen/aachen_000000_000019_gtFine_labelIds\.png"):
        cityscapes_partitions(str(root), "iid+", size=8)
    with pytest.raises(DatasetError, match=r"leftImg8bit/test"):
        Cityscapes(str(root), ["test"])


@pytest.mark.parametrize("preset, make", [("cocostuff27", make_coco27), ("cityscapes27", make_cityscapes)])
def test_cli_trains_two_steps_and_reports_accuracy_and_miou(tmp_path, capsys, preset, make):
    from iic_fast.cli import main

    root, run = make(tmp_path / "data"), tmp_path / "run"
    small = ["input_size=16", "dataset_options.short_side=16", "dataset_options.eval_size=16", "num_workers=0",
             "d=2", "eval_batch_size=2", "log_every=1"]
    argv = ["train", "--preset", preset, "--data-root", str(root), "--out", str(run), "--max-steps", "2",
            "--no-progress", "--batch-size", "2", *[a for s in small for a in ("--set", s)]]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["preset"] == preset and summary["steps"] == 2 and summary["match"] == "hungarian"
    assert 0.0 <= summary["test_acc"] <= 1.0 and 0.0 <= summary["miou"] <= 1.0
    assert summary["test_acc_selection"] == "lowest_loss"  # which sub-head test_acc is
    evals = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    last = [r for r in evals if r["kind"] == "eval"][-1]
    assert len(last["per_class_iou"]) == 27 and last["test_acc_selection"] == "lowest_loss"
    config = json.loads((run / "config.json").read_text())
    assert config["border_ring"] and config["output_k_A"] == 81 and config["gt_k"] == 27


def test_unknown_dataset_options_are_named(tmp_path):
    from iic_fast.data import registry
    from iic_fast.train import preset

    root = make_cityscapes(tmp_path / "city")
    config = preset("cityscapes27", data_root=str(root), dataset_options={"short_side": 16, "unlabelled_as_sky": True})
    with pytest.raises(ValueError, match=r"\['unlabelled_as_sky'\] do not apply to cityscapes27"):
        registry.get("cityscapes27").build(config)


def test_declared_dataset_options_are_reader_arguments():
    import inspect

    from iic_fast.data import cityscapes, cocostuff

    for module, cls, parts in ((cocostuff, CocoStuff, cocostuff.cocostuff_partitions),
                               (cityscapes, Cityscapes, cityscapes.cityscapes_partitions)):
        names = set(inspect.signature(cls).parameters) | set(inspect.signature(parts).parameters)
        assert set(module.OPTIONS) <= names, set(module.OPTIONS) - names

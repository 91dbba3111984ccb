"""Folder datasets (your own images): formats, label layouts, splits, bad input, and the command line
``iic-fast train --data DIR`` on a folder written from the embedded Textures-3 mosaics."""
from __future__ import annotations

import io
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image, features

from iic_fast import data as D
from iic_fast.cli import main
from iic_fast.data import folder
from iic_fast.train import preset
from iic_fast.train.data import build_data, folder_config

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast. no compiled kernels")
RNG = np.random.default_rng(0)


def _rgb(h: int, w: int) -> np.ndarray:
    return RNG.integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path, arr, **kw) -> str:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(arr).save(path, **kw)
    return str(path)


def _grey(arr: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).convert("L"))


@pytest.mark.parametrize("ext, kw", [(".png", {}), (".tif", {}), (".bmp", {}), (".webp", {"lossless": True})])
def test_lossless_formats_read_back_exactly(tmp_path, ext, kw):
    if ext == ".webp" and not features.check("webp"):
        pytest.skip("Pillow without WebP")
    arr = _rgb(9, 7)
    path = _save(tmp_path / f"x{ext}", arr, **kw)
    assert np.array_equal(folder.read_image(path, 3), arr)
    assert np.array_equal(folder.read_image(path, 1)[..., 0], _grey(arr))


def test_rgba_drops_alpha_and_grey_repeats_to_rgb(tmp_path):
    arr = _rgb(5, 6)
    rgba = np.concatenate([arr, RNG.integers(0, 256, (5, 6, 1), dtype=np.uint8)], 2)
    assert np.array_equal(folder.read_image(_save(tmp_path / "a.png", rgba), 3), arr)
    g = _grey(arr)
    assert np.array_equal(folder.read_image(_save(tmp_path / "g.png", g), 3), np.stack([g] * 3, 2))
    with pytest.raises(ValueError, match="channels must be 1 .grey. or 3"):
        folder.read_image(str(tmp_path / "g.png"), 4)


def test_16_bit_png_is_scaled_to_8_bits(tmp_path):
    values = np.array([[0, 257, 65535], [128, 129, 257 * 100 + 128]], dtype=np.uint16)
    path = tmp_path / "d.png"
    Image.fromarray(values).save(path)
    assert Image.open(path).mode.startswith("I")
    assert folder.read_image(str(path), 1)[..., 0].tolist() == [[0, 1, 255], [0, 1, 100]]


def test_jpeg_exif_orientation_is_applied(tmp_path):
    arr = np.zeros((4, 8, 3), np.uint8)
    arr[:, :4] = 255  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # displayed rotated 90 degrees clockwise
    path = tmp_path / "r.jpg"
    Image.fromarray(arr).save(path, exif=exif, quality=100)
    out = folder.read_image(str(path), 1)[..., 0]
    assert out.shape == (8, 4)  # (H, W) of the displayed image
    assert out[:3].mean() > 200 and out[5:].mean() < 50  # the white left half is now on top


def _seg_folder(root, layout: str, n: int = 3, size=(20, 24), classes: int = 3) -> list:
    """Images + labels in ``layout`` "beside" (train/labels/x.png) or "stego" (labels/train/x.png)."""
    labels = []
    for split in ("train", "test"):
        for i in range(n):
            img_dir = root / ("imgs" if layout == "stego" else "") / split
            lab_dir = root / "labels" / split if layout == "stego" else root / split / "labels"
            _save(img_dir / f"im{i}.jpg", _rgb(*size))
            lab = RNG.integers(0, classes, size, dtype=np.uint8)
            lab[0, 0] = 255
            labels.append(lab)
            _save(lab_dir / f"im{i}.png", lab)
    return labels


@pytest.mark.parametrize("layout", ["beside", "stego"])
def test_label_layouts(tmp_path, layout):
    labels = _seg_folder(tmp_path, layout)
    files = folder.segmentation_files(str(tmp_path))
    assert sorted(files) == ["test", "train"] and [len(v) for v in files.values()] == [3, 3]
    assert all(lab is not None and os.path.basename(lab) == os.path.basename(img)[:-4] + ".png"
               for img, lab in files["train"])  # label folders are never read as images
    assert folder.count_classes(str(tmp_path), "segmentation") == 3
    parts = folder.segmentation_partitions(str(tmp_path), "iid", channels=1, size=16, classes=3)
    img, lab, mask = parts["test"][0]
    assert img.shape == (1, 16, 16) and img.dtype == torch.uint8
    assert lab[0, 0] == -1 and not mask[0, 0]  # 255 = ignore
    assert torch.equal(lab[1:, 1:], torch.from_numpy(labels[3][1:16, 1:16]).long())  # test tile (0, 0) of im0
    assert parts["train_b"][0][2].all()  # training crops: every pixel feeds the loss


def test_tiles_cover_each_image_and_random_crops_repeat(tmp_path):
    _seg_folder(tmp_path, "beside", n=1, size=(20, 40))
    parts = folder.segmentation_partitions(str(tmp_path), "iid", channels=3, size=16, classes=3)
    test, train = parts["test"], parts["train_a"]
    assert [w[1:] for w in test.windows] == [(0, 0), (0, 16), (0, 24), (4, 0), (4, 16), (4, 24)]
    assert len(train) == 6  # one random crop per tile: bigger images give more samples
    first = [train[i][0] for i in range(6)]
    assert all(torch.equal(a, train[i][0]) for i, a in enumerate(first))  # a function of (seed, epoch, index)
    train.set_epoch(1)
    assert not all(torch.equal(a, train[i][0]) for i, a in enumerate(first))


def test_seeded_split_and_val_folder(tmp_path):
    for i in range(10):
        _save(tmp_path / "flat" / f"{i}.png", _rgb(16, 16))
    train, test = folder._split(folder.segmentation_files(str(tmp_path / "flat")))
    assert len(test) == 2 and len(train) == 8 and not set(train) & set(test)
    assert (train, test) == folder._split(folder.segmentation_files(str(tmp_path / "flat")))
    _save(tmp_path / "tv" / "train" / "a.png", _rgb(16, 16))
    _save(tmp_path / "tv" / "val" / "b.png", _rgb(16, 16))
    assert sorted(folder.segmentation_files(str(tmp_path / "tv"))) == ["test", "train"]


def test_clustering_class_folders_and_flat(tmp_path):
    for c in ("cat", "dog"):
        for i in range(3):
            _save(tmp_path / "cls" / "train" / c / f"{i}.png", _rgb(30, 20))
            _save(tmp_path / "cls" / "test" / c / f"{i}.png", _rgb(30, 20))
    assert folder.count_classes(str(tmp_path / "cls"), "clustering") == 2
    parts = folder.clustering_partitions(str(tmp_path / "cls"), "iid", channels=3, size=12, classes=2)
    x, y = parts["test"].tensors
    assert x.shape == (6, 3, 12, 12) and x.dtype == torch.uint8 and y.tolist() == [0, 0, 0, 1, 1, 1]
    for i in range(4):
        _save(tmp_path / "flat" / f"{i}.png", _rgb(10, 10))
    assert folder.count_classes(str(tmp_path / "flat"), "clustering") is None
    parts = folder.clustering_partitions(str(tmp_path / "flat"), "iid", channels=1, size=8, classes=None)
    assert (parts["train_a"].tensors[1] == -1).all() and parts["train_a"].tensors[0].shape[1:] == (1, 8, 8)


# ------------------------------------------------------------------ bad input
def test_empty_folder_and_no_readable_image_name_the_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(D.DatasetError, match="no readable image in '.*empty'"):
        folder.segmentation_partitions(str(tmp_path / "empty"), "iid", channels=1, size=8, classes=None)
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "notes.txt").write_text("hello")
    with pytest.raises(D.DatasetError, match="no readable image in '.*txt'"):
        folder.clustering_partitions(str(tmp_path / "txt"), "iid", channels=1, size=8, classes=None)
    with pytest.raises(D.DatasetError, match="not a folder"):
        folder.segmentation_files(str(tmp_path / "missing"))


def _corrupt_folder(root):
    for i in range(3):
        _save(root / f"ok{i}.png", _rgb(16, 16))
    (root / "bad.jpg").write_bytes(b"not an image at all")
    buf = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(buf, format="PNG")
    (root / "cut.png").write_bytes(buf.getvalue()[:200])  # truncated


def test_corrupt_and_truncated_images_error_or_skip(tmp_path, capsys):
    _corrupt_folder(tmp_path)
    with pytest.raises(D.DatasetError, match="bad.jpg"):
        folder.segmentation_partitions(str(tmp_path), "iid", channels=1, size=8, classes=None)
    with pytest.raises(D.DatasetError, match="cut.png"):
        folder.read_image(str(tmp_path / "cut.png"), 1)
    parts = folder.segmentation_partitions(str(tmp_path), "iid", channels=1, size=16, classes=None,
                                           skip_bad_images=True)
    assert len(parts["train_a"]) + len(parts["test"]) == 3
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 2 and "bad.jpg" in lines[0] and "cut.png" in lines[1]


def test_bad_labels_name_the_files(tmp_path):
    _save(tmp_path / "a" / "x.png", _rgb(10, 12))
    _save(tmp_path / "a" / "labels" / "x.png", np.zeros((12, 10), np.uint8))
    with pytest.raises(D.DatasetError, match=r"label '.*labels/x.png' is 10x12.*image '.*a/x.png' is 12x10"):
        folder.segmentation_partitions(str(tmp_path / "a"), "iid", channels=1, size=8, classes=3)
    lab = np.zeros((10, 12), np.uint8)
    lab[3, 3] = 7
    _save(tmp_path / "b" / "x.png", _rgb(10, 12))
    _save(tmp_path / "b" / "labels" / "x.png", lab)
    with pytest.raises(D.DatasetError, match="labels/x.png' holds class id 7: ids must be below 3"):
        folder.segmentation_partitions(str(tmp_path / "b"), "iid", channels=1, size=8, classes=3)
    _save(tmp_path / "c" / "x.png", _rgb(10, 12))
    _save(tmp_path / "c" / "labels" / "x.png", np.full((10, 12), 300, np.uint16))
    with pytest.raises(D.DatasetError, match="holds class id 300"):
        folder.count_classes(str(tmp_path / "c"), "segmentation")
    _save(tmp_path / "d" / "x.png", _rgb(10, 12))
    _save(tmp_path / "d" / "y.png", _rgb(10, 12))
    _save(tmp_path / "d" / "labels" / "x.png", np.zeros((10, 12), np.uint8))
    with pytest.raises(D.DatasetError, match="labels/y.png' is missing"):
        folder.segmentation_files(str(tmp_path / "d"))


def test_small_images_error_or_upscale(tmp_path):
    _save(tmp_path / "s" / "small.png", _rgb(10, 30))
    with pytest.raises(D.DatasetError, match="small.png' is 30x10, smaller than the 16x16 crop"):
        folder.segmentation_partitions(str(tmp_path / "s"), "iid", channels=1, size=16, classes=None)
    parts = folder.segmentation_partitions(str(tmp_path / "s"), "iid", channels=1, size=16, classes=None,
                                           upscale_small=True)
    assert parts["test"].images[0].shape == (1, 16, 48)


@pytest.mark.parametrize("argv, message", [
    (["--k", "1"], "--k must be at least 2"),
    (["--k", "3", "--input-size", "30"], "--input-size must be a multiple of 4"),
    (["--k", "3", "--preset", "digits"], "does not combine"),
    (["--k", "3", "--set", "dataset_options.nope=1"], "not options of folder segmentation"),
])
def test_cli_bad_folder_arguments_exit_2(tmp_path, capsys, argv, message):
    _save(tmp_path / "imgs" / "a.png", _rgb(40, 40))
    _save(tmp_path / "imgs" / "b.png", _rgb(40, 40))
    code = main(["train", "--data", str(tmp_path / "imgs"), "--task", "segmentation", "--out", str(tmp_path / "run"),
                 "--no-progress", "--max-steps", "1", "--batch-size", "2", *argv])
    assert code == 2 and message in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # nothing written


def test_cli_flag_combinations_exit_2(tmp_path, capsys):
    _save(tmp_path / "imgs" / "a.png", _rgb(40, 40))
    (tmp_path / "file").write_text("x")
    assert main(["train", "--task", "segmentation"]) == 2
    assert "--task goes with --data" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "imgs"), "--k", "3"]) == 2
    assert "needs --task" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "imgs"), "--task", "clustering"]) == 2
    assert "--k (the number of clusters) is needed" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "imgs"), "--task", "segmentation", "--k", "3",
                 "--out", str(tmp_path / "file")]) == 2
    assert "is a file" in capsys.readouterr().err
    assert main(["train", "--data", str(tmp_path / "nowhere"), "--task", "segmentation", "--k", "3"]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_folder_config_defaults():
    c = folder_config(os.path.dirname(__file__), "clustering", 4, rgb=True)
    assert (c.dataset, c.output_k_B, c.output_k_A, c.arch, c.gt_k) == ("folder_clustering", 4, 28,
                                                                        "SmallClusterNetTwoHead", None)
    assert D.registry.get(c.dataset).in_channels(c) == 5  # RGB + Sobel, known from the config alone
    g = folder_config(os.path.dirname(__file__), "segmentation", 3, cuda=True)
    assert (g.arch, g.input_size, g.output_k_A) == ("SegmentationNet10aTwoHead", 128, 12)
    assert D.registry.get(g.dataset).in_channels(g) == 3  # grey + Sobel
    # on the CPU: the textures3 preset's settings but for its grey-only input, 300 steps and two starts
    cpu = folder_config(os.path.dirname(__file__), "segmentation", 3)
    assert (cpu.arch, cpu.max_steps, cpu.candidates, cpu.candidate_jobs) == ("SmallSegNetTwoHead", 550, 1, 1)
    assert D.registry.get(cpu.dataset).in_channels(cpu) == 3 and preset("textures3").candidates == 2


# ------------------------------------------------------------------ round trips through the trainer
def _write_textures3(root, n_train: int, n_test: int, size: int = 64):
    """The embedded Textures-3 mosaics as 8-bit PNGs + label PNGs; returns the quantised tensors."""
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x, y = D.textures3(split, n_images=n, size=size, seed=0)
        q = torch.from_numpy(np.rint(x.numpy() * 255).astype(np.uint8))
        for i in range(n):
            _save(root / split / f"{i:05d}.png", q[i, 0].numpy())
            _save(root / split / "labels" / f"{i:05d}.png", y[i].numpy().astype(np.uint8))
        out[split] = (q, y)
    return out


def test_textures3_folder_round_trip(tmp_path, capsys):
    ref = _write_textures3(tmp_path / "t3", 8, 4)
    config = folder_config(str(tmp_path / "t3"), "segmentation", 3)
    assert config.gt_k == 3 and config.arch == preset("textures3").arch
    data = build_data(config.__class__.from_dict({**config.to_dict(), "batch_size": 4}), torch.device("cpu"))
    test = [data.test[i] for i in range(len(data.test))]
    assert torch.equal(torch.stack([t[0] for t in test]), ref["test"][0])
    assert torch.equal(torch.stack([t[1] for t in test]), ref["test"][1])
    train = torch.stack([data.streams["B"].loader.dataset[i][0] for i in range(8)])
    assert torch.equal(train, ref["train"][0])  # 64x64 images, 64x64 crops: the images themselves
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "t3"), "--task", "segmentation", "--k", "3", "--out", str(run),
                 "--max-steps", "2", "--batch-size", "4", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["match"] == "hungarian" and 0.0 < summary["test_acc"] <= 1.0


def test_unlabelled_run_reports_loss_and_cluster_sizes(tmp_path, capsys):
    for i in range(5):
        _save(tmp_path / "u" / f"{i}.jpg", _rgb(40, 48))
    run = tmp_path / "run"
    assert main(["train", "--data", str(tmp_path / "u"), "--task", "segmentation", "--k", "4", "--out", str(run),
                 "--max-steps", "1", "--batch-size", "4", "--input-size", "32", "--no-progress"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["test_acc"] is None and summary["match"] is None
    record = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()][-1]
    assert record["kind"] == "eval" and len(record["cluster_sizes"]) == 4
    assert sum(record["cluster_sizes"]) == 4 * 32 * 32  # the test image's 4 tiles
    assert (run / "predictions.png").exists() and (run / "best.pt").exists()

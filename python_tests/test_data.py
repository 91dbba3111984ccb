"""Tests of the dataset readers, embedded data and loaders of iic_fast.data.

Each reader gets small fixture files written here in the real release formats."""
import gzip
import os
import pickle

import numpy as np
import pytest
import scipy.io
import torch
from PIL import Image

from iic_fast import data as D
from iic_fast.data import DatasetError

# ------------------------------------------------------------------ Potsdam
P_IDS = {"unlabelled_train": [0, 1], "labelled_train": [2, 3, 4], "labelled_test": [5]}


def make_potsdam(root, side=20):
    rng = np.random.default_rng(0)
    os.makedirs(root / "imgs"), os.makedirs(root / "gt")
    for name, ids in P_IDS.items():
        (root / f"{name}.txt").write_text("".join(f"{i}\n" for i in ids))
        for i in ids:
            img = rng.integers(0, 256, (side, side, 4), dtype=np.uint8)
            scipy.io.savemat(root / "imgs" / f"{i}.mat", {"img": img})
            if name != "unlabelled_train":
                # label is a function of the image so crops can be checked for alignment
                gt = (img[:, :, 0].astype(np.int32) % 6)
                scipy.io.savemat(root / "gt" / f"{i}.mat", {"gt": gt})
    return root


def test_potsdam_reads_and_maps(tmp_path):
    root = make_potsdam(tmp_path / "potsdam")
    ds = D.Potsdam(str(root), ["labelled_train"], coarse=False, size=20, crop="center")
    img, label, mask = ds[0]
    raw = scipy.io.loadmat(root / "imgs" / "2.mat")["img"]
    assert img.dtype == torch.uint8 and img.shape == (4, 20, 20) and ds.gt_k == 6
    assert torch.equal(img, torch.from_numpy(raw).permute(2, 0, 1))
    assert torch.equal(label, torch.from_numpy(raw[:, :, 0].astype(np.int64) % 6)) and mask.all()
    ds3 = D.Potsdam(str(root), ["labelled_train"], coarse=True, size=20, crop="center")
    assert torch.equal(ds3[0][1], torch.from_numpy(D.POTSDAM_6_TO_3[raw[:, :, 0] % 6]))
    assert D.POTSDAM_6_TO_3.tolist() == [0, 1, 2, 2, 0, 1]  # {0,4}->0 {1,5}->1 {2,3}->2
    unl = D.Potsdam(str(root), ["unlabelled_train"], size=20)
    assert (unl[0][1] == -1).all()


def test_potsdam_random_crop_aligned_and_seeded(tmp_path):
    root = make_potsdam(tmp_path / "potsdam")
    ds = D.Potsdam(str(root), ["labelled_train"], coarse=False, size=12, crop="random", seed=3)
    img, label, mask = ds[1]
    assert img.shape == (4, 12, 12)
    assert torch.equal(label, img[0].long() % 6)  # same window in image and label
    again = ds[1]
    assert torch.equal(again[0], img)  # (seed, epoch, index) fixes the crop
    ds.set_epoch(1)
    assert any(not torch.equal(ds[i][0], D.Potsdam(str(root), ["labelled_train"], size=12, seed=3)[i][0])
               for i in range(3))
    big = D.Potsdam(str(root), ["labelled_train"], size=24, crop="center")
    _, lab, m = big[0]
    assert lab.shape == (24, 24) and not m.all() and (lab[~m] == -1).all()  # padding masked


def test_potsdam_partitions(tmp_path):
    root = make_potsdam(tmp_path / "potsdam")
    p = D.potsdam_partitions(str(root), "iid", size=20)
    assert (len(p["train"]), len(p["assign"]), len(p["test"])) == (6, 4, 4)
    p = D.potsdam_partitions(str(root), "iid+", size=20)
    assert (len(p["train"]), len(p["assign"]), len(p["test"])) == (5, 3, 1)


def test_potsdam_errors(tmp_path):
    root = make_potsdam(tmp_path / "potsdam")
    os.remove(root / "imgs" / "3.mat")
    with pytest.raises(FileNotFoundError, match=r"imgs/3\.mat") as e:
        D.Potsdam(str(root), ["labelled_train"])
    assert isinstance(e.value, DatasetError) and "Expected layout" in str(e.value)
    with pytest.raises(DatasetError, match="labelled_test.txt"):
        os.remove(root / "labelled_test.txt")
        D.Potsdam(str(root), ["labelled_test"])
    (root / "imgs" / "0.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DatasetError, match=r"corrupt.*imgs/0\.mat"):
        D.Potsdam(str(root), ["unlabelled_train"])
    scipy.io.savemat(root / "imgs" / "0.mat", {"image": np.zeros((4, 4, 4), np.uint8)})
    with pytest.raises(DatasetError, match="no key 'img'"):
        D.Potsdam(str(root), ["unlabelled_train"])
    with pytest.raises(DatasetError, match="missing"):
        D.Potsdam(str(tmp_path / "nowhere"))


# ------------------------------------------------------------------ COCO-Stuff
def make_coco(root, h=30, w=40):
    rng = np.random.default_rng(1)
    # fine labels: sky (105, 156), plant (123), ground (148), things (0 person), other stuff
    # (171 wall-brick), unlabelled 255
    choices = np.array([105, 156, 123, 148, 0, 171, 255])
    ids = {"train2017": ["000000000001", "000000000002"], "val2017": ["000000000003"]}
    for split, names in ids.items():
        for sub in ("images", "annotations", "curated"):
            os.makedirs(root / sub / split)
        for lst in ("Coco164kFew_Stuff_6", "Coco164kFull_Stuff_Coarse_7"):
            (root / "curated" / split / f"{lst}.txt").write_text("\n".join(names) + "\n")
        for n in names:
            Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(
                root / "images" / split / f"{n}.jpg", quality=95)
            Image.fromarray(choices[rng.integers(0, 7, (h, w))].astype(np.uint8), mode="L").save(
                root / "annotations" / split / f"{n}.png")
    return root


def test_coco_label_maps(tmp_path):
    root = make_coco(tmp_path / "coco")
    fine = np.asarray(Image.open(root / "annotations" / "train2017" / "000000000001.png")).astype(np.int64)
    ds3 = D.CocoStuff(str(root), ["train2017"], classes=3, prescale=1.0, size=30, crop="center")
    img, label, mask = ds3[0]
    exp3 = np.full(fine.shape, -1)
    exp3[np.isin(fine, [105, 156])], exp3[fine == 123], exp3[fine == 148] = 0, 1, 2
    c = (40 - 30) // 2
    assert torch.equal(label, torch.from_numpy(exp3[:, c:c + 30]))
    assert torch.equal(mask, label >= 0) and img.shape == (3, 30, 30) and img.dtype == torch.uint8
    ds15 = D.CocoStuff(str(root), ["train2017"], classes=15, prescale=1.0, size=30, crop="center")
    lab15 = ds15[0][1].numpy()
    f = fine[:, c:c + 30]
    assert (lab15[np.isin(f, [105, 156])] == D.COARSE_NAMES.index("sky") - 12).all()
    assert (lab15[f == 171] == D.COARSE_NAMES.index("wall") - 12).all()
    assert (lab15[np.isin(f, [0, 255])] == -1).all()
    assert len(D.CocoStuff(str(root), classes=15, prescale=1.0, size=30)) == 3


def test_coco_fine_to_coarse_table():
    f2c, names = D.FINE_TO_COARSE, D.FINE_NAMES
    assert f2c.shape == (182,) and np.bincount(f2c).sum() == 182
    assert (f2c[:91] < 12).all() and (f2c[91:] >= 12).all()  # things 0..11, stuff 12..26
    assert {int(f2c[names.index(n)]) for n in ("clouds", "sky-other")} == {23}
    assert f2c[names.index("person")] == 9 and f2c[names.index("gravel")] == 21
    t3 = D.fine_to_target_table(3)
    assert sorted(np.where(t3 == 0)[0]) == [105, 156]
    assert sorted(np.where(t3 == 1)[0]) == [93, 96, 118, 123, 128, 133, 141, 162, 168]
    assert sorted(np.where(t3 == 2)[0]) == [110, 124, 125, 135, 139, 143, 144, 146, 148, 153, 158]
    assert t3[255] == -1 and D.fine_to_target_table(15)[255] == -1


def test_coco_prescale_crop_and_pickle(tmp_path):
    root = make_coco(tmp_path / "coco", h=300, w=400)
    ds = D.CocoStuff(str(root), ["val2017"], classes=3, size=64, crop="random", channel_order="bgr")
    img, label, mask = ds[0]
    assert img.shape == (3, 64, 64) and label.shape == (64, 64)
    small = D.CocoStuff(str(root), ["val2017"], classes=3, size=128, crop="center")
    _, lab, m = small[0]  # 0.33 * 300 = 99 rows < 128: padded rows are masked
    assert (~m).sum() >= (128 - 99) * 128 and (lab[~m] == -1).all()
    pk = tmp_path / "fine_to_coarse_dict.pickle"
    with open(pk, "wb") as fh:
        pickle.dump({"fine_index_to_coarse_index": {i: int(c) for i, c in enumerate(D.FINE_TO_COARSE)}}, fh, 2)
    assert np.array_equal(D.load_fine_to_coarse_pickle(str(pk)), D.FINE_TO_COARSE)


def test_coco_errors(tmp_path):
    root = make_coco(tmp_path / "coco")
    with pytest.raises(FileNotFoundError, match=r"curated/train2017/Coco164kFew_Stuff_5\.txt"):
        D.CocoStuff(str(root), ["train2017"], version=5)
    os.remove(root / "annotations" / "val2017" / "000000000003.png")
    with pytest.raises(DatasetError, match=r"annotations/val2017/000000000003\.png"):
        D.CocoStuff(str(root), ["val2017"])
    Image.new("RGB", (40, 30)).save(root / "annotations" / "val2017" / "000000000003.png")
    with pytest.raises(DatasetError, match="expected one channel"):
        D.CocoStuff(str(root), ["val2017"])
    (root / "images" / "train2017" / "000000000001.jpg").write_bytes(b"\xff\xd8garbage")
    with pytest.raises(DatasetError, match=r"corrupt.*000000000001\.jpg"):
        D.CocoStuff(str(root), ["train2017"])


# ------------------------------------------------------------------ STL10
def write_stl(d, name, imgs, labels=None):
    # official layout: each image column-major, i.e. (C, W, H) bytes
    (d / f"{name}_X.bin").write_bytes(imgs.transpose(0, 1, 3, 2).tobytes())
    if labels is not None:
        (d / f"{name}_y.bin").write_bytes((labels + 1).astype(np.uint8).tobytes())


def test_stl10(tmp_path):
    d = tmp_path / "stl10_binary"
    d.mkdir()
    rng = np.random.default_rng(2)
    tr, te, un = (rng.integers(0, 256, (n, 3, 96, 96), dtype=np.uint8) for n in (3, 2, 4))
    write_stl(d, "train", tr, np.array([0, 9, 4]))
    write_stl(d, "test", te, np.array([1, 2]))
    write_stl(d, "unlabeled", un)
    ds = D.stl10(str(tmp_path), "train")
    assert np.array_equal(ds.images, tr) and ds.labels.tolist() == [0, 9, 4]
    x, y = ds[1]
    assert torch.equal(x, torch.from_numpy(tr[1])) and y == 9
    assert (D.stl10(str(d), "unlabeled").labels == -1).all()
    assert len(D.stl10(str(tmp_path), "train+unlabeled")) == 7
    p = D.clustering_partitions("stl10", str(tmp_path), "iid")
    assert [len(p[k]) for k in ("train_a", "train_b", "assign", "test")] == [9, 5, 5, 5]
    p = D.clustering_partitions("stl10", str(tmp_path), "iid", leave_out_unlabelled=True)
    assert len(p["train_a"]) == 5
    p = D.clustering_partitions("stl10", str(tmp_path), "iid+")
    assert [len(p[k]) for k in ("train_a", "assign", "test")] == [7, 3, 2]


def test_stl10_errors(tmp_path):
    d = tmp_path / "stl10_binary"
    d.mkdir()
    with pytest.raises(FileNotFoundError, match="train_X.bin"):
        D.stl10(str(tmp_path), "train")
    (d / "train_X.bin").write_bytes(b"\0" * 1000)
    with pytest.raises(DatasetError, match="not a multiple"):
        D.stl10(str(d), "train")
    write_stl(d, "train", np.zeros((2, 3, 96, 96), np.uint8), np.array([0, 1, 2]))
    with pytest.raises(DatasetError, match="3 labels for 2 images"):
        D.stl10(str(d), "train")


# ------------------------------------------------------------------ CIFAR
def test_cifar10(tmp_path):
    d = tmp_path / "cifar-10-batches-py"
    d.mkdir()
    rng = np.random.default_rng(3)
    batches = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (4, 3072), dtype=np.uint8)
        y = rng.integers(0, 10, 4).tolist()
        with open(d / name, "wb") as f:
            pickle.dump({b"data": x, b"labels": y, b"batch_label": b"x"}, f, protocol=2)
        batches.append((x, y))
    tr = D.cifar10(str(tmp_path), "train")
    assert tr.images.shape == (20, 3, 32, 32) and tr.labels.tolist() == sum((b[1] for b in batches[:5]), [])
    assert np.array_equal(tr.images[0], batches[0][0][0].reshape(3, 32, 32))
    assert len(D.cifar10(str(d), "test")) == 4
    assert len(D.clustering_partitions("cifar10", str(tmp_path), "iid")["test"]) == 24
    (d / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DatasetError, match="data_batch_3"):
        D.cifar10(str(tmp_path), "train")
    os.remove(d / "data_batch_3")
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        D.cifar10(str(tmp_path), "train")


def test_cifar100_20(tmp_path):
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    fine = list(range(100))
    for name in ("train", "test"):
        with open(d / name, "wb") as f:
            pickle.dump({b"data": np.zeros((100, 3072), np.uint8), b"fine_labels": fine,
                         b"coarse_labels": [0] * 100}, f, protocol=2)
    ds = D.cifar100_20(str(tmp_path), "train")
    assert ds.gt_k == 20 and ds.labels.tolist() == D.CIFAR100_TO_20.tolist()
    assert np.bincount(D.CIFAR100_TO_20).tolist() == [5] * 20
    # a few superclasses by name: beaver(4)/dolphin(30) aquatic mammals 0, bicycle(8) vehicles 1 = 18
    assert D.CIFAR100_TO_20[4] == D.CIFAR100_TO_20[30] == 0 and D.CIFAR100_TO_20[8] == 18
    assert D.CIFAR100_TO_20[41] == 19 and D.CIFAR100_TO_20[54] == 2


# ------------------------------------------------------------------ MNIST
def write_idx(path, arr, gz):
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(head + arr.tobytes())


@pytest.mark.parametrize("gz", [False, True])
def test_mnist(tmp_path, gz):
    d = tmp_path / "MNIST" / "raw"
    d.mkdir(parents=True)
    rng = np.random.default_rng(4)
    ext = ".gz" if gz else ""
    for pre, n in (("train", 5), ("t10k", 3)):
        write_idx(d / f"{pre}-images-idx3-ubyte{ext}", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), gz)
        write_idx(d / f"{pre}-labels-idx1-ubyte{ext}", rng.integers(0, 10, n).astype(np.uint8), gz)
    tr, te = D.mnist(str(tmp_path), "train"), D.mnist(str(tmp_path), "test")
    assert tr.images.shape == (5, 1, 28, 28) and te.images.shape == (3, 1, 28, 28)
    assert tr.labels.dtype == np.int64 and tr.labels.max() <= 9
    assert len(D.clustering_partitions("mnist", str(tmp_path), "iid")["train_a"]) == 8


def test_mnist_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="train-images-idx3-ubyte"):
        D.mnist(str(tmp_path), "train")
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x0c\x03" + b"\0" * 12)
    (tmp_path / "train-labels-idx1-ubyte").write_bytes(b"\x00\x00\x08\x01" + (2).to_bytes(4, "big") + b"\0\1")
    with pytest.raises(DatasetError, match="bad idx magic"):
        D.mnist(str(tmp_path), "train")
    write_idx(tmp_path / "train-images-idx3-ubyte", np.zeros((3, 28, 28), np.uint8), False)
    with pytest.raises(DatasetError, match="2 labels for 3 images"):
        D.mnist(str(tmp_path), "train")


# ------------------------------------------------------------------ embedded data
def test_textures3_deterministic_and_well_formed():
    a = D.textures3("train", n_images=6, size=32, seed=0)
    b = D.textures3("train", n_images=6, size=32, seed=0)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    c = D.textures3("train", n_images=6, size=32, seed=1)
    t = D.textures3("test", n_images=6, size=32, seed=0)
    assert not torch.equal(a[0], c[0]) and not torch.equal(a[0], t[0])
    x, y = D.textures3("test", n_images=20, size=64, seed=2)
    assert x.shape == (20, 1, 64, 64) and x.dtype == torch.float32 and y.shape == (20, 64, 64)
    assert y.dtype == torch.int64 and set(y.unique().tolist()) == {0, 1, 2}
    assert x.min() >= 0 and x.max() <= 1
    # brightness is normalised: class means differ by little compared with within-class spread
    means = torch.stack([x[:, 0][y == k].mean() for k in range(3)])
    stds = torch.stack([x[:, 0][y == k].std() for k in range(3)])
    assert (means.max() - means.min()) < 0.5 * stds.min()
    with pytest.raises(ValueError):
        D.textures3("test", size=200)


def test_digits_deterministic_split():
    xa, ya = D.digits("train", seed=0)
    xb, yb = D.digits("train", seed=0)
    xt, yt = D.digits("test", seed=0)
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert xa.shape[1:] == (1, 8, 8) and xa.dtype == torch.float32 and 0 <= xa.min() and xa.max() <= 1
    assert len(ya) + len(yt) == 1797 and ya.dtype == torch.int64
    xall, _ = D.digits("all")
    rows = lambda x: {tuple(r) for r in x.flatten(1).tolist()}  # noqa: E731
    assert rows(xa) | rows(xt) == rows(xall)
    assert not torch.equal(D.digits("train", seed=1)[1], ya)
    assert torch.bincount(yt).min() >= 40  # stratified


# ------------------------------------------------------------------ loaders
def test_loader_epochs_and_workers(tmp_path):
    root = make_potsdam(tmp_path / "potsdam")
    ds = D.Potsdam(str(root), size=12, seed=5)

    def epoch_batches(workers, epoch):
        loader = D.make_loader(ds, 4, seed=1, num_workers=workers, pin_memory=False)
        return [b for b in D.device_batches(loader, "cpu", epoch=epoch)]

    e0, e0b, e1 = epoch_batches(0, 0), epoch_batches(2, 0), epoch_batches(0, 1)
    assert len(e0) == 2 and e0[0][0].shape == (4, 4, 12, 12) and e0[0][2].dtype == torch.bool
    assert all(torch.equal(u, v) for b0, b1 in zip(e0, e0b) for u, v in zip(b0, b1))  # worker-invariant
    assert not torch.equal(e0[0][0], e1[0][0])
    img, label, mask = e0[0]
    img1, img2, a21, m = D.segmentation_preset("potsdam")(img, mask, torch.Generator().manual_seed(0))
    assert img1.shape == (4, 4, 12, 12) and m.shape == (4, 12, 12)

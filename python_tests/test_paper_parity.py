"""Paper parity down to the pixel (issue 16): the paper presets reproduce the original's COCO-Stuff-3
labels, COCO channel order, segmentation head and evaluation details."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torch.utils.data import TensorDataset

from iic_fast.data import registry, segmentation_preset
from iic_fast.train import preset
from iic_fast.train.data import RunData, build_net, eval_loader
from iic_fast.train.evaluation import Evaluator
from test_data import make_coco as make_coco_layout

pytestmark = pytest.mark.filterwarnings("ignore:iic_fast. no compiled kernels")


# ------------------------------------------------------------------ COCO-Stuff fixtures
def make_coco(root):
    """COCO-Stuff layout (test_data's fixture: sky, plant, ground, a thing, other stuff, unlabelled)."""
    return make_coco_layout(root, h=60, w=72)


def coco_config(name, root, **kw):
    # prescale 1 (no resampling) and a centre crop of the whole height: labels map pixel to pixel
    options = {**preset(name).dataset_options, "prescale": 1.0, **kw.pop("dataset_options", {})}
    return preset(name, data_root=str(root), input_size=60, dataset_options=options, **kw)


def _fine_crop(root, config):
    test = registry.get(config.dataset).build(config)["test"]
    img_path, label_path = test.items[0]
    fine = np.asarray(Image.open(label_path)).astype(np.int64)[:, 6:66]
    return test, torch.from_numpy(fine)


# ------------------------------------------------------------------ item 1: unlabelled pixels
def test_cocostuff3_preset_counts_unlabelled_pixels_as_sky(tmp_path):
    root = make_coco(tmp_path / "coco")
    test, fine = _fine_crop(root, coco_config("cocostuff3", root))
    _, label, mask = test[0]
    unl = fine == 255
    assert unl.any() and (label[unl] == 0).all() and mask[unl].all()  # sky, counted, as the original
    assert (label[fine == 0] == -1).all() and not mask[fine == 0].any()  # things stay masked
    off = coco_config("cocostuff3", root, dataset_options={"unlabelled_as_sky": False})
    _, label, mask = registry.get("cocostuff3").build(off)["test"][0]
    assert (label[unl] == -1).all() and not mask[unl].any()  # our option: masked out


def test_cocostuff15_masks_unlabelled_pixels(tmp_path):
    root = make_coco(tmp_path / "coco")
    test, fine = _fine_crop(root, coco_config("cocostuff15", root))
    _, label, mask = test[0]
    assert (label[fine == 255] == -1).all() and not mask[fine == 255].any()


# ------------------------------------------------------------------ item 2: BGR channel order
def _sobel_of_grey(grey):
    gx = torch.tensor([[1.0, 0.0, -1.0], [2.0, 0.0, -2.0], [1.0, 0.0, -1.0]], dtype=grey.dtype)
    w = torch.stack([gx, gx.T]).unsqueeze(1)  # Gy = Gx transposed: [[1,2,1],[0,0,0],[-1,-2,-1]]
    return F.conv2d(grey[None, None], w, padding=1)[0]


@pytest.mark.parametrize("name", ["cocostuff3", "cocostuff15"])
def test_coco_presets_feed_the_original_bgr_sobel_input(tmp_path, name):
    root = make_coco(tmp_path / "coco")
    config = coco_config(name, root)
    test = registry.get(config.dataset).build(config)["test"]
    x = registry.get(config.dataset).pairs(config).eval_transform(test[0][0][None])[0]
    rgb = torch.from_numpy(np.array(Image.open(test.items[0][0]).convert("RGB"))).permute(2, 0, 1)[:, :, 6:66]
    r, g, b = rgb.double() / 255
    assert torch.allclose(x[:3].double(), torch.stack([b, g, r]), atol=1e-6)  # c0, c1, c2 = B, G, R
    bgr_grey = 0.299 * b + 0.587 * g + 0.114 * r  # cv2 RGB2GRAY weights on BGR data, as the original
    assert torch.allclose(x[3:5].double(), _sobel_of_grey(bgr_grey), atol=1e-4)
    assert not torch.allclose(x[3:5].double(), _sobel_of_grey(0.299 * r + 0.587 * g + 0.114 * b), atol=1e-2)


# ------------------------------------------------------------------ item 3: the original head
@pytest.mark.parametrize("name", ["potsdam3", "cocostuff3", "cocostuff15-iidplus", "cocostuff27"])
def test_paper_preset_net_has_the_original_border_ring(name):
    config = preset(name)
    channels = registry.get(config.dataset).in_channels(config)
    net = build_net(config, SimpleNamespace(in_channels=channels, input_sz=32)).eval()
    gen = torch.Generator().manual_seed(0)  # an original-layout state_dict: same keys, 1x1 weights, no bias
    original = {k: torch.rand(v.shape, generator=gen) + 0.5 if v.is_floating_point() else v
                for k, v in net.state_dict().items()}
    net.load_state_dict(original, strict=True)
    head = net.head_B if config.two_head else net.head
    with torch.no_grad():
        feats = net.features(torch.rand(2, channels, 32, 32, generator=gen))
        probs = head(feats)[0]  # before the upsampling
    k = head.output_k
    assert probs.shape[-2:] == (feats.shape[-2] + 2, feats.shape[-1] + 2)
    ring = torch.cat([probs[..., 0, :], probs[..., -1, :], probs[..., :, 0], probs[..., :, -1]], -1)
    assert torch.equal(ring, torch.full_like(ring, 1.0 / k))
    assert not torch.allclose(probs[..., 1:-1, 1:-1], torch.full_like(probs[..., 1:-1, 1:-1], 1.0 / k))
    off = build_net(preset(name, border_ring=False), SimpleNamespace(in_channels=channels, input_sz=32))
    assert (off.head_B if config.two_head else off.head)(feats)[0].shape[-2:] == feats.shape[-2:]


# ------------------------------------------------------------------ items 4 and 5: evaluation
class TwoSubheads(nn.Module):
    """Sub-head 0 reads the class off the grey level (perfect), sub-head 1 says class 0 everywhere.
    A BatchNorm (unused by the outputs) shows which mode the network ran in."""

    def __init__(self):
        super().__init__()
        self.bn = nn.BatchNorm2d(1)
        self.modes: list[bool] = []

    def forward(self, x, head="B"):
        self.modes.append(self.training)
        self.bn(x[:, :1])
        cls = (x[:, 0] * 255 / 100).round().long().clamp(0, 2)
        return [F.one_hot(cls, 3).permute(0, 3, 1, 2).float(), F.one_hot(torch.zeros_like(cls), 3).permute(0, 3, 1, 2).float()]


def _evaluator(config, net, assign_copy=False):
    cls = torch.arange(12).remainder(3).view(12, 1, 1).expand(12, 8, 8)
    test = TensorDataset((cls * 100).to(torch.uint8)[:, None], cls.clone(), torch.ones(12, 8, 8, dtype=torch.bool))
    assign = TensorDataset(*test.tensors) if assign_copy else test
    data = RunData(streams={}, assign=assign, test=test, pairs=segmentation_preset("textures3"), in_channels=3,
                   input_sz=8, segmentation=True)
    return Evaluator(net, data, config, torch.device("cpu"), contextlib.nullcontext)


def test_test_acc_is_the_lowest_loss_subhead_and_the_original_choice_is_reported():
    config = preset("textures3", num_sub_heads=2, eval_batch_size=5)
    rec = _evaluator(config, TwoSubheads()).run([0.0, -1.0])  # sub-head 1 has the lower loss
    assert rec["test_acc_selection"] == "lowest_loss" and rec["subhead"] == 1
    assert rec["test_acc"] == pytest.approx(1 / 3) and rec["test_acc_best_subhead"] == 1.0
    assert rec["best_subhead"] == 0 and "double_eval_acc" not in rec


def test_double_eval_runs_in_training_mode_first():
    net = TwoSubheads()
    config = preset("textures3", num_sub_heads=2, eval_batch_size=12, double_eval=True)
    rec = _evaluator(config, net).run([0.0, 1.0])
    assert net.modes == [True, False]  # batch statistics first, then the ordinary evaluation
    assert float(net.bn.running_mean) != 0.0  # the training-mode pass updated the running statistics
    assert rec["double_eval_acc"] == 1.0 and rec["test_acc"] == 1.0
    plain = TwoSubheads()
    _evaluator(preset("textures3", num_sub_heads=2, eval_batch_size=12), plain).run([0.0, 1.0])
    assert plain.modes == [False] and float(plain.bn.running_mean) == 0.0


@pytest.mark.parametrize("mode, calls", [("iid", 1), ("iid+", 2)])
def test_iid_evaluation_computes_the_confusion_matrices_once(monkeypatch, mode, calls):
    """Potsdam's IID assignment and test sets are equal but distinct objects: one pass is enough."""
    seen = []
    original = Evaluator.confusions
    monkeypatch.setattr(Evaluator, "confusions", lambda self, ds, *a: seen.append(ds) or original(self, ds, *a))
    config = preset("textures3", num_sub_heads=2, mode=mode, eval_batch_size=12)
    _evaluator(config, TwoSubheads(), assign_copy=True).run([0.0, 1.0])
    assert len(seen) == calls


@pytest.mark.parametrize("name, batch", [("cifar10", 660), ("mnist", 700), ("stl10", 700), ("cifar100-20", 1000)])
def test_clustering_presets_evaluate_in_the_original_batches(name, batch):
    config = preset(name)
    loader = eval_loader(config, TensorDataset(torch.zeros(2000, 1)))
    assert loader.batch_size == batch and config.double_eval == (name == "stl10")

"""Tests for iic_fast.models: the paper's networks (bases A, B, C; one or two heads; sub-heads)."""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from iic_fast.models import MODELS, SegmentationHead, build

torch.set_num_threads(max(1, min(2, torch.get_num_threads())))


def two(c: int, s: int, a: int, b: int, sub: int = 1) -> dict:
    return dict(in_channels=c, input_sz=s, output_k_A=a, output_k_B=b, num_sub_heads=sub)


def one(c: int, s: int, k: int, sub: int = 1) -> dict:
    return dict(in_channels=c, input_sz=s, output_k=k, num_sub_heads=sub)


# (id, name, build kwargs) at the paper's input sizes (reference section 4 runs).
PAPER = [
    ("stl10", "ClusterNet5gTwoHead", two(2, 64, 70, 10, 5)),
    ("cifar10", "ClusterNet5gTwoHead", two(2, 32, 70, 10, 5)),
    ("stl10_iidplus", "ClusterNet5g", one(2, 64, 140, 5)),
    ("mnist", "ClusterNet6cTwoHead", two(1, 24, 50, 10, 5)),
    ("cifar20_iidplus", "ClusterNet6c", one(5, 24, 280, 5)),
    ("coco3", "SegmentationNet10aTwoHead", two(5, 128, 15, 3)),
    ("coco3_iidplus", "SegmentationNet10a", one(5, 128, 15)),
    ("potsdam3", "SegmentationNet10aTwoHead", two(4, 200, 24, 3)),
]


def heads_of(name: str, kw: dict) -> dict:
    """Head name -> k; single-head models are called without ``head``."""
    if "TwoHead" in name:
        return {"A": kw["output_k_A"], "B": kw["output_k_B"]}
    return {None: kw["output_k"]}


def assert_simplex(t: torch.Tensor) -> None:
    assert t.dtype == torch.float32 and bool((t >= 0).all())
    torch.testing.assert_close(t.sum(1), torch.ones_like(t.sum(1)), atol=1e-5, rtol=0)


@pytest.mark.parametrize("cid,name,kw", PAPER, ids=[p[0] for p in PAPER])
def test_paper_shapes_and_simplex(cid: str, name: str, kw: dict) -> None:
    """Every model at its paper input size returns a list of num_sub_heads probability tensors:
    (n, k) for clustering, (n, k, s, s) for segmentation, summing to 1 over dim 1."""
    torch.manual_seed(0)
    model = build(name, **kw).eval()
    s, seg = kw["input_sz"], name.startswith("Segmentation")
    x = torch.rand(2 if name.startswith("ClusterNet6c") else 1, kw["in_channels"], s, s)
    with torch.no_grad():
        for head, k in heads_of(name, kw).items():
            outs = model(x) if head is None else model(x, head=head)
            assert isinstance(outs, list) and len(outs) == kw["num_sub_heads"]
            for o in outs:
                assert o.shape == ((x.shape[0], k, s, s) if seg else (x.shape[0], k))
                assert_simplex(o)


def test_trunk_output_sizes() -> None:
    """Spatial sizes stated by the reference: 5g 64->5, 32->3, 96->7; 6c 24->3, 64->8; 10a 128->60,
    200->96 (and with the border ring the head map is 62 / 98); 10a has 4,500,288 conv weights."""
    for name, sz, want in [("ClusterNet5g", 64, 5), ("ClusterNet5g", 32, 3), ("ClusterNet5g", 96, 7),
                           ("ClusterNet6c", 24, 3), ("ClusterNet6c", 64, 8),
                           ("SegmentationNet10a", 128, 60), ("SegmentationNet10a", 200, 96)]:
        assert build(name, in_channels=1, input_sz=sz, output_k=3).trunk.final_size == want, (name, sz)
    head = SegmentationHead(512, 3, border_ring=True)
    assert head(torch.zeros(1, 512, 96, 96))[0].shape == (1, 3, 98, 98)
    # "about 4.5 M conv weights" in the 10a trunk: 9 * 500,032 = 4,500,288 at 5 input channels
    trunk = build("SegmentationNet10a", in_channels=5, input_sz=128, output_k=3).trunk
    assert sum(m.weight.numel() for m in trunk.modules() if isinstance(m, nn.Conv2d)) == 4_500_288


def base_a_params(c: int) -> int:
    """ResNet34 trunk: stem conv + BN, then [3, 4, 6, 3] basic blocks of 64..512 channels."""
    total, cin = 9 * c * 64 + 2 * 64, 64
    for w, nb, stride in [(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]:
        for b in range(nb):
            i = cin if b == 0 else w
            total += 9 * i * w + 9 * w * w + 2 * (2 * w)  # two convs, two BNs
            if b == 0 and (stride != 1 or i != w):
                total += i * w + 2 * w  # 1x1 downsample + BN
        cin = w
    return total


def vgg_params(c: int, widths: list[int], ksize: int) -> int:
    """conv (no bias) + BN per layer."""
    return sum(ksize * ksize * i * w + 2 * w for i, w in zip([c] + widths[:-1], widths))


def expected_params(name: str, kw: dict) -> int:
    ks, sub = heads_of(name, kw).values(), kw["num_sub_heads"]
    c, s = kw["in_channels"], kw["input_sz"]
    if name.startswith("ClusterNet5g"):
        return base_a_params(c) + sub * sum(512 * k + k for k in ks)
    if name.startswith("ClusterNet6c"):
        f = 512 * (s // 8) ** 2
        return vgg_params(c, [64, 128, 256, 512], 5) + sub * sum(f * k + k for k in ks)
    return vgg_params(c, [64, 128, 256, 256, 512, 512], 3) + sub * sum(512 * k for k in ks)


PINNED = {  # the same counts written out, so the docstring numbers are checked too
    "stl10": 21_481_616, "cifar10": 21_481_616, "stl10_iidplus": 21_635_516, "mnist": 5_687_020,
    "cifar20_iidplus": 10_763_320, "coco3": 4_512_960, "coco3_iidplus": 4_511_424, "potsdam3": 4_516_992,
}


@pytest.mark.parametrize("cid,name,kw", PAPER, ids=[p[0] for p in PAPER])
def test_param_counts(cid: str, name: str, kw: dict) -> None:
    """Counts from the layer arithmetic (running stats are buffers, not parameters):
    STL10 / CIFAR10 ClusterNet5gTwoHead (2 ch, 70/10, 5 sub-heads) 21,481,616;
    STL10 ClusterNet5g (2 ch, k 140, 5 sub) 21,635,516;
    MNIST ClusterNet6cTwoHead (1 ch, 24, 50/10, 5 sub) 5,687,020;
    CIFAR100-20 ClusterNet6c (5 ch, 24, k 280, 5 sub) 10,763,320;
    COCO-3 SegmentationNet10aTwoHead (5 ch, 15/3) 4,512,960; SegmentationNet10a (5 ch, k 15) 4,511,424;
    Potsdam-3 SegmentationNet10aTwoHead (4 ch, 24/3) 4,516,992."""
    n = sum(p.numel() for p in build(name, **kw).parameters())
    assert n == expected_params(name, kw) == PINNED[cid]


@pytest.mark.parametrize("name,sz", [("ClusterNet6cTwoHead", 24), ("SegmentationNet10aTwoHead", 24)])
def test_sub_heads_independent(name: str, sz: int) -> None:
    """Sub-heads have their own weights: changing sub-head 0 changes output 0 only, and the
    gradient of output 1 does not reach sub-head 0 nor head A."""
    torch.manual_seed(0)
    model = build(name, **two(1, sz, 7, 4, 3)).eval()
    x = torch.rand(2, 1, sz, sz)
    with torch.no_grad():
        before = model(x)
        assert not torch.allclose(before[0], before[1])
        model.head_B.heads[0][0].weight.mul_(3.0)
        after = model(x)
    assert not torch.allclose(before[0], after[0])
    for b, a in zip(before[1:], after[1:]):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    model(x)[1].square().sum().backward()
    assert model.head_B.heads[1][0].weight.grad.abs().sum() > 0
    assert model.head_B.heads[0][0].weight.grad is None
    assert all(p.grad is None for p in model.head_A.parameters())


@pytest.mark.parametrize("name,sz", [("SmallClusterNetTwoHead", 8), ("SmallSegNetTwoHead", 16)])
def test_num_sub_heads_a(name: str, sz: int) -> None:
    """num_sub_heads_A sizes head A alone: its output list and parameters; head B keeps num_sub_heads,
    which the net's ``num_sub_heads`` reports (the main head's, the ones selected from)."""
    model = build(name, **two(1, sz, 7, 4, 3), num_sub_heads_A=2)
    x = torch.rand(2, 1, sz, sz)
    assert len(model(x, head="A")) == 2 and len(model(x, head="B")) == 3 == model.num_sub_heads
    default = build(name, **two(1, sz, 7, 4, 3))
    per_a = sum(p.numel() for p in default.head_A.parameters()) // 3
    assert sum(p.numel() for p in model.head_A.parameters()) == 2 * per_a


@pytest.mark.parametrize("name,sz", [("ClusterNet6c", 24), ("SegmentationNet10a", 24)])
def test_return_logits(name: str, sz: int) -> None:
    """Logits (constructor flag or forward kwarg) are consistent with the probability outputs."""
    torch.manual_seed(0)
    model = build(name, **one(2, sz, 5, 2)).eval()
    x = torch.rand(2, 2, sz, sz)
    with torch.no_grad():
        probs, logits = model(x), model(x, return_logits=True)
        flagged = copy.deepcopy(model)
        flagged.head.return_logits = True
        torch.testing.assert_close(flagged(x)[0], logits[0])
        torch.testing.assert_close(flagged(x, return_logits=False)[0], probs[0])
    assert logits[0].shape == probs[0].shape and not torch.allclose(logits[0], probs[0])
    if name == "ClusterNet6c":
        torch.testing.assert_close(logits[0].softmax(1), probs[0])
    else:  # original order: softmax then upsample; at low resolution they agree exactly
        feats = model.features(x)
        low = model.head(feats, return_logits=True)[0]
        torch.testing.assert_close(model.head(feats)[0], low.softmax(1))
        ref = F.interpolate(low.softmax(1), size=(sz, sz), mode="bilinear", align_corners=False)
        torch.testing.assert_close(probs[0], ref)
    assert build(name, **one(2, sz, 5), return_logits=True).head.return_logits


def test_border_ring() -> None:
    """border_ring=True: a 1-pixel ring of zero logits (probability exactly 1/K) around the head
    map, so the output's corner pixel is exactly 1/K; off by default (no padding)."""
    torch.manual_seed(0)
    head = SegmentationHead(512, 6, border_ring=True)
    feats = torch.randn(1, 512, 10, 10)
    p = head(feats)[0]
    ring = torch.cat([p[..., 0, :], p[..., -1, :], p[..., :, 0], p[..., :, -1]], dim=-1)
    assert torch.equal(ring, torch.full_like(ring, 1 / 6))
    torch.testing.assert_close(p[..., 1:-1, 1:-1], F.conv2d(feats, head.heads[0][0].weight).softmax(1))
    x = torch.rand(1, 5, 128, 128)
    with torch.no_grad():
        on = build("SegmentationNet10a", **one(5, 128, 6), border_ring=True).eval()(x)[0]
        off = build("SegmentationNet10a", **one(5, 128, 6)).eval()(x)[0]
    assert torch.equal(on[0, :, 0, 0], torch.full((6,), 1 / 6))
    assert not torch.allclose(off[0, :, 0, 0], torch.full((6,), 1 / 6))


def test_original_init() -> None:
    """conv kaiming normal (fan_out for base A, fan_in for VGG bases), BN 1/0, Linear N(0, 0.01)."""
    torch.manual_seed(0)
    a = build("ClusterNet5g", **one(2, 32, 70))
    b = build("ClusterNet6c", **one(5, 24, 50))
    ds = a.trunk.layer2[0].downsample[0].weight  # 1x1, 64 -> 128: fan_in 64, fan_out 128
    assert abs(ds.std().item() / (2 / 128) ** 0.5 - 1) < 0.05
    w0 = b.trunk.features[0].weight  # 5x5, 5 -> 64: fan_in 125, fan_out 1600
    assert abs(w0.std().item() / (2 / 125) ** 0.5 - 1) < 0.1
    lin = b.head.heads[0][0]
    assert abs(lin.weight.std().item() / 0.01 - 1) < 0.05 and not lin.bias.any()
    for m in list(a.modules()) + list(b.modules()):
        if isinstance(m, nn.BatchNorm2d):
            assert bool((m.weight == 1).all()) and not m.bias.any()


@pytest.mark.parametrize("track", [True, False])
def test_batchnorm_track(track: bool) -> None:
    """batchnorm_track sets track_running_stats on every BatchNorm."""
    model = build("SegmentationNet10aTwoHead", **two(4, 24, 5, 3), batchnorm_track=track)
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 6 and all(m.track_running_stats == track for m in bns)
    assert all((m.running_mean is not None) == track for m in bns)


def test_state_dict_keys_match_original() -> None:
    """Keys follow xu-ji/IIC's modules, so its released checkpoints load."""
    five = build("ClusterNet5gTwoHead", **two(2, 64, 70, 10)).state_dict()
    ten = build("SegmentationNet10a", **one(5, 128, 15)).state_dict()
    for key in ["trunk.conv1.weight", "trunk.bn1.running_var", "trunk.layer2.0.downsample.0.weight",
                "trunk.layer4.2.bn2.bias", "head_A.heads.0.0.weight", "head_B.heads.0.0.bias"]:
        assert key in five, key
    assert "trunk.layer1.0.downsample.0.weight" not in five
    for key in ["trunk.features.0.weight", "trunk.features.1.running_mean", "trunk.features.16.weight",
                "trunk.features.17.running_var", "head.heads.0.0.weight"]:
        assert key in ten, key


@pytest.mark.parametrize("name,sz", [("ClusterNet5gTwoHead", 32), ("ClusterNet6cTwoHead", 24),
                                     ("SegmentationNet10aTwoHead", 32)])
def test_channels_last(name: str, sz: int) -> None:
    """A channels_last model on channels_last input gives the same outputs."""
    torch.manual_seed(0)
    model = build(name, **two(3, sz, 8, 4, 2)).eval()
    cl = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.rand(1, 3, sz, sz)
    with torch.no_grad():  # head A only: head B runs the same code
        for r, o in zip(model(x, head="A"), cl(x.to(memory_format=torch.channels_last), head="A")):
            torch.testing.assert_close(o, r, atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("name,sz", [("ClusterNet5gTwoHead", 32), ("SegmentationNet10aTwoHead", 32)])
def test_bf16_autocast_cpu(name: str, sz: int) -> None:
    """Under CPU bf16 autocast the net computes in bf16 (logits are bf16) but probabilities come
    out float32, on the simplex and close to the fp32 result."""
    torch.manual_seed(0)
    model = build(name, **two(2, sz, 8, 4)).eval()
    x = torch.rand(1, 2, sz, sz)
    with torch.no_grad():
        ref = model(x)[0]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            probs, logits = model(x)[0], model(x, return_logits=True)[0]
    assert logits.dtype == torch.bfloat16
    assert_simplex(probs)
    torch.testing.assert_close(probs, ref, atol=0.05, rtol=0)


def test_compile_fullgraph() -> None:
    """torch.compile traces each model in one graph (aot_eager: fast, no C++ compiler needed)."""
    torch.manual_seed(0)
    for name, sz in [("ClusterNet6cTwoHead", 24), ("SegmentationNet10aTwoHead", 24)]:
        model = build(name, **two(1, sz, 6, 3, 2)).eval()
        x = torch.rand(2, 1, sz, sz)
        torch._dynamo.reset()
        compiled = torch.compile(model, backend="aot_eager", fullgraph=True)
        with torch.no_grad():
            for r, o in zip(model(x, head="A"), compiled(x, head="A")):
                torch.testing.assert_close(o, r)


@pytest.mark.slow
def test_compile_inductor() -> None:
    """The default (inductor) backend compiles ClusterNet6c and matches eager (~30 s on 2 cores)."""
    torch.manual_seed(0)
    model = build("ClusterNet6c", **one(1, 24, 10)).eval()
    x = torch.rand(2, 1, 24, 24)
    torch._dynamo.reset()
    with torch.no_grad():
        torch.testing.assert_close(torch.compile(model)(x)[0], model(x)[0], atol=1e-5, rtol=1e-4)


def test_train_step_updates_everything() -> None:
    """One backward through head B reaches every trunk parameter and head B, not head A."""
    torch.manual_seed(0)
    model = build("ClusterNet5gTwoHead", **two(2, 32, 7, 3)).train()
    out = model(torch.rand(2, 2, 32, 32), head="B")[0]
    (out * torch.log(out)).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.trunk.parameters())
    assert all(p.grad is None for p in model.head_A.parameters())


def test_errors() -> None:
    """Clear ValueErrors: unknown name lists the choices; missing/misplaced arguments are named;
    bad head names and inputs of the wrong size or channel count are rejected."""
    with pytest.raises(ValueError) as e:
        build("ResNet50", in_channels=3, input_sz=32, output_k=10)
    paper = ["ClusterNet5g", "ClusterNet5gTwoHead", "ClusterNet6c", "ClusterNet6cTwoHead",
             "SegmentationNet10a", "SegmentationNet10aTwoHead"]
    assert all(n in MODELS and n in str(e.value) for n in paper)
    for match, name, kw in [
        ("in_channels", "ClusterNet5g", dict(input_sz=32, output_k=10)),
        ("input_sz", "ClusterNet5g", dict(in_channels=2, output_k=10)),
        ("output_k_B", "ClusterNet6cTwoHead", dict(in_channels=1, input_sz=24, output_k_A=50)),
        ("output_k", "SegmentationNet10a", dict(in_channels=1, input_sz=24)),
        ("output_k_A", "ClusterNet6c", dict(one(1, 24, 10), output_k_A=5)),
        ("border_ring", "ClusterNet6c", dict(one(1, 24, 10), border_ring=True)),
        ("num_sub_heads_A", "ClusterNet6c", dict(one(1, 24, 10), num_sub_heads_A=2)),
        ("num_sub_heads", "SmallClusterNetTwoHead", dict(two(1, 8, 20, 10, 3), num_sub_heads_A=0)),
        ("even", "SegmentationNet10a", one(1, 25, 3)),
    ]:
        with pytest.raises(ValueError, match=match):
            build(name, **kw)
    model = build("ClusterNet6cTwoHead", **two(1, 24, 5, 3)).eval()
    with pytest.raises(ValueError, match="head"):
        model(torch.rand(1, 1, 24, 24), head="C")
    with pytest.raises(ValueError, match="24x24"):
        model(torch.rand(1, 1, 32, 32))
    with pytest.raises(ValueError, match="expected input"):
        model(torch.rand(1, 3, 24, 24))


def test_small_segmentation_net_keeps_any_even_size() -> None:
    """The CPU-sized segmentation net (Textures-3): its conv widths, one max-pool, PyTorch's default conv
    initialisation, and outputs at the input's size (H != W too)."""
    model = build("SmallSegNetTwoHead", **two(3, 64, 12, 3)).eval()
    convs = [m for m in model.trunk.modules() if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 64]
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.trunk.modules()) == 1
    bound = 1 / math.sqrt(3 * 9)  # kaiming-uniform a=sqrt(5): |w| <= 1 / sqrt(fan_in)
    assert convs[0].weight.abs().max() <= bound and convs[0].weight.abs().max() > 0.5 * bound
    for head in ("A", "B"):
        out = model(torch.rand(2, 3, 40, 26), head=head)
        assert out[0].shape == (2, 12 if head == "A" else 3, 40, 26)
        assert torch.allclose(out[0].sum(1), torch.ones(2, 40, 26), atol=1e-5)

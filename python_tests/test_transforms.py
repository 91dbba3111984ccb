"""Tests of the batched pair generation in iic_fast.data (transforms.py, pairs.py)."""
import colorsys

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageEnhance

from iic_fast.data import (
    ClusteringPairs, SegmentationPairs, clustering_preset, segmentation_preset, transforms as T,
)

def cuda(fn):
    """Mark a test as CUDA-only (skipped without a GPU)."""
    return pytest.mark.cuda(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(fn))


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def back_to_1(x2, a21):
    """The trainer's inverse warp: img2 outputs -> img1 frame."""
    grid = F.affine_grid(a21, list(x2.shape), align_corners=True)
    return F.grid_sample(x2, grid, align_corners=True)


def smooth_images(n, c, h, w, seed=0):
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, h), torch.linspace(0, 1, w), indexing="ij")
    out = torch.zeros(n, c, h, w)
    for i in range(n):
        for ch in range(c):
            a, b, p = torch.rand(3, generator=g) * torch.tensor([3.0, 3.0, 6.28])
            out[i, ch] = 0.5 + 0.4 * torch.sin(a * 3 * xx + b * 3 * yy + p)
    return out


# ------------------------------------------------------------------ Sobel
def test_sobel_hand_computed():
    x = torch.arange(1.0, 10.0).view(1, 1, 3, 3)  # [[1,2,3],[4,5,6],[7,8,9]], zero padded
    d = T.sobel(x)
    # centre: Gx = (1-3) + 2(4-6) + (7-9) = -8 ; Gy = (1+4+3) - (7+16+9) = -24
    assert d[0, 0, 1, 1].item() == -8.0 and d[0, 1, 1, 1].item() == -24.0
    # top-left corner sees [[0,0,0],[0,1,2],[0,4,5]]: Gx = -2*2 - 5 = -9 ; Gy = -(2*4 + 5) = -13
    assert d[0, 0, 0, 0].item() == -9.0 and d[0, 1, 0, 0].item() == -13.0
    # full check against a literal cross-correlation loop
    gx, gy = np.array(T.SOBEL_X), np.array(T.SOBEL_Y)
    img = np.pad(np.random.default_rng(0).random((6, 7)), 1)
    ref = np.zeros((2, 6, 7))
    for i in range(6):
        for j in range(7):
            patch = img[i : i + 3, j : j + 3]
            ref[:, i, j] = (gx * patch).sum(), (gy * patch).sum()
    got = T.sobel(torch.from_numpy(img[1:-1, 1:-1]).float()[None, None])[0].double().numpy()
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_sobel_process_layouts():
    x = torch.rand(2, 4, 8, 8)  # R, G, B, IR
    grey = T.rgb_to_grey(x[:, :3])
    d = T.sobel(grey)
    y = T.sobel_process(x, 3, include_rgb=True)
    assert y.shape[1] == 6  # [R,G,B,dx,dy,IR]
    torch.testing.assert_close(y[:, :3], x[:, :3])
    torch.testing.assert_close(y[:, 3:5], d)
    torch.testing.assert_close(y[:, 5:], x[:, 3:])
    assert T.sobel_process(x, 3, include_rgb=False).shape[1] == 3  # [dx, dy, IR]
    assert T.sobel_process(x[:, :3], 3, include_rgb=False).shape[1] == 2
    g = T.sobel_process(x[:, :1], 1, include_rgb=True)
    torch.testing.assert_close(g[:, 1:], T.sobel(x[:, :1]))
    assert SegmentationPairs(sobel=True, include_rgb=True).in_channels(4) == 6
    assert SegmentationPairs(sobel=False).in_channels(4) == 4
    assert SegmentationPairs(colour_channels=1).in_channels(1) == 3


def test_grey_weights():
    x = torch.tensor([1.0, 0.0, 0.0]).view(1, 3, 1, 1)
    assert abs(T.rgb_to_grey(x).item() - 0.299) < 1e-7


# ------------------------------------------------------------------ flips and affines
def test_flip_inverse_is_exact():
    x = torch.rand(16, 3, 9, 12)
    seg = SegmentationPairs(jitter=(0, 0, 0, 0), sobel=False, flip_p=0.5)
    img1, img2, a21, mask = seg(x, None, gen(1))
    flipped = a21[:, 0, 0] < 0
    assert 0 < flipped.sum() < 16
    for i in range(16):
        expect = x[i].flip(-1) if flipped[i] else x[i]
        assert torch.equal(img2[i], expect)  # mirror is an exact copy
        assert torch.equal(a21[i], torch.tensor(T.FLIP_AFFINE) if flipped[i] else torch.eye(2, 3))
    torch.testing.assert_close(back_to_1(img2, a21), img1, atol=1e-5, rtol=0)
    assert torch.equal(img1, x) and torch.equal(mask, torch.ones(16, 9, 12))


def test_flip_with_sobel_channels():
    x = torch.rand(8, 3, 10, 10)
    img1, img2, a21, _ = SegmentationPairs(jitter=(0, 0, 0, 0), flip_p=1.0)(x, None, gen())
    back = back_to_1(img2, a21)  # Sobel after the flip: dx changes sign, the rest matches
    torch.testing.assert_close(back[:, [0, 1, 2, 4]], img1[:, [0, 1, 2, 4]], atol=1e-5, rtol=0)
    torch.testing.assert_close(back[:, 3], -img1[:, 3], atol=1e-5, rtol=0)


def test_random_affine_inverse():
    a12, a21 = T.random_affine(32, generator=gen(3))
    prod = a12[:, :, :2] @ a21[:, :, :2]
    torch.testing.assert_close(prod, torch.eye(2).expand(32, 2, 2), atol=1e-6, rtol=0)
    x = smooth_images(4, 2, 64, 64)
    a12, a21 = T.random_affine(4, generator=gen(4))
    back = T.warp(T.warp(x, a12), a21)
    valid = T.warp(T.warp(torch.ones_like(x), a12), a21) > 0.999
    assert valid.float().mean() > 0.3
    err = (back - x).abs()[valid]
    assert err.max() < 0.03 and err.mean() < 0.005  # interpolation error only


def test_segmentation_pairs_affine_and_flip_recover():
    x = smooth_images(6, 3, 48, 48, seed=5)
    seg = SegmentationPairs(jitter=(0, 0, 0, 0), sobel=False, random_affine=True, flip_p=0.5)
    img1, img2, a21, _ = seg(x, None, gen(7))
    back = back_to_1(img2, a21)
    valid = back_to_1(seg(torch.ones_like(x), None, gen(7))[1], a21) > 0.999  # same draws
    err = (back - img1).abs()[valid]
    assert valid.float().mean() > 0.3 and err.max() < 0.03


def test_segmentation_pairs_repeats_crop_and_mask():
    x = torch.randint(0, 256, (3, 4, 20, 20), dtype=torch.uint8)
    m = torch.rand(3, 20, 20) > 0.5
    seg = segmentation_preset("potsdam", crop_size=16, repeats=2)
    img1, img2, a21, mask = seg(x, m, gen())
    assert img1.shape == (6, 4, 16, 16) and img2.shape == (6, 4, 16, 16) and mask.shape == (6, 16, 16)
    assert a21.shape == (6, 2, 3) and mask.dtype == torch.float32
    # IR channel is never jittered
    ir2 = torch.where((a21[:, 0, 0] < 0).view(-1, 1, 1), img2[:, 3].flip(-1), img2[:, 3])
    assert torch.equal(ir2, img1[:, 3])
    # the crop is a window of the input shared by image and mask
    xf = x.float() / 255
    for i in range(6):
        hits = [(oy, ox) for oy in range(5) for ox in range(5)
                if torch.equal(xf[i % 3, :, oy:oy + 16, ox:ox + 16], img1[i])]
        assert hits
        oy, ox = hits[0]
        assert torch.equal(m[i % 3, oy:oy + 16, ox:ox + 16].float(), mask[i])


def test_random_crop_exact():
    x = torch.arange(2 * 10 * 10).float().view(2, 1, 10, 10)
    (c,) = T.random_crop([x], 4, gen())
    for i in range(2):
        oy, ox = divmod(int(c[i, 0, 0, 0].item()) - 100 * i, 10)
        assert torch.equal(c[i], x[i, :, oy:oy + 4, ox:ox + 4])


# ------------------------------------------------------------------ jitter
def test_jitter_params_ranges():
    p = T.jitter_params(4000, 0.4, 0.3, 0.2, 0.125, gen())
    for k, v in (("brightness", 0.4), ("contrast", 0.3), ("saturation", 0.2)):
        assert p[k].min() >= 1 - v and p[k].max() <= 1 + v
        assert p[k].min() < 1 - 0.9 * v and p[k].max() > 1 + 0.9 * v
    assert p["hue"].abs().max() <= 0.125 and p["hue"].min() < -0.11
    assert torch.equal(p["order"].sort(1).values, torch.arange(4).expand(4000, 4))
    assert len({tuple(o) for o in p["order"].tolist()}) == 24  # all orders occur
    with pytest.raises(ValueError):
        T.jitter_params(2, 0, 0, 0, 0.6)


def test_brightness_only_range_and_clamp():
    x = 0.1 + torch.rand(64, 3, 8, 8) * 0.6  # never clamped: y / x is the factor
    y = T.color_jitter(x, 0.4, 0, 0, 0, generator=gen())
    ratio = (y / x).flatten(1)
    assert ratio.min() >= 0.6 - 1e-5 and ratio.max() <= 1.4 + 1e-5
    assert torch.allclose(ratio.std(1), torch.zeros(64), atol=1e-4)  # one factor per image
    y = T.color_jitter(torch.rand(64, 3, 8, 8), 0.4, 0.4, 0.4, 0.125, generator=gen())
    assert y.min() >= 0 and y.max() <= 1


def test_jitter_ops_match_pil():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)
    x = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255
    f = torch.tensor([1.3])
    for op, enh in ((T.adjust_brightness, ImageEnhance.Brightness), (T.adjust_contrast, ImageEnhance.Contrast),
                    (T.adjust_saturation, ImageEnhance.Color)):
        ref = np.asarray(enh(Image.fromarray(a)).enhance(1.3)).astype(np.float32) / 255
        got = op(x, f)[0].permute(1, 2, 0).numpy()
        assert np.abs(got - ref).max() < 2.5 / 255, op.__name__  # PIL rounds to uint8


def test_hue_matches_colorsys():
    x = torch.rand(3, 3, 5, 5, generator=gen())
    shift = torch.tensor([0.1, -0.125, 0.5])
    y = T.adjust_hue(x, shift)
    for i in range(3):
        for yy in range(5):
            for xx in range(5):
                h, s, v = colorsys.rgb_to_hsv(*x[i, :, yy, xx].tolist())
                ref = colorsys.hsv_to_rgb((h + shift[i].item()) % 1.0, s, v)
                np.testing.assert_allclose(y[i, :, yy, xx].numpy(), ref, atol=1e-5)
    torch.testing.assert_close(T.adjust_hue(x, torch.zeros(3)), x, atol=1e-6, rtol=0)


@pytest.mark.parametrize("channels,n,side", [(3, 7, 9), (1, 5, 8), (3, 20, 100)])
def test_jitter_equals_sequential_ops(channels, n, side):
    """The fused batched jitter equals the four ops applied one by one in each sample's order
    (the large case exercises the CPU chunking)."""
    x = torch.rand(n, channels, side, side, generator=gen(1))
    p = T.jitter_params(n, 0.5, 0.5, 0.5, 0.2, gen(2))
    y = T.color_jitter(x, params=p)
    ops = (lambda t, i: T.adjust_brightness(t, p["brightness"][i:i + 1]),
           lambda t, i: T.adjust_contrast(t, p["contrast"][i:i + 1]),
           lambda t, i: T.adjust_saturation(t, p["saturation"][i:i + 1]),
           lambda t, i: T.adjust_hue(t, p["hue"][i:i + 1]) if channels == 3 else t)
    for i in range(n):
        t = x[i:i + 1]
        for op in p["order"][i].tolist():
            t = ops[op](t, i)
        torch.testing.assert_close(y[i:i + 1], t, atol=2e-5, rtol=0)


def test_grey_jitter_ignores_saturation_and_hue():
    x = torch.rand(16, 1, 6, 6)
    y = T.color_jitter(x, 0, 0, 0.9, 0.5, generator=gen())
    assert torch.equal(y, x)


def test_jitter_only_on_img2():
    x = torch.rand(8, 3, 6, 6)
    img1, img2, _, _ = SegmentationPairs(flip_p=0.0, sobel=False)(x, None, gen())
    assert torch.equal(img1, x) and not torch.allclose(img2, x)


# ------------------------------------------------------------------ clustering pairs and determinism
def test_crop_resize_identity_and_flip():
    x = torch.rand(5, 2, 12, 12)
    boxes = torch.tensor([[2.0, 3.0, 8.0, 8.0]]).expand(5, 4)
    y = T.sample_crops(x, T.crop_resize_theta((12, 12), 8, boxes), 8)
    torch.testing.assert_close(y, x[:, :, 2:10, 3:11], atol=1e-5, rtol=0)
    flip = torch.tensor([True, False, True, False, True])
    y = T.sample_crops(x, T.crop_resize_theta((12, 12), 8, boxes, flip), 8)
    ref = torch.where(flip.view(-1, 1, 1, 1), x[:, :, 2:10, 3:11].flip(-1), x[:, :, 2:10, 3:11])
    torch.testing.assert_close(y, ref, atol=1e-5, rtol=0)
    rot = T.sample_crops(x, T.crop_resize_theta((12, 12), 12, torch.tensor([[0.0, 0, 12, 12]]).expand(5, 4),
                                                rot_rad=torch.full((5,), torch.pi / 2)), 12)
    torch.testing.assert_close(rot, x.rot90(1, (2, 3)), atol=1e-4, rtol=0)  # 90 degrees is exact-ish


def test_clustering_pairs_shapes_and_eval():
    x = torch.randint(0, 256, (4, 3, 96, 96), dtype=torch.uint8)
    clu = clustering_preset("stl10")
    x1, x2s = clu(x, gen())
    assert x1.shape == (4, 2, 64, 64) and len(x2s) == 5 and all(t.shape == (4, 2, 64, 64) for t in x2s)
    ev = clustering_preset("stl10", sobel=False).eval_transform(x)
    torch.testing.assert_close(ev, x[:, :, 16:80, 16:80].float() / 255, atol=1e-5, rtol=0)
    x1, x2s = clustering_preset("cifar10")(torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8), gen())
    assert x1.shape == (4, 2, 32, 32) and len(x2s) == 3
    m1, m2s = clustering_preset("mnist")(torch.randint(0, 256, (4, 1, 28, 28), dtype=torch.uint8), gen())
    assert m1.shape == (4, 1, 24, 24) and m2s[0].shape == (4, 1, 24, 24)
    d1, d2s = clustering_preset("digits")(torch.rand(4, 1, 8, 8), gen())
    assert d1.shape == (4, 1, 8, 8)


def test_clustering_views_are_independent_draws_of_their_own_image():
    x = torch.rand(6, 1, 8, 8)
    plain = dict(crop1=8, input_size=8, jitter=(0.0,) * 4, sobel=False, colour_channels=1, repeats=3)
    x1, x2s = ClusteringPairs(crop2=8, flip_p=1.0, **plain)(x, gen())
    assert len(x2s) == 3
    for view in x2s:  # view r of image i is drawn from image i
        torch.testing.assert_close(view, x.flip(-1), atol=1e-6, rtol=0)
    _, x2s = ClusteringPairs(crop2=(5, 6, 7), flip_p=0.5, **plain)(x, gen())
    assert not any(torch.equal(x2s[a], x2s[b]) for a, b in ((0, 1), (0, 2), (1, 2)))


def test_clustering_shift_is_an_integer_translation_with_zero_fill():
    x = torch.rand(64, 1, 8, 8) + 0.5  # no zeros inside, so the zero fill shows the shift
    plain = dict(crop1=8, crop2=8, input_size=8, flip_p=0.0, jitter=(0.0,) * 4, sobel=False, colour_channels=1)
    y = ClusteringPairs(shift=1, shift_p=1.0, **plain).tf2(x, gen(4))
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    seen = set()
    for i in range(64):
        hits = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)
                if torch.allclose(y[i], padded[i, :, 1 - dy:9 - dy, 1 - dx:9 - dx], atol=1e-6)]
        assert len(hits) == 1, i
        seen.add(hits[0])
    assert len(seen) == 9  # every shift in [-1, 1]^2 occurs
    torch.testing.assert_close(ClusteringPairs(shift=1, shift_p=0.0, **plain).tf2(x, gen(4)), x, atol=1e-6, rtol=0)
    for bad in (dict(shift=-1), dict(shift_p=1.5)):
        with pytest.raises(ValueError, match=next(iter(bad))):
            ClusteringPairs(**bad)
    with pytest.raises(ValueError, match="shift needs square images"):
        ClusteringPairs(shift=1, **plain).tf2(torch.rand(2, 1, 8, 10), gen(4))


def test_pairs_deterministic_under_seed():
    x = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    seg = segmentation_preset("cocostuff", random_affine=True)
    a = seg(x, None, gen(11))
    b = seg(x, None, gen(11))
    c = seg(x, None, gen(12))
    assert all(torch.equal(u, v) for u, v in zip(a, b))
    assert not torch.equal(a[1], c[1])
    clu = ClusteringPairs(input_size=32, crop1=32, crop2=(24, 32), rot_deg=20)
    p, q = clu(x, gen(3)), clu(x, gen(3))
    assert torch.equal(p[0], q[0]) and all(torch.equal(u, v) for u, v in zip(p[1], q[1]))


@cuda
def test_cuda_matches_cpu():
    x = torch.randint(0, 256, (6, 3, 40, 40), dtype=torch.uint8)
    seg = segmentation_preset("cocostuff", random_affine=True)
    a = seg(x, None, gen(5))
    b = seg(x.cuda(), None, gen(5))
    for u, v in zip(a, b):
        assert v.is_cuda
        torch.testing.assert_close(v.cpu(), u, atol=1e-4, rtol=1e-4)
    clu = clustering_preset("stl10")
    p, q = clu(x, gen(2)), clu(x.cuda(), gen(2))
    torch.testing.assert_close(q[0].cpu(), p[0], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(q[1][0].cpu(), p[1][0], atol=1e-4, rtol=1e-4)

"""Public losses and drop-ins: the original's numbers and gradients, every impl, clear errors."""
import pytest
import torch

import iic_fast as iic
from oracle import (assert_rel, brute_joint, original_clustering_loss, original_segmentation_loss, random_mask,
                    random_maps)

IMPLS = ["auto", "kernel", "fft", "reference"]


def _flip_affines(n, generator):
    flips = torch.rand(n, generator=generator) < 0.5
    A = torch.tensor([[1.0, 0, 0], [0, 1, 0]], dtype=torch.float64).repeat(n, 1, 1)
    A[flips, 0, 0] = -1.0
    return A


def _general_affines(n, generator):
    angle = (torch.rand(n, generator=generator, dtype=torch.float64) - 0.5) * 0.6
    scale = 0.9 + 0.2 * torch.rand(n, generator=generator, dtype=torch.float64)
    A = torch.zeros(n, 2, 3, dtype=torch.float64)
    A[:, 0, 0], A[:, 0, 1] = angle.cos() * scale, -angle.sin() * scale
    A[:, 1, 0], A[:, 1, 1] = angle.sin() * scale, angle.cos() * scale
    return A


@pytest.mark.filterwarnings("ignore:iic_fast")
@pytest.mark.parametrize("uncollapsed", [False, True])
@pytest.mark.parametrize("affines", [_flip_affines, _general_affines])
@pytest.mark.parametrize("impl", IMPLS)
def test_segmentation_dropins_match_the_original(uncollapsed, affines, impl):
    g = torch.Generator().manual_seed(3)
    n, k, H, W, d, lamb = 3, 4, 9, 8, 2, 1.5
    x1, x2 = (x.requires_grad_(True) for x in random_maps(n, k, H, W))
    A, mask = affines(n, g), random_mask(n, H, W)
    expected = original_segmentation_loss(x1, x2, A, mask, lamb, d, uncollapsed)
    expected_grads = torch.autograd.grad(expected[0], (x1, x2))
    dropin = iic.IID_segmentation_loss_uncollapsed if uncollapsed else iic.IID_segmentation_loss
    got = dropin(x1, x2, A, mask, lamb, d, 0, 0, impl=impl)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(torch.autograd.grad(got[0], (x1, x2)), expected_grads, rtol=1e-8, atol=1e-12)


@pytest.mark.filterwarnings("ignore:iic_fast")
def test_segmentation_dropin_float32_matches_to_rounding():
    x1, x2 = random_maps(2, 5, 12, 10, dtype=torch.float32)
    A, mask = _flip_affines(2, torch.Generator().manual_seed(0)).float(), random_mask(2, 12, 10).float()
    for uncollapsed in (False, True):
        dropin = iic.IID_segmentation_loss_uncollapsed if uncollapsed else iic.IID_segmentation_loss
        expected = original_segmentation_loss(x1, x2, A, mask, 1.0, 3, uncollapsed)
        torch.testing.assert_close(dropin(x1, x2, A, mask, 1.0, 3, 0, 0), expected, rtol=1e-5, atol=1e-6)


def test_flip_fast_path_equals_grid_sample():
    x = torch.rand(4, 3, 5, 6, dtype=torch.float64)
    A = _flip_affines(4, torch.Generator().manual_seed(1))
    grid = torch.nn.functional.affine_grid(A, list(x.shape), align_corners=True)
    expected = torch.nn.functional.grid_sample(x, grid, align_corners=True)
    torch.testing.assert_close(iic.losses.perform_affine_tf(x, A), expected, rtol=0, atol=1e-15)


def test_sparse_translation_is_reproducible_and_integer():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float64).view(2, 1, 6, 6)
    out = iic.losses.random_translation_multiple(x, 1, 2, torch.Generator().manual_seed(5))
    again = iic.losses.random_translation_multiple(x, 1, 2, torch.Generator().manual_seed(5))
    torch.testing.assert_close(out, again)
    shifts = [(ty, tx) for ty in (-2, -1, 1, 2) for tx in (-2, -1, 1, 2)
              if torch.equal(out, torch.nn.functional.pad(x, (2, 2, 2, 2))[..., 2 + ty:8 + ty, 2 + tx:8 + tx])]
    assert len(shifts) == 1


@pytest.mark.filterwarnings("ignore:iic_fast")
@pytest.mark.parametrize("impl", IMPLS)
def test_collapsed_loss_accepts_any_d_as_the_original(impl):
    # Shifts beyond the image pair no pixels: the collapsed loss at d > max(H, W) is the loss at d = max(H, W),
    # for the package's API, the drop-in and the original's transcription alike.
    n, k, H, W = 2, 3, 6, 5
    x1, x2 = random_maps(n, k, H, W)
    mask, A = random_mask(n, H, W), _flip_affines(n, torch.Generator().manual_seed(0))
    at_max = iic.segmentation_loss(x1, x2, d=max(H, W), mask=mask, collapsed=True, lamb=1.3, impl=impl)
    assert not torch.equal(at_max[0], iic.segmentation_loss(x1, x2, d=2, mask=mask, collapsed=True, lamb=1.3)[0])
    for d in (max(H, W) + 1, 25):
        torch.testing.assert_close(iic.segmentation_loss(x1, x2, d=d, mask=mask, collapsed=True, lamb=1.3, impl=impl),
                                   at_max, rtol=1e-12, atol=1e-14)
        expected = original_segmentation_loss(x1, x2, A, mask, 1.3, d, uncollapsed=False)
        torch.testing.assert_close(iic.IID_segmentation_loss(x1, x2, A, mask, 1.3, d, impl=impl), expected,
                                   rtol=1e-10, atol=1e-12)
    with pytest.raises(ValueError, match=r"d must be in \[0, 6\], got 7"):
        iic.segmentation_loss(x1, x2, d=7, impl=impl)  # uncollapsed: a shift with no pixel pair has no joint


@pytest.mark.parametrize("lamb", [1.0, 2.0])
def test_clustering_dropin_matches_the_original(lamb):
    g = torch.Generator().manual_seed(0)
    z = torch.randn(16, 5, generator=g, dtype=torch.float64).softmax(1).requires_grad_(True)
    zt = torch.randn(16, 5, generator=g, dtype=torch.float64).softmax(1).requires_grad_(True)
    expected = original_clustering_loss(z, zt, lamb)
    got = iic.IID_loss(z, zt, lamb)
    torch.testing.assert_close(got, expected, rtol=1e-12, atol=1e-14)
    torch.testing.assert_close(torch.autograd.grad(got[0], (z, zt)), torch.autograd.grad(expected[0], (z, zt)))
    torch.testing.assert_close(iic.IID_loss(z, zt, lamb, EPS=1e-3), original_clustering_loss(z, zt, lamb, 1e-3))


@pytest.mark.filterwarnings("ignore:iic_fast")
@pytest.mark.parametrize("collapsed", [False, True])
def test_every_impl_gives_the_same_joint(collapsed):
    x1, x2 = random_maps(2, 3, 7, 6)
    mask = random_mask(2, 7, 6)
    joints = [iic.joint(x1, x2, 2, mask=mask, collapsed=collapsed, impl=impl) for impl in IMPLS]
    for J in joints[1:]:
        torch.testing.assert_close(J, joints[0], rtol=0, atol=1e-12)


@pytest.mark.filterwarnings("ignore:iic_fast")
def test_half_precision_inputs_accumulate_in_float32():
    # values, not only dtypes: rounding to bf16 anywhere inside would cost ~1e-3 of relative error
    x1, x2 = random_maps(2, 3, 16, 16, dtype=torch.bfloat16)
    for impl in IMPLS:
        for collapsed in (False, True):
            J = iic.joint(x1, x2, 3, collapsed=collapsed, impl=impl)
            assert J.dtype == torch.float32
            assert_rel(J, brute_joint(x1, x2, 3, collapsed=collapsed), 1e-5)
            loss = iic.segmentation_loss(x1, x2, d=3, collapsed=collapsed, impl=impl)
            want = iic.segmentation_loss(x1.double(), x2.double(), d=3, collapsed=collapsed, impl="reference")
            assert loss[0].dtype == torch.float32
            torch.testing.assert_close(loss, tuple(w.float() for w in want), rtol=1e-5, atol=1e-6)


BAD_CALLS = [  # (call, the exact error type, message): TypeError for a wrong kind, ValueError for a wrong value
    (lambda x, m: iic.joint(x[0], x, 1), ValueError, r"x1 must have shape \(n, k, H, W\), got \(3, 6, 5\)"),
    (lambda x, m: iic.joint(x, x[:, :2], 1), ValueError, "x2 must have the shape of x1"),
    (lambda x, m: iic.joint(x, x.float(), 1), TypeError, "x1 and x2 must share one floating dtype"),
    (lambda x, m: iic.joint(x.long(), x.long(), 1), TypeError, "x1 must be floating point, got torch.int64"),
    (lambda x, m: iic.joint(x.numpy(), x, 1), TypeError, "x1 must be a torch.Tensor, got ndarray"),
    (lambda x, m: iic.joint(x, x, -1), ValueError, r"d must be in \[0, 6\], got -1"),
    (lambda x, m: iic.joint(x, x, 99), ValueError, r"d must be in \[0, 6\], got 99"),
    (lambda x, m: iic.joint(x, x, -1, collapsed=True), ValueError, r"d must be in \[0, inf\], got -1"),
    (lambda x, m: iic.joint(x, x, 1.5), TypeError, "d must be an int, got 1.5"),
    (lambda x, m: iic.joint(x, x, 1, mask=m[:, :3]), ValueError, "mask must have shape"),
    (lambda x, m: iic.joint(x, x, 1, mask=m.tolist()), TypeError, "mask must be a torch.Tensor, got list"),
    (lambda x, m: iic.joint(x, x, 1, impl="fast"), ValueError, "impl must be one of"),
    (lambda x, m: iic.segmentation_loss(x, x, d=1, mask=torch.zeros_like(m)), ValueError, "zero mass"),
    (lambda x, m: iic.segmentation_loss(x.clone().fill_(float("nan")), x, d=1), ValueError, "non-finite"),
    (lambda x, m: iic.segmentation_loss(x, x, d=6), ValueError, "zero mass"),
    (lambda x, m: iic.clustering_loss(x[:, :, 0, 0], x[:, :2, 0, 0]), ValueError, "zt must match"),
    (lambda x, m: iic.clustering_loss(x[:, :, 0], x[:, :, 0]), ValueError, "z must be 2-d"),
    (lambda x, m: iic.clustering_loss(x[:, :, 0, 0].long(), x[:, :, 0, 0]), TypeError, "z must be floating"),
    (lambda x, m: iic.IID_segmentation_loss(x, x, None, m, 1.0), TypeError, "half_T_side_dense"),
    (lambda x, m: iic.IID_segmentation_loss(x, x, None, m, 1.0, 2.5), TypeError, "half_T_side_dense must be an int"),
    (lambda x, m: iic.IID_segmentation_loss(x, x, torch.zeros(2, 3), m, 1.0, 1), ValueError, "all_affine2_to_1"),
    (lambda x, m: iic.mi(torch.ones(2, 3)), ValueError, r"J must be a \(S, k, k\) or \(k, k\) tensor"),
    (lambda x, m: iic.mi(torch.ones(3, 3, dtype=torch.long)), TypeError, "J must be floating point"),
    (lambda x, m: iic.JointAccumulator(d=-1), ValueError, r"d must be in \[0, inf\], got -1"),
    (lambda x, m: iic.JointAccumulator(d=2, impl="fast"), ValueError, "impl must be one of"),
]


@pytest.mark.filterwarnings("ignore:iic_fast")
@pytest.mark.parametrize("call,error,message", BAD_CALLS)
def test_bad_input_gives_a_clear_error(call, error, message):
    x1, _ = random_maps(2, 3, 6, 5)
    with pytest.raises(error, match=message) as info:
        call(x1, random_mask(2, 6, 5))
    assert type(info.value) is error  # the exact type, not a subclass


@pytest.mark.filterwarnings("ignore:iic_fast")
def test_compiled_loss_matches_eager():
    x1, x2 = random_maps(2, 3, 8, 7, dtype=torch.float32)
    eager = iic.segmentation_loss(x1, x2, d=2)
    compiled = torch.compile(lambda a, b: iic.segmentation_loss(a, b, d=2), fullgraph=True)(x1, x2)
    torch.testing.assert_close(compiled, eager, rtol=1e-5, atol=1e-6)


def _shifted(x, ty, tx):
    """The original's random_translation_multiple for a drawn shift, by its definition:
    out[..., y, x] = in[..., y + ty, x + tx], zero where that falls outside the image."""
    out = torch.zeros_like(x)
    H, W = x.shape[-2:]
    for y in range(H):
        for xx in range(W):
            if 0 <= y + ty < H and 0 <= xx + tx < W:
                out[..., y, xx] = x[..., y + ty, xx + tx]
    return out


@pytest.mark.parametrize("lo,hi", [(0, 2), (1, 3)])
def test_sparse_translation_matches_the_originals_draws_and_shift(lo, hi):
    # The original draws, per axis, a magnitude uniform in [lo, hi] and a sign uniform in {-1, +1}; one shift
    # for the whole batch and all channels. Find each seeded draw's shift from a probe with distinct values.
    H = W = 2 * hi + 3
    probe = torch.arange(1, 2 * 3 * H * W + 1, dtype=torch.float64).view(2, 3, H, W)
    shifted = {(a, b): _shifted(probe, a, b) for a in range(-hi, hi + 1) for b in range(-hi, hi + 1)}
    gen, counts, draws = torch.Generator().manual_seed(0), {}, 3000
    for _ in range(draws):
        out = iic.losses.random_translation_multiple(probe, lo, hi, gen)
        y, x = 0, 0
        while out[0, 0, y, x] == 0:  # a pixel that received a value
            y, x = (y, x + 1) if x + 1 < W else (y + 1, 0)
        src = int(out[0, 0, y, x]) - 1
        ty, tx = src // W - y, src % W - x
        assert torch.equal(out, shifted[ty, tx]), (ty, tx)  # the exact shift, every image and channel
        counts[ty, tx] = counts.get((ty, tx), 0) + 1
    values = [v for v in range(-hi, hi + 1) if abs(v) >= lo]
    assert set(counts) == {(a, b) for a in values for b in values}  # both signs, the maximum included
    for a in values:
        for b in values:
            p = (1 if a == 0 else 0.5) * (1 if b == 0 else 0.5) / (hi - lo + 1) ** 2
            assert abs(counts[a, b] - draws * p) < 5 * (draws * p * (1 - p)) ** 0.5, (a, b, counts[a, b])
    # the drop-in translates x2 by that draw: the original's loss on the shifted x2, same seed
    x1, x2 = random_maps(2, 3, H, W)
    eye = torch.tensor([[1.0, 0, 0], [0, 1, 0]], dtype=torch.float64).repeat(2, 1, 1)
    mask = torch.ones(2, H, W, dtype=torch.float64)
    got = iic.IID_segmentation_loss_uncollapsed(x1, x2, eye, mask, half_T_side_dense=1, half_T_side_sparse_min=lo,
                                                half_T_side_sparse_max=hi, generator=torch.Generator().manual_seed(7))
    out = iic.losses.random_translation_multiple(probe, lo, hi, torch.Generator().manual_seed(7))
    ty, tx = next(shift for shift, want in shifted.items() if torch.equal(out, want))
    want = original_segmentation_loss(x1, _shifted(x2, ty, tx), eye, mask, 1.0, 1, uncollapsed=True)
    torch.testing.assert_close(torch.stack(got), torch.stack(want), rtol=1e-10, atol=1e-12)

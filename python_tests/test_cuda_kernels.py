"""The CUDA kernels (csrc/cuda) against the brute-force definition, the pure-PyTorch reference and the CPU op.

Every test needs a GPU and is skipped without one. Tests whose name contains "small" are quick and cover each
kernel once; they are the selection run under compute-sanitizer (memcheck, racecheck).
"""
import pytest
import torch

import iic_fast as iic
from iic_fast import reference
from oracle import brute_joint, random_maps

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]
ops = torch.ops.iic_fast

# (n, k, H, W, d): odd sizes, H != W, d = 0, d >= H, k = 1..65, batch of one, wide rows, large d (T > 32)
GRID = [
    (2, 3, 9, 7, 2), (1, 1, 5, 6, 0), (2, 4, 5, 6, 6), (2, 24, 9, 13, 3), (1, 50, 6, 7, 1), (1, 7, 33, 130, 4),
    (1, 65, 5, 9, 1), (1, 3, 20, 21, 18), (1, 2, 1, 1, 0), (3, 3, 40, 9, 2), (2, 5, 8, 3, 3),
]
TOL = {torch.float64: 1e-10, torch.float32: 1e-5}


@pytest.fixture(autouse=True)
def _kernels():
    if not iic.has_kernels("cuda"):
        pytest.fail(f"iic_fast has no CUDA kernels although a GPU is present: {iic.build_info()}")


def poison():
    """Fill recently freed blocks of the caching allocator (large and small pools) with NaN so that unwritten
    outputs show up."""
    torch.full((1 << 22,), float("nan"), device="cuda")
    [torch.full((1 << 16,), float("nan"), device="cuda") for _ in range(16)]
    torch.cuda.synchronize()


def maps(n, k, H, W, dtype=torch.float64, seed=0):
    return random_maps(n, k, H, W, dtype=dtype, device="cuda", seed=seed)


def truth(x1, x2, d, collapsed):
    J = brute_joint(x1.double(), x2.double(), d)
    return J.sum(0) if collapsed else J


def assert_rel(got, want, tol, floor=1e-300):
    """max |got - want| <= tol * max(max |want|, floor)."""
    got, want = got.double(), want.double()
    assert torch.isfinite(got).all(), "non-finite values (an unwritten output?)"
    scale = want.abs().max().clamp_min(floor)
    err = ((got - want).abs().max() / scale).item()
    assert err <= tol, f"relative error {err:.3g} > {tol:g}"


def grads_truth(G, x1, x2, d, collapsed):
    """dL/dx1, dL/dx2 of L = <G, J> by autograd through the fp64 brute force."""
    a, b = (x.detach().double().requires_grad_(True) for x in (x1, x2))
    J = truth(a, b, d, collapsed)
    return torch.autograd.grad((J * G.double()).sum(), (a, b))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("collapsed", [False, True])
@pytest.mark.parametrize("n,k,H,W,d", GRID)
def test_joint_and_backward_match_brute_force(n, k, H, W, d, collapsed, dtype):
    x1, x2 = maps(n, k, H, W, dtype)
    poison()
    J = ops.joint(x1, x2, d, collapsed)
    assert J.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_rel(J, truth(x1, x2, d, collapsed), TOL[dtype])
    G = torch.randn_like(J)
    poison()
    dx1, dx2 = ops.joint_backward(G, x1, x2, d, collapsed)
    assert dx1.dtype == dtype and dx1.shape == x1.shape
    r1, r2 = grads_truth(G, x1, x2, d, collapsed)
    assert_rel(dx1, r1, TOL[dtype])
    assert_rel(dx2, r2, TOL[dtype])


@pytest.mark.parametrize("collapsed", [False, True])
def test_small_every_dtype_and_op(collapsed):
    """One small case per dtype through joint, joint_backward and mi (the compute-sanitizer selection)."""
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        x1, x2 = maps(2, 5, 7, 6, dtype)
        J = ops.joint(x1, x2, 2, collapsed)
        assert_rel(J, truth(x1, x2, 2, collapsed), 1e-2)
        dx1, dx2 = ops.joint_backward(torch.rand_like(J), x1, x2, 2, collapsed)
        assert torch.isfinite(dx1).all() and torch.isfinite(dx2).all()
        loss, loss_no_lamb, g = ops.mi(J, 1.5, collapsed)
        ref = reference.mi(J.double(), 1.5, collapsed)
        assert abs(loss.item() - ref[0].item()) < 1e-3 and abs(loss_no_lamb.item() - ref[1].item()) < 1e-3
        torch.cuda.synchronize()


def test_small_large_k_and_d():
    """k > 64 (channel chunks) and T > 32 (tap chunks), fp32."""
    for n, k, H, W, d in [(1, 70, 4, 9, 1), (1, 3, 12, 40, 17)]:
        x1, x2 = maps(n, k, H, W, torch.float32)
        for collapsed in (False, True):
            J = ops.joint(x1, x2, d, collapsed)
            assert_rel(J, truth(x1, x2, d, collapsed), 1e-5)
            G = torch.randn_like(J)
            dx1, dx2 = ops.joint_backward(G, x1, x2, d, collapsed)
            r1, r2 = grads_truth(G, x1, x2, d, collapsed)
            assert_rel(dx1, r1, 1e-5)
            assert_rel(dx2, r2, 1e-5)


@pytest.mark.parametrize("collapsed", [False, True])
def test_non_contiguous_inputs(collapsed):
    x1, x2 = maps(2, 6, 9, 11)
    views = [(x1.to(memory_format=torch.channels_last), x2.to(memory_format=torch.channels_last)),
             (x1.transpose(2, 3).contiguous().transpose(2, 3), x2),
             (torch.stack([x1, x1], 2).flatten(1, 2)[:, ::2], torch.cat([x2, x2], 3)[..., :11])]
    want = ops.joint(x1, x2, 3, collapsed)
    G = torch.randn_like(want)
    G_view = G.t().contiguous().t() if collapsed else G.transpose(1, 2).contiguous().transpose(1, 2)
    want_grads = ops.joint_backward(G, x1, x2, 3, collapsed)
    for a, b in views:
        assert not (a.is_contiguous() and b.is_contiguous())
        torch.testing.assert_close(ops.joint(a, b, 3, collapsed), want, rtol=1e-12, atol=1e-12)
        for got, w in zip(ops.joint_backward(G_view, a, b, 3, collapsed), want_grads):
            torch.testing.assert_close(got, w, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("collapsed", [False, True])
def test_half_precision_no_worse_than_reference(dtype, collapsed):
    """Error against the fp64 truth at most 2x that of the reference computed in the same dtype."""
    x1, x2 = maps(3, 6, 24, 19)
    d = 3
    J64 = truth(x1, x2, d, collapsed)
    a, b = x1.to(dtype), x2.to(dtype)
    ref = reference.joint_conv(a, b, d, collapsed=collapsed)
    err = lambda J: ((J.double() - J64).abs().max() / J64.abs().max()).item()  # noqa: E731
    assert err(ops.joint(a, b, d, collapsed)) <= 2 * err(ref) + 1e-6
    G = torch.randn_like(J64)
    r1, r2 = grads_truth(G, x1, x2, d, collapsed)
    a_, b_ = a.clone().requires_grad_(True), b.clone().requires_grad_(True)
    ref_grads = torch.autograd.grad(reference.joint_conv(a_, b_, d, collapsed=collapsed), (a_, b_), G.to(dtype))
    got = ops.joint_backward(G.float(), a, b, d, collapsed)
    for g, rg, t in zip(got, ref_grads, (r1, r2)):
        assert g.dtype == dtype
        gerr = lambda x: ((x.double() - t).abs().max() / t.abs().max()).item()  # noqa: E731
        assert gerr(g) <= 2 * gerr(rg) + 1e-6


class _Mi(torch.autograd.Function):
    @staticmethod
    def forward(ctx, J, lamb, collapsed):
        loss, _, grad = ops.mi(J, lamb, collapsed)
        ctx.save_for_backward(grad)
        return loss

    @staticmethod
    def backward(ctx, g):
        (grad,) = ctx.saved_tensors
        return g * grad, None, None


@pytest.mark.parametrize("collapsed", [False, True])
@pytest.mark.parametrize("n,k,H,W,d", [(2, 3, 4, 5, 1), (1, 2, 3, 3, 3), (1, 4, 5, 4, 0)])
def test_gradcheck_joint(n, k, H, W, d, collapsed):
    x1, x2 = (x.requires_grad_(True) for x in maps(n, k, H, W))
    assert torch.autograd.gradcheck(lambda a, b: ops.joint(a, b, d, collapsed), (x1, x2))


@pytest.mark.parametrize("shape", [(4,), (3, 4), (1, 1), (5, 3)])
@pytest.mark.parametrize("lamb", [1.0, 1.7])
def test_gradcheck_mi(shape, lamb):
    """Tensor normaliser (collapsed=False); (k,) means one (k, k) joint."""
    k = shape[-1]
    J = torch.rand(*shape[:-1], k, k, dtype=torch.float64, device="cuda") + 0.05
    J.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda j: _Mi.apply(j, lamb, False), (J,))


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("collapsed", [False, True])
@pytest.mark.parametrize("S,k,lamb,zeros", [(0, 3, 1.0, False), (5, 4, 1.5, True), (3, 1, 1.0, False),
                                            (0, 24, 2.0, True), (441, 24, 1.0, False), (2, 50, 1.3, True)])
def test_mi_matches_reference(S, k, lamb, zeros, collapsed, dtype):
    """S = 0 means a (k, k) joint. zeros: empty classes exercise the EPS clamps."""
    g = torch.Generator().manual_seed(S * 100 + k)
    J = torch.rand(max(S, 1), k, k, generator=g, dtype=torch.float64) + 0.01
    if zeros and k > 2:
        J[:, 1, :] = 0
        J[:, :, 1] = 0
        J[:, 0, 2] = 0
    J = (J[0] if S == 0 else J).to(device="cuda", dtype=dtype)
    Jr = J.double().requires_grad_(True)
    want = reference.mi(Jr, lamb, collapsed)
    (want_grad,) = torch.autograd.grad(want[0], Jr)
    poison()
    loss, loss_no_lamb, grad = ops.mi(J, lamb, collapsed)
    assert loss.dim() == 0 and loss.dtype == dtype and grad.shape == J.shape and grad.dtype == dtype
    tol = TOL[dtype]
    assert_rel(loss.reshape(1), want[0].reshape(1), tol)
    assert_rel(loss_no_lamb.reshape(1), want[1].reshape(1), tol)
    assert_rel(grad, want_grad, tol, floor=1 / J.double().sum().item())  # all ~0 when k = 1


def test_cuda_matches_cpu_op():
    if not iic.has_kernels("cpu"):
        pytest.skip("no CPU kernels in this build")
    for n, k, H, W, d, collapsed in [(2, 5, 9, 8, 2, False), (1, 3, 6, 11, 6, True), (2, 24, 7, 5, 1, False)]:
        x1, x2 = maps(n, k, H, W)
        J = ops.joint(x1, x2, d, collapsed)
        torch.testing.assert_close(J.cpu(), ops.joint(x1.cpu(), x2.cpu(), d, collapsed), rtol=1e-10, atol=1e-12)
        G = torch.randn_like(J)
        for a, b in zip(ops.joint_backward(G, x1, x2, d, collapsed),
                        ops.joint_backward(G.cpu(), x1.cpu(), x2.cpu(), d, collapsed)):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-12)
        for a, b in zip(ops.mi(J, 1.5, collapsed), ops.mi(J.cpu(), 1.5, collapsed)):
            torch.testing.assert_close(a.cpu(), b, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("collapsed", [False, True])
def test_deterministic(collapsed):
    """Bitwise equal on repeated runs (fixed-order reductions, no float atomics)."""
    x1, x2 = maps(8, 12, 40, 50, torch.float32)
    J = ops.joint(x1, x2, 4, collapsed)
    G = torch.randn_like(J)
    grads = ops.joint_backward(G, x1, x2, 4, collapsed)
    mi = ops.mi(J, 1.2, collapsed)
    for _ in range(3):
        assert torch.equal(ops.joint(x1, x2, 4, collapsed), J)
        assert all(torch.equal(a, b) for a, b in zip(ops.joint_backward(G, x1, x2, 4, collapsed), grads))
        assert all(torch.equal(a, b) for a, b in zip(ops.mi(J, 1.2, collapsed), mi))


def test_other_stream_and_device_guard():
    x1, x2 = maps(2, 4, 10, 9, torch.float32)
    want = ops.joint(x1, x2, 2, False)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        got = ops.joint(x1, x2, 2, False)
        got_mi = ops.mi(got, 1.0, False)
    s.synchronize()
    assert torch.equal(got, want)
    assert torch.equal(got_mi[0], ops.mi(want, 1.0, False)[0])


def test_argument_errors():
    x1, x2 = maps(1, 3, 4, 4, torch.float32)
    with pytest.raises(RuntimeError, match="x2"):
        ops.joint(x1, x2[:, :2], 1, False)
    with pytest.raises(RuntimeError, match="d"):
        ops.joint(x1, x2, 9, False)
    with pytest.raises(RuntimeError, match="grad"):
        ops.joint_backward(torch.zeros(3, 3, device="cuda"), x1, x2, 1, False)
    with pytest.raises(RuntimeError, match="joint"):
        ops.mi(torch.zeros(3, 4, device="cuda"), 1.0, False)


@pytest.mark.parametrize("tiles", [None, (2, 3), (16, 16)])
@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_tiled_fft_on_the_gpu_small(tiles, dtype):
    # the pure-PyTorch FFT path (cuFFT + batched complex GEMM) with one tile and with many
    x1, x2 = (x.requires_grad_(True) for x in maps(2, 5, 37, 29, dtype=dtype))
    J = reference.joint_fft(x1, x2, 4, tiles=tiles)
    assert_rel(J, truth(x1, x2, 4, False), TOL[dtype])
    G = torch.randn_like(J)
    for got, want in zip(torch.autograd.grad((J * G).sum(), (x1, x2)), grads_truth(G, x1, x2, 4, False)):
        assert_rel(got, want, TOL[dtype])

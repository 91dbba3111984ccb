"""CUDA-specific cases of the kernels (csrc/cuda); the properties every device must have (brute-force and oracle
equality, non-contiguous inputs, determinism, argument errors, gradcheck) are in test_kernels.py.

Here: outputs checked after poisoning the caching allocator with NaN (unwritten outputs show up), channel and
tap chunks, another stream, agreement with the CPU op. Every test needs a GPU and is skipped without one. Tests
whose name contains "small" are quick and cover each kernel once; they are the selection run under
compute-sanitizer (memcheck, racecheck) by benchmarks/gpu_check.py.
"""
import pytest
import torch

import iic_fast as iic
from iic_fast import reference
from oracle import assert_rel, brute_grads, brute_joint, random_maps

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


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("collapsed", [False, True])
@pytest.mark.parametrize("n,k,H,W,d", GRID)
def test_poisoned_outputs_match_brute_force(n, k, H, W, d, collapsed, dtype):
    x1, x2 = maps(n, k, H, W, dtype)
    poison()
    J = ops.joint(x1, x2, d, collapsed)
    assert J.dtype == (torch.float64 if dtype == torch.float64 else torch.float32)
    assert_rel(J, brute_joint(x1, x2, d, collapsed=collapsed), TOL[dtype])
    G = torch.randn_like(J)
    poison()
    dx1, dx2 = ops.joint_backward(G, x1, x2, d, collapsed)
    assert dx1.dtype == dtype and dx1.shape == x1.shape
    r1, r2 = brute_grads(G, x1, x2, d, collapsed)
    assert_rel(dx1, r1, TOL[dtype])
    assert_rel(dx2, r2, TOL[dtype])


SMALL_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-5, torch.bfloat16: 1e-5}
SMALL_GRAD_TOL = {torch.float64: 1e-10, torch.float32: 1e-5, torch.float16: 1e-2, torch.bfloat16: 1e-2}


@pytest.mark.parametrize("collapsed", [False, True])
def test_small_every_dtype_and_op(collapsed):
    """One small case per dtype through joint, joint_backward and mi (the compute-sanitizer selection): values
    against the float64 truth of the same rounded inputs (half-precision gradients are rounded to their dtype)."""
    for dtype in (torch.float64, torch.float32, torch.float16, torch.bfloat16):
        x1, x2 = maps(2, 5, 7, 6, dtype)
        J = ops.joint(x1, x2, 2, collapsed)
        assert_rel(J, brute_joint(x1, x2, 2, collapsed=collapsed), SMALL_TOL[dtype])
        G = torch.rand_like(J)
        for got, want in zip(ops.joint_backward(G, x1, x2, 2, collapsed), brute_grads(G, x1, x2, 2, collapsed)):
            assert got.dtype == dtype
            assert_rel(got, want, SMALL_GRAD_TOL[dtype])
        loss, loss_no_lamb, g = ops.mi(J, 1.5, collapsed)
        Jr = J.double().requires_grad_(True)
        ref = reference.mi(Jr, 1.5, collapsed)
        (ref_grad,) = torch.autograd.grad(ref[0], Jr)
        tol = 1e-10 if dtype == torch.float64 else 1e-5
        assert_rel(torch.stack([loss, loss_no_lamb]), torch.stack(ref).detach(), tol)
        assert_rel(g, ref_grad, tol)
        torch.cuda.synchronize()


def test_small_large_k_and_d():
    """k > 64 (channel chunks) and T > 32 (tap chunks), fp32."""
    for n, k, H, W, d in [(1, 70, 4, 9, 1), (1, 3, 12, 40, 17)]:
        x1, x2 = maps(n, k, H, W, torch.float32)
        for collapsed in (False, True):
            J = ops.joint(x1, x2, d, collapsed)
            assert_rel(J, brute_joint(x1, x2, d, collapsed=collapsed), 1e-5)
            G = torch.randn_like(J)
            dx1, dx2 = ops.joint_backward(G, x1, x2, d, collapsed)
            r1, r2 = brute_grads(G, x1, x2, d, collapsed)
            assert_rel(dx1, r1, 1e-5)
            assert_rel(dx2, r2, 1e-5)


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

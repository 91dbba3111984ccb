"""The CPU kernels (torch.ops.iic_fast.joint / joint_backward / mi) against a brute-force shift loop, the pure
PyTorch reference and autograd. Calls the ops directly, below iic_fast.ops."""
import os
import subprocess
import sys

import pytest
import torch

_C = pytest.importorskip("iic_fast._C", reason="iic_fast._C is not built")
from iic_fast import reference  # noqa: E402  (importing iic_fast registers the ops' autograd)
from oracle import brute_joint  # noqa: E402

ops = torch.ops.iic_fast

# (n, k, H, W, d): odd sizes, H != W, d = 0, d >= H, d >= W, k = 1 .. 50 (tiny sizes for large k), batch of one;
# the last ones span several row strips / tasks / pixel vectors and the partial-joint groups of the forward.
GRID = [
    (2, 3, 7, 5, 1), (1, 4, 6, 6, 0), (3, 2, 5, 9, 2), (2, 3, 4, 6, 5), (1, 1, 5, 5, 2), (2, 50, 3, 4, 1),
    (1, 5, 8, 3, 3), (2, 3, 6, 7, 6), (1, 2, 1, 1, 0), (1, 2, 1, 4, 2), (1, 13, 9, 11, 2), (1, 31, 4, 5, 2),
    (2, 7, 19, 37, 4), (3, 5, 40, 21, 1), (1, 6, 23, 70, 3),
]
IDS = ["n{}k{}H{}W{}d{}".format(*g) for g in GRID]


def maps(n, k, H, W, dtype=torch.float64, seed=0):
    """Two (n, k, H, W) softmax maps with correlated class use."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, k, H, W, generator=g, dtype=torch.float64) * 2
    x1 = base.softmax(1)
    x2 = (base + torch.randn(n, k, H, W, generator=g, dtype=torch.float64)).softmax(1)
    return x1.to(dtype), x2.to(dtype)


def close(actual, expected, tol):
    """Max error relative to the scale of the expected tensor."""
    scale = expected.abs().max().clamp(min=1e-300)
    err = ((actual.double() - expected.double()).abs().max() / scale).item()
    assert err <= tol, f"relative error {err:.3g} > {tol:.1g}"


@pytest.mark.parametrize("n,k,H,W,d", GRID, ids=IDS)
def test_joint_forward_float64(n, k, H, W, d):
    x1, x2 = maps(n, k, H, W)
    truth = brute_joint(x1, x2, d)
    J, Jc = ops.joint(x1, x2, d, False), ops.joint(x1, x2, d, True)
    assert J.dtype == torch.float64 and J.shape == (truth.shape) and Jc.shape == (k, k)
    close(J, truth, 1e-10)
    close(Jc, truth.sum(0), 1e-10)
    close(J, reference.joint_conv(x1, x2, d), 1e-10)
    close(Jc, reference.joint_conv(x1, x2, d, collapsed=True), 1e-10)


@pytest.mark.parametrize("n,k,H,W,d", GRID, ids=IDS)
def test_joint_backward_float64(n, k, H, W, d):
    """dx1, dx2 equal autograd through the brute-force joint, for a random dL/dJ."""
    x1, x2 = maps(n, k, H, W)
    g = torch.Generator().manual_seed(1)
    G = torch.randn((2 * d + 1) ** 2, k, k, generator=g, dtype=torch.float64)
    Gc = torch.randn(k, k, generator=g, dtype=torch.float64)
    a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
    J = brute_joint(a, b, d)
    ref = torch.autograd.grad((J * G).sum(), (a, b), retain_graph=True)
    ref_c = torch.autograd.grad((J.sum(0) * Gc).sum(), (a, b))
    for got, want in zip(ops.joint_backward(G, x1, x2, d, False), ref):
        assert got.shape == want.shape and got.dtype == torch.float64
        close(got, want, 1e-10)
    for got, want in zip(ops.joint_backward(Gc, x1, x2, d, True), ref_c):
        close(got, want, 1e-10)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.float16, 1e-5), (torch.bfloat16, 1e-5)])
@pytest.mark.parametrize("n,k,H,W,d", [(2, 7, 19, 37, 4), (1, 24, 13, 21, 6), (2, 3, 6, 7, 6)])
def test_reduced_precision(n, k, H, W, d, dtype, tol):
    """Half/bfloat16/float32 inputs accumulate in float32: the joint is float32 and matches the float64 truth of
    the same (rounded) inputs to 1e-5 of its scale; gradients come back in the input dtype."""
    x1, x2 = (x.to(dtype) for x in maps(n, k, H, W))
    truth = brute_joint(x1, x2, d)
    J, Jc = ops.joint(x1, x2, d, False), ops.joint(x1, x2, d, True)
    assert J.dtype == torch.float32 and Jc.dtype == torch.float32
    close(J, truth, tol)
    close(Jc, truth.sum(0), tol)
    G = torch.randn(truth.shape, dtype=torch.float32)
    a, b = x1.double().requires_grad_(), x2.double().requires_grad_()
    ref = torch.autograd.grad((brute_joint(a, b, d) * G.double()).sum(), (a, b))
    grad_tol = tol if dtype == torch.float32 else 1e-2  # the result is rounded to the input dtype
    for got, want in zip(ops.joint_backward(G, x1, x2, d, False), ref):
        assert got.dtype == dtype
        close(got, want, grad_tol)


def test_non_contiguous_and_channels_last():
    x1, x2 = maps(2, 5, 9, 8)
    truth = brute_joint(x1, x2, 2)
    x1t = x1.transpose(2, 3).contiguous().transpose(2, 3)
    x2c = x2.contiguous(memory_format=torch.channels_last)
    x1s = torch.stack([x1, x1], 2)[:, :, 0]  # strided view
    for a, b in [(x1t, x2c), (x1.contiguous(memory_format=torch.channels_last), x2), (x1s, x2)]:
        close(ops.joint(a, b, 2, False), truth, 1e-10)
        close(ops.joint(a, b, 2, True), truth.sum(0), 1e-10)
    G = torch.randn(25, 5, 5, dtype=torch.float64)
    want = ops.joint_backward(G, x1, x2, 2, False)
    for got, w in zip(ops.joint_backward(G, x1t, x2c, 2, False), want):
        torch.testing.assert_close(got, w, rtol=0, atol=0)
    got = ops.joint_backward(G.transpose(1, 2).contiguous().transpose(1, 2), x1, x2, 2, False)  # strided grad
    torch.testing.assert_close(got[0], want[0], rtol=0, atol=0)


def test_deterministic_for_any_thread_count():
    x1, x2 = maps(3, 6, 33, 29, torch.float32)
    G = torch.randn(49, 6, 6)
    threads = torch.get_num_threads()
    results = []
    try:
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            results.append([ops.joint(x1, x2, 3, False), ops.joint(x1, x2, 3, True),
                            *ops.joint_backward(G, x1, x2, 3, False), *ops.joint_backward(G[0], x1, x2, 3, True)])
    finally:
        torch.set_num_threads(threads)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            assert torch.equal(a, b)


def test_empty_batch():
    x = torch.zeros(0, 3, 5, 4)
    assert torch.equal(ops.joint(x, x, 1, False), torch.zeros(9, 3, 3))
    assert torch.equal(ops.joint(x, x, 1, True), torch.zeros(3, 3))
    dx1, dx2 = ops.joint_backward(torch.ones(9, 3, 3), x, x, 1, False)
    assert dx1.shape == x.shape and dx2.shape == x.shape


@pytest.mark.parametrize("collapsed", [False, True])
@pytest.mark.parametrize("n,k,H,W,d", [(2, 3, 5, 4, 1), (1, 2, 3, 6, 4)])
def test_gradcheck(n, k, H, W, d, collapsed):
    x1, x2 = (x.requires_grad_() for x in maps(n, k, H, W))
    assert torch.autograd.gradcheck(lambda a, b: ops.joint(a, b, d, collapsed), (x1, x2))


def mi_reference(J, lamb, collapsed):
    Jr = J.detach().double().requires_grad_()
    loss, loss_nl = reference.mi(Jr, lamb=lamb, collapsed=collapsed)
    (grad,) = torch.autograd.grad(loss, Jr)
    return loss, loss_nl, grad


def clamped_joints():
    """Joints whose epilogue clamps: zero entries (P < EPS) and a class never used (marginal < EPS)."""
    J = torch.rand(3, 5, 5, dtype=torch.float64)
    J[0, 1, 2] = J[0, 2, 1] = 0.0
    J[1, 3, :] = J[1, :, 3] = 0.0
    J[2, 0, 4] = 1e-30  # tiny but >= 0: P just under EPS after normalising
    return J


@pytest.mark.parametrize("lamb", [1.0, 1.7])
@pytest.mark.parametrize("collapsed", [False, True])
@pytest.mark.parametrize("shape", [(9, 4, 4), (4, 4), (1, 1), (25, 50, 50), (3, 5, 5)])
def test_mi_matches_reference_and_autograd(shape, collapsed, lamb):
    J = clamped_joints() if shape == (3, 5, 5) else torch.rand(shape, dtype=torch.float64) * 100
    loss, loss_nl, grad = ops.mi(J, lamb, collapsed)
    ref_loss, ref_nl, ref_grad = mi_reference(J, lamb, collapsed)
    assert loss.dim() == 0 and loss_nl.dim() == 0 and grad.shape == J.shape and grad.dtype == J.dtype
    torch.testing.assert_close(loss, ref_loss, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss_nl, ref_nl, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_mi_reduced_precision(dtype):
    J = (torch.rand(9, 6, 6, dtype=torch.float64) * 50).to(dtype)
    loss, loss_nl, grad = ops.mi(J, 1.3, False)
    assert loss.dtype == dtype and grad.dtype == dtype
    ref_loss, ref_nl, ref_grad = mi_reference(J.double(), 1.3, False)  # same rounded input, in float64
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(loss.double(), ref_loss, rtol=tol, atol=tol)
    torch.testing.assert_close(grad.double(), ref_grad, rtol=tol, atol=tol * ref_grad.abs().max().item())


def test_mi_non_contiguous():
    J = torch.rand(5, 4, 4, dtype=torch.float64)
    Jt = J.transpose(0, 2).contiguous().transpose(0, 2)
    for a, b in zip(ops.mi(Jt, 1.0, False), ops.mi(J, 1.0, False)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_segmentation_loss_gradient_end_to_end():
    """joint -> mi -> joint_backward gives autograd's gradient of the reference loss w.r.t. the maps."""
    x1, x2 = maps(2, 4, 9, 7)
    for collapsed in (False, True):
        loss, _, gJ = ops.mi(ops.joint(x1, x2, 2, collapsed), 1.5, collapsed)
        dx1, dx2 = ops.joint_backward(gJ, x1, x2, 2, collapsed)
        a, b = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        ref, _ = reference.mi(reference.joint_conv(a, b, 2, collapsed=collapsed), lamb=1.5, collapsed=collapsed)
        ga, gb = torch.autograd.grad(ref, (a, b))
        torch.testing.assert_close(loss, ref, rtol=1e-12, atol=1e-12)
        close(dx1, ga, 1e-10)
        close(dx2, gb, 1e-10)


def bad(fn, match):
    with pytest.raises(RuntimeError, match=match):
        fn()


def test_bad_inputs_name_the_argument():
    x = torch.rand(2, 3, 5, 4)
    bad(lambda: ops.joint(x[0], x, 1, False), "x1")
    bad(lambda: ops.joint(x, x[:, :2], 1, False), "x2")
    bad(lambda: ops.joint(x, x.double(), 1, False), "x1 and x2")
    bad(lambda: ops.joint(x.long(), x.long(), 1, False), "x1 must be floating")
    bad(lambda: ops.joint(x, x, -1, False), "d must be")
    bad(lambda: ops.joint(x, x, 6, False), "d=6")
    bad(lambda: ops.joint(x[:, :0], x[:, :0], 1, False), "x1 must have k")
    bad(lambda: ops.joint_backward(torch.rand(9, 3, 3), x, x[:1], 1, False), "x2")
    bad(lambda: ops.joint_backward(torch.rand(3, 3), x, x, 1, False), "grad_joint")
    bad(lambda: ops.joint_backward(torch.rand(9, 3, 3), x, x, 1, True), "grad_joint")
    bad(lambda: ops.joint_backward(torch.ones(9, 3, 3, dtype=torch.long), x, x, 1, False), "grad_joint")
    bad(lambda: ops.joint_backward(torch.rand(9, 3, 3), x, x, -2, False), "d must be")
    bad(lambda: ops.mi(torch.rand(3, 4), 1.0, False), "joint")
    bad(lambda: ops.mi(torch.rand(2, 3, 3, 3), 1.0, False), "joint")
    bad(lambda: ops.mi(torch.ones(3, 3, dtype=torch.long), 1.0, False), "joint")


SCRIPT = """
import torch, iic_fast._C
from test_cpu_kernels import brute_joint, maps, close
ops = torch.ops.iic_fast
for (n, k, H, W, d) in [(2, 7, 19, 37, 4), (1, 13, 9, 11, 2), (2, 3, 4, 6, 5)]:
    for dt, tol in [(torch.float64, 1e-10), (torch.float32, 1e-5)]:
        x1, x2 = (x.to(dt) for x in maps(n, k, H, W))
        truth = brute_joint(x1, x2, d)
        close(ops.joint(x1, x2, d, False), truth, tol)
        close(ops.joint(x1, x2, d, True), truth.sum(0), tol)
        G = torch.randn(truth.shape, dtype=dt)
        a, b = x1.double().requires_grad_(), x2.double().requires_grad_()
        ref = torch.autograd.grad((brute_joint(a, b, d) * G.double()).sum(), (a, b))
        for got, want in zip(ops.joint_backward(G, x1, x2, d, False), ref):
            close(got, want, tol)
        Gc = G[0]
        ref = torch.autograd.grad((brute_joint(a, b, d).sum(0) * Gc.double()).sum(), (a, b))
        for got, want in zip(ops.joint_backward(Gc, x1, x2, d, True), ref):
            close(got, want, tol)
print("ok")
"""


@pytest.mark.parametrize("isa", ["avx2", "base"])
def test_other_instruction_sets(isa):
    """The kernels are built per instruction set and picked at run time; IIC_FAST_CPU_ISA caps the choice, so
    the narrower builds (used on CPUs without AVX-512) are checked here too (where the CPU runs them)."""
    env = dict(os.environ, IIC_FAST_CPU_ISA=isa, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(__file__)] + [p for p in sys.path if p]))
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "ok" in out.stdout, out.stderr[-2000:]

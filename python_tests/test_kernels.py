"""Properties every joint implementation must have on every device, written once and parametrised over the
available devices (the CPU always, CUDA when a GPU is present), as torchvision's test_ops.py does.

Each algorithm (the compiled kernel op, and the pure-PyTorch box filter + GEMM / tiled FFT of
``iic_fast.algorithms``, reached through ``iic.joint(impl=...)``) is compared with the brute-force shift loop of
oracle.py AND with the oracle ``iic_fast.reference`` (the original's conv trick) on a grid of shapes; then
non-contiguous inputs, determinism, half precision against float64, argument errors of the real and the fake
kernels, and gradcheck through the registered autograd. Device-specific cases stay in test_cpu_kernels.py
(thread counts, instruction sets) and test_cuda_kernels.py (streams, poisoned memory, sanitizer selection).
"""
import os
import re

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import iic_fast as iic
from iic_fast import reference
from oracle import assert_rel, brute_grads, brute_joint, gradcheck, random_mask, random_maps

DEVICES = ["cpu"] + [pytest.param("cuda", marks=pytest.mark.cuda)] * torch.cuda.is_available()
ALGORITHMS = ["kernel", "fft"]  # impl="fft": box filter + GEMM when collapsed, tiled FFT when not
ops = torch.ops.iic_fast

# (n, k, H, W, d): odd sizes, H != W, d = 0, d >= H, d >= W, k = 1 .. 65, a batch of one, 1x1 images; the
# larger ones span several CPU row strips / tasks and several CUDA column strips and channel chunks.
GRID = [
    (2, 3, 7, 5, 1), (1, 4, 6, 6, 0), (3, 2, 5, 9, 2), (2, 3, 4, 6, 5), (1, 1, 5, 5, 2), (2, 50, 3, 4, 1),
    (1, 5, 8, 3, 3), (2, 3, 6, 7, 6), (1, 2, 1, 1, 0), (1, 2, 1, 4, 2), (1, 13, 9, 11, 2), (1, 65, 5, 9, 1),
    (2, 7, 19, 37, 4), (3, 5, 40, 21, 1), (1, 6, 23, 70, 3),
]
IDS = ["n{}k{}H{}W{}d{}".format(*g) for g in GRID]


@pytest.fixture(autouse=True)
def _needs_kernels(request):
    device = request.node.callspec.params.get("device", "cpu") if hasattr(request.node, "callspec") else "cpu"
    if not iic.has_kernels(device):
        if os.environ.get("IIC_FAST_ALLOW_NO_EXTENSION") == "1":
            pytest.skip("IIC_FAST_ALLOW_NO_EXTENSION=1 and the extension is not built")
        pytest.fail(f"iic_fast has no {device} kernels: {iic.build_info()}")


def _joint(x1, x2, d, mask, collapsed, impl):
    return iic.joint(x1, x2, d, mask=mask, collapsed=collapsed, impl=impl)


@pytest.mark.parametrize("n,k,H,W,d", GRID, ids=IDS)
@pytest.mark.parametrize("impl", ALGORITHMS)
@pytest.mark.parametrize("device", DEVICES)
def test_joint_matches_brute_force_and_oracle(device, impl, n, k, H, W, d):
    x1, x2 = random_maps(n, k, H, W, device=device)
    mask = random_mask(n, H, W, device=device)
    for collapsed in (False, True):
        J = _joint(x1, x2, d, mask, collapsed, impl)
        assert J.dtype == torch.float64 and J.device == x1.device
        assert_rel(J, brute_joint(x1, x2, d, mask, collapsed), 1e-10)
        assert_rel(J, reference.joint_conv(x1, x2, d, mask, collapsed), 1e-10)


@pytest.mark.parametrize("n,k,H,W,d", [GRID[i] for i in (0, 3, 5, 8, 10)], ids=[IDS[i] for i in (0, 3, 5, 8, 10)])
@pytest.mark.parametrize("impl", ALGORITHMS)
@pytest.mark.parametrize("device", DEVICES)
def test_backward_matches_brute_force(device, impl, n, k, H, W, d):
    """Autograd through iic.joint (the kernel's registered backward, or the algorithm's) equals the gradient of
    <G, J> through the brute force, for a random G."""
    x1, x2 = (x.requires_grad_(True) for x in random_maps(n, k, H, W, device=device))
    mask = random_mask(n, H, W, device=device)
    for collapsed in (False, True):
        J = _joint(x1, x2, d, mask, collapsed, impl)
        G = torch.randn(J.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).to(device)
        got = torch.autograd.grad((J * G).sum(), (x1, x2))
        for g, want in zip(got, brute_grads(G, x1, x2, d, collapsed, mask)):
            assert g.shape == x1.shape and g.dtype == torch.float64
            assert_rel(g, want, 1e-10)


@pytest.mark.parametrize("dtype,tol,grad_tol", [(torch.float32, 1e-5, 1e-5), (torch.float16, 1e-5, 1e-2),
                                                (torch.bfloat16, 1e-5, 1e-2)])
@pytest.mark.parametrize("impl", ALGORITHMS)
@pytest.mark.parametrize("device", DEVICES)
def test_reduced_precision_against_float64(device, impl, dtype, tol, grad_tol):
    """Half/bfloat16/float32 inputs accumulate in float32: the joint is float32 and its values match the float64
    truth of the same rounded inputs to 1e-5 of its scale (rounding inside, e.g. a bf16 FFT, would be ~1e-3);
    gradients come back in the input dtype, rounded to it."""
    n, k, H, W, d = 1, 6, 13, 21, 3
    x1, x2 = (x.to(dtype).requires_grad_(True) for x in random_maps(n, k, H, W, device=device))
    for collapsed in (False, True):
        J = _joint(x1, x2, d, None, collapsed, impl)
        assert J.dtype == torch.float32
        assert_rel(J, brute_joint(x1, x2, d, collapsed=collapsed), tol)
        G = torch.randn(J.shape, generator=torch.Generator().manual_seed(2)).to(device)
        for got, want in zip(torch.autograd.grad((J * G).sum(), (x1, x2)), brute_grads(G, x1, x2, d, collapsed)):
            assert got.dtype == dtype
            assert_rel(got, want, grad_tol)


def _views(x1, x2):
    """Non-contiguous versions of (x1, x2): channels_last, transposed storage, strided slices."""
    return [(x1.contiguous(memory_format=torch.channels_last), x2.contiguous(memory_format=torch.channels_last)),
            (x1.transpose(2, 3).contiguous().transpose(2, 3), x2),
            (torch.stack([x1, x1], 2).flatten(1, 2)[:, ::2], torch.cat([x2, x2], 3)[..., :x2.shape[3]])]


@pytest.mark.parametrize("impl", ALGORITHMS)
@pytest.mark.parametrize("device", DEVICES)
def test_non_contiguous_inputs(device, impl):
    x1, x2 = random_maps(2, 5, 9, 8, device=device)
    for collapsed in (False, True):
        want = brute_joint(x1, x2, 2, collapsed=collapsed)
        G = torch.randn(want.shape, dtype=torch.float64).to(device)
        want_grads = brute_grads(G, x1, x2, 2, collapsed)
        for a, b in _views(x1, x2):
            assert not (a.is_contiguous() and b.is_contiguous())
            a, b = a.requires_grad_(True), b.requires_grad_(True)
            J = _joint(a, b, 2, None, collapsed, impl)
            assert_rel(J, want, 1e-10)
            for got, w in zip(torch.autograd.grad((J * G).sum(), (a, b)), want_grads):
                assert_rel(got, w, 1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_kernel_non_contiguous_gradient(device):
    """The backward op accepts a non-contiguous dL/dJ (autograd may hand it one)."""
    x1, x2 = random_maps(2, 5, 9, 8, device=device)
    for collapsed in (False, True):
        G = torch.randn((5, 5) if collapsed else (25, 5, 5), dtype=torch.float64).to(device)
        G_view = G.transpose(-1, -2).contiguous().transpose(-1, -2)
        assert not G_view.is_contiguous()
        for got, want in zip(ops.joint_backward(G_view, x1, x2, 2, collapsed), brute_grads(G, x1, x2, 2, collapsed)):
            assert_rel(got, want, 1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_kernels_are_deterministic(device):
    """Bitwise equal on repeated runs (fixed-order reductions, no float atomics)."""
    x1, x2 = random_maps(3, 6, 33, 29, dtype=torch.float32, device=device)
    for collapsed in (False, True):
        J = ops.joint(x1, x2, 3, collapsed)
        G = torch.randn_like(J)
        first = [J, *ops.joint_backward(G, x1, x2, 3, collapsed), *ops.mi(J, 1.2, collapsed)]
        for _ in range(2):
            again = [ops.joint(x1, x2, 3, collapsed), *ops.joint_backward(G, x1, x2, 3, collapsed),
                     *ops.mi(J, 1.2, collapsed)]
            assert all(torch.equal(a, b) for a, b in zip(first, again))


@pytest.mark.parametrize("device", DEVICES)
def test_empty_batch(device):
    x = torch.zeros(0, 3, 5, 4, device=device)
    assert torch.equal(ops.joint(x, x, 1, False), torch.zeros(9, 3, 3, device=device))
    assert torch.equal(ops.joint(x, x, 1, True), torch.zeros(3, 3, device=device))
    dx1, dx2 = ops.joint_backward(torch.ones(9, 3, 3, device=device), x, x, 1, False)
    assert dx1.shape == x.shape and dx2.shape == x.shape


def _bad_calls(device):
    """(op, arguments, message) for every argument check of csrc/checks.cpp; the fake kernels say the same."""
    x = torch.rand(2, 3, 5, 4, device=device)
    G = torch.rand(9, 3, 3, device=device)
    return [
        (ops.joint, (x[0], x, 1, False), r"x1 must have shape \(n, k, H, W\), got \[3, 5, 4\]"),
        (ops.joint, (x, x[:, :2], 1, False), r"x2 must have the shape of x1 \[2, 3, 5, 4\], got \[2, 2, 5, 4\]"),
        (ops.joint, (x, x.double(), 1, False), "x1 and x2 must have one dtype, got Float and Double"),
        (ops.joint, (x.long(), x.long(), 1, False), "x1 must be floating point, got Long"),
        (ops.joint, (x, x, -1, False), "d must be >= 0, got -1"),
        (ops.joint, (x, x, 6, False), "d=6 exceeds the image size 5x4"),
        (ops.joint, (x[:, :0], x[:, :0], 1, False), r"x1 must have k >= 1 classes, got shape \[2, 0, 5, 4\]"),
        (ops.joint_backward, (G, x, x[:1], 1, False), r"x2 must have the shape of x1"),
        (ops.joint_backward, (G, x, x, -2, False), "d must be >= 0, got -2"),
        (ops.joint_backward, (G[0], x, x, 1, False), r"grad_joint has shape \[3, 3\], expected the joint's shape"),
        (ops.joint_backward, (G, x, x, 1, True), r"grad_joint has shape \[9, 3, 3\], expected the joint's shape"),
        (ops.joint_backward, (G.long(), x, x, 1, False), "grad_joint must be floating point, got Long"),
        (ops.mi, (torch.rand(3, 4, device=device), 1.0, False), r"joint must have shape \(S, k, k\) or \(k, k\)"),
        (ops.mi, (torch.rand(2, 3, 3, 3, device=device), 1.0, False), r"joint must have shape \(S, k, k\)"),
        (ops.mi, (torch.ones(3, 3, dtype=torch.long, device=device), 1.0, False), "joint must be floating point"),
    ]


def _message(error):
    return str(error).replace("torch.float32", "Float").replace("torch.float64", "Double").replace(
        "torch.int64", "Long")


@pytest.mark.parametrize("device", DEVICES)
def test_bad_arguments_name_the_argument(device):
    for op, args, message in _bad_calls(device):
        with pytest.raises(RuntimeError, match=message):
            op(*args)


@pytest.mark.parametrize("device", DEVICES)
def test_fake_kernels_check_like_the_real_ones(device):
    """Under FakeTensorMode (torch.compile's tracing) the same calls fail with the same messages."""
    for op, args, message in _bad_calls(device):
        with FakeTensorMode() as mode:
            fake = [mode.from_tensor(a) if isinstance(a, torch.Tensor) else a for a in args]
            with pytest.raises(RuntimeError) as info:
                op(*fake)
        assert re.search(message, _message(info.value)), (message, str(info.value))


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck_through_the_registered_autograd(device):
    for n, k, H, W, d in [(2, 3, 5, 4, 1), (1, 2, 3, 6, 4)]:  # d >= H in the second
        x1, x2 = (x.requires_grad_(True) for x in random_maps(n, k, H, W, device=device))
        mask = random_mask(n, H, W, device=device)
        for collapsed in (False, True):
            assert gradcheck(lambda a, b: iic.joint(a, b, d, mask=mask, collapsed=collapsed, impl="kernel"), (x1, x2))
    # the uncollapsed loss is a true function of its inputs (its normaliser is differentiated)
    assert gradcheck(lambda a, b: iic.segmentation_loss(a, b, d=1, mask=mask, impl="kernel"), (x1, x2))
    for shape in [(4, 4), (3, 4, 4), (1, 1)]:
        J = (torch.rand(shape, dtype=torch.float64, device=device) + 0.05).requires_grad_(True)
        assert gradcheck(lambda j: iic.mi(j, 1.7, collapsed=False, impl="kernel"), (J,))


def _clamped_joints():
    """Joints whose epilogue clamps: zero entries (P < EPS), a class never used (marginal < EPS), tiny entries."""
    J = torch.rand(3, 5, 5, dtype=torch.float64)
    J[0, 1, 2] = J[0, 2, 1] = 0.0
    J[1, 3, :] = J[1, :, 3] = 0.0
    J[2, 0, 4] = 1e-30
    return J


@pytest.mark.parametrize("lamb", [1.0, 1.7])
@pytest.mark.parametrize("collapsed", [False, True])
@pytest.mark.parametrize("shape", [(9, 4, 4), (4, 4), (1, 1), (25, 50, 50), (441, 24, 24), "clamped"])
@pytest.mark.parametrize("device", DEVICES)
def test_mi_matches_the_oracle(device, shape, collapsed, lamb):
    J = _clamped_joints() if shape == "clamped" else torch.rand(shape, dtype=torch.float64) * 100
    J = J.to(device)
    loss, loss_no_lamb, grad = ops.mi(J, lamb, collapsed)
    Jr = J.clone().requires_grad_(True)
    want = reference.mi(Jr, lamb, collapsed)
    (want_grad,) = torch.autograd.grad(want[0], Jr)
    assert loss.dim() == 0 and grad.shape == J.shape and grad.dtype == J.dtype
    torch.testing.assert_close(loss, want[0].detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(loss_no_lamb, want[1].detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad, want_grad, rtol=1e-10, atol=1e-14)
    Jt = J.transpose(-1, -2).contiguous().transpose(-1, -2)  # non-contiguous: the same numbers
    assert all(torch.equal(a, b) for a, b in zip(ops.mi(Jt, lamb, collapsed), (loss, loss_no_lamb, grad)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("device", DEVICES)
def test_mi_reduced_precision(device, dtype):
    J = (torch.rand(9, 6, 6, dtype=torch.float64) * 50).to(device=device, dtype=dtype)
    loss, _, grad = ops.mi(J, 1.3, False)
    assert loss.dtype == dtype and grad.dtype == dtype
    Jr = J.double().requires_grad_(True)  # the same rounded input, in float64
    want = reference.mi(Jr, 1.3, False)
    (want_grad,) = torch.autograd.grad(want[0], Jr)
    tol = 1e-6 if dtype == torch.float32 else 1e-2
    torch.testing.assert_close(loss.double(), want[0].detach(), rtol=tol, atol=tol)
    torch.testing.assert_close(grad.double(), want_grad, rtol=tol, atol=tol * want_grad.abs().max().item())


@pytest.mark.parametrize("collapsed", [False, True])
@pytest.mark.parametrize("device", DEVICES)
def test_kernel_loss_and_gradients_match_the_oracle(device, collapsed):
    x1, x2 = (x.requires_grad_(True) for x in random_maps(3, 5, 9, 7, device=device))
    mask = random_mask(3, 9, 7, device=device)
    results = []
    for impl in ("kernel", "reference"):
        loss = iic.segmentation_loss(x1, x2, d=3, lamb=1.5, mask=mask, collapsed=collapsed, impl=impl)
        results.append((loss, torch.autograd.grad(loss[0] + 0.5 * loss[1], (x1, x2))))
    torch.testing.assert_close(results[0], results[1], rtol=1e-9, atol=1e-12)

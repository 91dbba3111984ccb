"""The compiled ops as PyTorch sees them: built, opcheck, autograd, torch.compile, dispatch by impl."""
import os
import shutil

import pytest
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

import iic_fast as iic
from iic_fast import ops
from oracle import brute_joint, random_maps

DEVICES = ["cpu"] + [pytest.param("cuda", marks=pytest.mark.cuda)] * torch.cuda.is_available()
needs_kernels = pytest.mark.skipif(not iic.has_kernels("cpu") and os.environ.get("IIC_FAST_ALLOW_NO_EXTENSION") == "1",
                                   reason="IIC_FAST_ALLOW_NO_EXTENSION=1 and the extension is not built")


def test_extension_is_built_with_cuda_when_possible():
    if os.environ.get("IIC_FAST_ALLOW_NO_EXTENSION") == "1":
        pytest.skip("IIC_FAST_ALLOW_NO_EXTENSION=1")
    info = iic.build_info()
    assert info["loaded"], info
    assert iic.has_kernels("cpu")
    if torch.version.cuda and shutil.which("nvcc") and os.environ.get("IIC_FAST_CUDA") != "0":
        assert info["cuda"] and iic.has_kernels("cuda") == info["cuda"], info


@pytest.mark.skipif(not iic.has_kernels("cuda"), reason="built without the CUDA kernels")
def test_cuda_kernels_check_their_arguments_on_the_host():
    # The CUDA implementations, reached through the dispatcher with CPU tensors (no GPU needed), reject bad
    # arguments before any CUDA call, with the messages of the CPU ops.
    cuda = torch._C.DispatchKeySet(torch._C.DispatchKey.CUDA)
    lib = torch.ops.iic_fast
    x = torch.rand(1, 3, 4, 4)
    cases = [(lib.joint.default, (x, x[:, :2], 1, False), r"x2 must have the shape of x1 \[1, 3, 4, 4\]"),
             (lib.joint.default, (x, x, 1, False), "x1 and x2 must be on one CUDA device, got cpu"),
             (lib.joint_backward.default, (torch.zeros(3, 3), x, x, 1, False), "must be on one CUDA device"),
             (lib.mi.default, (torch.zeros(3, 4), 1.0, False), r"joint must have shape \(S, k, k\)"),
             (lib.mi.default, (torch.zeros(3, 3), 1.0, False), "joint must be on a CUDA device, got cpu")]
    for op, args, message in cases:
        with pytest.raises(RuntimeError, match=message):
            op.redispatch(cuda, *args)


def _samples(device):
    for n, k, H, W, d, collapsed in [(2, 3, 5, 4, 1, False), (1, 4, 6, 6, 2, True), (2, 1, 3, 5, 0, False)]:
        x1, x2 = random_maps(n, k, H, W, device=device)
        yield x1, x2, d, collapsed


@needs_kernels
@pytest.mark.parametrize("device", DEVICES)
def test_opcheck(device):
    for x1, x2, d, collapsed in _samples(device):
        J = torch.ops.iic_fast.joint(x1, x2, d, collapsed)
        torch.library.opcheck(torch.ops.iic_fast.joint.default, (x1.requires_grad_(), x2.requires_grad_(), d,
                                                                 collapsed))
        torch.library.opcheck(torch.ops.iic_fast.joint_backward.default, (torch.rand_like(J), x1.detach(),
                                                                          x2.detach(), d, collapsed))
        torch.library.opcheck(torch.ops.iic_fast.mi.default, (J.detach().requires_grad_(), 1.5, collapsed))


@needs_kernels
@pytest.mark.filterwarnings("ignore:Torchinductor does not support")
@pytest.mark.parametrize("collapsed", [False, True])
def test_torch_compile_fullgraph_matches_eager(collapsed):
    x1, x2 = (x.requires_grad_(True) for x in random_maps(2, 3, 8, 7, dtype=torch.float32))

    def loss_fn(a, b):
        return iic.segmentation_loss(a, b, d=2, collapsed=collapsed, impl="kernel")

    results = []
    for fn in (torch.compile(loss_fn, fullgraph=True), loss_fn):
        loss, loss_no_lamb = fn(x1, x2)
        results.append((loss, loss_no_lamb, torch.autograd.grad(loss, (x1, x2))))
    torch.testing.assert_close(results[0], results[1], rtol=1e-5, atol=1e-6)


# The crossover shapes of `auto`, written out (not computed from DIRECT_MAX_COST): (2d+1)^2 k = 600 is the last
# direct-kernel shape on the CPU, 500 on CUDA; one class more crosses to the FFT.
CROSSOVERS = [("cpu", 24, 2, "kernel"), ("cpu", 25, 2, "fft"), ("cpu", 6, 4, "kernel"), ("cpu", 8, 4, "fft"),
              ("cuda", 20, 2, "kernel"), ("cuda", 21, 2, "fft"), ("cuda", 5, 4, "kernel"), ("cuda", 24, 1, "kernel"),
              ("cuda", 24, 2, "fft")]


@pytest.mark.parametrize("device,k,d,expected", CROSSOVERS)
def test_auto_crossover_shapes(monkeypatch, device, k, d, expected):
    monkeypatch.setattr(ops, "has_kernels", lambda device: True)
    with FakeTensorMode():  # a CUDA tensor's metadata, without a GPU
        x = torch.empty(4, k, 200, 200, device=device)
        assert ops.choose_impl(x, d, collapsed=False) == expected
        assert ops.choose_impl(x, d, collapsed=True) == "kernel"
        assert ops.choose_impl(x, d, collapsed=False, impl="reference") == "reference"
        assert ops.choose_impl(x, d, collapsed=False, impl="fft") == "fft"


def test_missing_kernels_fall_back_with_one_warning(monkeypatch):
    monkeypatch.setattr(ops, "has_kernels", lambda device: False)
    monkeypatch.setattr(iic._extension, "_warned", set())
    x1, x2 = random_maps(1, 3, 6, 6)
    with pytest.warns(UserWarning, match="iic_fast: no compiled kernels for cpu") as record:
        J = iic.joint(x1, x2, 1, impl="kernel")
        Jc = iic.joint(x1, x2, 1, impl="auto", collapsed=True)
    assert len(record) == 1
    assert ops.choose_impl(x1, 1, collapsed=False) == "fft" and ops.choose_impl(x1, 1, collapsed=True) == "box"
    torch.testing.assert_close(J, brute_joint(x1, x2, 1), rtol=0, atol=1e-12)
    torch.testing.assert_close(Jc, brute_joint(x1, x2, 1, collapsed=True), rtol=0, atol=1e-12)

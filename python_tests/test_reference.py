"""The oracle (iic_fast.reference: the original's conv trick and the epilogue) agrees with the brute-force
definition of oracle.py and with analytic cases. The production algorithms are checked in test_algorithms.py and
test_kernels.py."""
import math

import pytest
import torch

from iic_fast import reference
from oracle import brute_joint, gradcheck, original_mi, random_mask, random_maps

# (n, k, H, W, d): odd sizes, H != W, d = 0, d >= H, k = 1 and 50, batch of one
GRID = [
    (2, 3, 7, 5, 1), (1, 4, 6, 6, 0), (3, 2, 5, 9, 2), (2, 3, 4, 6, 5), (1, 1, 5, 5, 2),
    (2, 50, 3, 4, 1), (1, 5, 8, 3, 3), (2, 3, 6, 7, 6), (1, 2, 1, 1, 0), (1, 2, 1, 4, 2),
]


@pytest.mark.parametrize("n,k,H,W,d", GRID)
@pytest.mark.parametrize("masked", [False, True])
def test_conv_trick_matches_brute_force(n, k, H, W, d, masked):
    x1, x2 = random_maps(n, k, H, W)
    mask = random_mask(n, H, W) if masked else None
    truth = brute_joint(x1, x2, d, mask)
    torch.testing.assert_close(reference.joint_conv(x1, x2, d, mask), truth, rtol=0, atol=1e-10)
    torch.testing.assert_close(reference.joint_conv(x1, x2, d, mask, collapsed=True), truth.sum(0), rtol=0, atol=1e-10)


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_identical_one_hot_maps_give_minus_log_k(k):
    labels = torch.arange(4 * 6 * 6 * k).remainder(k).view(4 * k, 6, 6)  # uniform class use
    x = torch.nn.functional.one_hot(labels, k).permute(0, 3, 1, 2).double()
    loss, loss_no_lamb = reference.mi(reference.joint_conv(x, x, 0), lamb=1.0)
    assert loss_no_lamb.item() == pytest.approx(-math.log(k), abs=1e-12)
    assert loss.item() == pytest.approx(loss_no_lamb.item())


def test_independent_maps_give_about_zero():
    g = torch.Generator().manual_seed(0)
    x1 = torch.randn(64, 3, 16, 16, generator=g, dtype=torch.float64).mul(3).softmax(1)
    x2 = torch.randn(64, 3, 16, 16, generator=g, dtype=torch.float64).mul(3).softmax(1)
    _, loss_no_lamb = reference.mi(reference.joint_conv(x1, x2, 1))
    assert abs(loss_no_lamb.item()) < 1e-3


def test_loss_is_symmetric_in_its_inputs():
    x1, x2 = random_maps(2, 4, 7, 6)
    for collapsed in (False, True):
        a = reference.mi(reference.joint_conv(x1, x2, 2, collapsed=collapsed), 1.3, collapsed)
        b = reference.mi(reference.joint_conv(x2, x1, 2, collapsed=collapsed), 1.3, collapsed)
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("collapsed", [False, True])
@pytest.mark.parametrize("lamb", [1.0, 1.5])
def test_mi_matches_the_original_epilogue(collapsed, lamb):
    x1, x2 = random_maps(2, 5, 6, 7)
    J = reference.joint_conv(x1, x2, 1, collapsed=collapsed)
    J = J.contiguous().clone()
    J.view(-1)[3] = 0.0  # a clamped entry
    slices = J.unsqueeze(0) if collapsed else J
    parts = [original_mi(P, lamb, detach_normaliser=collapsed) for P in slices]
    expected = tuple(torch.stack(p).mean() for p in zip(*parts))
    torch.testing.assert_close(reference.mi(J, lamb, collapsed), expected, rtol=1e-12, atol=1e-14)


def test_lamb_one_loss_is_minus_mutual_information():
    x1, x2 = random_maps(1, 3, 5, 5)
    J = reference.joint_conv(x1, x2, 0)[0]
    P = (J / J.sum() + (J / J.sum()).t()) / 2
    mi_value = (P * (P.log() - P.sum(1, keepdim=True).log() - P.sum(0, keepdim=True).log())).sum()
    torch.testing.assert_close(reference.mi(J)[1], -mi_value)


def test_collapsed_gradient_uses_the_detached_normaliser():
    # the collapsed loss is not differentiated through its normaliser (the original's float(P.sum()))
    J = reference.joint_conv(*random_maps(2, 3, 5, 4), 1, collapsed=True).requires_grad_(True)
    J_orig = J.detach().clone().requires_grad_(True)
    reference.mi(J, 1.5, collapsed=True)[0].backward()
    original_mi(J_orig, 1.5, detach_normaliser=True)[0].backward()
    torch.testing.assert_close(J.grad, J_orig.grad)


def test_gradcheck_conv_trick():
    x1, x2 = (x.requires_grad_(True) for x in random_maps(2, 3, 5, 4))
    mask = random_mask(2, 5, 4)
    assert gradcheck(lambda a, b: reference.joint_conv(a, b, 2, mask), (x1, x2))

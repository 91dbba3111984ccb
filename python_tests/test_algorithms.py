"""The production pure-PyTorch algorithms (iic_fast.algorithms: box filter + GEMM, tiled FFT) against the
brute-force shift loop of oracle.py AND the oracle (iic_fast.reference, the conv trick), on every device: the
tilings that ``iic.joint`` does not choose itself, the box sum, gradcheck of the explicit FFT backward, and the
validity of the tile choice at the paper's shapes. (The grid of shapes through ``iic.joint`` is in
test_kernels.py.)"""
import pytest
import torch

from iic_fast import algorithms, reference
from iic_fast.algorithms import fft
from oracle import assert_rel, brute_grads, brute_joint, gradcheck, random_mask, random_maps

DEVICES = ["cpu"] + [pytest.param("cuda", marks=pytest.mark.cuda)] * torch.cuda.is_available()


@pytest.mark.parametrize("n,k,H,W,d", [(2, 3, 7, 5, 1), (3, 2, 5, 9, 2), (2, 3, 4, 6, 5), (1, 2, 1, 4, 2),
                                       (2, 4, 23, 19, 4)])
@pytest.mark.parametrize("device", DEVICES)
def test_every_tiling_matches_brute_force_and_oracle(device, n, k, H, W, d):
    x1, x2 = random_maps(n, k, H, W, device=device)
    mask = random_mask(n, H, W, device=device)
    truth, oracle = brute_joint(x1, x2, d, mask), reference.joint_conv(x1, x2, d, mask)
    G = torch.randn(truth.shape, dtype=torch.float64, generator=torch.Generator().manual_seed(3)).to(device)
    want_grads = brute_grads(G, x1, x2, d, mask=mask)
    # the model's choice, one tile, many tiles with halos (also not dividing H, W), tiles of one pixel
    for tiles in (None, (H, W), (2, 3), (4, 2), (1, 1), (16, 16)):
        a, b = x1.clone().requires_grad_(True), x2.clone().requires_grad_(True)
        J = algorithms.joint_fft(a, b, d, mask, tiles)
        assert_rel(J, truth, 1e-10)
        assert_rel(J, oracle, 1e-10)
        for got, want in zip(torch.autograd.grad((J * G).sum(), (a, b)), want_grads):
            assert_rel(got, want, 1e-10)
    Jc = algorithms.joint_box(x1, x2, d, mask)
    assert_rel(Jc, truth.sum(0), 1e-10)
    assert_rel(Jc, reference.joint_conv(x1, x2, d, mask, collapsed=True), 1e-10)


@pytest.mark.parametrize("device", DEVICES)
def test_box_sum_is_a_zero_padded_box(device):
    x = torch.rand(1, 1, 5, 4, dtype=torch.float64, device=device)
    padded = torch.nn.functional.pad(x, (2, 2, 2, 2))
    expected = torch.stack([torch.stack([padded[0, 0, y:y + 5, x_:x_ + 5].sum() for x_ in range(4)])
                            for y in range(5)])
    torch.testing.assert_close(algorithms.box_sum(x, 2)[0, 0], expected)


@pytest.mark.parametrize("device", DEVICES)
def test_gradcheck(device):
    x1, x2 = (x.requires_grad_(True) for x in random_maps(1, 2, 6, 5, device=device))
    mask = random_mask(1, 6, 5, device=device)
    for tiles in (None, (2, 3)):  # one tile, and tiles with halos (the explicit backward's fold)
        assert gradcheck(lambda a, b: algorithms.joint_fft(a, b, 2, mask, tiles), (x1, x2))
    assert gradcheck(lambda a, b: algorithms.joint_box(a, b, 2, mask), (x1, x2))
    # the uncollapsed loss through the FFT: its normaliser is differentiated too
    assert gradcheck(lambda a, b: reference.mi(algorithms.joint_fft(a, b, 1), 1.5), (x1, x2))


def test_bad_tiles():
    x1, x2 = random_maps(1, 2, 5, 5)
    with pytest.raises(ValueError, match=r"tiles must be positive, got \(0, 3\)"):
        algorithms.joint_fft(x1, x2, 1, tiles=(0, 3))


@pytest.mark.parametrize("n,k,H,W,d", [(4, 24, 200, 200, 10), (75, 3, 200, 200, 10), (120, 15, 128, 128, 10),
                                       (2, 5, 513, 97, 0), (1, 2, 7, 300, 40)])
def test_fft_tiles_are_valid(n, k, H, W, d):
    Ty, Tx = algorithms.fft_tiles(n, k, H, W, d)
    assert 1 <= Ty <= H and 1 <= Tx <= W
    for L, T in ((H, Ty), (W, Tx)):
        count, size = fft._axis_tiling(L, T, d)
        assert size >= T + (2 * d if count > 1 else d) and size >= 2 * d + 1  # no wrap-around, all lags
        assert count == 1 or fft._smooth(size)

"""Test-only oracles written straight from the definitions (no conv, no FFT), shared by the test files."""
from __future__ import annotations

import sys

import torch


def random_maps(n, k, H, W, dtype=torch.float64, device="cpu", seed=0):
    """Two (n, k, H, W) softmax maps with peaked, correlated class use (so MI is far from 0)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randn(n, k, H, W, generator=g, dtype=torch.float64) * 2
    x1 = base.softmax(1)
    x2 = (base + torch.randn(n, k, H, W, generator=g, dtype=torch.float64)).softmax(1)
    return x1.to(device=device, dtype=dtype), x2.to(device=device, dtype=dtype)


def random_mask(n, H, W, p=0.7, seed=1, device="cpu"):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(n, H, W, generator=g) < p).to(device=device, dtype=torch.float64)


def brute_joint(x1, x2, d, mask=None, collapsed=False):
    """J[s, i, j] = sum_n sum_u a[n, i, u + t_s] b[n, j, u] by an explicit loop over shifts, float64; summed over
    the shifts when collapsed."""
    a, b = x1.double(), x2.double()
    if mask is not None:
        a, b = a * mask.double()[:, None], b * mask.double()[:, None]
    n, k, H, W = a.shape
    T = 2 * d + 1
    J = torch.zeros(T * T, k, k, dtype=torch.float64, device=a.device)
    for dy in range(-d, d + 1):
        for dx in range(-d, d + 1):
            # valid centres u with u + t inside the image
            y0, y1 = max(0, -dy), min(H, H - dy)
            x0, x1_ = max(0, -dx), min(W, W - dx)
            if y0 >= y1 or x0 >= x1_:
                continue
            shifted = a[:, :, y0 + dy:y1 + dy, x0 + dx:x1_ + dx]
            centre = b[:, :, y0:y1, x0:x1_]
            J[(dy + d) * T + (dx + d)] = torch.einsum("niyx,njyx->ij", shifted, centre)
    return J.sum(0) if collapsed else J


def brute_grads(G, x1, x2, d, collapsed=False, mask=None):
    """dL/dx1, dL/dx2 of L = <G, J> by autograd through the float64 brute force (the joint's backward)."""
    a, b = (x.detach().double().requires_grad_(True) for x in (x1, x2))
    J = brute_joint(a, b, d, mask, collapsed)
    return torch.autograd.grad((J * G.double()).sum(), (a, b))


def assert_rel(got, want, tol, floor=1e-300):
    """max |got - want| <= tol * max(max |want|, floor), in float64; got must be finite (an unwritten output
    shows up as NaN after poisoning)."""
    got, want = got.double(), want.double().to(got.device)
    assert torch.isfinite(got).all(), "non-finite values (an unwritten output?)"
    scale = want.abs().max().clamp_min(floor)
    err = ((got - want).abs().max() / scale).item()
    assert err <= tol, f"relative error {err:.3g} > {tol:g}"


def original_mi(P_raw, lamb=1.0, EPS=sys.float_info.epsilon, detach_normaliser=False):
    """Transcription of the original's per-joint epilogue with the in-place masked clamp (on clones).
    P_raw: (k, k) raw joint -> (loss, loss_no_lamb) for that joint."""
    k = P_raw.shape[0]
    P = P_raw / (float(P_raw.sum().detach()) if detach_normaliser else P_raw.sum())
    P = (P + P.t()) / 2.0
    p_i = P.sum(dim=1).view(k, 1).expand(k, k).clone()
    p_j = P.sum(dim=0).view(1, k).expand(k, k).clone()
    P = P.clone()
    P[(P < EPS).data] = EPS
    p_j[(p_j < EPS).data] = EPS
    p_i[(p_i < EPS).data] = EPS
    loss = -P * (torch.log(P) - lamb * torch.log(p_j) - lamb * torch.log(p_i))
    loss_no_lamb = -P * (torch.log(P) - torch.log(p_j) - torch.log(p_i))
    return loss.sum(), loss_no_lamb.sum()


def original_segmentation_loss(x1_outs, x2_outs, all_affine2_to_1, all_mask_img1, lamb, half_T_side_dense,
                               uncollapsed):
    """Transcription of the original IID_segmentation_loss(_uncollapsed) (no sparse translation), with the
    PyTorch 0.4 grid convention (align_corners=True) and the in-place clamps done on clones."""
    import torch.nn.functional as F

    grid = F.affine_grid(all_affine2_to_1, list(x2_outs.shape), align_corners=True)
    x2_outs = F.grid_sample(x2_outs, grid, padding_mode="zeros", align_corners=True)
    bn, k, h, w = x1_outs.shape
    mask = all_mask_img1.view(bn, 1, h, w)
    x1_outs = x1_outs * mask
    x2_outs = x2_outs * mask
    x1_outs = x1_outs.permute(1, 0, 2, 3).contiguous()
    x2_outs = x2_outs.permute(1, 0, 2, 3).contiguous()
    p_i_j = F.conv2d(x1_outs, weight=x2_outs, padding=(half_T_side_dense, half_T_side_dense))
    if not uncollapsed:
        return original_mi(p_i_j.sum(dim=2).sum(dim=2), lamb, detach_normaliser=True)
    T = 2 * half_T_side_dense + 1
    slices = p_i_j.permute(2, 3, 0, 1).reshape(T * T, k, k)
    parts = [original_mi(P, lamb) for P in slices]
    return tuple(torch.stack(p).sum() / (T * T) for p in zip(*parts))


def original_clustering_loss(x_out, x_tf_out, lamb=1.0, EPS=sys.float_info.epsilon):
    """Transcription of the original IID_loss (symmetrise, then normalise by a tensor sum)."""
    p_i_j = (x_out.unsqueeze(2) * x_tf_out.unsqueeze(1)).sum(dim=0)
    p_i_j = (p_i_j + p_i_j.t()) / 2.0
    return original_mi(p_i_j, lamb, EPS)


def gradcheck(fn, inputs):
    """torch.autograd.gradcheck in fast mode (random projections of the Jacobian: a wrong gradient still fails, in
    a fraction of the time), in float64 inputs."""
    return torch.autograd.gradcheck(fn, inputs, fast_mode=True)

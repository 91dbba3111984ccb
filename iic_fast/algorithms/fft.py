"""Uncollapsed IIC joint by tiled FFT cross-correlation (the algorithm ``auto`` picks for the paper's uncollapsed
loss at large (2d+1)^2 k, on the CPU and on CUDA)."""
from __future__ import annotations

import functools
import math
from typing import List, Optional, Tuple

import torch
import torch.nn.functional as F

from .masking import apply_mask


def _smooth(N: int) -> bool:
    """True when N is even with no prime factor above 7 (the sizes FFT libraries transform fastest)."""
    even = N % 2 == 0
    for p in (2, 3, 5, 7):
        while N % p == 0:
            N //= p
    return even and N == 1


def _axis_tiling(L: int, T: int, d: int) -> Tuple[int, int]:
    """(tiles, FFT size) for tiles of side T along an axis of length L. Tiles need a d-halo on each side;
    a single tile needs none on the far side (a is zero beyond the image) but must hold all 2d + 1 lags."""
    count = -(-L // T)
    return count, (T + 2 * d if count > 1 else max(L + d, 2 * d + 1))


def _axis_tilings(L: int, d: int) -> List[Tuple[int, int, int]]:
    """Candidate (tile, tiles, FFT size) for an axis of length L: the whole axis, and for every tile count the
    smallest tile of at least 16 (and 3d) whose FFT size is smooth."""
    options, counts = [(L, *_axis_tiling(L, L, d))], {1}
    for N in range(max(2 * d + 16, 3 * d), L + 2 * d):
        count, _ = _axis_tiling(L, N - 2 * d, d)
        if count not in counts and _smooth(N):
            counts.add(count)
            options.append((N - 2 * d, count, N))
    return options


def fft_tiles(n: int, k: int, H: int, W: int, d: int) -> Tuple[int, int]:
    """Tile sides (Ty, Tx) for ``joint_fft``: ``_model_tiles``, cached per shape outside torch.compile (which
    evaluates it once while tracing and does not trace through caches)."""
    if torch.compiler.is_compiling():
        return _model_tiles(n, k, H, W, d)
    return _model_tiles_cached(n, k, H, W, d)


def _model_tiles(n: int, k: int, H: int, W: int, d: int) -> Tuple[int, int]:
    """Tile sides (Ty, Tx) from a flop model of the tiled FFT's forward + backward.

    Cost per FFT point, weights fitted to CPU timings: log2(points) for each of the 4 n k tile transforms and
    the 2 k^2 transforms of the joint and its gradient, 10 per tile and class for the spectrum transposes and
    k^2 / 6 per tile for the per-frequency GEMMs. Few large tiles waste little halo but make the k^2 joint
    spectra large; the model balances the two.
    """
    best = None
    for Ty, ny, Ny in _axis_tilings(H, d):
        for Tx, nx, Nx in _axis_tilings(W, d):
            points, m = Ny * Nx, n * ny * nx
            cost = points * ((4 * m * k + 2 * k * k) * math.log2(max(points, 2)) + 10 * m * k + k * k * m / 6)
            if best is None or cost < best[0]:
                best = (cost, Ty, Tx)
    return best[1], best[2]


_model_tiles_cached = functools.lru_cache(maxsize=256)(_model_tiles)


def _spectra(x: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """(m, k, h, w) real -> (F, m, k) complex: rfft2 at ``size`` with the frequencies first, so that each
    frequency is one GEMM operand."""
    X = torch.fft.rfft2(x, s=size)
    m, k = X.shape[:2]
    return X.reshape(m * k, -1).t().contiguous().view(-1, m, k)


def _unspectra(S: torch.Tensor, size: Tuple[int, int]) -> torch.Tensor:
    """Inverse of ``_spectra``: (F, m, k) complex -> (m, k, size) real."""
    F_, m, k = S.shape
    X = S.reshape(F_, m * k).t().contiguous()
    return torch.fft.irfft2(X.view(m, k, size[0], size[1] // 2 + 1), s=size)


class _TiledFFTJoint(torch.autograd.Function):
    """J[s] by cross-correlating tiles: every (Ty, Tx) tile of b with the tile of a grown by a d-halo, summed
    over tiles and images per frequency (one complex GEMM per frequency), then k^2 small inverse FFTs.

    With a = x1 tile region aR (origin o - d) and b tile bt: r(tau) = sum_u aR(u + tau) bt(u) has no wrap-around
    for tau in [0, 2d] when the FFT size is T + 2d, and J[(dy + d) T + (dx + d)] = r(dy + d, dx + d).
    Backward by the convolution theorem: dA = G^ B, dB = conj(G^) A per frequency, then inverse FFTs,
    overlap-add of the halo regions (fold) and untiling.
    """

    @staticmethod
    def forward(ctx, a: torch.Tensor, b: torch.Tensor, d: int, tiles: Tuple[int, int]) -> torch.Tensor:
        n, k, H, W = a.shape
        (Ty, Tx), T = tiles, 2 * d + 1
        (ny, Ny), (nx, Nx) = _axis_tiling(H, Ty, d), _axis_tiling(W, Tx, d)
        size, padded = (Ny, Nx), ((ny - 1) * Ty + Ny, (nx - 1) * Tx + Nx)
        a_pad = F.pad(a, (d, padded[1] - d - W, d, padded[0] - d - H))
        regions = a_pad.unfold(2, Ny, Ty).unfold(3, Nx, Tx).permute(0, 2, 3, 1, 4, 5).reshape(-1, k, Ny, Nx)
        if (ny * Ty, nx * Tx) != (H, W):
            b = F.pad(b, (0, nx * Tx - W, 0, ny * Ty - H))
        b_tiles = b.new_zeros(n, ny, nx, k, Ny, Nx)  # zero-padded to the FFT size in the same copy
        b_tiles[..., :Ty, :Tx] = b.reshape(n, k, ny, Ty, nx, Tx).permute(0, 2, 4, 1, 3, 5)
        SA, SB = _spectra(regions, size), _spectra(b_tiles.view(-1, k, Ny, Nx), size)
        P = torch.bmm(SA.transpose(1, 2), SB.conj())  # (F, i, j) = sum over tiles m of A_i conj(B_j)
        r = torch.fft.irfft2(P.permute(1, 2, 0).reshape(k, k, Ny, Nx // 2 + 1), s=size)[:, :, :T, :T]
        ctx.save_for_backward(SA, SB)
        ctx.geometry = (n, k, H, W, d, Ty, Tx, ny, nx, size, padded)
        return r.permute(2, 3, 0, 1).reshape(T * T, k, k)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: torch.Tensor):
        SA, SB = ctx.saved_tensors
        n, k, H, W, d, Ty, Tx, ny, nx, size, padded = ctx.geometry
        T = 2 * d + 1
        g = grad.to(SA.real.dtype).reshape(T, T, k, k).permute(2, 3, 0, 1)
        G = torch.fft.rfft2(g, s=size).permute(2, 3, 0, 1).contiguous().view(-1, k, k)  # (F, i, j)
        # dA[m, i] = sum_j G[i, j] B[m, j];  dB[m, j] = sum_i conj(G[i, j]) A[m, i]
        d_regions = _unspectra(torch.bmm(SB, G.transpose(1, 2)), size)
        d_tiles = _unspectra(torch.bmm(SA, G.conj()), size)[:, :, :Ty, :Tx]
        cols = d_regions.reshape(n, ny * nx, -1).transpose(1, 2)
        da = F.fold(cols, padded, size, stride=(Ty, Tx))[:, :, d:d + H, d:d + W]
        db = d_tiles.reshape(n, ny, nx, k, Ty, Tx).permute(0, 3, 1, 4, 2, 5).reshape(n, k, ny * Ty, nx * Tx)
        return da, db[:, :, :H, :W], None, None


def joint_fft(x1: torch.Tensor, x2: torch.Tensor, d: int, mask: Optional[torch.Tensor] = None,
              tiles: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """Uncollapsed joint by tiled FFT cross-correlation. x1, x2: (n, k, H, W) -> (T*T, k, k).

    ``tiles`` = (Ty, Tx) tile sides; None picks them with ``fft_tiles``. Float32 inputs are transformed in
    float32, float64 in float64. Differentiable once (explicit backward, no double backward).
    """
    a, b = apply_mask(x1, x2, mask)
    n, k, H, W = a.shape
    Ty, Tx = tiles if tiles is not None else fft_tiles(n, k, H, W, d)
    if not (1 <= Ty and 1 <= Tx):
        raise ValueError(f"tiles must be positive, got {tiles}")
    return _TiledFFTJoint.apply(a, b, d, (min(Ty, H), min(Tx, W)))

// Collapsed joint (box filter + GEMM) and its backward, as column-strip sweeps (included by joint_kernel.cu).
//
// A block owns one image, a strip of TW output columns and a range of rows. It keeps, per channel and per
// column of the strip plus its d-halo, the vertical window sum over rows [r-d, r+d] in shared memory (fp64,
// updated by one add and one subtract per row, so every input element is read about twice), and turns it
// into the (2d+1)^2 box sum by a sliding horizontal sum over runs of 8 columns. Rows are processed in steps
// of R; each step's box values feed either the k x k outer products (forward) or a k x k matvec (backward).
#pragma once
#include "cuda_utils.cuh"

namespace iic_fast {
namespace cuda {

struct BoxCfg {
  int n, k, H, W, d;
  int TW, R;     // output columns per block, rows per step (P = R * TW pixels per step)
  int ld;        // row length of the vertical sums in shared memory (>= the widest strip + halo)
  int rows, nrc; // rows per block, row chunks
  int nct;       // column strips (blockIdx.x = (image * nrc + row chunk) * nct + strip)
  int KC, nkc;   // forward: i and j channels per block and chunk count; backward: output channels per block
  int KS;        // forward: shared stride of one pixel's channel vector (multiple of 4)
};

// The part of the problem a block owns: image nn, strip of columns [c0, c0 + tw) whose halo spans [hs, hs + twh),
// rows [r0, r1). blockIdx.x = (image * nrc + row chunk) * nct + strip.
struct BoxTile {
  int nn, c0, tw, hs, twh, r0, r1;
};

__device__ inline BoxTile box_tile(const BoxCfg& c) {
  const int ct = blockIdx.x % c.nct, rc = blockIdx.x / c.nct % c.nrc;
  BoxTile t;
  t.nn = blockIdx.x / c.nct / c.nrc;
  t.c0 = ct * c.TW;
  t.tw = min(c.TW, c.W - t.c0);
  t.hs = max(t.c0 - c.d, 0);
  t.twh = min(t.c0 + t.tw + c.d, c.W) - t.hs;
  t.r0 = rc * c.rows;
  t.r1 = min(t.r0 + c.rows, c.H);
  return t;
}

// Vertical sums for row r-1 (the sweep then advances with box_step): rows [max(0, r-1-d), min(H-1, r-1+d)].
template <typename scalar_t>
__device__ void box_init(double* vrun, int ld, const scalar_t* src, int nc, int64_t HW, int H, int W, int d,
                         int hs, int twh, int r) {
  const int lo = max(r - 1 - d, 0), hi = min(r - 1 + d, H - 1);
  for (int e = threadIdx.x; e < nc * twh; e += blockDim.x) {
    const int ch = e / twh, col = e - ch * twh;
    const scalar_t* p = src + ch * HW + hs + col;
    double s = 0;
    for (int rr = lo; rr <= hi; ++rr) s += to_acc<double>(p[(int64_t)rr * W]);
    vrun[ch * ld + col] = s;
  }
}

// Advance the vertical window from row r-1 to row r: add row r+d, drop row r-d-1 (zero outside the image).
// (A variant that issued 8 elements' loads before using them raised register use and ran slower on an H100.)
template <typename scalar_t>
__device__ void box_step(double* vrun, int ld, const scalar_t* src, int nc, int64_t HW, int H, int W, int d,
                         int hs, int twh, int r) {
  const bool add = r + d < H, sub = r - d - 1 >= 0;
  for (int e = threadIdx.x; e < nc * twh; e += blockDim.x) {
    const int ch = e / twh, col = e - ch * twh;
    const scalar_t* p = src + ch * HW + hs + col;
    double v = vrun[ch * ld + col];
    if (add) v += to_acc<double>(p[(int64_t)(r + d) * W]);
    if (sub) v -= to_acc<double>(p[(int64_t)(r - d - 1) * W]);
    vrun[ch * ld + col] = v;
  }
}

// Horizontal pass for one row: out[col * sp + ch * sc] = box sum at column c0 + col for col < tw, channels
// ch < nc; zero for tw <= col < TW and nc <= ch < nc_pad. Sliding sums over runs of 8 columns, in fp64.
template <typename A>
__device__ void box_row(const double* vrun, int ld, int nc, int nc_pad, int c0, int tw, int TW, int hs, int W,
                        int d, A* out, int sp, int sc) {
  constexpr int L = 8;
  const int nseg = (TW + L - 1) / L;
  for (int e = threadIdx.x; e < nc_pad * nseg; e += blockDim.x) {
    const int ch = e / nseg, cs = (e - ch * nseg) * L;
    const double* v = vrun + ch * ld - hs;  // indexed by absolute column
    double s = 0;
    for (int q = 0; q < L && cs + q < TW; ++q) {
      const int col = cs + q, ca = c0 + col;
      A val = 0;
      if (ch < nc && col < tw) {
        if (q == 0) {
          for (int cc = max(ca - d, 0); cc <= min(ca + d, W - 1); ++cc) s += v[cc];
        } else {
          if (ca + d < W) s += v[ca + d];
          if (ca - d - 1 >= 0) s -= v[ca - d - 1];
        }
        val = static_cast<A>(s);
      }
      out[col * sp + ch * sc] = val;
    }
  }
}

// Forward: partial[block][i][j] = sum over the block's pixels of box_d(x1)[i] * x2[j], for the block's chunk
// of (i, j). Threads own 4x4 register tiles of (i, j); when the chunk has fewer tiles than threads, groups of
// threads take interleaved pixels and are summed in a fixed order at the end (deterministic).
template <typename scalar_t, typename A>
__global__ void __launch_bounds__(256) box_joint_kernel(const scalar_t* __restrict__ x1,
                                                        const scalar_t* __restrict__ x2, A* __restrict__ partial,
                                                        BoxCfg c) {
  const BoxTile t = box_tile(c);
  const int nn = t.nn, c0 = t.c0, tw = t.tw, hs = t.hs, twh = t.twh, r0 = t.r0, r1 = t.r1;
  const int ic = blockIdx.z / c.nkc, jc = blockIdx.z % c.nkc;
  const int64_t HW = (int64_t)c.H * c.W;
  const int i0 = ic * c.KC, ni = min(c.KC, c.k - i0), j0 = jc * c.KC, nj = min(c.KC, c.k - j0);
  const scalar_t* a = x1 + ((int64_t)nn * c.k + i0) * HW;
  const scalar_t* b = x2 + ((int64_t)nn * c.k + j0) * HW;
  const int P = c.R * c.TW, KB = (c.KC + 3) & ~3, nb = KB / 4, npairs = nb * nb;
  const int pair = threadIdx.x % npairs, grp = threadIdx.x / npairs, ngrp = blockDim.x / npairs;
  const int bi = pair / nb, bj = pair % nb;
  double* vrun = shared_mem<double>();
  A* hb = reinterpret_cast<A*>(vrun + c.KC * c.ld);  // [P][KS] box sums of x1
  A* xs = hb + P * c.KS;                             // [P][KS] x2

  A acc[4][4] = {};
  box_init(vrun, c.ld, a, ni, HW, c.H, c.W, c.d, hs, twh, r0);
  for (int rs = r0; rs < r1; rs += c.R) {
    const int nr = min(c.R, r1 - rs);
    __syncthreads();  // the previous step's products have finished reading xs and hb
    for (int e = threadIdx.x; e < KB * P; e += blockDim.x) {  // coalesced along columns
      const int ch = e / P, p = e - ch * P, rr = p / c.TW, col = p - rr * c.TW;
      A v = 0;
      if (ch < nj && rr < nr && col < tw) v = to_acc<A>(b[ch * HW + (int64_t)(rs + rr) * c.W + c0 + col]);
      xs[p * c.KS + ch] = v;
    }
    for (int rr = 0; rr < c.R; ++rr) {
      if (rr < nr) {
        if (rr > 0) __syncthreads();  // the previous box_row has finished reading vrun
        box_step(vrun, c.ld, a, ni, HW, c.H, c.W, c.d, hs, twh, rs + rr);
        __syncthreads();
        box_row(vrun, c.ld, ni, KB, c0, tw, c.TW, hs, c.W, c.d, hb + rr * c.TW * c.KS, c.KS, 1);
      } else {
        for (int e = threadIdx.x; e < c.TW * KB; e += blockDim.x)
          hb[(rr * c.TW + e / KB) * c.KS + e % KB] = 0;
      }
    }
    __syncthreads();
    if (grp < ngrp) {
      for (int p = grp; p < P; p += ngrp) {
        A u[4], v[4];
        load4(hb + p * c.KS + bi * 4, u);
        load4(xs + p * c.KS + bj * 4, v);
#pragma unroll
        for (int q = 0; q < 4; ++q)
#pragma unroll
          for (int r = 0; r < 4; ++r) acc[q][r] += u[q] * v[r];
      }
    }
  }
  __syncthreads();
  A* red = hb;  // [16][ngrp][npairs], fits in hb + xs (host checks)
  const int stride = ngrp * npairs;
  if (grp < ngrp) {
#pragma unroll
    for (int q = 0; q < 4; ++q)
#pragma unroll
      for (int r = 0; r < 4; ++r) red[(q * 4 + r) * stride + grp * npairs + pair] = acc[q][r];
  }
  __syncthreads();
  A* out = partial + (int64_t)blockIdx.x * c.k * c.k;
  for (int e = threadIdx.x; e < 16 * npairs; e += blockDim.x) {
    const int qr = e / npairs, pr = e - qr * npairs;
    A s = 0;
    for (int g = 0; g < ngrp; ++g) s += red[qr * stride + g * npairs + pr];
    const int i = (pr / nb) * 4 + qr / 4, j = (pr % nb) * 4 + qr % 4;
    if (i < ni && j < nj) out[(int64_t)(i0 + i) * c.k + j0 + j] = s;
  }
}

// Backward: blockIdx.z = which * nkc + oc. which 0: dx1[i] = sum_j G[i][j] box(x2)[j]; which 1: dx2[j] =
// sum_i G[i][j] box(x1)[i]. One thread per pixel of a step and up to 8 output channels at a time; needs the
// box sums of all k source channels, stored [channel][pixel] so that neighbouring threads read neighbours.
template <typename scalar_t, typename A>
__global__ void __launch_bounds__(256) box_backward_kernel(const A* __restrict__ G, const scalar_t* __restrict__ x1,
                                                           const scalar_t* __restrict__ x2, scalar_t* __restrict__ dx1,
                                                           scalar_t* __restrict__ dx2, BoxCfg c) {
  const BoxTile t = box_tile(c);
  const int nn = t.nn, c0 = t.c0, tw = t.tw, hs = t.hs, twh = t.twh, r0 = t.r0, r1 = t.r1;
  const int which = blockIdx.z / c.nkc, oc = blockIdx.z % c.nkc;
  const int64_t HW = (int64_t)c.H * c.W;
  const int o0 = oc * c.KC, no = min(c.KC, c.k - o0), KP = (c.KC + 7) & ~7;
  const scalar_t* src = (which ? x1 : x2) + (int64_t)nn * c.k * HW;
  scalar_t* dst = (which ? dx2 : dx1) + (int64_t)nn * c.k * HW;
  const int P = c.R * c.TW, p = threadIdx.x % P, og = threadIdx.x / P, nog = blockDim.x / P;
  double* vrun = shared_mem<double>();
  A* hb = reinterpret_cast<A*>(vrun + ((c.k * c.ld + 1) & ~1));  // [k][P]
  A* Ms = hb + c.k * P;                                           // [k][KP]: Ms[src ch][out ch]
  for (int e = threadIdx.x; e < c.k * KP; e += blockDim.x) {
    const int ch = e / KP, o = e - ch * KP;
    A v = 0;
    if (o < no) v = which ? G[(int64_t)ch * c.k + o0 + o] : G[(int64_t)(o0 + o) * c.k + ch];
    Ms[e] = v;
  }
  box_init(vrun, c.ld, src, c.k, HW, c.H, c.W, c.d, hs, twh, r0);
  for (int rs = r0; rs < r1; rs += c.R) {
    const int nr = min(c.R, r1 - rs);
    for (int rr = 0; rr < nr; ++rr) {
      __syncthreads();
      box_step(vrun, c.ld, src, c.k, HW, c.H, c.W, c.d, hs, twh, rs + rr);
      __syncthreads();
      box_row(vrun, c.ld, c.k, c.k, c0, tw, c.TW, hs, c.W, c.d, hb + rr * c.TW, 1, P);
    }
    __syncthreads();
    const int rr = p / c.TW, col = p - rr * c.TW;
    if (rr < nr && col < tw) {
      scalar_t* out = dst + (int64_t)o0 * HW + (int64_t)(rs + rr) * c.W + c0 + col;
      for (int ob = og * 8; ob < no; ob += nog * 8) {
        A acc[8] = {};
        for (int ch = 0; ch < c.k; ++ch) {
          const A h = hb[ch * P + p];
          A m[8];
          loadn<8>(Ms + ch * KP + ob, m);
#pragma unroll
          for (int q = 0; q < 8; ++q) acc[q] += m[q] * h;
        }
#pragma unroll
        for (int q = 0; q < 8; ++q)
          if (ob + q < no) out[(int64_t)(ob + q) * HW] = static_cast<scalar_t>(acc[q]);
      }
    }
  }
}

}  // namespace cuda
}  // namespace iic_fast

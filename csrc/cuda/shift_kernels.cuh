// Uncollapsed joint (every shift) and its backward as implicit GEMMs (included by joint_kernel.cu).
//
// Forward: a block owns a tile of (dy, dx, i, j) outputs and a share of the (image, row, column chunk) units
// of the reduction. Per unit it stages one x2 row segment and the x1 row segments it meets (DYB rows, the
// segment widened by the block's dx range) in shared memory; each thread then holds a TX x TI x TJ register
// tile of (dx, i, j) and slides along the row, so one loaded x1 value serves TX shifts and TJ classes.
// Backward: out[o, h, w] = sum_{dy, dx, c} F[dy, dx, c, o] * in[c, h + dy, w + dx], a correlation of the
// input with the k x k x T x T filter G (flipped and transposed for dx1); threads hold TW columns x TO classes.
#pragma once
#include "cuda_utils.cuh"

namespace iic_fast {
namespace cuda {

struct ShiftCfg {
  int n, k, H, W, d, T;
  int DYB, DXB, IB, JB;     // forward block tile: shifts dy and dx, classes i and j
  int ndx, ni, nj;          // chunk counts along dx, i, j (dy chunks: gridDim.x / (ndx * ni * nj))
  int WC, WS, XS, split;    // columns per unit, x2 / x1 shared row strides, reduction splits (gridDim.y)
};

template <typename scalar_t, typename A, int TX, int TI, int TJ>
__global__ void __launch_bounds__(256) shift_joint_kernel(const scalar_t* __restrict__ x1,
                                                          const scalar_t* __restrict__ x2, A* __restrict__ out,
                                                          ShiftCfg c) {
  constexpr int WU = 4;
  int t = blockIdx.x;
  const int jc = t % c.nj; t /= c.nj;
  const int ic = t % c.ni; t /= c.ni;
  const int xc = t % c.ndx, yc = t / c.ndx;
  const int ay0 = yc * c.DYB, ax0 = xc * c.DXB, i0 = ic * c.IB, j0 = jc * c.JB;
  const int dylo = ay0 - c.d, dyhi = min(ay0 + c.DYB, c.T) - 1 - c.d, dxlo = ax0 - c.d;
  const int64_t HW = (int64_t)c.H * c.W;
  // x2 rows h for which some dy of the tile keeps h + dy inside; nothing to do if all dx leave the image
  const int hlo = max(0, -dyhi), hhi = min(c.H, c.H - dylo);
  const bool dx_out = dxlo >= c.W || dxlo + c.DXB - 1 <= -c.W;
  const int nh = dx_out ? 0 : max(0, hhi - hlo), nwc = (c.W + c.WC - 1) / c.WC;
  const int64_t NU = (int64_t)c.n * nh * nwc;
  const int64_t u0 = NU * blockIdx.y / c.split, u1 = NU * (blockIdx.y + 1) / c.split;
  const int nbj = c.JB / TJ, nbi = c.IB / TI, nbx = c.DXB / TX;
  int m = threadIdx.x;
  const bool active = m < c.DYB * nbx * nbi * nbj;
  const int jb = m % nbj; m /= nbj;
  const int ib = m % nbi; m /= nbi;
  const int xb = m % nbx, ydy = m / nbx;
  A* x2s = shared_mem<A>();         // [JB][WS], row of class jj at (jj % TJ) * nbj + jj / TJ: no bank conflicts
  A* x1s = x2s + c.JB * c.WS;       // [IB][DYB][XS]
  // Per-thread running totals, [blockDim][TX*TI*TJ + 1] (the pad avoids bank conflicts; compile-time offsets
  // keep register use down): each unit is summed in registers and then added here, so fp32 sums stay short
  // (one register sum over ~10^5 products lost ~1e-4 relative accuracy at n=75, 200x200).
  constexpr int NACC = TX * TI * TJ;
  A* tot = x1s + c.IB * c.DYB * c.XS + threadIdx.x * (NACC + 1);
  const int xw = c.WC + c.DXB - 1;  // x1 columns per unit
  for (int q = 0; q < NACC; ++q) tot[q] = 0;
  A acc[TX][TI][TJ] = {};

  for (int64_t u = u0; u < u1; ++u) {
    const int wc = u % nwc, h = hlo + (u / nwc) % nh, nn = u / nwc / nh, w0 = wc * c.WC;
    __syncthreads();  // the previous unit's products have finished reading the tiles
    for (int e = threadIdx.x; e < c.JB * c.WC; e += blockDim.x) {
      const int jj = e / c.WC, w = e - jj * c.WC;
      A v = 0;
      if (j0 + jj < c.k && w0 + w < c.W) v = to_acc<A>(x2[((int64_t)nn * c.k + j0 + jj) * HW + (int64_t)h * c.W + w0 + w]);
      x2s[((jj % TJ) * nbj + jj / TJ) * c.WS + w] = v;
    }
    for (int e = threadIdx.x; e < c.IB * c.DYB * xw; e += blockDim.x) {
      const int col = e % xw, rest = e / xw, yy = rest % c.DYB, ii = rest / c.DYB;
      const int hy = h + dylo + yy, wx = w0 + dxlo + col;
      A v = 0;
      if (i0 + ii < c.k && ay0 + yy < c.T && hy >= 0 && hy < c.H && wx >= 0 && wx < c.W)
        v = to_acc<A>(x1[((int64_t)nn * c.k + i0 + ii) * HW + (int64_t)hy * c.W + wx]);
      x1s[(ii * c.DYB + yy) * c.XS + col] = v;
    }
    __syncthreads();
    if (active) {
      const A* p2 = x2s + jb * c.WS;
      const A* p1 = x1s + (ib * TI * c.DYB + ydy) * c.XS + xb * TX;
      for (int w = 0; w < c.WC; w += WU) {
        A b[TJ][WU], a[TI][TX + WU - 1];
#pragma unroll
        for (int tj = 0; tj < TJ; ++tj) loadn<WU>(p2 + tj * nbj * c.WS + w, b[tj]);
#pragma unroll
        for (int ti = 0; ti < TI; ++ti)
#pragma unroll
          for (int q = 0; q < TX + WU - 1; ++q) a[ti][q] = p1[ti * c.DYB * c.XS + w + q];
#pragma unroll
        for (int wu = 0; wu < WU; ++wu)
#pragma unroll
          for (int tx = 0; tx < TX; ++tx)
#pragma unroll
            for (int ti = 0; ti < TI; ++ti)
#pragma unroll
              for (int tj = 0; tj < TJ; ++tj) acc[tx][ti][tj] += a[ti][wu + tx] * b[tj][wu];
      }
#pragma unroll
      for (int tx = 0; tx < TX; ++tx)
#pragma unroll
        for (int ti = 0; ti < TI; ++ti)
#pragma unroll
          for (int tj = 0; tj < TJ; ++tj) {
            tot[(tx * TI + ti) * TJ + tj] += acc[tx][ti][tj];
            acc[tx][ti][tj] = 0;
          }
    }
  }
  if (!active) return;
  const int ay = ay0 + ydy;
  A* o = out + (int64_t)blockIdx.y * c.T * c.T * c.k * c.k;
#pragma unroll
  for (int tx = 0; tx < TX; ++tx) {
    const int ax = ax0 + xb * TX + tx;
#pragma unroll
    for (int ti = 0; ti < TI; ++ti) {
      const int i = i0 + ib * TI + ti;
#pragma unroll
      for (int tj = 0; tj < TJ; ++tj) {
        const int j = j0 + jb * TJ + tj;
        if (ay < c.T && ax < c.T && i < c.k && j < c.k)
          o[((int64_t)(ay * c.T + ax) * c.k + i) * c.k + j] =
              tot[(tx * TI + ti) * TJ + tj];
      }
    }
  }
}

struct ShiftBwdCfg {
  int n, k, H, W, d, T;
  int RH, WC, OB, CC, DXC;  // block: rows, columns, output classes; chunks of input classes and of dx taps
  int nwc, noc, XS;         // column and class chunk counts, input tile row stride
};

// blockIdx.z = 0: dx1 from x2 with F[s][c=j][o=i] = G[T*T-1-s][i][j]; 1: dx2 from x1 with F[s][c=i][o=j] = G[s][i][j].
template <typename scalar_t, typename A, int TW, int TO>
__global__ void __launch_bounds__(256) shift_backward_kernel(const A* __restrict__ G, const scalar_t* __restrict__ x1,
                                                             const scalar_t* __restrict__ x2,
                                                             scalar_t* __restrict__ dx1, scalar_t* __restrict__ dx2,
                                                             ShiftBwdCfg c) {
  constexpr int DU = 4;
  const int nrb = (c.H + c.RH - 1) / c.RH, which = blockIdx.z;
  const int oc = blockIdx.x % c.noc, wc = (blockIdx.x / c.noc) % c.nwc, rb = blockIdx.x / c.noc / c.nwc % nrb;
  const int nn = blockIdx.x / c.noc / c.nwc / nrb;
  const int h0 = rb * c.RH, w0 = wc * c.WC, o0 = oc * c.OB, rh = min(c.RH, c.H - h0);
  const int64_t HW = (int64_t)c.H * c.W, TT = (int64_t)c.T * c.T;
  const scalar_t* src = (which ? x1 : x2) + (int64_t)nn * c.k * HW;
  const int nbo = c.OB / TO, nbw = c.WC / TW;
  int m = threadIdx.x;
  const int ob = m % nbo; m /= nbo;
  const int wb = m % nbw, rr = m / nbw;
  const bool active = rr < c.RH;
  A* Fs = shared_mem<A>();           // [DXC][CC][OB]
  A* ins = Fs + c.DXC * c.CC * c.OB;  // [RH][CC][XS]
  const int xw = c.WC + c.DXC - 1;
  A acc[TW][TO] = {};

  for (int ay = 0; ay < c.T; ++ay) {
    const int dy = ay - c.d;
    if (h0 + dy >= c.H || h0 + rh - 1 + dy < 0) continue;  // every input row outside
    for (int ax0 = 0; ax0 < c.T; ax0 += c.DXC) {
      const int dxlo = ax0 - c.d;
      if (w0 + dxlo >= c.W || w0 + c.WC - 1 + dxlo + c.DXC - 1 < 0) continue;
      for (int c0 = 0; c0 < c.k; c0 += c.CC) {
        __syncthreads();  // the previous chunk's products have finished reading Fs and ins
        for (int e = threadIdx.x; e < c.DXC * c.CC * c.OB; e += blockDim.x) {
          const int q = e / (c.CC * c.OB), rem = e - q * c.CC * c.OB, cc = rem / c.OB, oo = rem - cc * c.OB;
          const int ax = ax0 + q, ch = c0 + cc, o = o0 + oo;
          A v = 0;
          if (ax < c.T && ch < c.k && o < c.k) {
            const int64_t s = (int64_t)ay * c.T + ax;
            v = which ? G[(s * c.k + ch) * c.k + o] : G[((TT - 1 - s) * c.k + o) * c.k + ch];
          }
          Fs[e] = v;
        }
        for (int e = threadIdx.x; e < c.RH * c.CC * xw; e += blockDim.x) {
          const int col = e % xw, rest = e / xw, cc = rest % c.CC, r = rest / c.CC;
          const int hy = h0 + r + dy, wx = w0 + dxlo + col;
          A v = 0;
          if (r < rh && c0 + cc < c.k && hy >= 0 && hy < c.H && wx >= 0 && wx < c.W)
            v = to_acc<A>(src[(int64_t)(c0 + cc) * HW + (int64_t)hy * c.W + wx]);
          ins[(r * c.CC + cc) * c.XS + col] = v;
        }
        __syncthreads();
        if (active) {
          for (int cc = 0; cc < c.CC; ++cc) {
            const A* xin = ins + (rr * c.CC + cc) * c.XS + wb * TW;
            const A* f = Fs + cc * c.OB + ob * TO;
            for (int q = 0; q < c.DXC; q += DU) {
              A win[TW + DU - 1], fv[DU][TO];
#pragma unroll
              for (int e = 0; e < TW + DU - 1; ++e) win[e] = xin[q + e];
#pragma unroll
              for (int u = 0; u < DU; ++u) loadn<TO>(f + (q + u) * c.CC * c.OB, fv[u]);
#pragma unroll
              for (int u = 0; u < DU; ++u)
#pragma unroll
                for (int tw = 0; tw < TW; ++tw)
#pragma unroll
                  for (int to = 0; to < TO; ++to) acc[tw][to] += win[tw + u] * fv[u][to];
            }
          }
        }
      }
    }
  }
  if (!active || rr >= rh) return;
  scalar_t* dst = (which ? dx2 : dx1) + (int64_t)nn * c.k * HW + (int64_t)(h0 + rr) * c.W;
#pragma unroll
  for (int tw = 0; tw < TW; ++tw) {
    const int w = w0 + wb * TW + tw;
#pragma unroll
    for (int to = 0; to < TO; ++to) {
      const int o = o0 + ob * TO + to;
      if (w < c.W && o < c.k) dst[(int64_t)o * HW + w] = static_cast<scalar_t>(acc[tw][to]);
    }
  }
}

}  // namespace cuda
}  // namespace iic_fast

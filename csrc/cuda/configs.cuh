// Launch configurations of the joint kernels: plain host functions of the problem size (no CUDA calls), so
// they can be reasoned about and tested apart from the launches in joint_kernel.cu.
#pragma once
#include <algorithm>
#include <cstddef>
#include <cstdint>

#include "box_kernels.cuh"
#include "shift_kernels.cuh"

namespace iic_fast {
namespace cuda {

constexpr int kThreads = 256;

// Box sweeps: the widest strip (TW in 64..8) whose shared memory fits a soft budget of 100 KiB (several blocks
// per multiprocessor), then row chunks for about 4 blocks per multiprocessor, each chunk at least 2d+1 rows
// so that its halo (read twice) stays a small part of its work.
inline BoxCfg box_config(int n, int k, int H, int W, int d, bool backward, size_t elem, int sms, size_t* smem) {
  BoxCfg c{};
  c.n = n; c.k = k; c.H = H; c.W = W; c.d = d;
  c.nkc = (int)ceil_div(k, 64);
  c.KC = (int)ceil_div(k, c.nkc);  // balanced channel chunks of at most 64
  const int KB = (int)round_up(c.KC, 4);
  c.KS = KB % 8 == 4 ? KB : KB + 4;  // odd multiple of 4: fewer bank conflicts on the pixel-major stores
  for (int tw : {64, 32, 16, 8}) {
    c.TW = tw;
    c.R = (backward ? 256 : 128) / tw;  // backward: one pixel per thread; forward: 128-pixel steps
    c.ld = (int)round_up(std::min<int64_t>(tw + 2 * (int64_t)d, W), 2);
    const int P = c.R * tw;
    *smem = backward ? 8 * (size_t)round_up((int64_t)k * c.ld, 2) + elem * k * (P + round_up(c.KC, 8))
                     : 8 * (size_t)c.KC * c.ld + elem * std::max(2 * P * c.KS, 16 * kThreads);
    if (*smem <= 100 * 1024) break;
  }
  c.nct = (int)ceil_div(W, c.TW);
  const int z = backward ? 2 * c.nkc : c.nkc * c.nkc;
  const int64_t want = ceil_div(4 * (int64_t)sms, (int64_t)c.nct * n * z);
  const int64_t most = std::max<int64_t>(1, H / std::max(2 * d + 1, 8));
  c.nrc = (int)std::max<int64_t>(1, std::min(want, most));
  c.rows = (int)ceil_div(H, c.nrc);
  c.nrc = (int)ceil_div(H, c.rows);
  return c;
}

// Uncollapsed forward with register tile TX x TI x TJ: channel chunks of at most 32, as many dx tiles as fit
// 256 threads, then as many dy rows as fit; column units of at most 128. Returns the tile count (gridDim.x).
inline int64_t shift_config(ShiftCfg& c, int n, int k, int H, int W, int d, int TI, int TJ, int TX, size_t elem,
                            size_t* smem, int* threads) {
  c = ShiftCfg{};
  c.n = n; c.k = k; c.H = H; c.W = W; c.d = d; c.T = 2 * d + 1;
  c.ni = (int)ceil_div(k, 32); c.IB = (int)round_up(ceil_div(k, c.ni), TI);
  c.nj = (int)ceil_div(k, 32); c.JB = (int)round_up(ceil_div(k, c.nj), TJ);
  const int tiles_ij = (c.IB / TI) * (c.JB / TJ);
  const int nbx = (int)std::max<int64_t>(1, std::min<int64_t>(ceil_div(c.T, TX), kThreads / tiles_ij));
  c.DXB = nbx * TX; c.ndx = (int)ceil_div(c.T, c.DXB);
  c.DYB = std::max(1, std::min(c.T, kThreads / (nbx * tiles_ij)));
  const int nwc = (int)ceil_div(W, 128);
  c.WC = (int)round_up(ceil_div(W, nwc), 4);
  c.WS = (c.WC / 4) % 2 ? c.WC : c.WC + 4;  // odd number of 16-byte words per row: conflict-free LDS.128
  c.XS = (c.WC + c.DXB - 1) | 1;            // odd row stride
  *threads = (int)round_up(c.DYB * nbx * tiles_ij, 32);
  *smem = elem * ((size_t)c.JB * c.WS + (size_t)c.IB * c.DYB * c.XS + (size_t)(TX * TI * TJ + 1) * *threads);
  return ceil_div(c.T, c.DYB) * c.ndx * c.ni * c.nj;
}

// Reduction splits (gridDim.y) for about two waves of blocks, within 64 MiB of partial joints.
inline int shift_split(int64_t tiles, int64_t slots, int64_t out_numel, size_t elem, int64_t units) {
  const int64_t cap = std::max<int64_t>(1, (int64_t(64) << 20) / (out_numel * (int64_t)elem));
  return (int)std::max<int64_t>(1, std::min({ceil_div(2 * slots, tiles), cap, units, (int64_t)65535}));
}

// Uncollapsed backward with register tile TW columns x TO classes. Returns gridDim.x (gridDim.z = 2).
inline int64_t shift_bwd_config(ShiftBwdCfg& c, int n, int k, int H, int W, int d, int TW, int TO, size_t elem,
                                size_t* smem, int* threads) {
  c = ShiftBwdCfg{};
  c.n = n; c.k = k; c.H = H; c.W = W; c.d = d; c.T = 2 * d + 1;
  c.noc = (int)ceil_div(k, 32); c.OB = (int)round_up(ceil_div(k, c.noc), TO);
  c.nwc = (int)ceil_div(W, 64); c.WC = (int)round_up(ceil_div(W, c.nwc), TW);
  c.RH = (int)std::max<int64_t>(1, std::min<int64_t>(H, kThreads / ((c.WC / TW) * (c.OB / TO))));
  c.CC = std::min(k, 8);
  c.DXC = (int)std::min<int64_t>(round_up(c.T, 4), 32);
  c.XS = (c.WC + c.DXC - 1) | 1;
  *smem = elem * ((size_t)c.DXC * c.CC * c.OB + (size_t)c.RH * c.CC * c.XS);
  *threads = (int)round_up(c.RH * (c.WC / TW) * (c.OB / TO), 32);
  return ceil_div(H, c.RH) * c.nwc * c.noc * n;
}

}  // namespace cuda
}  // namespace iic_fast

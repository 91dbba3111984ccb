// Kernels of the fused IIC epilogue (mi_kernel.cu holds the launches): one block per joint slice, then one
// block that sums the per-slice losses in a fixed order.
#pragma once
#include "cuda_utils.cuh"

namespace iic_fast {
namespace cuda {

constexpr int kMiThreads = 256;

__device__ __forceinline__ float log_(float v) { return logf(v); }
__device__ __forceinline__ double log_(double v) { return log(v); }

// grad doubles as scratch for gP (rewritten in place with the final gradient); losses is [2][S].
template <typename A>
__global__ void __launch_bounds__(kMiThreads) mi_slice_kernel(const A* __restrict__ joint, A* __restrict__ grad,
                                                            A* __restrict__ losses, int S, int k, A lamb,
                                                            bool detached) {
  const int64_t kk = (int64_t)k * k;
  const A* J = joint + blockIdx.x * kk;
  A* g = grad + blockIdx.x * kk;
  A* r = shared_mem<A>();  // row marginals of P before clamping
  A* c = r + k;            // column marginals
  A* gr = c + k;           // lamb * sum_j Pc_ij / rc_i
  A* gc = gr + k;          // lamb * sum_i Pc_ij / cc_j
  A* red = gc + k;         // 32 values for block_sum
  const A eps = static_cast<A>(kEps);

  A z = 0;
  for (int64_t e = threadIdx.x; e < kk; e += blockDim.x) z += J[e];
  const A Z = block_sum(z, red);
  auto P = [&](int i, int j) { return (J[(int64_t)i * k + j] / Z + J[(int64_t)j * k + i] / Z) / 2; };
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    A ri = 0, ci = 0;
    for (int j = 0; j < k; ++j) { ri += P(i, j); ci += P(j, i); }
    r[i] = ri;
    c[i] = ci;
  }
  __syncthreads();
  for (int i = threadIdx.x; i < k; i += blockDim.x) {
    A sr = 0, sc = 0;
    for (int j = 0; j < k; ++j) { sr += max(P(i, j), eps); sc += max(P(j, i), eps); }
    gr[i] = lamb * sr / max(r[i], eps);
    gc[i] = lamb * sc / max(c[i], eps);
  }
  __syncthreads();
  A l = 0, l1 = 0;
  for (int64_t e = threadIdx.x; e < kk; e += blockDim.x) {
    const int i = e / k, j = e - (int64_t)i * k;
    const A p = P(i, j), pc = max(p, eps);
    const A lp = log_(pc), lr = log_(max(r[i], eps)), lc = log_(max(c[j], eps));
    l -= pc * (lp - lamb * lr - lamb * lc);
    l1 -= pc * (lp - lr - lc);
    A gp = p >= eps ? -(lp + 1 - lamb * lr - lamb * lc) : A(0);
    if (r[i] >= eps) gp += gr[i];
    if (c[j] >= eps) gp += gc[j];
    g[e] = gp;
  }
  const A L = block_sum(l, red), L1 = block_sum(l1, red);  // also orders the g writes before the reads below
  A dot = 0;
  for (int64_t e = threadIdx.x; e < kk; e += blockDim.x) {
    const int i = e / k, j = e - (int64_t)i * k;
    dot += (g[e] + g[(int64_t)j * k + i]) / 2 * (J[e] / Z);
  }
  const A D = detached ? A(0) : block_sum(dot, red);
  __syncthreads();
  // gP0 = (gP + gP^T) / 2 is symmetric: the thread of pair (i <= j) reads both entries and writes both.
  for (int64_t e = threadIdx.x; e < kk; e += blockDim.x) {
    const int i = e / k, j = e - (int64_t)i * k;
    if (i > j) continue;
    const A v = ((g[e] + g[(int64_t)j * k + i]) / 2 - D) / Z / S;
    g[e] = v;
    g[(int64_t)j * k + i] = v;
  }
  if (threadIdx.x == 0) {
    losses[blockIdx.x] = L;
    losses[S + blockIdx.x] = L1;
  }
}

template <typename A>
__global__ void __launch_bounds__(kMiThreads) mi_final_kernel(const A* __restrict__ losses, int S, A* __restrict__ out) {
  A* red = shared_mem<A>();  // 32 values
  A l = 0, l1 = 0;
  for (int s = threadIdx.x; s < S; s += blockDim.x) { l += losses[s]; l1 += losses[S + s]; }
  const A L = block_sum(l, red), L1 = block_sum(l1, red);
  if (threadIdx.x == 0) { out[0] = L / S; out[1] = L1 / S; }
}

}  // namespace cuda
}  // namespace iic_fast

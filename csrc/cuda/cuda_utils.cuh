// Small helpers shared by the iic_fast CUDA kernels (included by .cu files only). The accumulation type acc_t,
// ceil_div and kEps come from common.h (one definition for CPU and CUDA).
#pragma once
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAException.h>
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cstddef>
#include <cstdint>

#include "checks.h"
#include "common.h"

namespace iic_fast {
namespace cuda {

inline int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

template <typename A, typename T> __device__ __forceinline__ A to_acc(T v) { return static_cast<A>(static_cast<float>(v)); }
template <> __device__ __forceinline__ double to_acc<double, double>(double v) { return v; }
template <> __device__ __forceinline__ float to_acc<float, float>(float v) { return v; }

// Four consecutive shared-memory values; the caller guarantees 16-byte alignment of p (one LDS.128 for fp32).
__device__ __forceinline__ void load4(const float* p, float (&v)[4]) {
  const float4 t = *reinterpret_cast<const float4*>(p);
  v[0] = t.x; v[1] = t.y; v[2] = t.z; v[3] = t.w;
}
__device__ __forceinline__ void load4(const double* p, double (&v)[4]) {
  const double2 a = *reinterpret_cast<const double2*>(p);
  const double2 b = *reinterpret_cast<const double2*>(p + 2);
  v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y;
}
// N consecutive values, N a multiple of 4 (16-byte aligned) or any N with scalar loads.
template <int N, typename A> __device__ __forceinline__ void loadn(const A* p, A (&v)[N]) {
  if constexpr (N % 4 == 0) {
#pragma unroll
    for (int q = 0; q < N; q += 4) {
      A t[4];
      load4(p + q, t);
#pragma unroll
      for (int r = 0; r < 4; ++r) v[q + r] = t[r];
    }
  } else {
#pragma unroll
    for (int q = 0; q < N; ++q) v[q] = p[q];
  }
}

// Dynamic shared memory as an array of A (one extern symbol per type avoids alignment clashes).
template <typename A> __device__ __forceinline__ A* shared_mem() {
  extern __shared__ __align__(16) unsigned char iic_smem[];
  return reinterpret_cast<A*>(iic_smem);
}

// Sum over the block in a fixed order (deterministic); every thread gets the result. `red` holds 32 values.
template <typename A> __device__ A block_sum(A v, A* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = (blockDim.x + 31) >> 5;
  __syncthreads();  // `red` may still be read from a previous call
  if (lane == 0) red[warp] = v;
  __syncthreads();
  A s = 0;
  for (int w = 0; w < nwarps; ++w) s += red[w];
  return s;
}

// Checks a kernel's dynamic shared memory against the device's opt-in limit (the shared check's message) and
// opts the kernel in beyond the default 48 KiB.
template <typename K>
void allow_smem(K kernel, size_t bytes) {
  check_shared_memory(bytes, at::cuda::getCurrentDeviceProperties()->sharedMemPerBlockOptin);
  if (bytes > 48 * 1024)
    C10_CUDA_CHECK(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, (int)bytes));
}

}  // namespace cuda
}  // namespace iic_fast

// CUDA joint and joint_backward (docs/kernel_contract.md): launch configuration and dispatch. The kernels are
// in box_kernels.cuh (collapsed) and shift_kernels.cuh (uncollapsed). Results are deterministic: per-block
// partial joints are summed in a fixed order by reduce_kernel, never with float atomics.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/zeros.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <algorithm>
#include <type_traits>
#include <tuple>

#include "checks.h"
#include "configs.cuh"

namespace iic_fast {
namespace cuda {
namespace {

// out[e] = sum_s in[s * E + e], s in order (deterministic).
template <typename A>
__global__ void reduce_kernel(const A* __restrict__ in, A* __restrict__ out, int S, int64_t E) {
  for (int64_t e = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; e < E; e += (int64_t)gridDim.x * blockDim.x) {
    A s = 0;
    for (int i = 0; i < S; ++i) s += in[i * E + e];
    out[e] = s;
  }
}

template <typename A>
void reduce(const at::Tensor& partial, at::Tensor& out, int S, cudaStream_t stream) {
  const int64_t E = out.numel();
  const int blocks = (int)std::min<int64_t>(ceil_div(E, kThreads), 4096);
  reduce_kernel<A><<<blocks, kThreads, 0, stream>>>(partial.data_ptr<A>(), out.data_ptr<A>(), S, E);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
}

int sms() { return at::cuda::getCurrentDeviceProperties()->multiProcessorCount; }

at::Tensor joint_collapsed(const at::Tensor& x1, const at::Tensor& x2, int64_t d, at::ScalarType acc) {
  const int k = x1.size(1);
  at::Tensor out = at::empty({k, k}, x1.options().dtype(acc));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "iic_fast_joint_collapsed", [&] {
    using A = acc_t<scalar_t>;
    size_t smem;
    const BoxCfg c = box_config(x1.size(0), k, x1.size(2), x1.size(3), d, false, sizeof(A), sms(), &smem);
    const dim3 grid(c.nct * c.n * c.nrc, 1, c.nkc * c.nkc);
    at::Tensor partial = at::empty({(int64_t)grid.x, k, k}, out.options());
    allow_smem(box_joint_kernel<scalar_t, A>, smem);
    box_joint_kernel<scalar_t, A><<<grid, kThreads, smem, stream>>>(x1.data_ptr<scalar_t>(), x2.data_ptr<scalar_t>(),
                                                                   partial.data_ptr<A>(), c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    reduce<A>(partial, out, grid.x, stream);
  });
  return out;
}

// Forward register tile: TX shifts along dx (by T), TI x TJ classes (smaller for fp64 to stay in registers).
template <typename scalar_t, int TI, int TJ, int TX>
void launch_shift(const at::Tensor& x1, const at::Tensor& x2, at::Tensor& out, int64_t d, cudaStream_t stream) {
  using A = acc_t<scalar_t>;
  ShiftCfg c;
  size_t smem;
  int threads;
  const int64_t tiles = shift_config(c, x1.size(0), x1.size(1), x1.size(2), x1.size(3), d, TI, TJ, TX, sizeof(A),
                                     &smem, &threads);
  auto kernel = shift_joint_kernel<scalar_t, A, TX, TI, TJ>;
  allow_smem(kernel, smem);
  int per_sm = 1;
  C10_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kernel, threads, smem));
  const int64_t slots = (int64_t)std::max(per_sm, 1) * at::cuda::getCurrentDeviceProperties()->multiProcessorCount;
  c.split = shift_split(tiles, slots, out.numel(), sizeof(A), (int64_t)c.n * c.H * ceil_div(c.W, c.WC));
  at::Tensor partial = c.split == 1 ? out : at::empty({c.split, out.numel()}, out.options());
  kernel<<<dim3((unsigned)tiles, c.split), threads, smem, stream>>>(x1.data_ptr<scalar_t>(), x2.data_ptr<scalar_t>(),
                                                                   partial.data_ptr<A>(), c);
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  if (c.split > 1) reduce<A>(partial, out, c.split, stream);
}

template <typename scalar_t, int TI, int TJ>
void shift_by_T(const at::Tensor& x1, const at::Tensor& x2, at::Tensor& out, int64_t d, cudaStream_t stream) {
  const int64_t T = 2 * d + 1;
  if (T >= 8) launch_shift<scalar_t, TI, TJ, 8>(x1, x2, out, d, stream);
  else if (T >= 4) launch_shift<scalar_t, TI, TJ, 4>(x1, x2, out, d, stream);
  else if (T == 3) launch_shift<scalar_t, TI, TJ, 2>(x1, x2, out, d, stream);
  else launch_shift<scalar_t, TI, TJ, 1>(x1, x2, out, d, stream);
}

at::Tensor joint_cuda(const at::Tensor& x1_in, const at::Tensor& x2_in, int64_t d, bool collapsed) {
  check_joint_inputs(x1_in, x2_in, d, c10::DeviceType::CUDA);
  c10::cuda::CUDAGuard guard(x1_in.device());
  const at::Tensor x1 = x1_in.contiguous(), x2 = x2_in.contiguous();
  const auto acc = acc_dtype(x1.scalar_type());
  const int64_t k = x1.size(1), S = num_shifts(d, collapsed);
  if (x1.numel() == 0)
    return collapsed ? at::zeros({k, k}, x1.options().dtype(acc)) : at::zeros({S, k, k}, x1.options().dtype(acc));
  if (collapsed) return joint_collapsed(x1, x2, d, acc);
  at::Tensor out = at::empty({S, k, k}, x1.options().dtype(acc));
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "iic_fast_joint_cuda", [&] {
    if constexpr (std::is_same_v<scalar_t, double>) shift_by_T<scalar_t, 2, 2>(x1, x2, out, d, stream);
    else shift_by_T<scalar_t, 2, 4>(x1, x2, out, d, stream);
  });
  return out;
}

void backward_collapsed(const at::Tensor& G, const at::Tensor& x1, const at::Tensor& x2, at::Tensor& dx1,
                        at::Tensor& dx2, int64_t d) {
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "iic_fast_joint_backward_collapsed", [&] {
    using A = acc_t<scalar_t>;
    size_t smem;
    const BoxCfg c = box_config(x1.size(0), x1.size(1), x1.size(2), x1.size(3), d, true, sizeof(A), sms(), &smem);
    auto kernel = box_backward_kernel<scalar_t, A>;
    allow_smem(kernel, smem);
    const dim3 grid(c.nct * c.n * c.nrc, 1, 2 * c.nkc);
    kernel<<<grid, kThreads, smem, stream>>>(G.data_ptr<A>(), x1.data_ptr<scalar_t>(), x2.data_ptr<scalar_t>(),
                                             dx1.data_ptr<scalar_t>(), dx2.data_ptr<scalar_t>(), c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void backward_shifts(const at::Tensor& G, const at::Tensor& x1, const at::Tensor& x2, at::Tensor& dx1,
                     at::Tensor& dx2, int64_t d) {
  constexpr int TW = 8, TO = 4;
  auto stream = at::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x1.scalar_type(), "iic_fast_joint_backward_shifts", [&] {
    using A = acc_t<scalar_t>;
    ShiftBwdCfg c;
    size_t smem;
    int threads;
    const int64_t blocks = shift_bwd_config(c, x1.size(0), x1.size(1), x1.size(2), x1.size(3), d, TW, TO, sizeof(A),
                                            &smem, &threads);
    auto kernel = shift_backward_kernel<scalar_t, A, TW, TO>;
    allow_smem(kernel, smem);
    kernel<<<dim3((unsigned)blocks, 1, 2), threads, smem, stream>>>(G.data_ptr<A>(), x1.data_ptr<scalar_t>(),
                                                                   x2.data_ptr<scalar_t>(), dx1.data_ptr<scalar_t>(),
                                                                   dx2.data_ptr<scalar_t>(), c);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

std::tuple<at::Tensor, at::Tensor> joint_backward_cuda(const at::Tensor& grad, const at::Tensor& x1_in,
                                                       const at::Tensor& x2_in, int64_t d, bool collapsed) {
  check_joint_inputs(x1_in, x2_in, d, c10::DeviceType::CUDA);
  check_joint_grad(grad, x1_in, d, collapsed);
  c10::cuda::CUDAGuard guard(x1_in.device());
  const at::Tensor x1 = x1_in.contiguous(), x2 = x2_in.contiguous();
  const auto acc = acc_dtype(x1.scalar_type());
  const at::Tensor G = grad.to(acc).contiguous();
  at::Tensor dx1 = at::empty(x1.sizes(), x1.options()), dx2 = at::empty(x2.sizes(), x2.options());
  if (x1.numel() == 0) return {dx1, dx2};
  if (collapsed) backward_collapsed(G, x1, x2, dx1, dx2, d);
  else backward_shifts(G, x1, x2, dx1, dx2, d);
  return {dx1, dx2};
}

}  // namespace
}  // namespace cuda
}  // namespace iic_fast

TORCH_LIBRARY_IMPL(iic_fast, CUDA, m) {
  m.impl("joint", &iic_fast::cuda::joint_cuda);
  m.impl("joint_backward", &iic_fast::cuda::joint_backward_cuda);
}

// Fused IIC epilogue on CUDA: one block per joint slice computes the normalised, symmetrised, clamped joint,
// both losses and d loss / d joint (docs/kernel_contract.md); a second one-block kernel sums the per-slice
// losses in a fixed order, so the result is deterministic. fp32 math for fp32 (and fp16/bf16, upcast)
// joints, fp64 for fp64.
#include <ATen/core/Tensor.h>
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <ATen/ops/empty.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/library.h>

#include <limits>
#include <tuple>

#include "checks.h"
#include "mi_kernels.cuh"

namespace iic_fast {
namespace cuda {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor> mi_cuda(const at::Tensor& joint_in, double lamb, bool collapsed) {
  check_mi_input(joint_in, c10::DeviceType::CUDA);
  c10::cuda::CUDAGuard guard(joint_in.device());
  const auto dtype = joint_in.scalar_type();
  const auto acc = acc_dtype(dtype);
  const at::Tensor joint = joint_in.to(acc).contiguous();  // fp16/bf16 joints are computed in fp32
  const int k = joint.size(-1);
  const int S = joint.dim() == 3 ? joint.size(0) : 1;
  at::Tensor grad = at::empty(joint.sizes(), joint.options());
  at::Tensor losses = at::empty({2 * S + 2}, joint.options());  // per-slice losses, then the two results
  if (S > 0) {
    auto stream = at::cuda::getCurrentCUDAStream();
    AT_DISPATCH_FLOATING_TYPES(acc, "iic_fast_mi_cuda", [&] {
      const size_t smem = (4 * (size_t)k + 32) * sizeof(scalar_t);
      allow_smem(mi_slice_kernel<scalar_t>, smem);
      mi_slice_kernel<scalar_t><<<S, kMiThreads, smem, stream>>>(joint.data_ptr<scalar_t>(), grad.data_ptr<scalar_t>(),
                                                               losses.data_ptr<scalar_t>(), S, k,
                                                               static_cast<scalar_t>(lamb), collapsed);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
      mi_final_kernel<scalar_t><<<1, kMiThreads, 32 * sizeof(scalar_t), stream>>>(losses.data_ptr<scalar_t>(), S,
                                                            losses.data_ptr<scalar_t>() + 2 * S);
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  } else {
    losses.fill_(std::numeric_limits<double>::quiet_NaN());  // mean over no slices
  }
  at::Tensor loss = losses.select(0, 2 * S).to(dtype, /*non_blocking=*/false, /*copy=*/true);
  at::Tensor loss_no_lamb = losses.select(0, 2 * S + 1).to(dtype, false, true);
  return {loss, loss_no_lamb, dtype == acc ? grad : grad.to(dtype)};
}

}  // namespace
}  // namespace cuda
}  // namespace iic_fast

TORCH_LIBRARY_IMPL(iic_fast, CUDA, m) { m.impl("mi", &iic_fast::cuda::mi_cuda); }

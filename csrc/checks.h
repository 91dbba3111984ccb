// Argument checks shared by the CPU and CUDA kernels; every message names the bad argument. Defined in checks.cpp.
#pragma once
#include <ATen/core/Tensor.h>

#include <cstddef>
#include <cstdint>

#include "common.h"

namespace iic_fast {

// Number of displacement joints: (2d+1)^2 uncollapsed, 1 collapsed (summed over shifts).
inline int64_t num_shifts(int64_t d, bool collapsed) {
  return collapsed ? 1 : (2 * d + 1) * (2 * d + 1);
}

// x1, x2: (n, k, H, W), same floating dtype and device; 0 <= d <= max(H, W).
void check_joint_inputs(const at::Tensor& x1, const at::Tensor& x2, int64_t d, c10::DeviceType device);

// grad: dL/dJ of the joint op's output, (S, k, k) or (k, k) when collapsed, floating, on x1's device.
void check_joint_grad(const at::Tensor& grad, const at::Tensor& x1, int64_t d, bool collapsed);

// joint: (S, k, k) or (k, k), a floating tensor.
void check_mi_input(const at::Tensor& joint, c10::DeviceType device);

// A CUDA kernel's dynamic shared memory (bytes) against the device's opt-in limit per block.
void check_shared_memory(size_t bytes, size_t limit);

}  // namespace iic_fast

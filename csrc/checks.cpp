// Argument checks shared by the CPU and CUDA kernels (declared in checks.h). Defined out of line so that they are
// compiled once, by the C++ compiler: the messages' std::ostream formatting is then not compiled in nvcc's host
// pass, whose weak copies of C++20 library templates can become the ones the whole of _C.so binds to.
#include "checks.h"

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

#include <algorithm>

namespace iic_fast {

void check_joint_inputs(const at::Tensor& x1, const at::Tensor& x2, int64_t d, c10::DeviceType device) {
  TORCH_CHECK(x1.dim() == 4, "iic_fast: x1 must have shape (n, k, H, W), got ", x1.sizes());
  TORCH_CHECK(x2.sizes() == x1.sizes(), "iic_fast: x2 must have the shape of x1 ", x1.sizes(), ", got ",
              x2.sizes());
  TORCH_CHECK(x1.scalar_type() == x2.scalar_type(), "iic_fast: x1 and x2 must have one dtype, got ",
              x1.scalar_type(), " and ", x2.scalar_type());
  TORCH_CHECK(at::isFloatingType(x1.scalar_type()), "iic_fast: x1 must be floating point, got ",
              x1.scalar_type());
  TORCH_CHECK(x1.device().type() == device && x2.device() == x1.device(),
              "iic_fast: x1 and x2 must be on one ", c10::DeviceTypeName(device), " device, got ", x1.device(),
              " and ", x2.device());
  TORCH_CHECK(x1.size(1) > 0, "iic_fast: x1 must have k >= 1 classes, got shape ", x1.sizes());
  TORCH_CHECK(d >= 0, "iic_fast: d must be >= 0, got ", d);
  TORCH_CHECK(d <= std::max(x1.size(2), x1.size(3)), "iic_fast: d=", d, " exceeds the image size ",
              x1.size(2), "x", x1.size(3));
}

void check_joint_grad(const at::Tensor& grad, const at::Tensor& x1, int64_t d, bool collapsed) {
  const int64_t k = x1.size(1);
  const bool ok = collapsed ? (grad.dim() == 2 && grad.size(0) == k && grad.size(1) == k)
                            : (grad.dim() == 3 && grad.size(0) == num_shifts(d, false) && grad.size(1) == k &&
                               grad.size(2) == k);
  TORCH_CHECK(ok, "iic_fast: grad_joint has shape ", grad.sizes(), ", expected the joint's shape for k=", k,
              ", d=", d, ", collapsed=", collapsed);
  TORCH_CHECK(at::isFloatingType(grad.scalar_type()), "iic_fast: grad_joint must be floating point, got ",
              grad.scalar_type());
  TORCH_CHECK(grad.device() == x1.device(), "iic_fast: grad_joint must be on ", x1.device(), ", got ",
              grad.device());
}

void check_mi_input(const at::Tensor& joint, c10::DeviceType device) {
  TORCH_CHECK((joint.dim() == 2 || joint.dim() == 3) && joint.size(-1) == joint.size(-2) && joint.size(-1) > 0,
              "iic_fast: joint must have shape (S, k, k) or (k, k), got ", joint.sizes());
  TORCH_CHECK(at::isFloatingType(joint.scalar_type()), "iic_fast: joint must be floating point, got ",
              joint.scalar_type());
  TORCH_CHECK(joint.device().type() == device, "iic_fast: joint must be on a ", c10::DeviceTypeName(device),
              " device, got ", joint.device());
}

void check_shared_memory(size_t bytes, size_t limit) {
  TORCH_CHECK(bytes <= limit, "iic_fast: the CUDA kernel needs ", bytes, " bytes of shared memory for this k and d",
              " (the device has ", limit, "); use impl='fft' or impl='reference'");
}

}  // namespace iic_fast
